import { EventEmitter } from 'node:events';
import type { ComponentStatus, SlotName, StatusMessage } from '../protocol/ota.ts';
import type { DeviceChannel, DeviceEvent } from './device-channel.ts';

/**
 * A device's measured link: round trip (median of pings) and downlink throughput (probe burst,
 * then refreshed from each real transfer), each with the wall-clock ms it was measured.
 */
export interface LinkRecord {
  rttMs: number;
  jitterMs: number;
  measuredAt: number;
  bps?: number;
  bpsSource?: 'probe' | 'transfer';
  bpsMeasuredAt?: number;
}

/** What the gateway knows of one device, from its status reports and from measurement. */
export interface DeviceRecord {
  id: string;
  hw: string;
  version: string;
  slot: SlotName;
  slots: StatusMessage['slots'];
  maxChunk: number;
  busy: boolean;
  trial: boolean;
  /** Anti-rollback floor from the device's status, when it reports one (docs/protocol.md §6.3). */
  floor?: string | undefined;
  online: boolean;
  /** Wall-clock ms of the last message or presence change. */
  lastSeen: number;
  /** Last measured link figures, with when they were measured. */
  link?: LinkRecord;
  /** From activation to the boot report at its last update, ms. */
  rebootMs?: number;
  /** Its slot time beyond what its link explains, per MiB of image, learned at its updates (planner.ts learnDeviceMsPerMiB). */
  deviceMsPerMiB?: number;
  /** A multi-component device's components as its last status listed them (§6.3.3); absent: one component, `app`. */
  components?: ComponentStatus[] | undefined;
}

/**
 * The fleet registry: one record per device id, built from `status` messages and broker
 * presence. A device that reconnects is the same device (same id, record updated in place).
 * A device is listed only after its first valid status.
 */
export class Fleet extends EventEmitter<{ status: [DeviceRecord]; online: [DeviceRecord]; offline: [DeviceRecord]; learned: [DeviceRecord] }> {
  private readonly devices = new Map<string, DeviceRecord>();

  constructor(channel: DeviceChannel, private readonly now: () => number = Date.now) {
    super();
    channel.on('event', (id, e) => this.onEvent(id, e));
  }

  private onEvent(id: string, e: DeviceEvent): void {
    const rec = this.devices.get(id);
    if (e.t === 'status') {
      const fields = {
        id, hw: e.hw, version: e.version, slot: e.slot, slots: e.slots, maxChunk: e.maxChunk,
        busy: e.busy, trial: e.trial, floor: e.floor, online: true, lastSeen: this.now(), components: e.components,
      };
      // Updated in place: a campaign holding this record sees the new status and keeps the
      // link figures measured for it.
      const next: DeviceRecord = rec ? Object.assign(rec, fields) : fields;
      this.devices.set(id, next);
      this.emit('status', next);
      return;
    }
    if (!rec) return;
    rec.lastSeen = this.now();
    if (e.t === 'offline') {
      rec.online = false;
      this.emit('offline', rec);
    } else if (e.t === 'online') {
      rec.online = true;
      this.emit('online', rec);
    }
  }

  get(id: string): DeviceRecord | undefined {
    return this.devices.get(id);
  }

  /**
   * Devices known from an earlier run (the fleet file), offline until they report: the targets of
   * a campaign are the whole known fleet, not only who is connected (docs/operations.md
   * "Campaigns"). A device already reporting in this run is left as it is.
   */
  restore(records: readonly Omit<DeviceRecord, 'online' | 'busy' | 'trial'>[]): void {
    for (const r of records) {
      if (this.devices.has(r.id)) continue;
      this.devices.set(r.id, { ...r, online: false, busy: false, trial: false });
    }
  }

  list(): DeviceRecord[] {
    return [...this.devices.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  online(): DeviceRecord[] {
    return this.list().filter((d) => d.online);
  }

  setRebootMs(id: string, ms: number): void {
    const rec = this.devices.get(id);
    if (!rec) return;
    rec.rebootMs = ms;
    this.emit('learned', rec);
  }

  setDeviceMsPerMiB(id: string, ms: number): void {
    const rec = this.devices.get(id);
    if (!rec) return;
    rec.deviceMsPerMiB = ms;
    this.emit('learned', rec);
  }

  /** Merge new link figures into a device's record. */
  updateLink(id: string, update: Partial<LinkRecord>): void {
    const rec = this.devices.get(id);
    if (!rec) return;
    const merged = { ...rec.link, ...update };
    if (merged.rttMs === undefined || merged.jitterMs === undefined || merged.measuredAt === undefined) return;
    rec.link = merged as LinkRecord;
    this.emit('learned', rec);
  }

  get size(): number {
    return this.devices.size;
  }
}
