import assert from 'node:assert/strict';
import { windowGate } from '../../../gateway/rollout/gate.ts';
import { campaignRig, FakeWindows, image, openGate, T0 } from './campaign-rig.ts';
import type { FakeTimers } from './fake.ts';

/**
 * Edges of a campaign's results and counts (docs/protocol.md §7.6.4, §7.7, §7.8.1, §7.3.6): the
 * waiting list's bound, its repeats, attempts across turns, the durable record before `activate`,
 * the offer's flags, a device rebooting at the expiry, who counts as finished and in which wave.
 */
const HOUR = 3_600_000;
const checkIn = ({ timers }: { timers: FakeTimers }) => ({ checkIn: { expiresAt: T0 + 10 * HOUR }, gate: openGate(timers) });

describe('campaign: edges of results and counts (fake clock)', () => {
  it('waiting lists at most 256 devices and counts them all; an offline device is queued with nothing held', async () => {
    const ids = Array.from({ length: 300 }, (_, i) => `d${String(i).padStart(3, '0')}`);
    const rig = campaignRig({ ids, offline: ids, deps: checkIn });
    await rig.until(() => rig.waiting.length > 0);
    assert.equal(rig.waiting[0]!.pending, 300);
    assert.equal(rig.waiting[0]!.devices.length, 256);
    assert.deepEqual(rig.waiting[0]!.devices[0], { id: 'd000', reason: 'offline: waits for its check-in' });
    assert.deepEqual(rig.progress.filter((p) => p.id === 'd000').map((p) => [p.phase, p.bytes]), [['queued', 0]]);
    rig.campaign.cancelByUser('done here');
    const complete = await rig.finish();
    assert.equal(complete.cancelled, 300);
  });

  it('the same waiting list is announced once, however often the campaign looks again', async () => {
    const rig = campaignRig({ ids: ['d1'], roles: { d1: 'busy' }, rollout: { busyRecheckMs: 60_000 }, deps: checkIn });
    await rig.until(() => rig.site.count('d1', 'offer') === 4);
    await rig.until(() => rig.campaign.waitingIds().length === 1);
    assert.equal(rig.waiting.length, 1, 'three rechecks, one announcement');
    assert.deepEqual(rig.states.map((s) => s.state), ['running', 'waiting']);
    rig.campaign.cancelByUser('x');
    await rig.finish();
  });

  it("a turn's retries count in the device's result after it waited for the next window", async () => {
    const rig = campaignRig({
      ids: ['d1'], roles: { d1: 'mute' },
      rollout: { maxAttempts: 5, offerTimeoutMs: 5000, retryBackoffMs: 1000, retryBackoffMaxMs: 1000 },
      deps: (r) => ({ gate: windowGate(new FakeWindows(r.timers, [{ from: T0, to: T0 + 8000 }, { from: T0 + HOUR, to: T0 + 2 * HOUR }]), r.timers) }),
    });
    await rig.until(() => rig.waiting.length > 0);
    assert.equal(rig.site.count('d1', 'offer'), 2, 'one retry before the close');
    rig.site.roles.set('d1', 'ok');
    await rig.finish();
    assert.deepEqual([rig.result('d1').outcome, rig.result('d1').retries], ['updated', 2], 'its retry and its stopped turn');
  });

  it('activate is sent only once the activating record is durable', async () => {
    let durableAt = 0;
    const rig = campaignRig({
      ids: ['d1'],
      deps: ({ timers }) => ({ durable: () => new Promise<void>((resolve) => timers.setTimeout(() => { durableAt = timers.now(); resolve(); }, 700)) }),
    });
    await rig.finish();
    assert.equal(durableAt, T0 + 700);
    assert.equal(rig.site.sent.find((s) => s.msg.t === 'activate')!.at, T0 + 700);
  });

  it('the offer carries force only when the campaign was told to force', async () => {
    const plain = campaignRig({ ids: ['d1'] });
    await plain.finish();
    assert.equal('force' in plain.site.sent.find((s) => s.msg.t === 'offer')!.msg, false);
    assert.equal('downgrade' in plain.site.sent.find((s) => s.msg.t === 'offer')!.msg, false);
    const forced = campaignRig({ ids: ['d1'], deps: () => ({ force: true }) });
    await forced.finish();
    assert.equal((forced.site.sent.find((s) => s.msg.t === 'offer')!.msg as { force?: boolean }).force, true);
  });

  it('a device rebooting into the image at the expiry finishes its update', async () => {
    const rig = campaignRig({ ids: ['d1'], roles: { d1: 'slow' }, deps: ({ timers }) => ({ checkIn: { expiresAt: T0 + 1000 }, gate: openGate(timers) }) });
    const complete = await rig.finish();
    assert.deepEqual([rig.result('d1').outcome, rig.result('d1').code], ['updated', 'ok']);
    assert.equal(complete.expired, undefined);
  });

  it('a cancelled transfer ends with the bytes the device held, an updated device with the whole image', async () => {
    const rig = campaignRig({ ids: ['d1', 'd2'], roles: { d2: 'hold' } });
    await rig.until(() => rig.site.count('d2', 'chunk') > 0 && rig.results.length === 1);
    rig.campaign.cancelByUser('stop');
    await rig.finish();
    assert.deepEqual(rig.progress.filter((p) => p.id === 'd2').at(-1), { t: 'progress', campaign: 'c-1', id: 'd2', phase: 'cancelled', bytes: 0, total: image.length, etaMs: 0 });
    assert.deepEqual(rig.progress.filter((p) => p.id === 'd1').at(-1)!.bytes, image.length);
  });

  it('a failed device counts as finished, and not as rolled back', async () => {
    // d1 failed, d2 and d3 rolled back: 2 of 3 = 66.7 % < 67 %
    const rig = campaignRig({ roles: { d1: 'no-space', d2: 'revert', d3: 'revert' }, rollout: { rollbackMinSamplePct: 0, rollbackThreshold: 67 } });
    rig.site.ackDelayMs = 50;
    const complete = await rig.finish();
    assert.deepEqual([rig.result('d1').outcome, rig.result('d1').code], ['failed', 'no-space']);
    assert.equal(complete.halted, undefined);
    assert.deepEqual([complete.failed, complete.rolledBack, complete.updated], [1, 2, 1]);

    const gated = campaignRig({ ids: ['d1', 'd2'], roles: { d1: 'no-space' }, deps: () => ({ waves: [{ count: 1 }, { pct: 100 }], waveGatePct: 100 }) });
    const c2 = await gated.finish();
    assert.equal(c2.halted?.reason, 'wave 1: 1 of 1 finished devices failed or rolled back, wave gate 100 %');
  });

  it("a device's failure counts in its own wave", async () => {
    const rig = campaignRig({ ids: ['d1', 'd2', 'd3'], roles: { d2: 'revert' }, deps: () => ({ waves: [{ count: 1 }, { count: 2 }, { pct: 100 }], waveGatePct: 50 }) });
    const complete = await rig.finish();
    assert.equal(complete.halted?.reason, 'wave 2: 1 of 1 finished devices failed or rolled back, wave gate 50 %');
    assert.equal(rig.result('d3').code, 'campaign-halted');
  });

  it('with nobody to start, swept comes before the first waiting list', async () => {
    const rig = campaignRig({ ids: ['d1', 'd2'], offline: ['d1', 'd2'], deps: checkIn });
    await rig.until(() => rig.waiting.length > 0);
    assert.deepEqual(rig.events.filter((e) => e !== 'order'), ['state:running', 'swept', 'state:waiting', 'waiting']);
    rig.campaign.cancelByUser('x');
    await rig.finish();
  });

  it('a cancel while a device is not offered yet (waiting for it to come back) sends no abort', async () => {
    const rig = campaignRig({ ids: ['d1'], rollout: { offlineWaitMs: 60_000 } });
    rig.campaign.once('order', () => rig.site.goOffline('d1'));
    await rig.until(() => rig.progress.some((p) => p.id === 'd1' && p.phase === 'queued'));
    await rig.until(() => rig.timers.now() >= T0 + 1000);
    rig.campaign.cancelByUser('stop');
    await rig.finish();
    assert.deepEqual([rig.result('d1').outcome, rig.result('d1').code], ['cancelled', 'cancelled']);
    assert.equal(rig.site.sent.filter((s) => s.msg.t === 'abort' || s.msg.t === 'offer').length, 0);
  });

  it('waves with check-in: an excluded device takes no place in them, an offline one does', async () => {
    const rig = campaignRig({ ids: ['d1', 'd2', 'd3', 'd4'], offline: ['d2'], deps: (r) => ({ ...checkIn(r), waves: [{ count: 2 }, { pct: 100 }] }) });
    rig.site.checkIn('d1', false, '1.1.0');
    await rig.until(() => rig.waiting.length > 0);
    assert.deepEqual(rig.orders[0]!.devices.map((d) => [d.id, d.wave]), [['d3', 1], ['d2', 1], ['d4', 2]]);
    rig.campaign.cancelByUser('x');
    await rig.finish();
  });
});
