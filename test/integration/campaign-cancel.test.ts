import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { SimEvent } from '../../device-sim/device.ts';
import { BUILTIN_PROFILES } from '../../device-sim/profiles.ts';
import { makeSampleImage } from '../../firmware-samples/image-format.ts';
import { listCampaigns } from '../../gateway/history.ts';
import { parseJournal } from '../../gateway/rollout/journal.ts';
import { manifestForImage } from '../../protocol/manifest.ts';
import type { GatewayUplinkMessage } from '../../protocol/uplink.ts';
import { signed } from '../helpers/keys.ts';
import { Rig, sampleImage } from '../helpers/rig.ts';
import { waitUntil } from '../helpers/wait.ts';

/**
 * Cancel at each phase of a campaign (docs/protocol.md §7.12.1), and three campaigns alive at
 * once (§7.12.5), with a real gateway, broker, serial pty and simulated devices. Outcomes are read
 * from the devices (events, running slot) and the journals.
 */
const ofType = <T extends GatewayUplinkMessage['t']>(events: GatewayUplinkMessage[], t: T): Extract<GatewayUplinkMessage, { t: T }>[] =>
  events.filter((e): e is Extract<GatewayUplinkMessage, { t: T }> => e.t === t);

/** A signed sample image of another name (images of one name supersede each other's pending tasks). */
function named(name: string, version: string, size: number): { image: Buffer; manifest: ReturnType<typeof manifestForImage> } {
  const image = Buffer.from(makeSampleImage({ name, version, hw: 'sensor-v1', size }));
  return { image, manifest: signed(manifestForImage(image, { name, version, hw: ['sensor-v1'], seq: 1 })) };
}

function deviceEvents(r: Rig): Map<string, SimEvent[]> {
  const seen = new Map<string, SimEvent[]>();
  for (const d of r.sims.devices) d.on('event', (e: SimEvent) => seen.set(d.id, [...(seen.get(d.id) ?? []), e]));
  return seen;
}

describe('integration: cancel at each phase, and three campaigns alive', function () {
  this.timeout(90_000);
  let rig: Rig | undefined;
  afterEach(async () => {
    await rig?.stop();
    rig = undefined;
  });

  it('cancelled while the devices are measured: nobody is offered the image, every device ends cancelled on its old image', async () => {
    rig = await Rig.start({ devices: 3, profiles: () => BUILTIN_PROFILES['wifi-poor'] });
    const seen = deviceEvents(rig);
    const { image, manifest } = sampleImage({ version: '1.1.0', size: 16 * 1024 });
    await rig.client.connect();
    const { campaign } = await rig.client.push(manifest, image);
    await waitUntil(() => ofType(rig!.events, 'progress').some((p) => p.campaign === campaign && p.phase === 'probing'), 20_000, 'the probe phase');
    assert.equal(ofType(rig.events, 'order').length, 0, 'still measuring: no order yet');
    await rig.client.control({ t: 'cancel', campaign });
    const complete = await rig.client.follow(campaign);
    assert.deepEqual([complete.cancelled, complete.updated], [3, 0], JSON.stringify(complete));
    for (const d of rig.sims.devices) {
      assert.ok(!(seen.get(d.id) ?? []).some((e) => e.type === 'offer-accepted'), `${d.id} was never offered the image`);
      assert.equal(d.running?.version, '1.0.0');
    }
  });

  it('cancelled between activate and confirm: that device is never interrupted and ends updated; the others end cancelled on their old image', async () => {
    // one at a time over slow links, slow boots: when the first device activates, the next is in
    // its transfer and the last not started; the first is still rebooting when the cancel comes
    rig = await Rig.start({ devices: 3, device: { bootDelayMs: 1500 }, profiles: () => BUILTIN_PROFILES['wifi-poor'], config: { rollout: { concurrency: 1 } } });
    const seen = deviceEvents(rig);
    const { image, manifest } = sampleImage({ version: '1.1.0', size: 256 * 1024 });
    await rig.client.connect();
    const { campaign } = await rig.client.push(manifest, image);
    await waitUntil(() => [...seen.values()].some((evs) => evs.some((e) => e.type === 'activated')), 30_000, 'the first activation');
    const activated = [...seen].find(([, evs]) => evs.some((e) => e.type === 'activated'))![0];
    await rig.client.control({ t: 'cancel', campaign });
    const complete = await rig.client.follow(campaign);
    const results = new Map(ofType(rig.events, 'result').map((r) => [r.id, r]));
    assert.deepEqual([results.get(activated)?.outcome, results.get(activated)?.code], ['updated', 'ok'], 'the activation ran to its end');
    for (const d of rig.sims.devices) {
      const r = results.get(d.id)!;
      assert.ok(r.outcome === 'updated' || r.outcome === 'cancelled', `${d.id}: ${r.outcome}`);
      assert.equal(d.running?.version, r.outcome === 'updated' ? '1.1.0' : '1.0.0', `${d.id} runs what its result says`);
      assert.equal(d.running?.trial, false, `${d.id} is not left in trial`);
    }
    assert.ok((complete.cancelled ?? 0) >= 1, JSON.stringify(complete));
    const j = parseJournal(await readFile(join(rig.dir, 'gateway', 'journal', `${campaign}.jsonl`), 'utf8')).state;
    assert.equal(j.lastState?.state, 'cancelled');
  });

  it('three campaigns alive at once: one waits for an offline device, one runs, one is queued for a window; the history says so', async () => {
    rig = await Rig.start({
      devices: 3, profiles: (i) => (i === 1 ? BUILTIN_PROFILES['wifi-poor'] : undefined),
      config: { windows: { list: [{ cron: '0 3 1 1 *', durationMin: 60, timeZone: 'UTC' }] }, rollout: { concurrency: 1 } },
    });
    const gone = rig.sims.devices[2]!;
    await gone.stop();
    await waitUntil(() => !rig!.gateway.fleet.get(gone.id)?.online, 10_000, 'the gateway to see the device go');
    await rig.client.connect();
    // 1: sensor-fw, now: two devices updated, the third waits for its check-in
    const a = sampleImage({ version: '1.1.0', size: 16 * 1024 });
    const first = await rig.client.push(a.manifest, a.image, { policy: 'now' });
    assert.equal((await rig.client.followUntilWaiting(first.campaign)).t, 'waiting');
    // 2: another image (radio-fw), now, over a slow link: it runs
    const radio = named('radio-fw', '1.2.0', 512 * 1024);
    const second = await rig.client.push(radio.manifest, radio.image, { policy: 'now' });
    await waitUntil(() => ofType(rig!.events, 'progress').some((p) => p.campaign === second.campaign && p.phase === 'transferring'), 30_000, 'the second campaign to transfer');
    // 3: a third image (app-fw: not the first one's name, which it would supersede) for the maintenance window: queued
    const c = named('app-fw', '1.3.0', 16 * 1024);
    const third = await rig.client.push(c.manifest, c.image, { policy: 'window' });
    assert.ok(third.committed.queued);
    const states = new Map(listCampaigns(join(rig.dir, 'gateway')).map((x) => [x.id, x.state]));
    assert.deepEqual([states.get(first.campaign), states.get(second.campaign), states.get(third.campaign)], ['waiting', 'running', 'queued'], JSON.stringify([...states]));
    const live = rig.gateway.campaigns.filter((x) => x.running || !x.started).map((x) => x.id);
    for (const id of [first.campaign, second.campaign, third.campaign]) assert.ok(live.includes(id), `${id} is alive`);
  });
});
