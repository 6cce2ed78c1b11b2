import assert from 'node:assert/strict';
import { TokenBucket } from '../../../gateway/rollout/bandwidth.ts';
import { windowGate } from '../../../gateway/rollout/gate.ts';
import { campaignRig, FakeWindows, T0, type RigOptions } from './campaign-rig.ts';

/**
 * A campaign behind maintenance windows (docs/operations.md "Maintenance windows"): no transfer
 * or activation starts outside a window (with downloadEarly, transfers may); at a window's close,
 * sessions not activating yet stop and their devices wait for the next window; a device is not
 * activated unless its reboot and confirmation (rebootMs or rollout.rebootEstimateMs, plus
 * rollout.confirmTimeoutMs) fit before the window closes.
 */
const MIN = 60_000;
const HOUR = 60 * MIN;
// default rollout.rebootEstimateMs 1500 + rollout.confirmTimeoutMs 5000
const NEED_MS = 6500;

function windowed(spans: { from: number; to: number }[], opts: RigOptions & { downloadEarly?: boolean; expiresAt?: number } = {}) {
  let windows: FakeWindows | undefined;
  const rig = campaignRig({
    ...opts,
    deps: (r) => {
      windows = new FakeWindows(r.timers, spans);
      return {
        gate: windowGate(windows, r.timers),
        ...(opts.downloadEarly ? { downloadEarly: true } : {}),
        ...(opts.expiresAt !== undefined ? { checkIn: { expiresAt: opts.expiresAt } } : {}),
      };
    },
  });
  return { ...rig, windows: windows! };
}

describe('campaign: maintenance windows (fake clock)', () => {
  it('outside a window nothing is offered; at its opening the devices start', async () => {
    const rig = windowed([{ from: T0 + 10 * MIN, to: T0 + HOUR }], { ids: ['d1', 'd2'] });
    await rig.until(() => rig.orders.length > 0);
    await rig.until(() => rig.site.offered().length > 0);
    assert.equal(rig.timers.now(), T0 + 10 * MIN);
    const complete = await rig.finish();
    assert.equal(complete.updated, 2);
    assert.ok(rig.site.sent.filter((s) => s.msg.t === 'offer').every((s) => s.at >= T0 + 10 * MIN));
    assert.equal(rig.windows.listenerCount('open') + rig.windows.listenerCount('close'), 0, 'the campaign no longer listens to the windows');
  });

  it('at the close a transfer stops without an abort; the device waits for the next window and resumes in it', async () => {
    const rig = windowed([{ from: T0, to: T0 + 10 * MIN }, { from: T0 + HOUR, to: T0 + 2 * HOUR }], {
      ids: ['d1'], roles: { d1: 'hold' }, rollout: { ackTimeoutMs: HOUR, deviceDeadlineMs: 10 * HOUR },
    });
    await rig.until(() => rig.waiting.length > 0);
    assert.equal(rig.timers.now(), T0 + 10 * MIN);
    assert.deepEqual(rig.waiting[0]!.devices, [{ id: 'd1', reason: 'the maintenance window closed' }]);
    assert.deepEqual(rig.campaign.waitingIds(), ['d1']);
    assert.equal(rig.site.count('d1', 'abort'), 0, 'it keeps what it holds for the next window');
    rig.site.roles.set('d1', 'ok');
    const complete = await rig.finish();
    assert.equal(rig.site.count('d1', 'offer'), 2);
    assert.equal(rig.site.sent.filter((s) => s.msg.t === 'offer')[1]!.at, T0 + HOUR, 'offered again when the next window opens');
    assert.deepEqual([rig.result('d1').outcome, rig.result('d1').retries], ['updated', 1]);
    assert.ok(rig.result('d1').durationMs >= 10 * MIN, 'the stopped turn counts in its time');
    assert.equal(complete.updated, 1);
  });

  it('activation is deferred when reboot and confirmation would not fit before the close (1 ms short), then done in the next window', async () => {
    const rig = windowed([{ from: T0, to: T0 + NEED_MS - 1 }, { from: T0 + HOUR, to: T0 + 2 * HOUR }], { ids: ['d1'] });
    await rig.until(() => rig.waiting.length > 0);
    assert.equal(rig.site.count('d1', 'activate'), 0);
    assert.equal(rig.site.count('d1', 'verify'), 1, 'transferred and verified in the first window');
    assert.deepEqual(rig.waiting[0]!.devices, [{ id: 'd1', reason: `reboot and confirmation (about ${NEED_MS} ms) would not finish before the window closes in ${NEED_MS - 1} ms` }]);
    assert.equal(rig.timers.now(), T0, 'deferred at once, and not retried while this window lasts');
    await rig.finish();
    const activate = rig.site.sent.find((s) => s.msg.t === 'activate')!;
    assert.equal(activate.at, T0 + HOUR);
    assert.deepEqual([rig.result('d1').outcome, rig.result('d1').retries], ['updated', 1]);
  });

  it('activation goes ahead when reboot and confirmation fit exactly', async () => {
    const rig = windowed([{ from: T0, to: T0 + NEED_MS }], { ids: ['d1'] });
    const complete = await rig.finish();
    assert.equal(complete.updated, 1);
    assert.equal(rig.site.sent.find((s) => s.msg.t === 'activate')!.at, T0);
    assert.deepEqual(rig.waiting, []);
  });

  it("the fit uses the device's learned reboot time when it has one", async () => {
    const rig = windowed([{ from: T0, to: T0 + 20_000 }, { from: T0 + HOUR, to: T0 + 2 * HOUR }], { ids: ['d1'] });
    rig.fleet.setRebootMs('d1', 15_001);
    await rig.until(() => rig.waiting.length > 0);
    assert.deepEqual(rig.waiting[0]!.devices, [{ id: 'd1', reason: 'reboot and confirmation (about 20001 ms) would not finish before the window closes in 20000 ms' }]);
    await rig.finish();
  });

  it('with downloadEarly the transfer runs outside the window; activation waits for the opening', async () => {
    const rig = windowed([{ from: T0 + HOUR, to: T0 + 2 * HOUR }], { ids: ['d1'], downloadEarly: true });
    await rig.until(() => rig.waiting.length > 0);
    assert.equal(rig.timers.now(), T0);
    assert.equal(rig.site.count('d1', 'verify'), 1);
    assert.deepEqual(rig.waiting[0]!.devices, [{ id: 'd1', reason: 'outside a maintenance window: activation waits for the next one' }]);
    await rig.finish();
    assert.equal(rig.site.sent.find((s) => s.msg.t === 'activate')!.at, T0 + HOUR);
    assert.equal(rig.result('d1').outcome, 'updated');
  });

  it('with downloadEarly a transfer is not stopped at the close', async () => {
    const rig = windowed([{ from: T0, to: T0 + 10 * MIN }, { from: T0 + HOUR, to: T0 + 2 * HOUR }], {
      ids: ['d1'], roles: { d1: 'hold' }, downloadEarly: true, rollout: { ackTimeoutMs: 20 * MIN, deviceDeadlineMs: 10 * HOUR },
    });
    await rig.until(() => rig.timers.now() >= T0 + 10 * MIN);
    assert.deepEqual(rig.waiting, []);
    rig.site.roles.set('d1', 'ok');
    await rig.finish();
    assert.equal(rig.site.count('d1', 'offer'), 1, 'one session: the ack timeout resent, no new offer');
  });

  it('a device waiting for a window when the campaign expires ends expired', async () => {
    const rig = windowed([{ from: T0 + 2 * HOUR, to: T0 + 3 * HOUR }], { ids: ['d1', 'd2'], expiresAt: T0 + HOUR, downloadEarly: true });
    const complete = await rig.finish();
    for (const id of ['d1', 'd2']) {
      const r = rig.result(id);
      assert.deepEqual([r.outcome, r.code, r.reason], ['expired', 'expired', `campaign expired at ${new Date(T0 + HOUR).toISOString()} before this device could be updated`], id);
    }
    assert.equal(rig.site.sent.filter((s) => s.msg.t === 'activate').length, 0);
    assert.equal(complete.expired, 2);
    assert.deepEqual(rig.states.at(-1), { state: 'expired' });
  });

  it('a device deferred by the fit check is not released by check-ins while this window lasts', async () => {
    const rig = windowed([{ from: T0, to: T0 + HOUR }, { from: T0 + 2 * HOUR, to: T0 + 4 * HOUR }], { ids: ['d1', 'd2'], roles: { d2: 'slow' } });
    rig.fleet.setRebootMs('d1', HOUR - 1000);
    await rig.until(() => rig.campaign.waitingIds().includes('d1'));
    rig.site.checkIn('d1'); // the waiting device reports
    rig.site.checkIn('d3'); // a device the campaign does not wait for
    await rig.until(() => rig.timers.now() >= T0 + 30 * MIN);
    assert.equal(rig.site.count('d1', 'offer'), 1, 'not tried again in this window');
    await rig.finish();
    assert.deepEqual(rig.site.sent.filter((s) => s.id === 'd1' && s.msg.t === 'offer').map((s) => s.at), [T0, T0 + 2 * HOUR]);
  });

  it('a window opening releases the devices waiting for a window, not a busy one waiting for its check-in', async () => {
    const rig = windowed([{ from: T0, to: T0 + HOUR }, { from: T0 + 2 * HOUR, to: T0 + 3 * HOUR }], {
      ids: ['d1'], roles: { d1: 'busy' }, rollout: { busyRecheckMs: 10 * HOUR }, expiresAt: T0 + 4 * HOUR,
    });
    const complete = await rig.finish();
    assert.equal(rig.site.count('d1', 'offer'), 1);
    assert.deepEqual([rig.result('d1').outcome, rig.result('d1').retries], ['expired', 1]);
    assert.equal(complete.expired, 1);
    assert.equal(rig.progress.filter((p) => p.id === 'd1').at(-2)!.phase, 'queued', 'queued while it waited');
    assert.deepEqual(rig.events.filter((e) => e === 'swept' || e === 'waiting' || e === 'result'), ['swept', 'waiting', 'result', 'swept'], 'the window changes woke the campaign, nothing new to say');
  });

  it('a window that reopens while a stopped session still unwinds: its device goes on at once', async () => {
    // the device's chunks wait in a drained shared bandwidth bucket; the window closes at T0 + 5 s
    // (the session is stopped, and ends only once its chunk sends have had their turn) and the
    // next one opens at T0 + 5.5 s: when the turn ends the gate is open
    let bucket: TokenBucket | undefined;
    let windows: FakeWindows | undefined;
    const rig = campaignRig({
      ids: ['d1'],
      deps: (r) => {
        bucket = new TokenBucket(1024, r.timers);
        windows = new FakeWindows(r.timers, [{ from: T0, to: T0 + 5000 }, { from: T0 + 5500, to: T0 + HOUR }]);
        return { bandwidth: bucket, gate: windowGate(windows, r.timers) };
      },
    });
    void bucket!.take(16 * 1024 + 5 * 1024);
    const complete = await rig.finish();
    assert.equal(complete.updated, 1);
    const offers = rig.site.sent.filter((s) => s.msg.t === 'offer').map((s) => s.at);
    assert.equal(offers.length, 2);
    assert.ok(offers[1]! >= T0 + 5500 && offers[1]! < T0 + HOUR, `offered again at +${offers[1]! - T0} ms, in the reopened window (no opening to wait for)`);
    assert.ok(windows);
  });
});
