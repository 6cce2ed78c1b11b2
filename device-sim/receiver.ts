import { createHash } from 'node:crypto';
import { crc32 } from '../protocol/crc.ts';
import type { ChunkMessage, DeviceMessage, OfferMessage, RejectCode, SlotName, StatusMessage, VerifyCode } from '../protocol/ota.ts';
import type { KeyRing } from '../protocol/signature.ts';
import { readyComponent } from './activation.ts';
import type { DeviceFiles } from './bootloader.ts';
import { corruptCopy, type FaultSwitches, type PowerCutPhase } from './faults.ts';
import { checkOffer, checkOfferSignature, offerComponent } from './offer-checks.ts';
import type { DeviceOptions } from './options.ts';
import type { DeviceStats, Runtime, SimEventBody } from './runtime.ts';
import { APP, anyInTrial, componentNames, componentOf, otherSlot, type SlotRecord, type SlotStateRecord } from './state-record.ts';
import { ReceiveMap, removeProgress, saveProgress, type ImageMeta } from './transfer.ts';

/** What the receiving side needs of its device (device.ts SimDevice). */
export interface ReceiverHost {
  readonly files: DeviceFiles;
  readonly faults: FaultSwitches;
  readonly options: DeviceOptions;
  /** Pinned signing keys; empty: no signature check. */
  readonly pinned: KeyRing;
  readonly stats: DeviceStats;
  emit(e: SimEventBody): void;
  publish(rt: Runtime, msg: DeviceMessage): void;
  status(rt: Runtime): StatusMessage;
  /** Replace the slot-state record atomically; false when the write was cut or the boot is over. */
  updateState(rt: Runtime, mutate: (rec: SlotStateRecord) => void, beforeRename?: () => boolean): Promise<boolean>;
  /** If a power cut is armed for `phase` (and a step of `components`), cut now and return true. */
  cutIf(phase: PowerCutPhase, components?: readonly string[]): boolean;
}

/**
 * The receiving side of a device (docs/protocol.md §6.5–§6.7, §6.15.1): `offer` (per component),
 * `chunk` into the flash buffer, the batch commit (flush, progress file, one ack), `verify` and
 * `abort`. One transfer at a time, into the inactive slot of the offered component; the state of
 * one boot is the Runtime the device passes in.
 */
export class Receiver {
  constructor(private readonly h: ReceiverHost) {}

  async offer(rt: Runtime, m: OfferMessage): Promise<void> {
    const component = offerComponent(m);
    const of = component === APP ? {} : { component };
    const reject = (code: RejectCode, reason: string): void => {
      this.h.publish(rt, { t: 'reject', sid: m.sid, code, reason });
      this.h.emit({ type: 'offer-rejected', sid: m.sid, version: m.version, code, reason, ...of });
    };
    const rejection = checkOffer(m, {
      hw: rt.rec.hw,
      components: componentNames(rt.rec),
      running: new Map(rt.boot.components.map((c) => [c.name, c.version])),
      installedSeq: (component === APP ? rt.rec.seq : rt.rec.components?.[component]?.seq) ?? 0, // per component (§6.15.1)
      slotCapacity: this.h.options.slotCapacity,
      securityFloor: this.h.options.securityFloor,
      busy: this.h.faults.busy,
      inTrial: anyInTrial(rt.rec),
      pinned: this.h.pinned,
    });
    if (rejection) return reject(rejection.code, rejection.reason);

    const slot = otherSlot(componentOf(rt.rec, component).active);
    const cur = componentOf(rt.rec, component).slots[slot];
    const chunk = Math.min(m.chunk, this.h.options.maxChunk);
    const meta: ImageMeta = { name: m.name, version: m.version, size: m.size, crc32: m.crc32, sha256: m.sha256 };
    const accept = (next: number, resumed: boolean): void => {
      this.h.publish(rt, { t: 'accept', sid: m.sid, next, chunk, window: this.h.options.window });
      this.h.emit({ type: 'offer-accepted', sid: m.sid, version: m.version, next, chunk, resumed, ...of });
    };

    // Already received and verified, waiting for activation (downloaded early, installed later).
    if (cur.state === 'ready' && cur.sha256 === m.sha256 && cur.size === m.size) {
      if (cur.sid !== m.sid && !(await this.h.updateState(rt, (rec) => { componentOf(rec, component).slots[slot].sid = m.sid; }))) return;
      return accept(m.size, true);
    }
    let t = rt.transfer;
    if (t && t.component === component && sameImage(t.meta, meta)) {
      t.sid = m.sid;
      t.offer = m;
      if (t.map.chunk !== chunk) {
        t.map = t.map.rechunk(chunk);
        t.progressBytes = await saveProgress(this.h.files.progressFile, { ...of, slot, meta: t.meta, map: t.map }, this.h.files.sync, undefined, this.h.files.progress);
        if (!rt.alive) return;
      }
      return accept(t.map.next, t.map.held > 0);
    }
    // A different image (or none): discard what was held and start clean. Only one transfer at a
    // time: one of another component is dropped too (its slot as it was, or empty once written).
    const prev: SlotRecord = cur.state === 'confirmed' || cur.state === 'bad' || cur.state === 'empty' ? cur : { state: 'empty' };
    const dropped = t && t.component !== component ? t : null;
    rt.transfer = null;
    if (dropped) {
      this.h.files.flash(dropped.slot, dropped.component).discard();
      this.h.files.flash(dropped.slot, dropped.component).close();
    }
    this.h.files.flash(slot, component).discard();
    this.h.files.flash(slot, component).close();
    await removeProgress(this.h.files.progressFile, this.h.files.sync, this.h.files.progress);
    if (!rt.alive) return;
    const ok = await this.h.updateState(rt, (rec) => {
      for (const other of componentNames(rec)) {
        if (other === component) continue;
        const c = componentOf(rec, other);
        const s = otherSlot(c.active);
        if (dropped && dropped.component === other) c.slots[s] = dropped.erased ? { state: 'empty' } : dropped.prev;
        else if (c.slots[s].state === 'receiving') c.slots[s] = { state: 'empty' }; // a transfer a power cut left without progress
      }
      componentOf(rec, component).slots[slot] = { state: 'receiving', name: m.name, version: m.version, sha256: m.sha256, size: m.size };
    });
    if (!ok) return;
    t = { sid: m.sid, component, slot, meta, map: new ReceiveMap(m.size, chunk), unflushed: new Set(), erased: false, prev, offer: m, progressBytes: 0 };
    rt.transfer = t;
    accept(0, false);
    this.h.publish(rt, this.h.status(rt));
  }

  async chunk(rt: Runtime, m: ChunkMessage): Promise<void> {
    const t = rt.transfer;
    if (!t || t.sid !== m.sid) {
      this.h.stats.ignored += 1;
      return;
    }
    this.h.stats.chunks += 1;
    const fault = this.h.faults.onChunk();
    const data = fault.corrupt ? corruptCopy(m.data) : m.data;
    if (fault.drop) {
      rt.dropAfterCommit = true;
      rt.commitNow = true;
    }
    const { map } = t;
    const idx = Math.floor(m.off / map.chunk);
    let why: string | null = null;
    if (crc32(data) !== m.crc) why = 'crc32 mismatch';
    else if (m.off % map.chunk !== 0) why = `offset ${m.off} is not a multiple of ${map.chunk}`;
    else if (idx >= map.count) why = `offset ${m.off} beyond image of ${map.size} bytes`;
    else if (data.length !== map.lengthOf(idx)) why = `length ${data.length}, expected ${map.lengthOf(idx)}`;
    if (why !== null) {
      this.h.stats.badChunks += 1;
      this.h.emit({ type: 'chunk-bad', sid: m.sid, off: m.off, why });
      rt.owed.push(idx < map.count ? { sid: m.sid, bad: idx * map.chunk } : { sid: m.sid });
      return;
    }
    if (map.has(idx) || t.unflushed.has(idx)) {
      this.h.stats.duplicates += 1;
      rt.owed.push({ sid: m.sid });
      return;
    }
    const flash = this.h.files.flash(t.slot, t.component);
    if (!t.erased) {
      await flash.erase();
      if (!rt.alive) return;
      t.erased = true;
    }
    flash.writeOwned(m.off, data); // `data` belongs to this decoded message (or is corruptCopy's copy): no copy needed
    t.unflushed.add(idx);
    rt.owed.push({ sid: m.sid });
  }

  /** End of a chunk batch: flush, record progress, then one ack for every chunk of the batch. */
  async commitChunks(rt: Runtime): Promise<void> {
    const owed = rt.owed;
    rt.owed = [];
    rt.commitNow = false;
    const t = rt.transfer;
    if (!t) return;
    const wasComplete = t.map.complete;
    if (t.unflushed.size > 0) {
      if (this.h.cutIf('chunk-write', [t.component])) return;
      await this.h.files.flash(t.slot, t.component).flush();
      if (!rt.alive) return;
      for (const i of t.unflushed) t.map.add(i);
      t.unflushed.clear();
      const progress = { ...(t.component === APP ? {} : { component: t.component }), slot: t.slot, meta: t.meta, map: t.map };
      t.progressBytes = await saveProgress(this.h.files.progressFile, progress, this.h.files.sync, t.progressBytes, this.h.files.progress);
      if (!rt.alive) return;
    }
    // One ack answers the whole batch (§6.6.4): every chunk of it is durable now, so the acks owed
    // would all say the same but for the bad chunks, which this one lists together.
    for (const sid of new Set(owed.map((o) => o.sid))) {
      const bad = owed.filter((o) => o.sid === sid && o.bad !== undefined).map((o) => o.bad!);
      this.h.publish(rt, { t: 'ack', sid, next: t.map.next, missing: t.map.missing(bad) });
    }
    if (!wasComplete && t.map.complete && t.sid !== null) {
      this.h.emit({ type: 'transfer-complete', sid: t.sid });
      if (this.h.cutIf('after-transfer', [t.component])) return;
    }
    if (rt.dropAfterCommit) {
      rt.dropAfterCommit = false;
      this.h.stats.drops += 1;
      rt.inbox = [];
      this.h.emit({ type: 'dropped' });
      rt.client.stream.destroy();
    }
  }

  async verify(rt: Runtime, sid: number): Promise<void> {
    const reply = (ok: boolean, code?: VerifyCode, reason?: string): void => {
      this.h.publish(rt, { t: 'verified', sid, ok, ...(code ? { code } : {}), ...(reason ? { reason } : {}) });
      this.h.emit({ type: 'verified', sid, ok, ...(code ? { code } : {}) });
    };
    if (readyComponent(rt.rec, sid) !== undefined) return reply(true);
    const t = rt.transfer;
    if (!t || t.sid !== sid) return reply(false, 'incomplete', 'no transfer with this sid');
    if (!t.map.complete) return reply(false, 'incomplete', `${t.map.held} of ${t.map.count} chunks held`);
    const { slot, component } = t;
    const flash = this.h.files.flash(slot, component);
    const bytes = await flash.read();
    if (!rt.alive) return;
    let code: VerifyCode | null = null;
    let reason = '';
    if (bytes.length !== t.meta.size) [code, reason] = ['size', `slot holds ${bytes.length} bytes, offer says ${t.meta.size}`];
    else if (crc32(bytes) !== t.meta.crc32) [code, reason] = ['crc32', 'CRC-32 of the slot does not match the offer'];
    else if (createHash('sha256').update(bytes).digest('hex') !== t.meta.sha256) [code, reason] = ['sha256', 'SHA-256 of the slot does not match the offer'];
    else [code, reason] = checkOfferSignature(this.h.pinned, t.offer);
    rt.transfer = null;
    flash.close(); // the transfer is over: its slot descriptor is not kept
    await removeProgress(this.h.files.progressFile, this.h.files.sync, this.h.files.progress);
    if (!rt.alive) return;
    if (code !== null) {
      // Nothing is installed unless everything arrived intact: discard, a re-offer starts clean.
      if (!(await this.h.updateState(rt, (rec) => { componentOf(rec, component).slots[slot] = { state: 'empty' }; }))) return;
      await flash.erase();
      flash.close();
      if (!rt.alive) return;
      reply(false, code, reason);
    } else {
      const { name, version, size, sha256 } = t.meta;
      const seq = t.offer?.seq ?? 0;
      const ready = await this.h.updateState(rt, (rec) => {
        componentOf(rec, component).slots[slot] = { state: 'ready', name, version, size, sha256, sid, seq };
      }, () => this.h.cutIf('verification', [component]));
      if (!ready) return;
      reply(true);
    }
    this.h.publish(rt, this.h.status(rt));
  }

  /** `abort {sid}`: drops the transfer, or the ready image, of that sid, whichever component it is for. */
  async abort(rt: Runtime, sid: number): Promise<void> {
    const t = rt.transfer;
    let target: { component: string; slot: SlotName; restore: SlotRecord } | null = null;
    if (t && t.sid === sid) {
      target = { component: t.component, slot: t.slot, restore: t.erased ? { state: 'empty' } : t.prev };
      rt.transfer = null;
      this.h.files.flash(t.slot, t.component).discard();
    } else {
      const ready = readyComponent(rt.rec, sid);
      if (ready) target = { ...ready, restore: { state: 'empty' } };
    }
    if (target !== null) {
      const { component, slot, restore: to } = target;
      const flash = this.h.files.flash(slot, component);
      await removeProgress(this.h.files.progressFile, this.h.files.sync, this.h.files.progress);
      if (!rt.alive) return;
      if (!(await this.h.updateState(rt, (rec) => { componentOf(rec, component).slots[slot] = to; }))) return;
      if (to.state === 'empty') await flash.erase();
      flash.close(); // the transfer is over: its slot descriptor is not kept
      if (!rt.alive) return;
    }
    this.h.publish(rt, { t: 'aborted', sid });
    this.h.emit({ type: 'aborted', sid });
    if (target !== null) this.h.publish(rt, this.h.status(rt));
  }
}

function sameImage(a: ImageMeta, b: ImageMeta): boolean {
  return a.sha256 === b.sha256 && a.size === b.size && a.crc32 === b.crc32;
}
