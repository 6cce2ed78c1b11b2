import { mkdir, readdir, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { encodeCbor } from '../protocol/cbor.ts';
import { describeError, FwError } from '../protocol/errors.ts';
import { MAX_DEVICE_ID_LENGTH, MAX_NAME_LENGTH, MAX_ORDER_ENTRIES, MAX_UPLINK_MESSAGE } from '../protocol/limits.ts';
import { formatIssues } from '../protocol/schema.ts';
import { clipText, Outcomes, ResultCodes, type FleetEntry, type FleetMessage, type ResultMessage } from '../protocol/uplink.ts';
import { MAX_CHUNK_SIZE, MAX_COMPONENTS, MIN_CHUNK_SIZE } from '../protocol/limits.ts';
import { SlotNames, componentStatus, slotInfo } from '../protocol/ota.ts';
import { TMP_MARK, writeFileDurably } from './durable.ts';
import type { DeviceRecord, Fleet } from './fleet.ts';
import type { Logger } from './log.ts';
import type { Timers } from './waiter.ts';

/** The fleet file in the data directory (docs/operations.md, "Fleet report"). */
export const FLEET_FILE = 'fleet.json';
/** Least time between two writes of the fleet file. */
export const FLEET_WRITE_INTERVAL_MS = 1000;

const epochMs = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const storedResult = z.object({
  campaign: z.string().min(1).max(MAX_NAME_LENGTH),
  outcome: z.enum(Outcomes),
  code: z.enum(ResultCodes),
  reason: z.string().optional(),
  /** The campaign's image version (the result's `to`). */
  version: z.string().max(MAX_NAME_LENGTH),
  at: epochMs,
});
const storedDevice = z.object({
  id: z.string().min(1).max(MAX_DEVICE_ID_LENGTH),
  hw: z.string().min(1).max(MAX_NAME_LENGTH),
  version: z.string().max(MAX_NAME_LENGTH),
  floor: z.string().max(MAX_NAME_LENGTH).optional(),
  /** Wall-clock ms of its last status or connection. */
  lastCheckIn: epochMs,
  /** As last known; a gateway that (re)starts lists every device offline until it reports. */
  online: z.boolean(),
  /** Connected when the gateway stopped (close() lists it offline): a restarted gateway waits a while for it (reconnect-grace.ts). */
  connectedAtStop: z.literal(true).optional(),
  lastResult: storedResult.optional(),
  /** Its slots as last reported (absent in files written before the fleet was the campaigns' target set). */
  slot: z.enum(SlotNames).optional(),
  slots: z.object({ a: slotInfo, b: slotInfo }).optional(),
  maxChunk: z.number().int().min(MIN_CHUNK_SIZE).max(MAX_CHUNK_SIZE).optional(),
  /** Learned at probes and updates, so a restart does not forget them (planner.ts). */
  link: z.object({
    rttMs: z.number().min(0), jitterMs: z.number().min(0), measuredAt: epochMs,
    bps: z.number().min(0).optional(), bpsSource: z.enum(['probe', 'transfer']).optional(), bpsMeasuredAt: epochMs.optional(),
  }).optional(),
  rebootMs: z.number().min(0).optional(),
  deviceMsPerMiB: z.number().min(0).optional(),
  /** The manifest seq of the last update it confirmed (a push below it is refused as seq-rollback, §6.5.7). */
  confirmedSeq: z.number().int().min(0).optional(),
  /** Updates in a row that ended failed or rolled back (0 after an update): 2 or more = suspect (docs/security.md). */
  failStreak: z.number().int().min(0).optional(),
  /** A multi-component device's components as last reported (§6.3.3): a release campaign selects by them. */
  components: z.array(componentStatus).min(1).max(MAX_COMPONENTS).optional(),
});

/** Failed or rolled-back updates in a row from which a device is held suspect and left out of rollback thresholds. */
export const SUSPECT_AFTER_FAILURES = 2;
const fleetFileSchema = z.object({ format: z.literal(1), savedAt: epochMs, devices: z.array(storedDevice) });

export type StoredDevice = z.infer<typeof storedDevice>;
export type FleetFile = z.infer<typeof fleetFileSchema>;

/**
 * Read a fleet file without side effects (the gateway may be writing it: each write replaces it
 * whole). Undefined when there is none; E_STORE_IO naming the problem when it cannot be read or
 * does not validate. Devices are sorted by id.
 */
export async function readFleetFile(path: string): Promise<FleetFile | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new FwError('E_STORE_IO', `fleet file ${path} cannot be read`, { cause: err });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new FwError('E_STORE_IO', `fleet file ${path} is not JSON: ${(err as Error).message}`, { cause: err });
  }
  const r = fleetFileSchema.safeParse(raw);
  if (!r.success) throw new FwError('E_STORE_IO', `fleet file ${path} is not valid: ${formatIssues(r.error)}`);
  const byId = new Map(r.data.devices.map((d) => [d.id, d]));
  return { ...r.data, devices: [...byId.values()].sort(byDeviceId) };
}

export interface FleetStoreOptions {
  dataDir: string;
  log: Logger;
  /** Timers and monotonic clock of the write throttle. */
  timers: Timers;
  /** Wall clock, ms since the epoch: check-ins and results (default Date.now). */
  now?: () => number;
  /** Least time between two writes (default FLEET_WRITE_INTERVAL_MS). */
  minWriteIntervalMs?: number;
}

/**
 * What the gateway knows of every device it has seen, kept across restarts in
 * `<dataDir>/fleet.json`: hardware, version, floor, last check-in, presence and last campaign
 * result. Each write replaces the file atomically (temp file, fsync, rename, fsync of the
 * directory), at most once per `minWriteIntervalMs` and once more at close(). A file that cannot
 * be read at start-up is set aside as `fleet.json.corrupt` and the fleet starts empty.
 */
export class FleetStore {
  private readonly devices = new Map<string, StoredDevice>();
  private readonly now: () => number;
  private readonly minWriteIntervalMs: number;
  private dirty = false;
  private timer: unknown;
  private lastWriteAt = -Infinity;
  private writing: Promise<void> = Promise.resolve();
  private closed = false;
  /** Devices the file says were connected when the previous run stopped (or was killed). */
  private connectedBefore: string[] = [];
  readonly stats = { writes: 0, writeErrors: 0 };

  private constructor(readonly path: string, private readonly opts: FleetStoreOptions) {
    this.now = opts.now ?? Date.now;
    this.minWriteIntervalMs = opts.minWriteIntervalMs ?? FLEET_WRITE_INTERVAL_MS;
  }

  /** Load the fleet file (devices listed offline until they report); never fails on a bad file. */
  static async open(opts: FleetStoreOptions): Promise<FleetStore> {
    const store = new FleetStore(join(opts.dataDir, FLEET_FILE), opts);
    await mkdir(opts.dataDir, { recursive: true });
    await store.removeTemps();
    let file: FleetFile | undefined;
    try {
      file = await readFleetFile(store.path);
    } catch (err) {
      await store.setAside(err);
    }
    store.connectedBefore = (file?.devices ?? []).filter((d) => d.online || d.connectedAtStop).map((d) => d.id);
    for (const d of file?.devices ?? []) {
      const { connectedAtStop: _, ...rest } = d;
      store.devices.set(d.id, { ...rest, online: false });
    }
    if (store.connectedBefore.length > 0) store.changed();
    return store;
  }

  /** The devices connected when the previous run stopped or was killed, as the file at start-up said. */
  get connectedAtLastStop(): readonly string[] {
    return this.connectedBefore;
  }

  /** Follow the registry: a status or a connection is a check-in; a disconnection makes the device offline. */
  attach(fleet: Fleet): void {
    fleet.restore(this.records());
    fleet.on('status', (d) => this.checkIn(d));
    fleet.on('online', (d) => this.checkIn(d));
    fleet.on('offline', (d) => this.offline(d.id));
    fleet.on('learned', (d) => this.learned(d));
  }

  /**
   * The devices of the file as registry records (offline), for Fleet.restore: what a campaign
   * targets after a restart before any device has reconnected. Slots unknown to an older file
   * read as the running version confirmed in slot a.
   */
  records(): Parameters<Fleet['restore']>[0] {
    return [...this.devices.values()].map((d) => ({
      id: d.id, hw: d.hw, version: d.version, ...(d.floor !== undefined ? { floor: d.floor } : {}),
      slot: d.slot ?? 'a',
      slots: d.slots ?? { a: { state: 'confirmed' as const, version: d.version }, b: { state: 'empty' as const } },
      maxChunk: d.maxChunk ?? MAX_CHUNK_SIZE,
      lastSeen: d.lastCheckIn,
      ...(d.link ? { link: { ...d.link } } : {}),
      ...(d.rebootMs !== undefined ? { rebootMs: d.rebootMs } : {}),
      ...(d.deviceMsPerMiB !== undefined ? { deviceMsPerMiB: d.deviceMsPerMiB } : {}),
      ...(d.components ? { components: structuredClone(d.components) } : {}),
    }));
  }

  checkIn(d: Pick<DeviceRecord, 'id' | 'hw' | 'version' | 'floor'> & Partial<Pick<DeviceRecord, 'slot' | 'slots' | 'maxChunk' | 'components'>>): void {
    if (this.closed) return;
    const prev = this.devices.get(d.id);
    const last = prev?.lastResult;
    this.devices.set(d.id, {
      id: d.id, hw: d.hw, version: d.version, ...(d.floor !== undefined ? { floor: d.floor } : {}),
      lastCheckIn: Math.round(this.now()), online: true, ...(last ? { lastResult: last } : {}),
      ...(d.slot ? { slot: d.slot } : prev?.slot ? { slot: prev.slot } : {}),
      ...(d.slots ? { slots: structuredClone(d.slots) } : prev?.slots ? { slots: prev.slots } : {}),
      ...(d.maxChunk !== undefined ? { maxChunk: d.maxChunk } : prev?.maxChunk !== undefined ? { maxChunk: prev.maxChunk } : {}),
      ...(d.components ? { components: structuredClone(d.components) } : d.slots === undefined && prev?.components ? { components: prev.components } : {}),
      ...(prev?.link ? { link: prev.link } : {}),
      ...(prev?.rebootMs !== undefined ? { rebootMs: prev.rebootMs } : {}),
      ...(prev?.deviceMsPerMiB !== undefined ? { deviceMsPerMiB: prev.deviceMsPerMiB } : {}),
      ...(prev?.failStreak ? { failStreak: prev.failStreak } : {}),
      ...(prev?.confirmedSeq !== undefined ? { confirmedSeq: prev.confirmedSeq } : {}),
    });
    this.changed();
  }

  /** Whether the device failed or rolled back its last SUSPECT_AFTER_FAILURES updates (its claims are not trusted for fleet-wide decisions). */
  isSuspect(id: string): boolean {
    return (this.devices.get(id)?.failStreak ?? 0) >= SUSPECT_AFTER_FAILURES;
  }

  /** Link figures, reboot time and device time per MiB learned for a device: kept across restarts. */
  learned(d: Pick<DeviceRecord, 'id' | 'link' | 'rebootMs' | 'deviceMsPerMiB'>): void {
    const s = this.devices.get(d.id);
    if (this.closed || !s) return;
    if (d.link) s.link = { ...d.link };
    if (d.rebootMs !== undefined) s.rebootMs = Math.round(d.rebootMs);
    if (d.deviceMsPerMiB !== undefined) s.deviceMsPerMiB = Math.round(d.deviceMsPerMiB);
    this.changed();
  }

  offline(id: string): void {
    const d = this.devices.get(id);
    if (this.closed || !d?.online) return;
    d.online = false;
    this.changed();
  }

  /** A campaign's result for a device becomes its last result; an update confirms the manifest's `seq` on it. */
  noteResult(r: ResultMessage, seq?: number): void {
    const d = this.devices.get(r.id);
    if (this.closed || !d) return;
    if (r.outcome === 'updated' && seq !== undefined) d.confirmedSeq = Math.max(d.confirmedSeq ?? 0, seq);
    if (r.outcome === 'updated') delete d.failStreak;
    else if (r.outcome === 'failed' || r.outcome === 'rolled-back') d.failStreak = (d.failStreak ?? 0) + 1;
    d.lastResult = {
      campaign: r.campaign, outcome: r.outcome, code: r.code, ...(r.reason ? { reason: clipText(r.reason) } : {}), version: r.to, at: Math.round(this.now()),
    };
    this.changed();
  }

  /**
   * Results a campaign holds that the file may lack (a resumed campaign does not announce the
   * results its journal had; the gateway may have stopped before writing them): each device
   * without a result from that campaign gets it.
   */
  fillResults(results: Iterable<ResultMessage>): void {
    for (const r of results) if (this.devices.get(r.id)?.lastResult?.campaign !== r.campaign) this.noteResult(r);
  }

  get(id: string): StoredDevice | undefined {
    const d = this.devices.get(id);
    return d && copy(d);
  }

  /** Every device, sorted by id (copies). */
  list(): StoredDevice[] {
    return [...this.devices.values()].sort(byDeviceId).map(copy);
  }

  /** The `fleet` uplink message (docs/protocol.md §7.11.4), within the uplink limits. */
  message(): FleetMessage {
    return fitFleet({ t: 'fleet', now: Math.round(this.now()), devices: this.list().map(toEntry) });
  }

  /** Write now if anything changed since the last write. Never rejects (a failure is logged). */
  flush(): Promise<void> {
    this.writing = this.writing.then(() => this.write());
    return this.writing;
  }

  /** Resolves when the writes started so far have ended (tests). */
  settled(): Promise<void> {
    return this.writing;
  }

  /**
   * The gateway stops: every device is offline to it, those connected until now marked
   * `connectedAtStop`; the last write; later changes are ignored.
   */
  async close(): Promise<void> {
    if (this.closed) return this.writing;
    this.closed = true;
    this.opts.timers.clearTimeout(this.timer);
    this.timer = undefined;
    for (const d of this.devices.values()) {
      if (!d.online) continue;
      d.online = false;
      d.connectedAtStop = true;
      this.dirty = true;
    }
    await this.flush();
  }

  /** Something changed: write at once if the last write is old enough, else when it is. */
  private changed(): void {
    this.dirty = true;
    this.schedule();
  }

  private schedule(): void {
    if (this.closed || this.timer !== undefined) return;
    const wait = Math.max(0, this.lastWriteAt + this.minWriteIntervalMs - this.opts.timers.now());
    this.timer = this.opts.timers.setTimeout(() => {
      this.timer = undefined;
      // a write still running when the timer fired may have moved lastWriteAt: check again
      this.writing = this.writing.then(() => (this.opts.timers.now() - this.lastWriteAt >= this.minWriteIntervalMs ? this.write() : this.schedule()));
    }, wait);
  }

  private async write(): Promise<void> {
    if (!this.dirty) return;
    this.dirty = false;
    this.lastWriteAt = this.opts.timers.now();
    try {
      await writeFileDurably(this.path, encodeFleetFile({ format: 1, savedAt: Math.round(this.now()), devices: this.list() }));
      this.stats.writes++;
    } catch (err) {
      this.dirty = true; // written with the next change, or at close
      this.stats.writeErrors++;
      this.opts.log.error({ path: this.path, err: describeError(err) }, 'could not write the fleet file');
    }
  }

  private async setAside(err: unknown): Promise<void> {
    const to = `${this.path}.corrupt`;
    try {
      await rename(this.path, to);
      this.opts.log.warn({ path: this.path, err: describeError(err), setAside: to }, 'fleet file unreadable: set aside; the fleet report starts empty');
    } catch (renameErr) {
      this.opts.log.error({ path: this.path, err: describeError(err), renameErr: describeError(renameErr) }, 'fleet file unreadable and could not be set aside; the fleet report starts empty');
    }
  }

  /** Temp files of a write cut short by a crash. */
  private async removeTemps(): Promise<void> {
    const prefix = `${FLEET_FILE}${TMP_MARK}`;
    for (const name of await readdir(this.opts.dataDir)) {
      if (name.startsWith(prefix)) await unlink(join(this.opts.dataDir, name)).catch(() => undefined);
    }
  }
}

/**
 * Keep a fleet message within the uplink limits (docs/protocol.md §7.11.4), as `fitOrder` does
 * for an order's excluded entries: at most MAX_ORDER_ENTRIES devices, halved until the encoded
 * message fits 90 % of MAX_UPLINK_MESSAGE; `more` counts the devices left out.
 */
export function fitFleet(msg: Omit<FleetMessage, 'more'>): FleetMessage {
  const budget = Math.floor(MAX_UPLINK_MESSAGE * 0.9);
  const all = msg.devices;
  let keep = Math.min(all.length, MAX_ORDER_ENTRIES);
  const build = (n: number): FleetMessage => ({ ...msg, devices: all.slice(0, n), ...(n < all.length ? { more: all.length - n } : {}) });
  let fitted = build(keep);
  while (keep > 0 && encodeCbor(fitted).length > budget) {
    keep = Math.floor(keep / 2);
    fitted = build(keep);
  }
  return fitted;
}

function toEntry(d: StoredDevice): FleetEntry {
  const r = d.lastResult;
  return {
    id: d.id, hw: d.hw, version: d.version, online: d.online, lastCheckIn: d.lastCheckIn,
    ...((d.failStreak ?? 0) >= SUSPECT_AFTER_FAILURES ? { suspect: true as const } : {}),
    ...(r ? { lastResult: { campaign: r.campaign, outcome: r.outcome, code: r.code, version: r.version, at: r.at } } : {}),
  };
}

function copy(d: StoredDevice): StoredDevice {
  return structuredClone(d);
}

function byDeviceId(a: { id: string }, b: { id: string }): number {
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** One device per line, so the file reads (and diffs) as a list. */
function encodeFleetFile(f: FleetFile): string {
  const devices = f.devices.map((d) => JSON.stringify(d)).join(',\n');
  return `{"format":${f.format},"savedAt":${f.savedAt},"devices":[${devices ? `\n${devices}\n` : ''}]}\n`;
}

