import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../../gateway/log.ts';
import { campaignRig, manifest, openGate, type RigOptions } from './campaign-rig.ts';

/**
 * What a campaign writes to the gateway log for the operator (docs/operations.md "Logs"): each
 * device's result, the order, why a campaign stopped (cancel, rollback threshold, wave gate), a
 * pause between waves, a device that waits, and its completion — each line naming the campaign.
 */
interface Line { level: number; msg: string; [k: string]: unknown }
const WARN = 40;
const INFO = 30;

function logged(opts: RigOptions): { rig: ReturnType<typeof campaignRig>; lines: Line[]; find: (msg: string) => Line[] } {
  const lines: Line[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Line);
      done();
    },
  });
  const log: Logger = createLogger({ level: 'debug', format: 'json', destination: sink });
  const rig = campaignRig({ ...opts, deps: (r) => ({ ...opts.deps?.(r), log }) });
  return { rig, lines, find: (msg) => lines.filter((l) => l.msg === msg) };
}

describe('campaign: what it logs for the operator (fake clock)', () => {
  it('the order, each device result and the completion, with their figures', async () => {
    const { rig, find } = logged({ ids: ['d1', 'd2'], roles: { d2: 'revert' } });
    await rig.finish();
    const [order] = find('rollout order');
    assert.deepEqual([order!.level, order!.campaign, order!.devices, order!.excluded, order!.order, order!.starts], [INFO, 'c-1', 2, 0, ['d1', 'd2'], ['d1', 'd2']]);
    const results = find('device result');
    assert.deepEqual(results.map((l) => [l.level, l.campaign, l.device, l.outcome, l.code, l.retries]), [
      [INFO, 'c-1', 'd1', 'updated', 'ok', 0], [INFO, 'c-1', 'd2', 'rolled-back', 'self-test-failed', 0],
    ]);
    assert.equal(typeof results[0]!.ms, 'number');
    const [done] = find('campaign complete');
    assert.deepEqual([done!.level, done!.campaign, done!.devices, done!.updated, done!.rolledBack, done!.t], [INFO, 'c-1', 2, 1, 1, undefined]);
  });

  it('a cancel: a warning with the reason and the sessions it stopped', async () => {
    const { rig, find } = logged({ ids: ['d1', 'd2', 'd3'], roles: { d2: 'hold' } });
    await rig.until(() => rig.site.count('d2', 'chunk') > 0 && rig.results.length === 1);
    rig.campaign.cancelByUser('by the technician');
    await rig.finish();
    const [l] = find('campaign cancelled');
    assert.deepEqual([l!.level, l!.campaign, l!.reason, l!.stopped], [WARN, 'c-1', 'by the technician', ['d2']], 'd1 had finished, d3 not started');
  });

  it('a halt by the rollback threshold: a warning with the counts and the sessions stopped', async () => {
    const { rig, find } = logged({ roles: { d1: 'revert', d2: 'revert', d3: 'hold', d4: 'hold' }, rollout: { rollbackMinSamplePct: 0, concurrency: 3 } });
    rig.site.ackDelayMs = 50;
    await rig.finish();
    const [l] = find('rollback threshold passed: campaign halted');
    assert.deepEqual([l!.level, l!.campaign, l!.code, l!.rolledBack, l!.finished, l!.stopped], [WARN, 'c-1', 'rollback-threshold', 2, 2, ['d3', 'd4']]);
  });

  it('a suspect device rolling back again: a warning that it is left out of the threshold', async () => {
    const { rig, find } = logged({ ids: ['d1'], roles: { d1: 'revert' }, deps: () => ({ isSuspect: () => true }) });
    await rig.finish();
    const [l] = find('rolled back again: a suspect device, left out of the rollback threshold');
    assert.deepEqual([l!.level, l!.campaign, l!.device], [WARN, 'c-1', 'd1']);
  });

  it('waves: the wave gate, the next wave, the pause', async () => {
    const gated = logged({ ids: ['d1', 'd2'], roles: { d1: 'revert' }, deps: () => ({ waves: [{ count: 1 }, { pct: 100 }], waveGatePct: 50 }) });
    await gated.rig.finish();
    const [g] = gated.find('wave gate: later waves not started');
    assert.deepEqual([g!.level, g!.campaign, g!.wave, g!.finished, g!.failed, g!.gatePct], [WARN, 'c-1', 1, 1, 1, 50]);

    const paused = logged({ ids: ['d1', 'd2'], deps: () => ({ waves: [{ count: 1 }, { pct: 100 }], wavePause: true }) });
    await paused.rig.until(() => paused.rig.campaign.paused);
    const [p] = paused.find('paused between waves: waits for resume');
    assert.deepEqual([p!.level, p!.campaign, p!.wave, p!.next], [INFO, 'c-1', 1, 2]);
    paused.rig.campaign.resumeWaves();
    await paused.rig.finish();
    const [n] = paused.find('next wave');
    assert.deepEqual([n!.level, n!.campaign, n!.wave], [INFO, 'c-1', 2]);
  });

  it('a device that waits: why', async () => {
    const { rig, find } = logged({ ids: ['d1'], roles: { d1: 'busy' }, rollout: { busyRecheckMs: 1000 }, deps: ({ timers }) => ({ checkIn: { expiresAt: timers.now() + 1500 }, gate: openGate(timers) }) });
    await rig.finish();
    const [w] = find('device waits');
    assert.deepEqual([w!.level, w!.campaign, w!.device, w!.wait, w!.reason], [INFO, 'c-1', 'd1', 'busy', 'device is busy: metering']);
  });

  it('an abort that cannot be sent is logged (debug) and changes nothing else', async () => {
    const { rig, find } = logged({ ids: ['d1'], roles: { d1: 'hold' } });
    const send = rig.site.send.bind(rig.site);
    rig.site.send = async (id, msg) => {
      if (msg.t === 'abort') throw new Error('link down');
      return send(id, msg);
    };
    await rig.until(() => rig.site.count('d1', 'chunk') > 0);
    rig.campaign.cancelByUser('stop');
    const complete = await rig.finish();
    assert.equal(complete.cancelled, 1);
    const [l] = find('abort not sent');
    assert.deepEqual([l!.level, l!.device, l!.err], [20, 'd1', 'link down']);
  });

  it('a resume: the results it keeps, the devices left and those past activate', async () => {
    const entry = (id: string, rank: number) => ({ id, rank, from: '1.0.0' });
    const { rig, find } = logged({
      ids: ['d1', 'd2', 'd3'],
      deps: () => ({
        resume: {
          id: 'c-1', sha256: manifest.sha256, startedAt: Date.now(),
          order: { t: 'order', campaign: 'c-1', image: { name: manifest.name, version: manifest.version, sha256: manifest.sha256 }, devices: [entry('d1', 1), entry('d2', 2), entry('d3', 3)], excluded: [] },
          activating: new Set(['d1', 'd3']), held: new Map(), records: 1, tornBytes: 0, corruptLines: [],
          results: new Map([['d1', { t: 'result', campaign: 'c-1', id: 'd1', outcome: 'updated', code: 'ok', from: '1.0.0', to: '1.1.0', durationMs: 1, retries: 0 }]]),
        },
      }),
    });
    await rig.finish();
    const [l] = find('campaign resumed from its journal');
    assert.deepEqual([l!.level, l!.campaign, l!.results, l!.remaining, l!.pastActivate], [INFO, 'c-1', 1, ['d2', 'd3'], ['d3']]);
  });

  it('with check-in: the order names who waits; a cancel names only the sessions it stopped, not devices waiting', async () => {
    const { rig, find } = logged({ ids: ['d1', 'd2'], offline: ['d2'], roles: { d1: 'busy' }, deps: ({ timers }) => ({ checkIn: { expiresAt: timers.now() + 3_600_000 }, gate: openGate(timers) }) });
    await rig.until(() => rig.waiting.length > 0);
    assert.deepEqual(find('rollout order')[0]!.waiting, ['d2']);
    assert.deepEqual(rig.campaign.waitingIds().sort(), ['d1', 'd2']);
    rig.campaign.cancelByUser('enough');
    await rig.finish();
    assert.deepEqual(find('campaign cancelled')[0]!.stopped, []);
  });
});
