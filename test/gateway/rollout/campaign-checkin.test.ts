import assert from 'node:assert/strict';
import { campaignRig, openGate, T0 } from './campaign-rig.ts';
import { settle, type FakeTimers } from './fake.ts';

/**
 * Devices that cannot be updated now (docs/operations.md "Campaigns", §7.12.5): without check-in
 * (a campaign the technician waits for) an offline device is skipped at once; with it, offline and
 * busy devices wait for their check-in (a `status`), busy ones are also rechecked after
 * rollout.busyRecheckMs, until the campaign's expiry; a newer campaign may supersede a waiting one.
 */
const HOUR = 3_600_000;
const checkIn = (over: { force?: boolean } = {}) => ({ timers }: { timers: FakeTimers }) =>
  ({ checkIn: { expiresAt: T0 + HOUR, ...over }, gate: openGate(timers) });

describe('campaign: offline and busy devices, check-ins and the expiry (fake clock)', () => {
  it('without check-in an offline device is excluded and skipped at once (code offline), the targets narrowed to those given', async () => {
    const rig = campaignRig({ ids: ['d1', 'd2', 'd3', 'd4'], offline: ['d3'], deps: () => ({ targets: ['d3', 'd1', 'ghost', 'd2'] }) });
    const complete = await rig.finish();
    const order = rig.orders[0]!;
    assert.deepEqual(order.devices.map((d) => d.id), ['d1', 'd2']);
    assert.deepEqual(order.excluded, [{ id: 'd3', code: 'offline', reason: 'device is offline', version: '1.0.0' }]);
    assert.deepEqual(rig.result('d3'), {
      t: 'result', campaign: 'c-1', id: 'd3', outcome: 'skipped', code: 'offline', reason: 'device is offline', from: '1.0.0', to: '1.1.0', durationMs: 0, retries: 0,
    });
    assert.deepEqual(rig.site.sent.filter((s) => s.id === 'd4'), [], 'd4 is not a target');
    assert.equal(rig.campaign.targets('d1'), true);
    assert.equal(rig.campaign.targets('d3'), false, 'excluded: not in the order');
    assert.equal(rig.campaign.targets('d4'), false);
    assert.deepEqual([complete.devices, complete.updated, complete.skipped], [3, 2, 1]);
    assert.equal(rig.campaign.resultOf('d1')?.outcome, 'updated');
    assert.equal(rig.campaign.resultOf('d4'), undefined);
    assert.deepEqual(rig.waiting, [], 'nobody waits');
  });

  it('with check-in an offline device is in the order after the ranked ones, waits, and is updated when it reports', async () => {
    const rig = campaignRig({ ids: ['d1', 'd2', 'd3'], offline: ['d2'], deps: checkIn() });
    await rig.until(() => rig.waiting.length > 0);
    const order = rig.orders[0]!;
    assert.deepEqual(order.devices.map((d) => [d.id, d.rank]), [['d1', 1], ['d3', 2], ['d2', 3]]);
    assert.deepEqual(order.devices[2], { id: 'd2', rank: 3, from: '1.0.0' }, 'no figures for a device not measured');
    assert.deepEqual(order.excluded, []);
    assert.deepEqual(rig.waiting[0], {
      t: 'waiting', campaign: 'c-1', pending: 1, devices: [{ id: 'd2', reason: 'offline: waits for its check-in' }], expiresAt: T0 + HOUR,
    });
    assert.deepEqual(rig.states.map((s) => s.state), ['running', 'waiting']);
    assert.ok(rig.events.indexOf('swept') < rig.events.indexOf('waiting'), 'swept: the next campaign may start');
    assert.deepEqual(rig.campaign.waitingIds(), ['d2']);
    assert.deepEqual(rig.campaign.snapshot().waiting, rig.waiting[0]);
    assert.equal(rig.campaign.running, true);
    assert.equal(rig.campaign.targets('d2'), true);

    rig.site.checkIn('d2');
    const complete = await rig.finish();
    assert.deepEqual([rig.result('d2').outcome, rig.result('d2').code], ['updated', 'ok']);
    assert.deepEqual([complete.updated, complete.devices], [3, 3]);
    assert.deepEqual(rig.campaign.waitingIds(), []);
    assert.equal(rig.waiting.length, 1, 'announced once');
    assert.deepEqual(rig.states.at(-1), { state: 'completed' });
    const snap = rig.campaign.snapshot();
    assert.equal(snap.waiting, undefined, 'a completed campaign has nobody waiting');
    assert.deepEqual(snap.complete, complete);
    assert.equal(snap.results.length, 3);
    assert.deepEqual(snap.order, rig.orders[0]);
  });

  it('a device still waiting at the expiry ends expired; the campaign ends expired', async () => {
    const rig = campaignRig({ ids: ['d1', 'd2'], offline: ['d2'], deps: checkIn() });
    const complete = await rig.finish();
    const r = rig.result('d2');
    assert.deepEqual([r.outcome, r.code, r.durationMs, r.retries], ['expired', 'expired', 0, 0]);
    assert.equal(r.reason, `campaign expired at ${new Date(T0 + HOUR).toISOString()} before this device could be updated`);
    assert.equal(rig.site.count('d2', 'offer'), 0);
    assert.equal(complete.expired, 1);
    assert.deepEqual(rig.states.at(-1), { state: 'expired' });
    assert.ok(complete.durationMs >= HOUR, `${complete.durationMs}`);
  });

  it('the expiry stops a transfer in progress: the device ends expired and keeps its old image', async () => {
    const rig = campaignRig({ ids: ['d1'], roles: { d1: 'hold' }, rollout: { ackTimeoutMs: 600_000, maxAttempts: 100, deviceDeadlineMs: 10 * HOUR }, deps: checkIn() });
    await rig.finish();
    const r = rig.result('d1');
    assert.deepEqual([r.outcome, r.code], ['expired', 'expired']);
    assert.equal(r.reason, `campaign expired at ${new Date(T0 + HOUR).toISOString()} before this device could be updated`);
    assert.equal(rig.site.count('d1', 'activate'), 0);
  });

  it('a device that went offline before its turn waits for its check-in; its time and attempts count in its result', async () => {
    const rig = campaignRig({ ids: ['d1', 'd2'], rollout: { offlineWaitMs: 1000 }, deps: checkIn() });
    rig.campaign.once('order', () => rig.site.goOffline('d2')); // online when selected, gone when its turn comes
    await rig.until(() => rig.waiting.length > 0);
    assert.deepEqual(rig.campaign.waitingIds(), ['d2']);
    assert.deepEqual(rig.waiting.at(-1)!.devices, [{ id: 'd2', reason: 'device stayed offline for 1000 ms' }]);
    assert.equal(rig.site.count('d2', 'offer'), 0);
    rig.site.checkIn('d2');
    await rig.finish();
    const r = rig.result('d2');
    assert.deepEqual([r.outcome, r.retries], ['updated', 1], 'the offline turn counts as an attempt');
    assert.ok(r.durationMs >= 1000, `its offline wait counts in its time (${r.durationMs} ms)`);
  });

  it('a busy device waits: a busy check-in does not release it, an idle one does; the recheck retries it after busyRecheckMs', async () => {
    const rig = campaignRig({ ids: ['d1', 'd2'], roles: { d1: 'busy', d2: 'busy' }, rollout: { busyRecheckMs: 60_000 }, deps: checkIn() });
    await rig.until(() => rig.waiting.length > 0);
    assert.deepEqual(rig.waiting[0]!.devices, [{ id: 'd1', reason: 'device is busy: metering' }, { id: 'd2', reason: 'device is busy: metering' }]);
    const t = rig.timers.now();
    rig.site.checkIn('d1', true);
    await settle();
    assert.equal(rig.site.count('d1', 'offer'), 1, 'a busy check-in leaves it waiting');
    rig.site.roles.set('d1', 'ok');
    rig.site.checkIn('d1', false);
    await rig.until(() => rig.result.length > 0 && rig.results.some((r) => r.id === 'd1'));
    assert.equal(rig.site.count('d1', 'offer'), 2, 'an idle check-in: offered again at once');
    assert.equal(rig.timers.now() < t + 60_000, true);
    rig.site.roles.set('d2', 'ok');
    await rig.until(() => rig.site.count('d2', 'offer') === 2);
    assert.equal(rig.timers.now(), t + 60_000, 'd2 is rechecked after busyRecheckMs');
    const complete = await rig.finish();
    assert.equal(complete.updated, 2);
    for (const id of ['d1', 'd2']) assert.deepEqual([rig.result(id).outcome, rig.result(id).retries], ['updated', 1], id);
    assert.equal(rig.site.count('d1', 'offer'), 2);
  });

  it('with force a busy check-in releases a waiting busy device, and a busy refusal is final', async () => {
    const rig = campaignRig({ ids: ['d1'], roles: { d1: 'busy' }, rollout: { busyRecheckMs: 600_000 }, deps: checkIn({ force: true }) });
    const complete = await rig.finish();
    assert.deepEqual([rig.result('d1').outcome, rig.result('d1').code], ['skipped', 'busy'], 'forced: the device refused anyway');
    assert.equal((rig.site.sent.find((s) => s.msg.t === 'offer')!.msg as { force?: boolean }).force, true);
    assert.equal(complete.skipped, 1);
  });

  it('a newer campaign supersedes a device waiting for its check-in (§7.12.5), not one with a result or running', async () => {
    const rig = campaignRig({ ids: ['d1', 'd2'], offline: ['d2'], deps: checkIn() });
    await rig.until(() => rig.waiting.length > 0);
    assert.equal(rig.campaign.supersedeDevice('d1', 'c-2'), false, 'd1 has its result');
    assert.equal(rig.campaign.supersedeDevice('d2', 'c-2'), true);
    assert.equal(rig.campaign.supersedeDevice('d2', 'c-3'), false, 'once');
    const complete = await rig.finish();
    assert.deepEqual(rig.result('d2'), {
      t: 'result', campaign: 'c-1', id: 'd2', outcome: 'superseded', code: 'superseded', reason: 'superseded by campaign c-2',
      from: '1.0.0', to: '1.1.0', durationMs: 0, retries: 0,
    });
    assert.deepEqual([complete.superseded, complete.updated, complete.devices], [1, 1, 2]);
    assert.ok(complete.durationMs < HOUR, 'ends at once: nobody waits any more');
    assert.equal(rig.progress.filter((p) => p.id === 'd2').at(-1)!.phase, 'superseded');
    assert.equal(rig.campaign.supersedeDevice('d2', 'c-4'), false);
    assert.deepEqual(rig.states.at(-1), { state: 'completed' });
  });
});
