import assert from 'node:assert/strict';
import type { JournalState } from '../../../gateway/rollout/journal.ts';
import type { OrderEntry, ResultMessage } from '../../../protocol/uplink.ts';
import { campaignRig, image, manifest } from './campaign-rig.ts';

/**
 * A campaign resumed from its journal after a gateway restart (docs/reliability.md): its order and
 * results stand (no new measurement, no new order); the devices without a result start again in
 * their planned order (wave, planned start, rank); a device past `activate` is asked first;
 * journaled rollbacks count towards the threshold again; the wave the journal reached is current.
 */
const entry = (id: string, rank: number, over: Partial<OrderEntry> = {}): OrderEntry => ({ id, rank, from: '1.0.0', ...over });
const result = (id: string, outcome: ResultMessage['outcome'], code: ResultMessage['code']): ResultMessage => ({
  t: 'result', campaign: 'c-1', id, outcome, code, from: '1.0.0', to: '1.1.0', durationMs: 1000, retries: 0,
});

function journal(devices: OrderEntry[], results: ResultMessage[], over: Partial<JournalState> = {}): JournalState {
  return {
    id: 'c-1', sha256: manifest.sha256, startedAt: Date.now() - 60_000,
    order: { t: 'order', campaign: 'c-1', image: { name: manifest.name, version: manifest.version, sha256: manifest.sha256 }, devices, excluded: [] },
    activating: new Set(), held: new Map(), results: new Map(results.map((r) => [r.id, r])), records: 1, tornBytes: 0, corruptLines: [],
    ...over,
  };
}

describe('campaign: resumed from its journal (fake clock, docs/reliability.md)', () => {
  it('keeps the order and results, measures nobody, asks a device past activate first, updates the rest from what they hold', async () => {
    const devices = [entry('d1', 1), entry('d2', 2), entry('d3', 3), entry('d4', 4)];
    const rig = campaignRig({
      ids: ['d1', 'd2', 'd3', 'd4', 'd5'],
      deps: () => ({ resume: journal(devices, [result('d1', 'updated', 'ok'), result('d2', 'rolled-back', 'self-test-failed')], { activating: new Set(['d3']), held: new Map([['d4', 2048], ['d2', 3072]]) }) }),
    });
    rig.site.checkIn('d3', false, '1.1.0'); // it rebooted into the new image while the gateway was down
    rig.fleet.setRebootMs('d3', 777);
    const complete = await rig.finish();
    assert.deepEqual(rig.orders, [], 'the order is not announced again');
    assert.equal(rig.site.sent.filter((s) => s.msg.t === 'ping' || s.msg.t === 'probe').length, 0, 'no measurement');
    assert.deepEqual(rig.site.sent.filter((s) => ['d1', 'd2', 'd3', 'd5'].includes(s.id)), [], 'nothing sent to d3: it runs the image');
    assert.deepEqual(rig.results.map((r) => [r.id, r.outcome]), [['d3', 'updated'], ['d4', 'updated']], 'only the new results are emitted');
    assert.deepEqual(rig.campaign.snapshot().results.map((r) => r.id), ['d1', 'd2', 'd3', 'd4']);
    assert.deepEqual([complete.devices, complete.updated, complete.rolledBack], [4, 3, 1]);
    assert.equal(rig.campaign.targets('d5'), false);
    const first = rig.progress.find((p) => p.id === 'd4')!;
    assert.deepEqual([first.phase, first.bytes, first.total], ['queued', 2048, image.length], 'd4 starts from the bytes it held');
    const d1 = rig.progress.filter((p) => p.id === 'd1');
    assert.deepEqual(d1.map((p) => [p.phase, p.bytes]), [['done', image.length]]);
    assert.deepEqual(rig.progress.filter((p) => p.id === 'd2').map((p) => [p.phase, p.bytes]), [['rolled-back', 3072]], 'what it held at its result');
    assert.deepEqual(rig.progress.filter((p) => p.id === 'd3').map((p) => [p.phase, p.bytes]), [['queued', 0], ['done', image.length]]);
    assert.equal(rig.fleet.get('d3')!.rebootMs, 777, 'no reboot seen: the one learned before stands');
    assert.equal(rig.fleet.get('d4')!.deviceMsPerMiB, undefined, 'no link measured in this run: no device time learned');
    assert.equal(rig.result('d3').t, 'result');
  });

  it('complete.durationMs runs from the journal\'s start: the time before the restart (and the downtime) is in it', async () => {
    const before = 3_600_000; // the campaign started an hour before the gateway came back
    const rig = campaignRig({
      ids: ['d1', 'd2'],
      deps: () => ({ resume: journal([entry('d1', 1), entry('d2', 2)], [result('d1', 'updated', 'ok')], { startedAt: Date.now() - before }) }),
    });
    const t0 = rig.timers.now();
    const complete = await rig.finish();
    const ranHere = rig.timers.now() - t0;
    assert.ok(complete.durationMs >= before + ranHere, `durationMs ${complete.durationMs} < ${before} + ${ranHere}`);
    assert.ok(complete.durationMs < before + ranHere + 60_000, `durationMs ${complete.durationMs}: more than the hour, this run and a minute of slack`);
  });

  it('the rest start by wave, then planned start, then rank; the journal\'s wave is the current one (no pause before it again)', async () => {
    const devices = [
      entry('d1', 1, { wave: 1, startMs: 0 }), entry('d6', 6, { wave: 2, startMs: 100 }), entry('d2', 2, { wave: 2, startMs: 500 }), entry('d5', 5, { wave: 2, startMs: 0 }),
      entry('d3', 3, { wave: 2, startMs: 0 }), entry('d4', 4, { wave: 2 }),
    ];
    const rig = campaignRig({
      ids: ['d1', 'd2', 'd3', 'd4', 'd5', 'd6'],
      deps: () => ({ waves: [{ count: 1 }, { pct: 100 }], wavePause: true, resume: journal(devices, [result('d1', 'updated', 'ok')], { wave: 2 }) }),
    });
    const complete = await rig.finish();
    assert.deepEqual(rig.site.offered(), ['d3', 'd5', 'd6', 'd2', 'd4']);
    assert.equal(rig.states.some((s) => s.state === 'paused'), false, 'resumed in wave 2: no pause before it');
    assert.deepEqual(rig.states[0], { state: 'running', wave: 2 }, 'the first state a resumed campaign announces is the wave it is in');
    assert.equal(complete.updated, 6);
  });

  it('a journal at wave 1 with wave-1 devices left finishes them before wave 2', async () => {
    const devices = [entry('d1', 1, { wave: 1 }), entry('d2', 2, { wave: 1 }), entry('d3', 3, { wave: 2 })];
    const rig = campaignRig({ ids: ['d1', 'd2', 'd3'], rollout: { concurrency: 2 }, deps: () => ({ waves: [{ count: 2 }, { pct: 100 }], resume: journal(devices, [result('d1', 'updated', 'ok')]) }) });
    await rig.finish();
    assert.deepEqual(rig.site.offered(), ['d2', 'd3']);
    const d2done = rig.site.sent.findIndex((s) => s.id === 'd2' && s.msg.t === 'confirm');
    assert.ok(rig.site.sent.findIndex((s) => s.id === 'd3' && s.msg.t === 'offer') > d2done);
    assert.deepEqual(rig.states.slice(0, 2), [{ state: 'running', wave: 1 }, { state: 'running', wave: 2 }]);
  });

  it('journaled rollbacks count towards the threshold again: past it, the rest never start', async () => {
    const devices = [entry('d1', 1), entry('d2', 2), entry('d3', 3), entry('d4', 4)];
    const rig = campaignRig({ deps: () => ({ resume: journal(devices, [result('d1', 'rolled-back', 'self-test-failed'), result('d2', 'rolled-back', 'self-test-failed')]) }) });
    const complete = await rig.finish();
    const reason = '2 of 2 finished devices rolled back, threshold 20 %';
    assert.deepEqual(complete.halted, { code: 'rollback-threshold', reason, rolledBack: 2, finished: 2, thresholdPct: 20 });
    for (const id of ['d3', 'd4']) {
      assert.deepEqual([rig.result(id).outcome, rig.result(id).code, rig.result(id).reason], ['skipped', 'campaign-halted', `rollout stopped before this device started (${reason})`]);
    }
    assert.deepEqual(rig.site.sent, []);
    assert.deepEqual(rig.states.at(-1), { state: 'halted', reason });
  });

  it('a journaled result of a device not in the order stands but does not count towards the threshold', async () => {
    const devices = [entry('d1', 1), entry('d2', 2), entry('d3', 3), entry('d4', 4)];
    const rig = campaignRig({ ids: ['d1', 'd2', 'd3', 'd4', 'x9'], deps: () => ({ resume: journal(devices, [result('d1', 'rolled-back', 'self-test-failed'), result('x9', 'rolled-back', 'self-test-failed')]) }) });
    const complete = await rig.finish();
    assert.equal(complete.halted, undefined);
    assert.deepEqual([complete.devices, complete.updated, complete.rolledBack], [5, 3, 2]);
  });
});
