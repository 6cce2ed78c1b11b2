import { randomInt } from 'node:crypto';
import { FwError } from '../../protocol/errors.ts';
import type { DeviceChannel, DeviceEvent } from '../device-channel.ts';
import type { Timers } from '../waiter.ts';

export interface LinkFigures { rttMs: number; jitterMs: number; samples: number }

/**
 * Measure a device's round-trip time with `pings` sequential ping/pong exchanges
 * (docs/protocol.md §6.4). Median RTT, jitter = mean absolute deviation from the median.
 * Pings that time out are not counted; if none answers the device is unreachable (throws).
 */
export async function measureRtt(channel: DeviceChannel, deviceId: string, pings: number, timeoutMs: number, timers: Timers): Promise<LinkFigures> {
  const samples: number[] = [];
  let lastError: unknown;
  for (let i = 0; i < pings; i++) {
    const n = randomInt(0, 0xffff_ffff);
    const t0 = timers.now();
    try {
      await channel.request(deviceId, { t: 'ping', n }, (e: DeviceEvent): e is Extract<DeviceEvent, { t: 'pong' }> => e.t === 'pong' && e.n === n, timeoutMs, 'pong');
      samples.push(timers.now() - t0);
    } catch (err) {
      lastError = err;
    }
  }
  if (samples.length === 0) throw lastError;
  samples.sort((a, b) => a - b);
  const mid = samples.length >> 1;
  const median = samples.length % 2 ? samples[mid]! : (samples[mid - 1]! + samples[mid]!) / 2;
  const jitter = samples.reduce((s, x) => s + Math.abs(x - median), 0) / samples.length;
  return { rttMs: round(median), jitterMs: round(jitter), samples: samples.length };
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}

export interface ThroughputFigures { bps: number; bytes: number; acked: number; elapsedMs: number }

/** One probe burst: `count` probes of `size` bytes, answers awaited `timeoutMs`; `rttMs` the device's measured round trip (bounds a compressed train). */
export interface BurstOptions { count: number; size: number; timeoutMs: number; rttMs?: number }

/**
 * Measure a device's downlink throughput (docs/protocol.md §6.4.3) with `bursts` probe bursts
 * one after another; the figure is the fastest burst's. A loss on the path stalls a burst for a
 * retransmission timeout, which on a short burst would make the link look several times slower
 * than it is; one clean burst of two shows the link's rate. Fails only when every burst fails.
 */
export async function measureThroughput(
  channel: DeviceChannel, deviceId: string, opts: BurstOptions & { bursts?: number }, timers: Timers,
): Promise<ThroughputFigures> {
  let best: ThroughputFigures | undefined;
  let lastError: unknown;
  for (let i = 0; i < Math.max(1, opts.bursts ?? 1); i++) {
    try {
      const figures = await measureBurst(channel, deviceId, opts, timers);
      if (!best || figures.bps > best.bps) best = figures;
    } catch (err) {
      lastError = err;
    }
  }
  if (!best) throw lastError;
  return best;
}

/**
 * One burst: send `count` probes of `size` bytes back to back; the device answers
 * each with `probed` as it receives it. The spacing of the answers is set by the slowest stretch
 * of the path (packet-train dispersion), so bytes/s = bytes acked after the first answer divided
 * by the time from the first answer to the last — but never more than the whole train's bytes over
 * the time from the first send to the last answer less one round trip (`rttMs`), which a train
 * compressed behind a stall would otherwise exceed many times. Bounded by `timeoutMs`: answers
 * that arrived by then count; fewer than two answers is a failure.
 */
async function measureBurst(channel: DeviceChannel, deviceId: string, opts: BurstOptions, timers: Timers): Promise<ThroughputFigures> {
  const base = randomInt(0, 0xffff_ffff - opts.count);
  const arrivals: number[] = [];
  let done: () => void = () => undefined;
  const all = new Promise<void>((resolve) => { done = resolve; });
  const stop = channel.listen(deviceId, (e) => {
    if (e.t !== 'probed' || e.n < base || e.n >= base + opts.count || e.size !== opts.size) return;
    arrivals.push(timers.now());
    if (arrivals.length === opts.count) done();
  });
  const data = new Uint8Array(opts.size).fill(0xa5);
  let timer: unknown;
  const t0 = timers.now();
  try {
    // back to back: handed to the broker together, so they leave in one write, not one per event-loop turn
    await Promise.all(Array.from({ length: opts.count }, (_, i) => channel.send(deviceId, { t: 'probe', n: base + i, data })));
    const left = Math.max(0, opts.timeoutMs - (timers.now() - t0));
    await Promise.race([all, new Promise<void>((resolve) => { timer = timers.setTimeout(resolve, left); })]);
  } finally {
    timers.clearTimeout(timer);
    stop();
  }
  if (arrivals.length < 2) {
    throw new FwError('E_DEVICE_TIMEOUT', `throughput probe of ${deviceId}: ${arrivals.length} of ${opts.count} answers within ${opts.timeoutMs} ms`);
  }
  const last = arrivals[arrivals.length - 1]!;
  const elapsedMs = Math.max(last - arrivals[0]!, 0.05);
  const bytes = (arrivals.length - 1) * opts.size;
  const dispersionBps = (bytes * 1000) / elapsedMs;
  // A train held up behind a lost segment arrives compressed (what was sent meanwhile comes all at
  // once): its dispersion then shows many times the link's rate. The whole train, sent at t0 and
  // in by `last`, less one round trip, bounds the rate from the other side; the lesser counts.
  const trainMs = opts.rttMs !== undefined ? last - t0 - opts.rttMs : 0;
  const trainBps = trainMs > 0 ? (arrivals.length * opts.size * 1000) / trainMs : Number.POSITIVE_INFINITY;
  return { bps: Math.round(Math.min(dispersionBps, trainBps)), bytes, acked: arrivals.length, elapsedMs: round(elapsedMs) };
}
