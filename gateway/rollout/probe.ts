import { randomInt } from 'node:crypto';
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
