import assert from 'node:assert/strict';
import { TokenBucket } from '../../../gateway/rollout/bandwidth.ts';
import { windowGate, type WindowGate } from '../../../gateway/rollout/gate.ts';
import { campaignRig, FakeWindows, openGate, T0, type CampaignRig } from './campaign-rig.ts';
import { settle, type FakeTimers } from './fake.ts';

/**
 * The device turns of a campaign (campaign.ts dispatch, docs/operations.md "Maintenance windows",
 * "Campaigns"): `swept` once only waiting devices are left, who a check-in releases, what a
 * window's close does to devices waiting for a slot or between attempts, the site bandwidth cap.
 */
const MIN = 60_000;
const HOUR = 60 * MIN;
const checkIn = ({ timers }: { timers: FakeTimers }) => ({ checkIn: { expiresAt: T0 + 10 * HOUR }, gate: openGate(timers) });
const milestones = (rig: CampaignRig): string[] => rig.events.filter((e) => ['result', 'swept', 'waiting', 'complete'].includes(e));

function windowed(spans: { from: number; to: number }[], opts: Parameters<typeof campaignRig>[0] = {}): CampaignRig & { windows: FakeWindows } {
  let windows: FakeWindows | undefined;
  const rig = campaignRig({ ...opts, deps: (r) => ({ ...opts.deps?.(r), gate: windowGate((windows = new FakeWindows(r.timers, spans)), r.timers) }) });
  return { ...rig, windows: windows! };
}

describe('campaign: device turns (fake clock)', () => {
  it('swept: once when only waiting devices are left, again after a released one has run; listeners removed at the end', async () => {
    const plain = campaignRig({ ids: ['d1', 'd2'] });
    assert.equal(plain.campaign.targets('d1'), false, 'no order yet');
    await plain.finish();
    assert.deepEqual(milestones(plain), ['result', 'result', 'swept', 'complete']);
    assert.equal(plain.orders[0]!.t, 'order');
    assert.equal(plain.fleet.listenerCount('status'), 0);

    const rig = campaignRig({ ids: ['d1', 'd2', 'd3'], offline: ['d2', 'd3'], deps: checkIn });
    await rig.until(() => rig.waiting.length > 0);
    assert.deepEqual(rig.orders[0]!.devices.map((d) => [d.id, d.rank]), [['d1', 1], ['d2', 2], ['d3', 3]]);
    rig.site.checkIn('d2');
    await rig.until(() => rig.results.length === 2);
    await settle();
    assert.equal(rig.progress.filter((p) => p.id === 'd3').at(-1)!.phase, 'queued');
    rig.site.checkIn('d3');
    await rig.finish();
    assert.deepEqual(milestones(rig), ['result', 'swept', 'waiting', 'result', 'swept', 'waiting', 'result', 'swept', 'complete']);
    assert.deepEqual(rig.waiting.map((w) => w.devices.map((d) => d.id)), [['d2', 'd3'], ['d3']]);
    assert.deepEqual(rig.states.map((s) => s.state), ['running', 'waiting', 'waiting', 'completed']);
    assert.equal(rig.fleet.listenerCount('status'), 0, 'no longer listens for check-ins');
  });

  it('an offline device that checks in busy is offered at once (it waited for its check-in, not for idleness)', async () => {
    const rig = campaignRig({ ids: ['d1', 'd2'], offline: ['d2'], deps: checkIn });
    await rig.until(() => rig.waiting.length > 0);
    rig.site.checkIn('d2', true);
    await settle();
    assert.equal(rig.site.count('d2', 'offer'), 1);
    await rig.finish();
  });

  it('a shutdown while only waiting devices are left ends the campaign', async () => {
    const rig = campaignRig({ ids: ['d1', 'd2'], offline: ['d2'], deps: checkIn });
    await rig.until(() => rig.waiting.length > 0);
    const at = rig.timers.now();
    rig.campaign.cancel();
    const complete = await rig.finish();
    assert.equal(rig.timers.now(), at, 'at once, not at the expiry');
    assert.deepEqual([rig.result('d2').outcome, rig.result('d2').code], ['failed', 'cancelled']);
    assert.equal(complete.devices, 2);
  });

  it('devices excluded for another reason than offline do not wait for a check-in', async () => {
    const rig = campaignRig({ ids: ['d1', 'd2', 'd3'], offline: ['d3'], deps: checkIn });
    rig.site.checkIn('d2', false, '1.1.0');
    rig.site.goOffline('d3');
    await rig.until(() => rig.waiting.length > 0);
    assert.deepEqual(rig.orders[0]!.excluded.map((x) => [x.id, x.code]), [['d2', 'not-newer']]);
    assert.deepEqual(rig.campaign.waitingIds(), ['d3']);
    assert.equal(rig.result('d2').outcome, 'skipped');
    rig.site.checkIn('d3');
    await rig.finish();
  });

  it('a downgrade campaign takes a device running a newer version, and says so in its offer', async () => {
    const rig = campaignRig({ ids: ['d1'], deps: () => ({ downgrade: true }) });
    rig.site.checkIn('d1', false, '1.2.0');
    const complete = await rig.finish();
    assert.equal(complete.updated, 1);
    assert.equal((rig.site.sent.find((s) => s.msg.t === 'offer')!.msg as { downgrade?: boolean }).downgrade, true);
    const plain = campaignRig({ ids: ['d1'] });
    plain.site.checkIn('d1', false, '1.2.0');
    await plain.finish();
    assert.equal(plain.result('d1').code, 'not-newer');
  });

  it('waves are cut from the devices the campaign may update: an excluded one takes no place in them', async () => {
    const rig = campaignRig({ ids: ['d1', 'd2', 'd3'], deps: () => ({ waves: [{ count: 1 }, { pct: 100 }] }) });
    rig.site.checkIn('d1', false, '1.1.0');
    await rig.finish();
    assert.deepEqual(rig.orders[0]!.devices.map((d) => [d.id, d.wave]), [['d2', 1], ['d3', 2]]);
  });

  it('the random order policy uses seed 1 unless given one', async () => {
    const ids = ['d1', 'd2', 'd3', 'd4', 'd5', 'd6', 'd7', 'd8'];
    const orderOf = async (seed?: number): Promise<string[]> => {
      const rig = campaignRig({ ids, deps: () => ({ orderPolicy: 'random', ...(seed !== undefined ? { seed } : {}) }) });
      await rig.finish();
      return rig.site.offered();
    };
    const byDefault = await orderOf();
    assert.deepEqual(byDefault, await orderOf(1));
    assert.notDeepEqual(byDefault, await orderOf(2));
  });

  it('a device waiting for a slot when the window closes is not offered until the next window', async () => {
    const rig = windowed([{ from: T0, to: T0 + 10 * MIN }, { from: T0 + HOUR, to: T0 + 2 * HOUR }], {
      ids: ['d1', 'd2'], roles: { d1: 'hold' }, rollout: { ackTimeoutMs: HOUR, deviceDeadlineMs: 10 * HOUR },
    });
    await rig.until(() => rig.campaign.waitingIds().includes('d1'));
    assert.equal(rig.timers.now(), T0 + 10 * MIN);
    await settle();
    assert.equal(rig.site.count('d2', 'offer'), 0, 'not offered at the close');
    rig.site.roles.set('d1', 'ok');
    await rig.finish();
    assert.deepEqual(rig.site.sent.filter((s) => s.msg.t === 'offer').map((s) => [s.id, s.at]), [['d1', T0], ['d2', T0 + HOUR], ['d1', T0 + HOUR]]);
  });

  it('a check-in does not release a device waiting for a window', async () => {
    const rig = windowed([{ from: T0, to: T0 + 10 * MIN }, { from: T0 + HOUR, to: T0 + 2 * HOUR }], {
      ids: ['d1'], roles: { d1: 'hold' }, rollout: { ackTimeoutMs: HOUR, deviceDeadlineMs: 10 * HOUR }, deps: () => ({ checkIn: { expiresAt: T0 + 10 * HOUR } }),
    });
    await rig.until(() => rig.waiting.length > 0);
    rig.site.checkIn('d1');
    await settle();
    assert.equal(rig.site.count('d1', 'offer'), 1);
    rig.site.roles.set('d1', 'ok');
    await rig.finish();
    assert.equal(rig.site.sent.filter((s) => s.msg.t === 'offer')[1]!.at, T0 + HOUR);
  });

  it('a device whose activation would not fit is not tried again in the same window', async () => {
    const rig = windowed([{ from: T0, to: T0 + HOUR }, { from: T0 + 2 * HOUR, to: T0 + 4 * HOUR }], { ids: ['d1'], rollout: { busyRecheckMs: MIN } });
    rig.fleet.setRebootMs('d1', HOUR - 1000);
    await rig.finish();
    assert.deepEqual(rig.site.sent.filter((s) => s.msg.t === 'offer').map((s) => s.at), [T0, T0 + 2 * HOUR]);
    assert.equal(rig.result('d1').outcome, 'updated');
  });

  it('a session between attempts when the window closes sends no new offer: the device waits for the next window', async () => {
    const rig = windowed([{ from: T0, to: T0 + 10_000 }, { from: T0 + HOUR, to: T0 + 2 * HOUR }], {
      ids: ['d1'], roles: { d1: 'mute' }, rollout: { maxAttempts: 3, offerTimeoutMs: 5000, retryBackoffMs: 60_000, retryBackoffMaxMs: 60_000 },
    });
    await rig.until(() => rig.waiting.length > 0);
    assert.deepEqual(rig.waiting[0]!.devices, [{ id: 'd1', reason: 'the maintenance window closed' }]);
    assert.equal(rig.site.count('d1', 'offer'), 1, 'no offer after the close');
    rig.site.roles.set('d1', 'ok');
    await rig.finish();
    assert.equal(rig.site.sent.filter((s) => s.msg.t === 'offer')[1]!.at, T0 + HOUR);
  });

  it('an open windowed gate that names no close does not hold activation back', async () => {
    const rig = campaignRig({
      ids: ['d1'],
      deps: ({ timers }) => {
        const gate: WindowGate = { ...openGate(timers), endsAt: () => undefined };
        return { gate };
      },
    });
    const complete = await rig.finish();
    assert.equal(complete.updated, 1);
  });

  it('rollout.siteBps without a shared bucket: the campaign caps its own transfers', async () => {
    // 6 x 4 KiB through a bucket of 4096 B/s with a burst of 16 KiB: at least 2 s
    const rig = campaignRig({ ids: ['d1', 'd2', 'd3', 'd4', 'd5', 'd6'], rollout: { siteBps: 4096, concurrency: 6 } });
    const complete = await rig.finish();
    assert.equal(complete.updated, 6);
    const lastChunk = rig.site.sent.filter((s) => s.msg.t === 'chunk').at(-1)!.at;
    assert.ok(lastChunk - T0 >= 2000, `last chunk at +${lastChunk - T0} ms`);
    const free = campaignRig({ ids: ['d1', 'd2', 'd3', 'd4', 'd5', 'd6'], rollout: { concurrency: 6 } });
    await free.finish();
    assert.equal(free.site.sent.filter((s) => s.msg.t === 'chunk').at(-1)!.at, T0, 'uncapped: no wait');
  });

  it("the gateway's shared bucket is used when given", async () => {
    let bucket: TokenBucket | undefined;
    const rig = campaignRig({
      ids: ['d1'],
      deps: ({ timers }) => ({ bandwidth: (bucket = new TokenBucket(4096, timers)) }),
    });
    void bucket!.take(16 * 1024 + 4096); // the burst and a second's worth taken by another campaign
    await rig.finish();
    assert.ok(rig.site.sent.filter((s) => s.msg.t === 'chunk').at(-1)!.at - T0 >= 1000);
  });

  it('the campaign duration is its time on the clock', async () => {
    const rig = campaignRig({ ids: ['d1'], roles: { d1: 'slow' } });
    const complete = await rig.finish();
    const confirm = rig.site.sent.find((s) => s.msg.t === 'confirm')!;
    assert.equal(complete.durationMs, confirm.at - T0);
    assert.equal(rig.result('d1').durationMs, confirm.at - T0);
  });
});
