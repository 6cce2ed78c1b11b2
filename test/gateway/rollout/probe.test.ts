import assert from 'node:assert/strict';
import type { DeviceChannel, DeviceEvent } from '../../../gateway/device-channel.ts';
import { EventEmitter } from 'node:events';
import { parseConfig } from '../../../gateway/config.ts';
import { Fleet, type LinkRecord } from '../../../gateway/fleet.ts';
import { silentLogger } from '../../../gateway/log.ts';
import { measureLinks } from '../../../gateway/rollout/measure.ts';
import { measureThroughput } from '../../../gateway/rollout/probe.ts';
import { FwError } from '../../../protocol/errors.ts';
import type { GatewayMessage } from '../../../protocol/ota.ts';
import { FakeTimers, ScriptedChannel, drive } from './fake.ts';

/**
 * A device behind a link that delivers one 4096-byte probe every 10 ms (409600 B/s); the probes
 * listed in `stalled` (0-based, counted over the whole run) are held up for 500 ms first, as a
 * lost segment holds up a TCP stream.
 */
function linkedDevice(timers: FakeTimers, stalled: ReadonlySet<number>, answer = true): ScriptedChannel {
  let linkFreeAt = 0;
  let seen = 0;
  const channel: ScriptedChannel = new ScriptedChannel((msg: GatewayMessage): DeviceEvent[] => {
    if (msg.t !== 'probe' || !answer) return [];
    linkFreeAt = Math.max(linkFreeAt, timers.now()) + (stalled.has(seen++) ? 500 : 0) + 10;
    timers.setTimeout(() => channel.emit({ t: 'probed', n: msg.n, size: msg.data.length } as DeviceEvent), linkFreeAt - timers.now());
    return [];
  });
  return channel;
}

/**
 * The same link, but a stall holds up delivery, not sending: probes sent meanwhile cross the link
 * and wait behind the held-up one (TCP's in-order delivery after a lost segment), then arrive at
 * once — a compressed train. `oneWayMs` of latency each way: a ping's round trip is 2 x oneWayMs.
 */
function holDevice(timers: FakeTimers, stalled: ReadonlySet<number>, oneWayMs: number): ScriptedChannel {
  let linkFreeAt = 0;
  let deliverFrom = 0;
  let seen = 0;
  const channel: ScriptedChannel = new ScriptedChannel((msg: GatewayMessage): DeviceEvent[] => {
    if (msg.t !== 'probe') return [];
    linkFreeAt = Math.max(linkFreeAt, timers.now()) + 10;
    const crossed = linkFreeAt + oneWayMs;
    if (stalled.has(seen++)) deliverFrom = crossed + 500;
    const at = Math.max(crossed, deliverFrom) + oneWayMs;
    timers.setTimeout(() => channel.emit({ t: 'probed', n: msg.n, size: msg.data.length } as DeviceEvent), at - timers.now());
    return [];
  });
  return channel;
}

describe('throughput probe', () => {
  it('a train compressed behind a stall of its first probe does not show a rate above the link\'s: the round trip bounds it', async () => {
    const opts = { count: 8, size: 4096, timeoutMs: 5000, rttMs: 40 };
    const one = new FakeTimers();
    const compressed = await drive(one, measureThroughput(holDevice(one, new Set([0]), 20).asChannel(), 'dev-1', opts, one), 60_000);
    assert.ok(compressed.bps <= 409_600, `a compressed burst shows ${compressed.bps} B/s (the link: 409600)`);
    const two = new FakeTimers();
    const best = await drive(two, measureThroughput(holDevice(two, new Set([0]), 20).asChannel(), 'dev-1', { ...opts, bursts: 2 }, two), 60_000);
    assert.equal(best.bps, 409_600, 'the clean burst of two gives the rate');
    const clean = new FakeTimers();
    assert.equal((await drive(clean, measureThroughput(holDevice(clean, new Set(), 20).asChannel(), 'dev-1', opts, clean), 60_000)).bps, 409_600, 'a clean train: both figures agree');
  });


  const opts = { count: 8, size: 4096, timeoutMs: 5000 };

  it('measures the rate from the spacing of the answers', async () => {
    const timers = new FakeTimers();
    const channel = linkedDevice(timers, new Set());
    const figures = await drive(timers, measureThroughput(channel.asChannel(), 'dev-1', opts, timers), 60_000);
    assert.equal(figures.bps, 409_600);
    assert.equal(figures.acked, 8);
  });

  it('one burst with a stall underrates the link; the best of two bursts does not', async () => {
    const one = new FakeTimers();
    const stalledOnce = await drive(one, measureThroughput(linkedDevice(one, new Set([3])).asChannel(), 'dev-1', opts, one), 60_000);
    assert.ok(stalledOnce.bps < 100_000, `a stalled burst shows ${stalledOnce.bps} B/s`);
    const two = new FakeTimers();
    const channel = linkedDevice(two, new Set([3]));
    const best = await drive(two, measureThroughput(channel.asChannel(), 'dev-1', { ...opts, bursts: 2 }, two), 60_000);
    assert.equal(best.bps, 409_600);
    assert.equal(channel.count('probe'), 16, 'two bursts of eight');
  });

  it('fails only when every burst fails', async () => {
    const timers = new FakeTimers();
    const channel = linkedDevice(timers, new Set(), false);
    await assert.rejects(
      drive(timers, measureThroughput(channel.asChannel(), 'dev-1', { ...opts, bursts: 2 }, timers), 60_000),
      (err: unknown) => err instanceof FwError && err.code === 'E_DEVICE_TIMEOUT',
    );
    assert.equal(channel.count('probe'), 16);
  });
});

describe('link measurement before a campaign (measure.ts)', () => {
  /**
   * measureLinks over one device 20 ms away each way (pings answered after 40 ms) whose probes
   * cross the 409600 B/s link of holDevice, the probes listed in `stalled` held up; the device's
   * link record as `link` beforehand. Returns what measureLinks reached and left in the record.
   */
  async function measureOne(stalled: ReadonlySet<number>, rollout: Record<string, number>, link?: LinkRecord): Promise<{ reachable: string[]; link: LinkRecord }> {
    const timers = new FakeTimers();
    const probes = holDevice(timers, stalled, 20);
    const channel = {
      listen: (id: string, fn: (e: DeviceEvent) => void) => probes.listen(id, fn),
      send: (id: string, msg: GatewayMessage) => probes.send(id, msg),
      request: (_id: string, msg: GatewayMessage) => new Promise<DeviceEvent>((resolve) => {
        timers.setTimeout(() => resolve({ t: 'pong', n: (msg as { n: number }).n } as DeviceEvent), 40);
      }),
    } as unknown as DeviceChannel;
    const fleet = new Fleet(new EventEmitter() as unknown as DeviceChannel);
    fleet.restore([{ id: 'dev-1', hw: 'hw', version: '1.0.0', slot: 'a', slots: { a: { state: 'confirmed', version: '1.0.0' }, b: { state: 'empty' } }, maxChunk: 4096, lastSeen: 0, ...(link ? { link } : {}) }]);
    const config = parseConfig({ rollout }).rollout;
    const reachable = await drive(timers, measureLinks([fleet.get('dev-1')!], [], { fleet, channel, config, timers, log: silentLogger(), onPhase: () => undefined }), 60_000);
    return { reachable: reachable.map((d) => d.id), link: fleet.get('dev-1')!.link! };
  }

  it('a throughput from the last whole transfer stands while the probe agrees within probeTransferFactor; a probe outside it replaces it', async () => {
    assert.equal(parseConfig({}).rollout.probeTransferFactor, 4, 'the default');
    // the probe reads the clean link's 409600 B/s
    const run = async (bps: number, bpsSource: 'transfer' | 'probe'): Promise<{ bps?: number; bpsSource?: string }> => {
      const { link } = await measureOne(new Set(), { probePings: 1, probeBursts: 1 }, { rttMs: 40, jitterMs: 0, measuredAt: 1, bps, bpsSource, bpsMeasuredAt: 1 });
      if (link.bpsSource === 'transfer') assert.ok(link.bpsMeasuredAt! > 1, 'confirmed now');
      return { bps: link.bps, bpsSource: link.bpsSource };
    };
    assert.deepEqual(await run(150_000, 'transfer'), { bps: 150_000, bpsSource: 'transfer' }, 'the probe (2.7x) agrees: the transfer figure stands');
    assert.deepEqual(await run(1_000_000, 'transfer'), { bps: 1_000_000, bpsSource: 'transfer' }, 'within the factor the other way');
    assert.deepEqual(await run(409_600 * 4, 'transfer'), { bps: 409_600 * 4, bpsSource: 'transfer' }, 'exactly the factor: stands');
    assert.deepEqual(await run(100_000, 'transfer'), { bps: 409_600, bpsSource: 'probe' }, '4.1x: the link changed');
    assert.deepEqual(await run(2_000_000, 'transfer'), { bps: 409_600, bpsSource: 'probe' }, '4.9x the other way');
    assert.deepEqual(await run(150_000, 'probe'), { bps: 409_600, bpsSource: 'probe' }, 'an older probe figure is always replaced');
  });

  it('bounds the probe with the RTT it just measured: a device whose train arrives compressed is not ranked as if on a LAN', async () => {
    // the first probe of every burst is held up 500 ms
    const { reachable, link } = await measureOne(new Set([0, 8]), { probePings: 2, probeBursts: 2, probeBytes: 32768, probeChunkBytes: 4096 });
    assert.deepEqual(reachable, ['dev-1']);
    assert.equal(link.rttMs, 40);
    assert.ok(link.bps! <= 409_600, `probed at ${link.bps} B/s over a 409600 B/s link`);
  });
});
