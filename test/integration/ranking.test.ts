import assert from 'node:assert/strict';
import type { LinkProfile } from '../../device-sim/link.ts';
import type { GatewayUplinkMessage, OrderMessage, ProgressMessage, ResultMessage } from '../../protocol/uplink.ts';
import { Rig, sampleImage } from '../helpers/rig.ts';
import { bounded } from '../helpers/wait.ts';

const profile = (name: string, latencyMs: number, downBps: number): LinkProfile => ({ name, latencyMs, jitterMs: 0, downBps, upBps: 0, lossPct: 0 });

/** Shaped links, handed out by device index: the gateway is told none of this. */
const LINKS: LinkProfile[] = [
  profile('slow', 30, 60_000),
  profile('fast', 1, 0),
  profile('medium', 10, 150_000),
  profile('fast', 1, 0),
];

const ofType = <T extends GatewayUplinkMessage['t']>(events: GatewayUplinkMessage[], t: T): Extract<GatewayUplinkMessage, { t: T }>[] =>
  events.filter((e): e is Extract<GatewayUplinkMessage, { t: T }> => e.t === t);

/** Every invariant of a campaign's event stream that the laptop relies on. */
function checkStream(events: GatewayUplinkMessage[], targeted: string[]): void {
  const last = new Map<string, ProgressMessage>();
  for (const p of ofType(events, 'progress')) {
    const prev = last.get(p.id);
    if (prev && prev.phase === p.phase) assert.ok(p.bytes >= prev.bytes, `${p.id}: progress went back in ${p.phase}`);
    assert.ok(p.bytes <= p.total);
    last.set(p.id, p);
  }
  const results = ofType(events, 'result');
  for (const id of targeted) assert.equal(results.filter((r) => r.id === id).length, 1, `${id}: exactly one result`);
  assert.equal(events.at(-1)?.t, 'complete', 'completion comes last');
  assert.equal(ofType(events, 'complete').length, 1);
}

describe('integration: measured ranking, fastest first, live progress', function () {
  this.timeout(120_000);
  let rig: Rig | undefined;
  afterEach(async () => {
    await rig?.stop();
    rig = undefined;
  });

  it('ranks a device with a slower link after faster ones, from measurement alone, and announces it before any chunk', async () => {
    rig = await Rig.start({ devices: 4, profiles: (i) => LINKS[i], config: { rollout: { concurrency: 4 } } });
    // When did the gateway publish its first chunk to any device?
    let firstChunkAt: number | undefined;
    const send = rig.gateway.channel.send.bind(rig.gateway.channel);
    rig.gateway.channel.send = async (id, msg) => {
      if (msg.t === 'chunk') firstChunkAt ??= performance.now();
      return send(id, msg);
    };
    let orderAt: number | undefined;
    rig.client.on('event', (e) => { if (e.t === 'order') orderAt ??= performance.now(); });

    const { image, manifest } = sampleImage({ version: '1.1.0', size: 64 * 1024 });
    await rig.client.connect();
    const { campaign } = await rig.client.push(manifest, image);
    const complete = await rig.client.follow(campaign);
    assert.equal(complete.updated, 4);

    const ids = rig.sims.devices.map((d) => d.id);
    const order = ofType(rig.events, 'order')[0] as OrderMessage;
    const rank = (i: number): number => order.devices.find((d) => d.id === ids[i])!.rank;
    assert.equal(rank(0), 4, `the slow link ranks last: ${JSON.stringify(order.devices)}`);
    assert.equal(rank(2), 3, 'the medium link ranks after both fast ones');
    for (const d of order.devices) {
      assert.ok(d.rttMs !== undefined && d.bps !== undefined && d.etaMs !== undefined && d.startMs !== undefined, `${d.id} has its figures`);
    }
    const bps = (i: number): number => rig!.gateway.fleet.get(ids[i]!)!.link!.bps!;
    assert.ok(bps(0) < bps(2) && bps(2) < bps(1), `measured throughput follows the links: ${[0, 1, 2, 3].map(bps).join(', ')}`);
    assert.ok(rig.gateway.fleet.get(ids[0]!)!.link!.rttMs >= 60, 'the slow link\'s round trip includes 2 x 30 ms');
    // each device's own time (flash, verification) was learned from its slot time, for the next plan (§7.5.3)
    for (const id of ids) {
      const learned = rig.gateway.fleet.get(id)!.deviceMsPerMiB;
      assert.ok(learned !== undefined && Number.isInteger(learned) && learned >= 0, `${id} has a learned device time per MiB: ${learned}`);
    }

    assert.ok(orderAt !== undefined && firstChunkAt !== undefined);
    assert.ok(orderAt < firstChunkAt, 'the laptop had the order before the first chunk went out');
    checkStream(rig.events, ids);
    const withRate = ofType(rig.events, 'progress').filter((p) => p.phase === 'transferring' && p.bps !== undefined);
    assert.ok(withRate.length > 0, 'progress carries transfer rates');
    assert.ok(ofType(rig.events, 'totals').length > 0, 'campaign totals were streamed');
    const lastTotals = ofType(rig.events, 'totals').at(-1)!;
    assert.deepEqual([lastTotals.devices, lastTotals.done], [4, 4]);
  });

  it('a laptop unplugged mid-rollout gets the current state on reconnect, and the rollout completes', async () => {
    rig = await Rig.start({ devices: 3, profiles: (i) => profile(`link-${i}`, 5, 100_000), config: { rollout: { concurrency: 1 } } });
    const { image, manifest } = sampleImage({ version: '1.1.0', size: 64 * 1024 });
    await rig.client.connect();
    const { campaign } = await rig.client.push(manifest, image);
    // wait for the first result, then pull the cable
    await bounded(new Promise<void>((resolve) => rig!.client.on('event', (e) => { if (e.t === 'result') resolve(); })), 60_000, 'the first result');
    rig.laptopLink.close();
    await new Promise((r) => setTimeout(r, 300));

    const again = rig.reconnectLaptop();
    await again.client.connect();
    const state = await again.client.status();
    assert.equal(state.campaign, campaign);
    assert.equal(state.running, true, 'still running');
    const complete = await again.client.follow(campaign);
    assert.equal(complete.updated, 3);
    const after = again.events.slice(again.events.indexOf(state) + 1);
    assert.equal(after[0]?.t, 'fleet', 'the fleet report follows the state (§7.11.4)');
    const stream = after.slice(1);
    assert.equal(stream[0]?.t, 'order', 'the replay starts with the order');
    checkStream(stream, rig.sims.devices.map((d) => d.id));
    const results = ofType(stream, 'result') as ResultMessage[];
    assert.ok(results.every((r) => r.outcome === 'updated'));
  });

  it('status on an idle gateway says so; after a campaign it replays the last one', async () => {
    rig = await Rig.start({ devices: 2 });
    await rig.client.connect();
    const idle = await rig.client.status();
    assert.deepEqual(idle, { t: 'state', running: false });
    const { image, manifest } = sampleImage({ version: '1.1.0', size: 16 * 1024 });
    const { campaign } = await rig.client.push(manifest, image);
    await rig.client.follow(campaign);
    const before = rig.events.length;
    const after = await rig.client.status();
    assert.deepEqual([after.running, after.campaign], [false, campaign]);
    await rig.client.follow(campaign);
    const replay = rig.events.slice(before);
    assert.equal(ofType(replay, 'result').length, 2);
    assert.equal(replay.at(-1)?.t, 'complete');
  });
});
