import assert from 'node:assert/strict';
import type { LinkRecord } from '../../../gateway/fleet.ts';
import { learnDeviceMsPerMiB, linkTimeMs } from '../../../gateway/rollout/planner.ts';
import { campaignRig, manifest, openGate, T0 } from './campaign-rig.ts';

/**
 * What a campaign learns from each device's update for the next ranking (docs/protocol.md §7.5):
 * its throughput from the real transfer, its reboot time and its own time per MiB (the slot time
 * its link does not explain) — the last two only from a clean update (first try, whole image).
 * And which finished devices count towards the rollback threshold (§7.8.1): a device the gateway
 * holds suspect is left out.
 */
describe('campaign: what it learns from each update, and who counts towards the threshold (fake clock)', () => {
  it('a clean update: throughput from the transfer, the reboot time, and the device time beyond its link', async () => {
    const rig = campaignRig({ ids: ['d1'], roles: { d1: 'slow' } });
    rig.site.ackDelayMs = 50;
    let probed: LinkRecord | undefined;
    rig.campaign.on('order', () => { probed = { ...rig.fleet.get('d1')!.link! }; });
    await rig.finish();
    const d1 = rig.fleet.get('d1')!;
    assert.equal(d1.rebootMs, 5000, 'from activate to its boot report');
    assert.equal(d1.link?.bpsSource, 'transfer');
    assert.ok((d1.link?.bps ?? 0) > 0);
    assert.equal(typeof d1.link?.bpsMeasuredAt, 'number');
    const offerAt = rig.site.sent.find((s) => s.msg.t === 'offer')!.at;
    const verifyAt = rig.site.sent.find((s) => s.msg.t === 'verify')!.at;
    assert.ok(verifyAt - offerAt >= 50, 'the transfer took fake time');
    const bounds = { min: rig.config.minChunkWindow, max: rig.config.chunkWindow, rebootMs: rig.config.rebootEstimateMs, deviceMsPerMiB: rig.config.deviceMsPerMiBEstimate };
    const linkMs = linkTimeMs(manifest, { ...d1, link: probed! }, bounds)!;
    assert.equal(d1.deviceMsPerMiB, learnDeviceMsPerMiB(undefined, verifyAt - offerAt, linkMs, manifest.size));
    assert.ok(d1.deviceMsPerMiB! > 0);
  });

  it("the slot time starts at the offer, not while the turn waited for the device to come back", async () => {
    const rig = campaignRig({ ids: ['d1'], rollout: { offlineWaitMs: 10_000 } });
    rig.site.ackDelayMs = 50;
    let probed: LinkRecord | undefined;
    rig.campaign.once('order', () => {
      probed = { ...rig.fleet.get('d1')!.link! };
      rig.site.goOffline('d1');
      rig.timers.setTimeout(() => rig.site.checkIn('d1'), 3000);
    });
    await rig.finish();
    const offerAt = rig.site.sent.find((s) => s.msg.t === 'offer')!.at;
    const verifyAt = rig.site.sent.find((s) => s.msg.t === 'verify')!.at;
    assert.ok(offerAt >= T0 + 3000, 'offered once back');
    const bounds = { min: rig.config.minChunkWindow, max: rig.config.chunkWindow, rebootMs: rig.config.rebootEstimateMs, deviceMsPerMiB: rig.config.deviceMsPerMiBEstimate };
    const d1 = rig.fleet.get('d1')!;
    assert.equal(d1.deviceMsPerMiB, learnDeviceMsPerMiB(undefined, verifyAt - offerAt, linkTimeMs(manifest, { ...d1, link: probed! }, bounds)!, manifest.size));
  });

  it('nothing of the device itself is learned from a rollback, and no device time from a resumed transfer', async () => {
    const rig = campaignRig({ ids: ['d1', 'd2'], roles: { d1: 'revert' } });
    rig.site.holds.set('d2', 2048);
    rig.site.ackDelayMs = 50;
    await rig.finish();
    assert.equal(rig.result('d1').outcome, 'rolled-back');
    assert.deepEqual([rig.fleet.get('d1')!.rebootMs, rig.fleet.get('d1')!.deviceMsPerMiB], [undefined, undefined]);
    assert.equal(rig.result('d2').outcome, 'updated');
    assert.equal(rig.site.sent.filter((s) => s.id === 'd2' && s.msg.t === 'chunk').length, 2, 'only what it lacked');
    assert.equal(rig.fleet.get('d2')!.rebootMs, 10);
    assert.equal(rig.fleet.get('d2')!.deviceMsPerMiB, undefined, 'part of the image only: its slot time says nothing per MiB');
  });

  it('no device time from an update that needed another turn', async () => {
    const rig = campaignRig({ ids: ['d1'], roles: { d1: 'busy' }, rollout: { busyRecheckMs: 1000 }, deps: ({ timers }) => ({ checkIn: { expiresAt: T0 + 3_600_000 }, gate: openGate(timers) }) });
    rig.site.ackDelayMs = 50;
    await rig.until(() => rig.site.count('d1', 'offer') === 1 && rig.campaign.waitingIds().length === 1);
    rig.site.roles.set('d1', 'ok');
    await rig.finish();
    assert.deepEqual([rig.result('d1').outcome, rig.result('d1').retries], ['updated', 1]);
    assert.equal(rig.fleet.get('d1')!.rebootMs, 10);
    assert.equal(rig.fleet.get('d1')!.deviceMsPerMiB, undefined);
  });

  it('two rollbacks halt the campaign; a suspect device rolling back again is left out of the count', async () => {
    const rollout = { rollbackMinSamplePct: 0 };
    const roles = { d1: 'revert', d2: 'revert' } as const;
    const halted = campaignRig({ roles, rollout });
    halted.site.ackDelayMs = 50; // each device's transfer takes time: d1 reboots while d2 transfers
    const c1 = await halted.finish();
    assert.deepEqual(c1.halted, { code: 'rollback-threshold', reason: '2 of 2 finished devices rolled back, threshold 20 %', rolledBack: 2, finished: 2, thresholdPct: 20 });
    assert.deepEqual([halted.result('d3').code, halted.result('d4').code], ['campaign-halted', 'campaign-halted']);
    assert.equal(halted.result('d3').reason, 'rollout stopped before this device was activated (2 of 2 finished devices rolled back, threshold 20 %)', 'd3 was in transfer');
    assert.equal(halted.site.count('d3', 'abort'), 0);
    assert.equal(halted.result('d4').reason, 'rollout stopped before this device started (2 of 2 finished devices rolled back, threshold 20 %)');

    const suspect = campaignRig({ roles, rollout, deps: () => ({ isSuspect: (id: string) => id === 'd1' }) });
    suspect.site.ackDelayMs = 50;
    const c2 = await suspect.finish();
    assert.equal(c2.halted, undefined, 'd1 is suspect: one rollback counted');
    assert.deepEqual([c2.rolledBack, c2.updated], [2, 2]);

    const notRolledBack = campaignRig({ roles: { d1: 'revert', d2: 'revert', d3: 'revert' }, rollout, deps: () => ({ isSuspect: (id: string) => id === 'd1' }) });
    notRolledBack.site.ackDelayMs = 50;
    const c3 = await notRolledBack.finish();
    assert.equal(c3.halted?.reason, '2 of 2 finished devices rolled back, threshold 20 %', 'd2 and d3 counted, d1 not');
  });

  it('a suspect device that updates counts as finished', async () => {
    // d1 updates (suspect, counted), then d2 and d3 roll back: 2 of 3 = 66.7 % < 67 %
    const rig = campaignRig({ roles: { d2: 'revert', d3: 'revert' }, rollout: { rollbackMinSamplePct: 0, rollbackThreshold: 67 }, deps: () => ({ isSuspect: (id: string) => id === 'd1' }) });
    rig.site.ackDelayMs = 50;
    const complete = await rig.finish();
    assert.equal(complete.halted, undefined, '2 of 3 = 66.7 % < 67 %: d1 counted');
    assert.equal(complete.updated, 2);
  });

  it('a busy (skipped) device does not count as finished: a wave of skipped devices passes its gate', async () => {
    const rig = campaignRig({ ids: ['d1', 'd2', 'd3'], roles: { d1: 'busy' }, deps: () => ({ waves: [{ count: 1 }, { pct: 100 }], waveGatePct: 1 }) });
    const complete = await rig.finish();
    assert.deepEqual([rig.result('d1').outcome, rig.result('d1').code], ['skipped', 'busy']);
    assert.equal(complete.halted, undefined);
    assert.equal(complete.updated, 2);
  });

  it("a session waits for acks at least ackTimeoutRtts of the device's measured round trips (§6.6.5)", async () => {
    // round trip 1000 ms: acks after 1500 ms are in time (4 x 1000 > ackTimeoutMs 1000), nothing is resent
    const rig = campaignRig({ ids: ['d1'], rollout: { ackTimeoutMs: 1000, maxAttempts: 3 } });
    rig.site.pongDelayMs = 1000;
    rig.site.ackDelayMs = 1500;
    await rig.finish();
    assert.equal(rig.fleet.get('d1')!.link!.rttMs, 1000);
    assert.equal(rig.result('d1').outcome, 'updated');
    assert.equal(rig.site.sent.filter((s) => s.msg.t === 'chunk').length, 4, 'each chunk once');
  });
});
