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
 * mean time to update), but no device may start so late that it ends the rollout well after it
 * could have ended. The target T is the lower bound on the makespan plus `tolerance` (15%), or
 * the makespan of longest-first list scheduling when that is longer. If fastest-first
 * misses T, the m slowest devices (fewest that suffice) are started as one block, slowest first,
 * at the latest place in the fastest-first sequence that still meets T — so they start early
 * enough, and the fast devices ahead of them still go first. Longest-first is the fallback. Sets
 * each entry's `startMs`; devices without an estimate stay at the end in rank order. `slotMs` is
 * how long a device holds a slot (default its `etaMs`; the campaign frees a slot once the image
 * is verified, so it passes the transfer part only). `busyMs` are the remaining times of slots
 * already taken (re-planning during a campaign).
 */
export function planStarts(
  ranked: readonly OrderEntry[], slots: number,
  opts: { tolerance?: number; slotMs?: (e: OrderEntry) => number; busyMs?: readonly number[] } = {},
): OrderEntry[] {
  const tolerance = opts.tolerance ?? 0.15;
  const busy = opts.busyMs ?? [];
  const n = Math.max(1, Math.min(slots, ranked.length + busy.length));
  const eta = opts.slotMs ?? ((e: OrderEntry): number => e.etaMs ?? 0);
  const makespan = (seq: readonly OrderEntry[]): number => schedule(seq, n, eta, busy).makespan;
  const longestFirst = [...ranked].sort((a, b) => eta(b) - eta(a) || a.rank - b.rank);
  const target = Math.max(makespan(longestFirst), makespanLowerBound(ranked.map(eta), n) * (1 + tolerance));
  let seq: OrderEntry[] = [...ranked];
  if (makespan(seq) > target) {
    const known = ranked.filter((e) => e.etaMs !== undefined);
    const unknown = ranked.filter((e) => e.etaMs === undefined);
    let found: OrderEntry[] | undefined;
    for (let m = 1; m <= known.length && !found; m++) {
      const block = known.slice(known.length - m).reverse();
      const rest = known.slice(0, known.length - m);
      const at = (p: number): OrderEntry[] => [...rest.slice(0, p), ...block, ...rest.slice(p), ...unknown];
      if (makespan(at(0)) > target) continue;
      // the latest insertion point that still meets the target (the makespan grows with p)
      let lo = 0;
      let hi = rest.length;
      while (lo < hi) {
        const mid = Math.ceil((lo + hi) / 2);
        if (makespan(at(mid)) <= target) lo = mid;
        else hi = mid - 1;
      }
      found = at(lo);
    }
    seq = found ?? longestFirst;
  }
  const { starts } = schedule(seq, n, eta, busy);
  return seq.map((e, i) => ({ ...e, startMs: Math.round(starts[i]!) }));
}

/** List scheduling in sequence order: each device takes the slot that frees first. */
function schedule<T>(seq: readonly T[], slots: number, eta: (e: T) => number, busy: readonly number[] = []): { starts: number[]; ends: number[]; makespan: number } {
  const free = new Array<number>(slots).fill(0);
  busy.slice(0, slots).forEach((ms, i) => { free[slots - 1 - i] = Math.max(0, ms); });
  const starts: number[] = [];
  const ends: number[] = [];
  for (const e of seq) {
    const i = argMin(free);
    starts.push(free[i]!);
    free[i] = free[i]! + eta(e);
    ends.push(free[i]!);
  }
  return { starts, ends, makespan: Math.max(0, ...ends) };
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
