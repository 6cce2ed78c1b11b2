import assert from 'node:assert/strict';
import { silentLogger } from '../../../gateway/log.ts';
import { Campaign } from '../../../gateway/rollout/campaign.ts';
import type { TotalsMessage } from '../../../protocol/uplink.ts';
import { campaignRig, image, manifest } from './campaign-rig.ts';

/**
 * A campaign's progress (docs/protocol.md §7.6): every phase change of a device goes out, byte
 * progress within a phase at most every rollout.progressIntervalMs (the whole image always), from
 * its measurement to its final phase; and the plan of a dry run (§7.12.4) is the order the
 * campaign announces.
 */
describe('campaign: progress and plan (fake clock, §7.6, §7.12.4)', () => {
  it("a device's progress: each phase once, bytes within the transfer throttled, the whole image always", async () => {
    const rig = campaignRig({ ids: ['d1', 'd2'], rollout: { progressIntervalMs: 60_000 } });
    rig.site.ackDelayMs = 50;
    await rig.finish();
    const d1 = rig.progress.filter((p) => p.id === 'd1').map((p) => [p.phase, p.bytes]);
    assert.deepEqual(d1, [
      ['probing', 0], ['queued', 0], ['offering', 0], ['transferring', 0], ['transferring', image.length],
      ['verifying', image.length], ['activating', image.length], ['rebooting', image.length], ['confirming', image.length], ['done', image.length],
    ]);
    assert.ok(rig.progress.every((p) => p.campaign === 'c-1' && p.total === image.length));
    assert.deepEqual(rig.campaign.snapshot().progress.map((p) => [p.id, p.phase]), [['d1', 'done'], ['d2', 'done']]);
  });

  it('totals (§7.6.3): when the updates begin, every interval, and last with every device done', async () => {
    const rig = campaignRig({ ids: ['d1', 'd2'], roles: { d1: 'slow', d2: 'slow' }, rollout: { progressIntervalMs: 1000 } });
    const totals: TotalsMessage[] = [];
    rig.campaign.on('totals', (t) => totals.push(t));
    await rig.finish();
    assert.ok(totals.length >= 5, `${totals.length} totals over the 5 s reboots`);
    assert.ok(totals.every((t) => t.devices === 2), 'each counts the ranked devices');
    assert.deepEqual([totals[0]!.done, totals.at(-1)!.done], [0, 2]);
    assert.equal(rig.events.at(-1), 'complete');
  });

  it('after the transfer the ETA is three round trips of the measured link', async () => {
    const rig = campaignRig({ ids: ['d1'] });
    rig.site.pongDelayMs = 20;
    await rig.finish();
    const rtt = rig.fleet.get('d1')!.link!.rttMs;
    assert.equal(rtt, 20);
    const verifying = rig.progress.find((p) => p.id === 'd1' && p.phase === 'verifying')!;
    assert.equal(verifying.etaMs, 3 * rtt);
  });

  it("a dry run's plan is the order the campaign then announces", async () => {
    const rig = campaignRig({ ids: ['d1', 'd2', 'd3'], rollout: { concurrency: 2 } });
    const plan = await Campaign.dryRun(manifest, { channel: rig.site.asChannel(), fleet: rig.fleet, config: rig.config, timers: rig.timers, log: silentLogger() });
    await rig.finish();
    assert.ok(plan.devices.every((d) => d.etaMs !== undefined && d.etaMs >= rig.config.rebootEstimateMs), 'with the planned times');
    assert.deepEqual(plan.devices, rig.orders[0]!.devices);
    assert.deepEqual(rig.results.length, 3);
  });

  it('planned starts: a device holds its transfer slot until its image is verified, not through its reboot', async () => {
    const rig = campaignRig({ ids: ['d1', 'd2', 'd3'] });
    rig.fleet.setRebootMs('d2', 1000);
    await rig.finish();
    const [a, b, c] = rig.orders[0]!.devices;
    assert.deepEqual([a!.id, a!.startMs], ['d2', 0], 'its shorter reboot ranks it first');
    assert.equal(b!.startMs, Math.round(a!.etaMs! - 1000), "after d2's slot: its time without its own learned reboot");
    assert.equal(c!.startMs, Math.round(b!.startMs! + b!.etaMs! - rig.config.rebootEstimateMs), "after d1's slot: its time without the estimated reboot");
    assert.ok(c!.startMs! > b!.startMs! && b!.startMs! > 0);
  });
});
