import assert from 'node:assert/strict';
import type { DeviceEvent } from '../../../gateway/device-channel.ts';
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
