import { z } from 'zod';
import { SlotNames, SlotStates, type SlotName, type SlotState } from '../protocol/ota.ts';
import { DEFAULT_COMPONENT, componentName } from '../protocol/release.ts';
import { MAX_COMPONENTS } from '../protocol/limits.ts';
import { sha256Hex } from '../protocol/schema.ts';
import { isValidVersion } from '../protocol/version.ts';

/**
 * The slot-state record of a simulated device (`state.json`, docs/device-sim.md) and how one
 * component's slots are found in it. A single-image device has one component, `app`, whose slots
 * are the record's top-level `active`, `trial` and `slots` (the record of every device before
 * components existed, unchanged); every other component (`net`, `agent`, ...) has the same three
 * fields under `components.<name>`, so one atomic replace of the file covers all of them.
 */

/** The component of a single-image device, and the first of every device (§6.3.3). */
export const APP = DEFAULT_COMPONENT;
/** The component that is the device's update agent (§6.15.4). */
export const AGENT = 'agent';

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

/** The slots of one component: which one boots, whether it runs in trial, and both slots' records. */
export interface ComponentRecord {
  /** Slot that boots next (and is running, once booted). */
  active: SlotName;
  /** The active slot runs an image that is not yet confirmed. */
  trial: boolean;
  slots: Record<SlotName, SlotRecord>;
  /**
   * Highest `seq` of an image confirmed in this component (§6.5.7, per component as MCUboot's
   * security counters are, §6.15.1): an offer for it with a lower one is refused. Absent = 0.
   * The top-level one is `app`'s (a single-image device's, as before components).
   */
  seq?: number;
}

export interface SlotStateRecord extends ComponentRecord {
  format: 1;
  hw: string;
  bootCount: number;
  /** What the simulated boot chain checks: SHA-256 of the slot at every boot; no signatures. */
  security: { imageCheck: 'sha256'; signatureCheck: 'none' };
  /** The components other than `app` (absent on a single-image device). */
  components?: Record<string, ComponentRecord>;
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

const componentRecordSchema = z.strictObject({
  active: z.enum(SlotNames),
  trial: z.boolean(),
  slots: z.strictObject({ a: slotRecordSchema, b: slotRecordSchema }),
  seq: z.number().int().min(0).max(0xffff_ffff).optional(),
});

export const stateRecordSchema = z.strictObject({
  format: z.literal(1),
  hw: z.string().min(1),
  active: z.enum(SlotNames),
  trial: z.boolean(),
  bootCount: z.number().int().min(0),
  slots: z.strictObject({ a: slotRecordSchema, b: slotRecordSchema }),
  seq: z.number().int().min(0).max(0xffff_ffff).optional(),
  security: z.strictObject({ imageCheck: z.literal('sha256'), signatureCheck: z.literal('none') }),
  components: z.record(componentName, componentRecordSchema).optional()
    .refine((c) => c === undefined || !(APP in c), `"${APP}" is the top-level slots, not an entry of components`)
    .refine((c) => c === undefined || Object.keys(c).length < MAX_COMPONENTS, `at most ${MAX_COMPONENTS - 1} components besides ${APP}`),
});

export function otherSlot(s: SlotName): SlotName {
  return s === 'a' ? 'b' : 'a';
}

/** The record's components, `app` first. */
export function componentNames(rec: SlotStateRecord): string[] {
  return [APP, ...Object.keys(rec.components ?? {})];
}

/** The device has more than one component (its status and boot messages list them, §6.3.3). */
export function isMultiComponent(rec: SlotStateRecord): boolean {
  return rec.components !== undefined && Object.keys(rec.components).length > 0;
}

/** One component's slots in `rec` (the object itself: mutating it mutates the record). */
export function componentOf(rec: SlotStateRecord, name: string): ComponentRecord {
  if (name === APP) return rec;
  const c = rec.components?.[name];
  if (c === undefined) throw new Error(`no component "${name}" in the slot-state record`);
  return c;
}

/** Some component runs an image in trial (not yet confirmed). */
export function anyInTrial(rec: SlotStateRecord): boolean {
  return componentNames(rec).some((n) => componentOf(rec, n).trial);
}

/** A component's slot file: `slot-a.bin` for `app` (as ever), `<component>-slot-a.bin` for the others. */
export function slotFileName(component: string, slot: SlotName): string {
  return component === APP ? `slot-${slot}.bin` : `${component}-slot-${slot}.bin`;
}
