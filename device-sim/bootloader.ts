import { createHash } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FwError } from '../protocol/errors.ts';
import { SlotNames, type SlotName } from '../protocol/ota.ts';
import { isValidVersion } from '../protocol/version.ts';
import { makeSampleImage, readSampleHeader } from '../firmware-samples/image-format.ts';
import { Flash, InPlaceFile, readJson, recoverAtomic, writeJsonAtomic, type FileSync } from './flash.ts';
import {
  APP, componentNames, componentOf, otherSlot, slotFileName, stateRecordSchema,
  type SlotRecord, type SlotStateRecord,
} from './state-record.ts';

export { otherSlot, type ComponentRecord, type SlotRecord, type SlotStateRecord } from './state-record.ts';

/**
 * MCUboot-like A/B bootloader over the files in `<data>/<id>/`:
 *   slot-a.bin, slot-b.bin   slot contents of `app` (Flash)
 *   <c>-slot-a.bin, ...      slot contents of every other component `c` (multi-component devices)
 *   state.json               slot-state record of every component, replaced atomically (state-record.ts)
 *   transfer.json            receive progress of the one image being received (see transfer.ts)
 *
 * Boot rules, for one component or N together (docs/device-sim.md "Boot rules"): every `trial`
 * slot found at boot was never confirmed and is reverted (marked `bad`); every `pending` slot boots
 * once in `trial`, all of them marked in one write, and if any of them fails its image check or
 * self-test all of them revert in one write; otherwise each component's active `confirmed` slot
 * boots, falling back to its other confirmed slot when its image does not check out. So the set
 * that runs after a reset at any step is all-old or all-new, never mixed.
 */

/** The files of one device. Holds one Flash per component slot so a power cut can drop their buffers. */
export class DeviceFiles {
  readonly dir: string;
  readonly stateFile: string;
  readonly progressFile: string;
  /** Whether flushes and atomic replaces also fsync (device option `fsync`; flash.ts FileSync). */
  readonly sync: FileSync;
  /** The progress file's in-place writer (keeps its descriptor for a transfer, without `fsync`). */
  readonly progress: InPlaceFile;
  readonly #capacity: number;
  /** By `<component>/<slot>`; made on first use (a device's components come from its record or options). */
  readonly #flash = new Map<string, Flash>();

  constructor(dir: string, slotCapacity: number, sync: FileSync = { fsync: true }) {
    this.dir = dir;
    this.stateFile = join(dir, 'state.json');
    this.progressFile = join(dir, 'transfer.json');
    this.sync = sync;
    this.#capacity = slotCapacity;
    this.progress = new InPlaceFile(this.progressFile, sync);
    this.flash('a');
    this.flash('b');
  }

  /** The flash of one slot of `component` (default `app`: slot-a.bin / slot-b.bin). */
  flash(slot: SlotName, component: string = APP): Flash {
    const key = `${component}/${slot}`;
    let f = this.#flash.get(key);
    if (f === undefined) {
      f = new Flash(join(this.dir, slotFileName(component, slot)), this.#capacity, this.sync);
      this.#flash.set(key, f);
    }
    return f;
  }

  /** Power loss: every unflushed flash write is gone, no file stays open. Returns the number of writes lost. */
  powerCut(): number {
    this.progress.close();
    let lost = 0;
    for (const f of this.#flash.values()) lost += f.powerCut();
    return lost;
  }

  /** Make every buffered flash write durable (a reboot, a clean shutdown). */
  async flushAll(): Promise<void> {
    for (const f of this.#flash.values()) await f.flush();
  }

  /**
   * Close the descriptors kept for a transfer (slot files, progress file); pending flash writes
   * stay pending. At the end of a transfer, an abort, a reboot and a shutdown.
   */
  close(): void {
    this.progress.close();
    for (const f of this.#flash.values()) f.close();
  }

  /** Descriptors kept open (for tests: none after a shutdown). */
  get openFiles(): number {
    return [this.progress.isOpen, ...[...this.#flash.values()].map((f) => f.isOpen)].filter(Boolean).length;
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
  /**
   * Fault hook at the first boot of new images, after they were marked `trial` (the components in
   * trial are passed); true = power lost.
   */
  onFirstBoot?: (components: readonly string[]) => boolean;
  /**
   * The device's components (`app` first). A blank device gets a factory image for each; a
   * component missing from an existing record is added with its factory image; one in the record
   * but not here is an error. Absent: the components of the record (a blank device: `app` only).
   */
  components?: readonly string[];
  /** Factory image per component: a file whose bytes are installed instead of a generated image. */
  componentImages?: Readonly<Record<string, string>>;
  /** Factory version per component (default factoryVersion; a factory file's sample header wins). */
  componentVersions?: Readonly<Record<string, string>>;
  /** Fault: a trial boot fails its self-test when this component is among those in trial. */
  failSelfTestComponent?: string;
}

/** One component as booted. */
export interface BootedComponent {
  name: string;
  slot: SlotName;
  version: string;
  sha256: string;
  /** It runs a new image in trial. */
  trial: boolean;
}

export interface BootOutcome {
  /** `app` as booted (slot, version, sha256, trial): what a single-image device reports. */
  slot: SlotName;
  version: string;
  sha256: string;
  trial: boolean;
  /** Some image was reverted at this boot (for a multi-component device: the set). */
  reverted: boolean;
  reason?: string;
  /** The device was blank and got its factory image(s). */
  factory: boolean;
  /** Every component as booted, `app` first. */
  components: BootedComponent[];
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
  } else if (input.components !== undefined) {
    rec = await addComponents(files, rec, input, input.components);
  }
  const names = componentNames(rec);
  const r = rec;
  r.bootCount += 1;
  let reverted = false;
  let reason: string | undefined;
  const revert = (name: string, slot: SlotName, why: string): void => {
    const c = componentOf(r, name);
    c.slots[slot].state = 'bad';
    c.active = otherSlot(slot);
    c.trial = false;
    reverted = true;
    reason ??= why;
  };

  // 1. An image still in trial was not confirmed before this reset: it does not get a second
  //    boot, and neither does any other component of its set (all trial components revert).
  for (const n of names) {
    for (const s of SlotNames) {
      if (componentOf(r, n).slots[s].state === 'trial') revert(n, s, input.hint ?? 'trial image not confirmed before reset');
    }
  }

  // 2. Pending images boot once, in trial, all together, and must all pass their checks and self-tests.
  const inTrial = new Set<string>();
  const pending = names.flatMap((n) => {
    const s = SlotNames.find((x) => componentOf(r, n).slots[x].state === 'pending');
    return s === undefined ? [] : [{ name: n, slot: s }];
  });
  if (pending.length > 0 && !reverted) {
    for (const p of pending) {
      const c = componentOf(r, p.name);
      c.slots[p.slot].state = 'trial';
      c.active = p.slot;
      c.trial = true;
    }
    await files.saveState(r); // one write marks the whole set trial
    if (input.onFirstBoot?.(pending.map((p) => p.name)) === true) throw new PowerLost('power lost during first boot of the new image');
    let failure: string | undefined;
    for (const p of pending) {
      const check = await checkImage(files, p.name, p.slot, componentOf(r, p.name).slots[p.slot]);
      const of = p.name === APP ? '' : ` of ${p.name}`;
      if (!check.ok) failure = `image check${of} failed: ${check.why}`;
      else if (input.failSelfTest || input.failSelfTestComponent === p.name || readSampleHeader(check.bytes)?.selftest === 'fail') failure = `self-test${of} failed`;
      if (failure !== undefined) break;
    }
    if (failure === undefined) {
      for (const p of pending) inTrial.add(p.name);
    } else {
      for (const p of pending) revert(p.name, p.slot, failure); // all of the set, in the write below
    }
  }

  // 3. Every other component boots its active confirmed slot, or falls back to its other one.
  let changed = inTrial.size === 0;
  for (const n of names) {
    if (inTrial.has(n)) continue;
    const c = componentOf(r, n);
    let booted = false;
    for (const s of [c.active, otherSlot(c.active)]) {
      if (c.slots[s].state !== 'confirmed') continue;
      const check = await checkImage(files, n, s, c.slots[s]);
      if (!check.ok) {
        revert(n, s, `image check${n === APP ? '' : ` of ${n}`} failed: ${check.why}`);
        changed = true;
        continue;
      }
      c.active = s;
      c.trial = false;
      booted = true;
      break;
    }
    if (!booted) throw new FwError('E_IMAGE_NOT_FOUND', `${files.dir}: no bootable image in slot a or b${n === APP ? '' : ` of ${n}`}`);
  }
  if (changed) await files.saveState(r);
  return outcome(r, names, { reverted, reason, factory });
}

function outcome(rec: SlotStateRecord, names: readonly string[], o: { reverted: boolean; reason?: string | undefined; factory: boolean }): BootOutcome {
  const components = names.map((name): BootedComponent => {
    const c = componentOf(rec, name);
    const s = c.slots[c.active];
    return { name, slot: c.active, version: s.version!, sha256: s.sha256!, trial: c.trial };
  });
  const app = components[0]!;
  return {
    slot: app.slot, version: app.version, sha256: app.sha256, trial: app.trial, reverted: o.reverted, factory: o.factory, components, record: rec,
    ...(o.reason !== undefined ? { reason: o.reason } : {}),
  };
}

type ImageCheck = { ok: true; bytes: Uint8Array } | { ok: false; why: string };

/** What MCUboot does before jumping to an image: size and SHA-256 against the slot record. */
async function checkImage(files: DeviceFiles, component: string, slot: SlotName, r: SlotRecord): Promise<ImageCheck> {
  if (r.version === undefined || r.sha256 === undefined || r.size === undefined) return { ok: false, why: 'slot record incomplete' };
  const bytes = await files.flash(slot, component).read();
  if (bytes.length !== r.size) return { ok: false, why: `slot holds ${bytes.length} bytes, record says ${r.size}` };
  const sha = createHash('sha256').update(bytes).digest('hex');
  if (sha !== r.sha256) return { ok: false, why: 'SHA-256 mismatch' };
  return { ok: true, bytes };
}

/** Blank device: every component's slot A gets its factory image and is confirmed; slot B is empty. */
async function factoryInit(files: DeviceFiles, input: BootInput): Promise<SlotStateRecord> {
  const names = input.components ?? [APP];
  const rec: SlotStateRecord = {
    format: 1,
    hw: input.hw,
    active: 'a',
    trial: false,
    bootCount: 0,
    slots: { a: await factoryComponent(files, input, APP), b: { state: 'empty' } },
    security: { imageCheck: 'sha256', signatureCheck: 'none' },
  };
  for (const n of names) {
    if (n === APP) continue;
    rec.components ??= {};
    rec.components[n] = { active: 'a', trial: false, slots: { a: await factoryComponent(files, input, n), b: { state: 'empty' } } };
  }
  await files.saveState(rec);
  return rec;
}

/** An existing device started with more components than its record holds: add them (factory images), one write. */
async function addComponents(files: DeviceFiles, rec: SlotStateRecord, input: BootInput, names: readonly string[]): Promise<SlotStateRecord> {
  const extra = componentNames(rec).filter((n) => !names.includes(n));
  if (extra.length > 0) {
    throw new FwError('E_CONFIG', `${files.stateFile}: the device has component(s) ${extra.join(', ')} that its options do not list (${names.join(', ')}); start it with all of ${componentNames(rec).join(', ')}, or remove its folder for a new device`);
  }
  const missing = names.filter((n) => n !== APP && rec.components?.[n] === undefined);
  if (missing.length === 0) return rec;
  const next = structuredClone(rec);
  for (const n of missing) {
    next.components ??= {};
    next.components[n] = { active: 'a', trial: false, slots: { a: await factoryComponent(files, input, n), b: { state: 'empty' } } };
  }
  await files.saveState(next);
  return next;
}

/** Write a component's factory image to its slot A (erasing slot B); the slot record of slot A. */
async function factoryComponent(files: DeviceFiles, input: BootInput, component: string): Promise<SlotRecord> {
  const path = input.componentImages?.[component];
  const name = component === APP ? input.imageName : `${input.imageName}-${component}`;
  let version = input.componentVersions?.[component] ?? input.factoryVersion;
  let image: Uint8Array;
  let imageName = name;
  if (path !== undefined) {
    try {
      image = new Uint8Array(await readFile(path));
    } catch (err) {
      throw new FwError('E_CONFIG', `factory image of component ${component}: cannot read ${path}: ${(err as Error).message}`, { cause: err });
    }
    const header = readSampleHeader(image);
    if (header !== null && isValidVersion(header.version)) {
      version = header.version;
      imageName = header.name;
    }
  } else {
    image = makeSampleImage({ name, version, hw: input.hw, size: input.factoryImageSize });
  }
  const a = files.flash('a', component);
  await a.erase();
  a.write(0, image);
  await a.flush();
  await files.flash('b', component).erase();
  files.close();
  return { state: 'confirmed', name: imageName, version, sha256: createHash('sha256').update(image).digest('hex'), size: image.length };
}
