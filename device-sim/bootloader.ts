import { createHash } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { FwError } from '../protocol/errors.ts';
import { SlotNames, SlotStates, type SlotName, type SlotState } from '../protocol/ota.ts';
import { sha256Hex } from '../protocol/schema.ts';
import { isValidVersion } from '../protocol/version.ts';
import { makeSampleImage, readSampleHeader } from '../firmware-samples/image-format.ts';
import { Flash, InPlaceFile, readJson, recoverAtomic, writeJsonAtomic, type FileSync } from './flash.ts';

/**
 * MCUboot-like A/B bootloader over the files in `<data>/<id>/`:
 *   slot-a.bin, slot-b.bin   slot contents (Flash)
 *   state.json               slot-state record, replaced atomically
 *   transfer.json            receive progress of the inactive slot (see transfer.ts)
 *
 * Boot rules: a `pending` slot boots once in `trial` and runs its self-test; a `trial` slot found
 * at boot was never confirmed and is reverted (marked `bad`); otherwise the active `confirmed`
 * slot boots, falling back to the other confirmed slot when its image does not check out.
 */
export interface SlotRecord {
  state: SlotState;
  name?: string;
  version?: string;
  sha256?: string;
  size?: number;
  /** For a `ready` slot: the offer session that verified it (activate must name it). */
  sid?: number;
  /** The image's anti-rollback sequence number (`offer.seq`, §6.5.7); absent = 0. */
  seq?: number;
}

export interface SlotStateRecord {
  format: 1;
  hw: string;
  /** Slot that boots next (and is running, once booted). */
  active: SlotName;
  /** The active slot runs an image that is not yet confirmed. */
  trial: boolean;
  bootCount: number;
  slots: Record<SlotName, SlotRecord>;
  /** Highest `seq` of an image confirmed on this device (§6.5.7): an offer with a lower one is refused. Absent = 0. */
  seq?: number;
  /** What the simulated boot chain checks: SHA-256 of the slot at every boot; no signatures. */
  security: { imageCheck: 'sha256'; signatureCheck: 'none' };
}

const slotRecordSchema = z.strictObject({
  state: z.enum(SlotStates),
  name: z.string().optional(),
  version: z.string().refine(isValidVersion).optional(),
  sha256: sha256Hex.optional(),
  size: z.number().int().min(0).optional(),
  sid: z.number().int().min(0).max(0xffff_ffff).optional(),
  seq: z.number().int().min(0).max(0xffff_ffff).optional(),
});

const stateRecordSchema = z.strictObject({
  format: z.literal(1),
  hw: z.string().min(1),
  active: z.enum(SlotNames),
  trial: z.boolean(),
  bootCount: z.number().int().min(0),
  slots: z.strictObject({ a: slotRecordSchema, b: slotRecordSchema }),
  seq: z.number().int().min(0).max(0xffff_ffff).optional(),
  security: z.strictObject({ imageCheck: z.literal('sha256'), signatureCheck: z.literal('none') }),
});

export function otherSlot(s: SlotName): SlotName {
  return s === 'a' ? 'b' : 'a';
}

/** The files of one device. Holds one Flash per slot so a power cut can drop their buffers. */
export class DeviceFiles {
  readonly dir: string;
  readonly stateFile: string;
  readonly progressFile: string;
  /** Whether flushes and atomic replaces also fsync (device option `fsync`; flash.ts FileSync). */
  readonly sync: FileSync;
  /** The progress file's in-place writer (keeps its descriptor for a transfer, without `fsync`). */
  readonly progress: InPlaceFile;
  readonly #flash: Record<SlotName, Flash>;

  constructor(dir: string, slotCapacity: number, sync: FileSync = { fsync: true }) {
    this.dir = dir;
    this.stateFile = join(dir, 'state.json');
    this.progressFile = join(dir, 'transfer.json');
    this.sync = sync;
    this.progress = new InPlaceFile(this.progressFile, sync);
    this.#flash = { a: new Flash(join(dir, 'slot-a.bin'), slotCapacity, sync), b: new Flash(join(dir, 'slot-b.bin'), slotCapacity, sync) };
  }

  flash(slot: SlotName): Flash {
    return this.#flash[slot];
  }

  /** Power loss: every unflushed flash write is gone, no file stays open. Returns the number of writes lost. */
  powerCut(): number {
    this.progress.close();
    return this.#flash.a.powerCut() + this.#flash.b.powerCut();
  }

  /**
   * Close the descriptors kept for a transfer (slot files, progress file); pending flash writes
   * stay pending. At the end of a transfer, an abort, a reboot and a shutdown.
   */
  close(): void {
    this.progress.close();
    this.#flash.a.close();
    this.#flash.b.close();
  }

  /** Descriptors kept open (for tests: none after a shutdown). */
  get openFiles(): number {
    return [this.progress.isOpen, this.#flash.a.isOpen, this.#flash.b.isOpen].filter(Boolean).length;
  }

  /** The slot-state record, or null on a blank device. A corrupt record is an error, never wiped. */
  async loadState(): Promise<SlotStateRecord | null> {
    const raw = await readJson(this.stateFile);
    if (raw === null) return null;
    const r = stateRecordSchema.safeParse(raw);
    if (!r.success) throw new FwError('E_CONFIG', `${this.stateFile}: slot-state record is invalid`);
    return r.data as SlotStateRecord;
  }

  /** Atomic replace; `beforeRename` returning true simulates a power cut mid-update. */
  async saveState(rec: SlotStateRecord, beforeRename?: () => boolean): Promise<'written' | 'cut'> {
    return writeJsonAtomic(this.stateFile, rec, beforeRename, this.sync);
  }
}

export interface BootInput {
  hw: string;
  factoryVersion: string;
  imageName: string;
  factoryImageSize: number;
  /** Fault: the trial image fails its self-test regardless of its header. */
  failSelfTest: boolean;
  /** Why the previous run reset itself (a soft reboot), used as the revert reason. */
  hint?: string;
  /** Fault hook at the first boot of a new image, after it was marked `trial`; true = power lost. */
  onFirstBoot?: () => boolean;
}

export interface BootOutcome {
  slot: SlotName;
  version: string;
  sha256: string;
  trial: boolean;
  reverted: boolean;
  reason?: string;
  /** The device was blank and got its factory image. */
  factory: boolean;
  record: SlotStateRecord;
}

/** Thrown out of `runBootloader` when a power-cut fault fires during boot. */
export class PowerLost extends Error {
  override readonly name = 'PowerLost';
}

export async function runBootloader(files: DeviceFiles, input: BootInput): Promise<BootOutcome> {
  await mkdir(files.dir, { recursive: true });
  // a leftover of an update interrupted before its rename is removed; one killed between the
  // unlink of the old record and the rename of the new one is completed (flash.ts writeTextAtomic)
  await recoverAtomic(files.stateFile, (raw) => stateRecordSchema.safeParse(raw).success, files.sync);
  let rec = await files.loadState();
  let factory = false;
  if (rec === null) {
    rec = await factoryInit(files, input);
    factory = true;
  }
  rec.bootCount += 1;
  let reverted = false;
  let reason: string | undefined;
  const revert = (slot: SlotName, why: string): void => {
    rec.slots[slot].state = 'bad';
    rec.active = otherSlot(slot);
    rec.trial = false;
    reverted = true;
    reason ??= why;
  };

  // 1. An image still in trial was not confirmed before this reset: it does not get a second boot.
  for (const s of SlotNames) {
    if (rec.slots[s].state === 'trial') revert(s, input.hint ?? 'trial image not confirmed before reset');
  }

  // 2. A pending image boots once, in trial, and must pass its checks and self-test.
  const pending = SlotNames.find((s) => rec.slots[s].state === 'pending');
  if (pending !== undefined && !reverted) {
    rec.slots[pending].state = 'trial';
    rec.active = pending;
    rec.trial = true;
    await files.saveState(rec);
    if (input.onFirstBoot?.() === true) throw new PowerLost('power lost during first boot of the new image');
    const check = await checkImage(files, pending, rec.slots[pending]);
    if (!check.ok) {
      revert(pending, `image check failed: ${check.why}`);
    } else if (input.failSelfTest || readSampleHeader(check.bytes)?.selftest === 'fail') {
      revert(pending, 'self-test failed');
    } else {
      return outcome(rec, pending, { trial: true, reverted: false, factory });
    }
  }

  // 3. Boot the active confirmed slot, or fall back to the other one.
  for (const s of [rec.active, otherSlot(rec.active)]) {
    if (rec.slots[s].state !== 'confirmed') continue;
    const check = await checkImage(files, s, rec.slots[s]);
    if (!check.ok) {
      revert(s, `image check failed: ${check.why}`);
      continue;
    }
    rec.active = s;
    rec.trial = false;
    await files.saveState(rec);
    return outcome(rec, s, { trial: false, reverted, reason, factory });
  }
  throw new FwError('E_IMAGE_NOT_FOUND', `${files.dir}: no bootable image in slot a or b`);
}

function outcome(rec: SlotStateRecord, slot: SlotName, o: { trial: boolean; reverted: boolean; reason?: string | undefined; factory: boolean }): BootOutcome {
  const r = rec.slots[slot];
  return {
    slot, version: r.version!, sha256: r.sha256!, trial: o.trial, reverted: o.reverted, factory: o.factory, record: rec,
    ...(o.reason !== undefined ? { reason: o.reason } : {}),
  };
}

type ImageCheck = { ok: true; bytes: Uint8Array } | { ok: false; why: string };

/** What MCUboot does before jumping to an image: size and SHA-256 against the slot record. */
async function checkImage(files: DeviceFiles, slot: SlotName, r: SlotRecord): Promise<ImageCheck> {
  if (r.version === undefined || r.sha256 === undefined || r.size === undefined) return { ok: false, why: 'slot record incomplete' };
  const bytes = await files.flash(slot).read();
  if (bytes.length !== r.size) return { ok: false, why: `slot holds ${bytes.length} bytes, record says ${r.size}` };
  const sha = createHash('sha256').update(bytes).digest('hex');
  if (sha !== r.sha256) return { ok: false, why: 'SHA-256 mismatch' };
  return { ok: true, bytes };
}

/** Blank device: slot A gets a generated factory image and is confirmed; slot B is empty. */
async function factoryInit(files: DeviceFiles, input: BootInput): Promise<SlotStateRecord> {
  const image = makeSampleImage({ name: input.imageName, version: input.factoryVersion, hw: input.hw, size: input.factoryImageSize });
  const a = files.flash('a');
  await a.erase();
  a.write(0, image);
  await a.flush();
  await files.flash('b').erase();
  files.close();
  const rec: SlotStateRecord = {
    format: 1,
    hw: input.hw,
    active: 'a',
    trial: false,
    bootCount: 0,
    slots: {
      a: { state: 'confirmed', name: input.imageName, version: input.factoryVersion, sha256: createHash('sha256').update(image).digest('hex'), size: image.length },
      b: { state: 'empty' },
    },
    security: { imageCheck: 'sha256', signatureCheck: 'none' },
  };
  await files.saveState(rec);
  return rec;
}
