import type { Manifest } from '../../protocol/manifest.ts';
import type { ExcludedEntry, OrderEntry } from '../../protocol/uplink.ts';
import { compareVersions, isValidVersion } from '../../protocol/version.ts';
import type { DeviceRecord } from '../fleet.ts';

export interface Plan {
  eligible: DeviceRecord[];
  excluded: ExcludedEntry[];
}

export interface SelectOptions {
  /** A downgrade campaign: devices running a newer version are eligible too (§6.5.6). */
  downgrade?: boolean;
}

/**
 * Who gets the image: devices of a hardware model the manifest names, whose security floor (when
 * their status reports one, §6.3) is not above the image, running an older version (semver) —
 * or, with `downgrade`, any other version — and online. Everyone else is excluded with the
 * reason (docs/protocol.md §7.5.1, §6.5.6). The checks go in the device's order (§6.5.3), so an
 * exclusion names the code the device would reject the offer with.
 */
export function selectDevices(manifest: Manifest, devices: readonly DeviceRecord[], opts: SelectOptions = {}): Plan {
  const eligible: DeviceRecord[] = [];
  const excluded: ExcludedEntry[] = [];
  for (const d of devices) {
    const cmp = compareVersions(d.version, manifest.version);
    if (!manifest.hw.includes(d.hw)) {
      excluded.push({ id: d.id, code: 'incompatible-hw', reason: `hardware ${d.hw} is not in the image's list (${manifest.hw.join(', ')})`, version: d.version });
    } else if (d.floor !== undefined && isValidVersion(d.floor) && compareVersions(manifest.version, d.floor) < 0) {
      excluded.push({ id: d.id, code: 'below-floor', reason: `image ${manifest.version} is below the device's security floor ${d.floor} (anti-rollback: refused even as a downgrade)`, version: d.version });
    } else if (cmp === 0) {
      excluded.push({ id: d.id, code: 'not-newer', reason: `already runs ${d.version}, the image's version`, version: d.version });
    } else if (cmp > 0 && !opts.downgrade) {
      excluded.push({ id: d.id, code: 'not-newer', reason: `runs ${d.version}, newer than ${manifest.version} (a downgrade needs the downgrade option)`, version: d.version });
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
  /** Expected device time per MiB of image (see deviceTimeMs) of a device that has not been measured yet. */
  deviceMsPerMiB?: number;
}

const MIB = 1024 * 1024;

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
 * The part of a device's slot time its link explains: the image at the lesser of the measured
 * throughput and what the chunk window allows per round trip, plus a round trip each for offer,
 * verify, activate and confirm. Undefined without a measurement.
 */
export function linkTimeMs(manifest: Manifest, device: DeviceRecord, bounds: WindowBounds): number | undefined {
  const link = device.link;
  if (!link) return undefined;
  const rtt = Math.max(link.rttMs, 0.1);
  const chunk = Math.min(manifest.chunk, device.maxChunk);
  const window = chunkWindowFor(link, chunk, bounds);
  const windowBps = (window * chunk * 1000) / rtt;
  const bps = link.bps ? Math.min(link.bps, windowBps) : windowBps;
  return (manifest.size * 1000) / bps + 4 * rtt;
}

/**
 * The part its link does not explain: the device's own work while it holds a slot (taking the
 * offer, erasing, writing and flushing flash, hashing the image). It grows with the image, so it
 * is kept per MiB: the device's figure learned at its last updates, else `bounds.deviceMsPerMiB`.
 */
export function deviceTimeMs(size: number, device: DeviceRecord, bounds: WindowBounds): number {
  return ((device.deviceMsPerMiB ?? bounds.deviceMsPerMiB ?? 0) * size) / MIB;
}

/**
 * A device's device time per MiB after an update that held its slot `slotMs` (offer to verified)
 * for a whole image of `size` bytes whose link time was estimated at `linkMs`: the part of the
 * slot time the link does not explain, per MiB, averaged with the previous figure (one update can
 * catch a loss stall). Never negative.
 */
export function learnDeviceMsPerMiB(previous: number | undefined, slotMs: number, linkMs: number, size: number): number {
  const sample = (Math.max(0, slotMs - linkMs) * MIB) / Math.max(1, size);
  return Math.round(previous === undefined ? sample : (previous + sample) / 2);
}

/**
 * Expected update time of a device from its measured link: its link time, plus its device time,
 * plus its reboot (measured at its last update, else the configured estimate). Undefined without a
 * measurement.
 */
export function estimateTransferMs(manifest: Manifest, device: DeviceRecord, bounds: WindowBounds): number | undefined {
  const linkMs = linkTimeMs(manifest, device, bounds);
  if (linkMs === undefined) return undefined;
  return Math.round(linkMs + deviceTimeMs(manifest.size, device, bounds) + (device.rebootMs ?? bounds.rebootMs ?? 0));
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
 * The start sequence under a concurrency limit of `slots` (docs/protocol.md §7.5.6). Fastest
 * first minimises the mean time to update; it is used when its makespan stays within
 * `tolerance` (15%) of the lower bound. Otherwise the plan is balanced: the devices are dealt
 * to the slots longest first, each to the least-loaded slot (which bounds the makespan), and
 * every slot runs its own devices fastest first (which keeps the mean close to fastest-first's):
 * the slow devices end their slots instead of queueing behind each other at the end. The start
 * sequence is the plan's starts in ascending order. Sets each entry's `startMs`; devices without
 * an estimate go at the end in rank order. `slotMs` is how long a device holds a slot (default
 * its `etaMs`; the campaign frees a slot once the image is verified, so it passes the transfer
 * part only).
 */
export function planStarts(
  ranked: readonly OrderEntry[], slots: number,
  opts: { tolerance?: number; slotMs?: (e: OrderEntry) => number } = {},
): OrderEntry[] {
  const tolerance = opts.tolerance ?? 0.15;
  const n = Math.max(1, Math.min(slots, ranked.length));
  const eta = opts.slotMs ?? ((e: OrderEntry): number => e.etaMs ?? 0);
  const known = ranked.filter((e) => e.etaMs !== undefined);
  const unknown = ranked.filter((e) => e.etaMs === undefined);
  let seq: OrderEntry[] = [...ranked];
  if (schedule(seq, n, eta).makespan > makespanLowerBound(known.map(eta), n) * (1 + tolerance)) {
    seq = [...balancedSequence(known, n, eta), ...unknown];
  }
  const { starts } = schedule(seq, n, eta);
  return seq.map((e, i) => ({ ...e, startMs: Math.round(starts[i]!) }));
}

/**
 * Longest first to the least-loaded slot, then each slot fastest first; the sequence is by
 * planned start, devices of equal slot time in rank order. List scheduling of that sequence reproduces the plan: the next
 * device in it is always the one planned for the slot that frees first.
 */
function balancedSequence(entries: readonly OrderEntry[], slots: number, eta: (e: OrderEntry) => number): OrderEntry[] {
  const loads = new Array<number>(slots).fill(0);
  const perSlot = Array.from({ length: slots }, (): OrderEntry[] => []);
  for (const e of [...entries].sort((a, b) => eta(b) - eta(a) || a.rank - b.rank)) {
    const i = argMin(loads);
    perSlot[i]!.push(e);
    loads[i] = loads[i]! + eta(e);
  }
  const planned: { e: OrderEntry; start: number }[] = [];
  for (const list of perSlot) {
    let t = 0;
    for (const e of list.sort((a, b) => eta(a) - eta(b) || a.rank - b.rank)) {
      planned.push({ e, start: t });
      t += eta(e);
    }
  }
  const seq = planned.sort((a, b) => a.start - b.start || a.e.rank - b.e.rank).map((p) => p.e);
  // devices with equal slot times are interchangeable: give their places in rank order
  const places = new Map<number, number[]>();
  seq.forEach((e, i) => {
    const at = places.get(eta(e));
    if (at) at.push(i);
    else places.set(eta(e), [i]);
  });
  for (const at of places.values()) {
    const byRank = at.map((i) => seq[i]!).sort((a, b) => a.rank - b.rank);
    at.forEach((i, k) => { seq[i] = byRank[k]!; });
  }
  return seq;
}

/** List scheduling in sequence order: each device takes the slot that frees first. */
function schedule<T>(seq: readonly T[], slots: number, eta: (e: T) => number): { starts: number[]; makespan: number } {
  const free = new Array<number>(slots).fill(0);
  const starts: number[] = [];
  let makespan = 0;
  for (const e of seq) {
    const i = argMin(free);
    starts.push(free[i]!);
    free[i] = free[i]! + eta(e);
    makespan = Math.max(makespan, free[i]!);
  }
  return { starts, makespan };
}

function argMin(xs: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i]! < xs[best]!) best = i;
  return best;
}

/** Lower bound on the makespan of a set of expected durations on `slots` parallel slots. */
export function makespanLowerBound(etas: readonly number[], slots: number): number {
  if (etas.length === 0) return 0;
  const sum = etas.reduce((a, b) => a + b, 0);
  return Math.max(Math.max(...etas), sum / Math.max(1, Math.min(slots, etas.length)));
}
