import type { Manifest } from '../../protocol/manifest.ts';
import type { ExcludedEntry, OrderEntry } from '../../protocol/uplink.ts';
import { compareVersions } from '../../protocol/version.ts';
import type { DeviceRecord } from '../fleet.ts';

export interface Plan {
  eligible: DeviceRecord[];
  excluded: ExcludedEntry[];
}

/**
 * Who gets the image: devices of a hardware model the manifest names, running an older version
 * (semver), and online. Everyone else is excluded with the reason (docs/protocol.md §7.5).
 */
export function selectDevices(manifest: Manifest, devices: readonly DeviceRecord[]): Plan {
  const eligible: DeviceRecord[] = [];
  const excluded: ExcludedEntry[] = [];
  for (const d of devices) {
    if (!manifest.hw.includes(d.hw)) {
      excluded.push({ id: d.id, code: 'incompatible-hw', reason: `hardware ${d.hw} is not in the image's list (${manifest.hw.join(', ')})`, version: d.version });
    } else if (compareVersions(d.version, manifest.version) >= 0) {
      excluded.push({ id: d.id, code: 'not-newer', reason: `runs ${d.version}, not older than ${manifest.version}`, version: d.version });
    } else if (!d.online) {
      excluded.push({ id: d.id, code: 'offline', reason: 'device is offline', version: d.version });
    } else {
      eligible.push(d);
    }
  }
  return { eligible, excluded };
}

export interface WindowBounds {
  min: number;
  max: number;
  /** Expected reboot-and-report time of a device that has not been measured yet, ms. */
  rebootMs?: number;
}

/**
 * Chunks in flight for a device, from its bandwidth-delay product: enough to keep its link busy
 * for two round trips (headroom for jitter), within the configured bounds. Without a throughput
 * figure, the most allowed.
 */
export function chunkWindowFor(link: DeviceRecord['link'], chunk: number, bounds: WindowBounds): number {
  if (!link?.bps) return bounds.max;
  const bdp = (link.bps * Math.max(link.rttMs, 0.1)) / 1000;
  return Math.max(bounds.min, Math.min(bounds.max, Math.ceil((2 * bdp) / chunk)));
}

/**
 * Expected update time of a device from its measured link: the image at the lesser of the
 * measured throughput and what the chunk window allows per round trip, plus a round trip each
 * for offer, verify, activate and confirm, plus its reboot (measured at its last update, else the
 * configured estimate). Undefined without a measurement.
 */
export function estimateTransferMs(manifest: Manifest, device: DeviceRecord, bounds: WindowBounds): number | undefined {
  const link = device.link;
  if (!link) return undefined;
  const rtt = Math.max(link.rttMs, 0.1);
  const chunk = Math.min(manifest.chunk, device.maxChunk);
  const window = chunkWindowFor(link, chunk, bounds);
  const windowBps = (window * chunk * 1000) / rtt;
  const bps = link.bps ? Math.min(link.bps, windowBps) : windowBps;
  return Math.round((manifest.size * 1000) / bps + 4 * rtt + (device.rebootMs ?? bounds.rebootMs ?? 0));
}

/**
 * Rank eligible devices fastest first (shortest expected transfer = decreasing connection
 * speed). Devices without figures go last; ties are broken by device id so the order is
 * deterministic.
 */
export function rankDevices(manifest: Manifest, eligible: readonly DeviceRecord[], bounds: WindowBounds): OrderEntry[] {
  const withEta = eligible.map((d) => ({ d, eta: estimateTransferMs(manifest, d, bounds) }));
  withEta.sort((a, b) => {
    const ea = a.eta ?? Number.POSITIVE_INFINITY;
    const eb = b.eta ?? Number.POSITIVE_INFINITY;
    if (ea !== eb) return ea - eb;
    return a.d.id < b.d.id ? -1 : a.d.id > b.d.id ? 1 : 0;
  });
  return withEta.map(({ d, eta }, i) => ({
    id: d.id,
    rank: i + 1,
    from: d.version,
    ...(d.link ? { rttMs: d.link.rttMs } : {}),
    ...(d.link?.bps ? { bps: d.link.bps } : {}),
    ...(eta !== undefined ? { etaMs: eta } : {}),
  }));
}

/**
 * The start sequence under a concurrency limit of `slots`: fastest first (which minimises the
 * mean time to update), except that the slowest device still waiting is started at the last
 * moment that does not stretch the makespan — when starting it after one more fast device would
 * end the whole rollout later than starting it now, and now is clearly better than leaving it
 * for the end (by more than `tolerance`, 10%). Simulated with the expected durations (greedy list scheduling); sets each entry's
 * `startMs`. Devices without an estimate keep their rank order at the end.
 */
export function planStarts(ranked: readonly OrderEntry[], slots: number, tolerance = 0.1): OrderEntry[] {
  const queue = [...ranked];
  const free: number[] = Array.from({ length: Math.max(1, Math.min(slots, queue.length)) }, () => 0);
  const out: OrderEntry[] = [];
  while (queue.length > 0) {
    const slot = argMin(free);
    const now = free[slot]!;
    let pick = 0;
    const last = findLastIndex(queue, (e) => e.etaMs !== undefined);
    if (last > 0 && (queue[last]!.etaMs ?? 0) > (queue[0]!.etaMs ?? 0)) {
      const etas = queue.map((e) => e.etaMs ?? 0);
      const slowest = etas[last]!;
      const others = etas.filter((_, i) => i !== last);
      const fastestFirst = simulateMakespan(free, etas);
      const slowNow = simulateMakespan(free, [slowest, ...others]);
      const slowNext = simulateMakespan(free, [others[0]!, slowest, ...others.slice(1)]);
      if (fastestFirst > slowNow * (1 + tolerance) && slowNext > slowNow * (1 + tolerance)) pick = last;
    }
    const [entry] = queue.splice(pick, 1);
    out.push({ ...entry!, startMs: Math.round(now) });
    free[slot] = now + (entry!.etaMs ?? 0);
  }
  return out;
}

/** Makespan of greedy list scheduling: each duration in turn goes to the slot that frees first. */
function simulateMakespan(free: readonly number[], durations: readonly number[]): number {
  const slotsFree = [...free];
  for (const d of durations) {
    const i = argMin(slotsFree);
    slotsFree[i] = slotsFree[i]! + d;
  }
  return Math.max(...slotsFree);
}

function argMin(xs: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i]! < xs[best]!) best = i;
  return best;
}

function findLastIndex<T>(items: readonly T[], pred: (item: T) => boolean): number {
  for (let i = items.length - 1; i >= 0; i--) if (pred(items[i]!)) return i;
  return -1;
}

/** Lower bound on the makespan of a set of expected durations on `slots` parallel slots. */
export function makespanLowerBound(etas: readonly number[], slots: number): number {
  if (etas.length === 0) return 0;
  const sum = etas.reduce((a, b) => a + b, 0);
  return Math.max(Math.max(...etas), sum / Math.max(1, Math.min(slots, etas.length)));
}
