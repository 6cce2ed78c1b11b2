import assert from 'node:assert/strict';
import { silentLogger } from '../../../gateway/log.ts';
import { Campaign } from '../../../gateway/rollout/campaign.ts';
import { campaignRig, manifest } from './campaign-rig.ts';

/**
 * Stopping a campaign (docs/protocol.md §7.12.1): a user's cancel (`fwpush cancel`) ends every
 * device not activated yet `cancelled` and tells a device in transfer to drop what it holds; the
 * gateway's shutdown stops every session without telling devices anything (its journal resumes it).
 */
describe('campaign: cancel by the user and stop at shutdown (fake clock, §7.12.1)', () => {
  it('a cancel mid-transfer: the device in transfer is told abort (its sid) and keeps its old image; the rest never get an offer', async () => {
    const rig = campaignRig({ roles: { d1: 'hold', d2: 'hold', d3: 'hold', d4: 'hold' } });
    assert.equal(rig.campaign.started, false);
    assert.equal(rig.campaign.running, false);
    await rig.until(() => rig.site.sent.some((s) => s.msg.t === 'chunk'));
    assert.equal(rig.campaign.started, true);
    assert.equal(rig.campaign.running, true);
    assert.equal(rig.campaign.isCancelled, false);
    const [inTransfer] = rig.site.offered();
    assert.equal(rig.site.offered().length, 1, 'concurrency 1');
    const offer = rig.site.sent.find((s) => s.msg.t === 'offer')!.msg as { sid: number };

    assert.equal(rig.campaign.cancelByUser('cancelled by the technician'), true);
    assert.equal(rig.campaign.isCancelled, true);
    assert.equal(rig.campaign.cancelByUser('again'), false, 'a second cancel changes nothing');
    const complete = await rig.finish();

    const aborts = rig.site.sent.filter((s) => s.msg.t === 'abort');
    assert.deepEqual(aborts.map((a) => [a.id, a.msg]), [[inTransfer, { t: 'abort', sid: offer.sid, reason: 'campaign c-1 cancelled' }]]);
    const r = rig.result(inTransfer!);
    assert.deepEqual([r.outcome, r.code, r.from, r.to], ['cancelled', 'cancelled', '1.0.0', '1.1.0']);
    assert.equal(r.reason, 'campaign cancelled (cancelled by the technician) before this device was activated: it keeps its old image');
    for (const id of rig.ids.filter((i) => i !== inTransfer)) {
      const n = rig.result(id);
      assert.deepEqual([n.outcome, n.code, n.durationMs, n.retries], ['cancelled', 'cancelled', 0, 0], id);
      assert.equal(n.reason, 'campaign cancelled before this device started (cancelled by the technician)');
      assert.equal(rig.site.count(id, 'offer'), 0, `${id} was never offered the image`);
    }
    assert.deepEqual(
      [complete.devices, complete.updated, complete.failed, complete.rolledBack, complete.skipped, complete.cancelled],
      [4, 0, 0, 0, 0, 4],
    );
    assert.equal('expired' in complete, false, 'counts of outcomes no device had are left out');
    assert.equal('superseded' in complete, false);
    assert.equal('halted' in complete, false);
    assert.deepEqual(rig.states.at(-1), { state: 'cancelled', reason: 'cancelled by the technician' });
    assert.equal(rig.campaign.running, false);
    assert.equal(rig.campaign.started, true);
    assert.equal(rig.campaign.cancelByUser('late'), false, 'a completed campaign cannot be cancelled');
    assert.equal(rig.events.at(-1), 'complete');
    // every device's last progress is its final phase
    const last = new Map(rig.progress.map((p) => [p.id, p.phase]));
    for (const id of rig.ids) assert.equal(last.get(id), 'cancelled', id);
  });

  it('a device between activate and its confirmation is not interrupted: it ends updated', async () => {
    // d1 ranks first (ties by id): it gives its slot back once verified, and d2 starts, and holds
    const rig = campaignRig({ roles: { d1: 'slow', d2: 'hold', d3: 'hold', d4: 'hold' } });
    await rig.until(() => rig.site.count('d1', 'activate') === 1 && rig.site.count('d2', 'chunk') > 0);
    rig.campaign.cancelByUser('stop');
    const complete = await rig.finish();
    assert.deepEqual([rig.result('d1').outcome, rig.result('d1').code], ['updated', 'ok']);
    assert.equal(rig.site.count('d1', 'abort'), 0);
    assert.equal(rig.site.count('d1', 'confirm'), 1);
    assert.equal(rig.site.count('d2', 'abort'), 1);
    assert.deepEqual([rig.result('d2').outcome, rig.result('d3').outcome], ['cancelled', 'cancelled']);
    assert.deepEqual([complete.updated, complete.cancelled], [1, 3]);
    assert.deepEqual(rig.states.at(-1), { state: 'cancelled', reason: 'stop' });
  });

  it('cancelled before it ran: nobody is measured or offered anything, everyone ends cancelled', async () => {
    const rig = campaignRig();
    assert.equal(rig.campaign.cancelByUser('never mind'), true);
    const complete = await rig.finish();
    assert.deepEqual(rig.site.sent, [], 'no ping, no probe, no offer');
    assert.equal(rig.orders.length, 1, 'the order is still announced');
    assert.deepEqual(rig.results.map((r) => [r.id, r.outcome]).sort(), rig.ids.map((id) => [id, 'cancelled']));
    assert.equal(complete.cancelled, 4);
  });

  it('a shutdown (cancel) stops every session and reports them failed / cancelled, telling no device to abort', async () => {
    const rig = campaignRig({ roles: { d1: 'hold', d2: 'hold', d3: 'hold', d4: 'hold' }, rollout: { concurrency: 2 } });
    await rig.until(() => rig.site.offered().length === 2 && rig.site.sent.filter((s) => s.msg.t === 'chunk').length >= 2);
    const running = rig.site.offered();
    rig.campaign.cancel();
    const complete = await rig.finish();
    assert.equal(rig.site.sent.filter((s) => s.msg.t === 'abort').length, 0);
    for (const id of running) assert.deepEqual([rig.result(id).outcome, rig.result(id).code], ['failed', 'cancelled'], id);
    for (const id of rig.ids.filter((i) => !running.includes(i))) {
      const r = rig.result(id);
      assert.deepEqual([r.outcome, r.code, r.reason], ['failed', 'cancelled', 'campaign cancelled before this device started'], id);
      assert.equal(rig.site.count(id, 'offer'), 0);
    }
    assert.deepEqual([complete.failed, complete.devices], [4, 4]);
    assert.equal(rig.campaign.isCancelled, false, 'not a cancel by the user');
    assert.deepEqual(rig.states.at(-1), { state: 'completed' });
  });

  it('a dry run (fwpush plan) returns the order it would announce and sends nothing but the measurement', async () => {
    const rig = campaignRig({ offline: ['d4'] });
    const order = await Campaign.dryRun(manifest, { channel: rig.site.asChannel(), fleet: rig.fleet, config: rig.config, timers: rig.timers, log: silentLogger() });
    assert.equal(order.campaign, 'plan');
    assert.deepEqual(order.image, { name: 'fw', version: '1.1.0', sha256: manifest.sha256 });
    assert.deepEqual(order.devices.map((d) => d.id).sort(), ['d1', 'd2', 'd3']);
    assert.deepEqual(order.excluded.map((x) => [x.id, x.code]), [['d4', 'offline']]);
    assert.deepEqual(rig.site.sent.filter((s) => s.msg.t !== 'ping' && s.msg.t !== 'probe'), []);
    assert.ok(rig.site.sent.some((s) => s.msg.t === 'probe'), 'measured');
  });
});
