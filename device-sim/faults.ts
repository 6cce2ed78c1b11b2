import { z } from 'zod';
import { FwError } from '../protocol/errors.ts';
import { componentName } from '../protocol/release.ts';
import { isValidDeviceId } from '../protocol/topics.ts';

/**
 * Fault switches of one simulated device (design.md "fault switches", like herdsman's
 * OtaDeviceBehavior). One-shot faults fire once after they are armed; `busy` and
 * `failSelfTest` are levels that hold until changed.
 */
export const PowerCutPhases = ['chunk-write', 'after-transfer', 'activation', 'first-boot', 'before-confirm'] as const;
/**
 * Every phase a power cut can be armed at: the above (which the fault soak draws from, so a seed
 * replays as before) and `verification` (during the slot-state write that makes a verified image
 * `ready`: the old state stays, the image is received again).
 */
export const AllPowerCutPhases = [...PowerCutPhases, 'verification'] as const;
export type PowerCutPhase = (typeof AllPowerCutPhases)[number];

export const faultsSchema = z.strictObject({
  /** Flip a byte of the k-th chunk received after arming (1-based), once. */
  corruptChunk: z.number().int().min(1).optional(),
  /** After n chunks received (after arming), destroy the MQTT stream once; MQTT.js reconnects. */
  dropAfterChunks: z.number().int().min(1).optional(),
  /** Refuse offers with `busy`. */
  busy: z.boolean().optional(),
  /** The next trial boot fails its self-test whatever the image header says. */
  failSelfTest: z.boolean().optional(),
  /** Lose power once at this phase: no cleanup, unflushed flash writes lost, boot again from files. */
  powerCutAt: z.enum(AllPowerCutPhases).optional(),
  /**
   * Multi-component devices: `powerCutAt` fires only in a step of this component (its transfer or
   * verification, an activation, first boot or confirm that includes it); other steps pass.
   */
  powerCutComponent: componentName.optional(),
  /** The trial boot fails its self-test whenever this component is among those in trial (a level). */
  failSelfTestComponent: componentName.optional(),
});
export type Faults = z.infer<typeof faultsSchema>;

/** Live fault state: settings plus the counters that make one-shot faults fire once. */
export class FaultSwitches {
  #faults: Faults = {};
  #chunksSinceCorruptArmed = 0;
  #chunksSinceDropArmed = 0;

  constructor(initial: Faults = {}) {
    this.set(initial);
  }

  /** Merge settings; a key given as `undefined` clears that fault. Re-setting a one-shot re-arms it. */
  set(update: Partial<Faults>): void {
    const next = faultsSchema.parse({ ...this.#faults, ...update });
    for (const key of Object.keys(update) as (keyof Faults)[]) {
      if (update[key] === undefined) delete next[key];
    }
    if ('corruptChunk' in update) this.#chunksSinceCorruptArmed = 0;
    if ('dropAfterChunks' in update) this.#chunksSinceDropArmed = 0;
    this.#faults = next;
  }

  get current(): Readonly<Faults> {
    return { ...this.#faults };
  }

  get busy(): boolean {
    return this.#faults.busy === true;
  }

  get failSelfTest(): boolean {
    return this.#faults.failSelfTest === true;
  }

  /** Count one received chunk; says whether to corrupt it and whether to drop the link after it. */
  onChunk(): { corrupt: boolean; drop: boolean } {
    let corrupt = false;
    let drop = false;
    if (this.#faults.corruptChunk !== undefined) {
      this.#chunksSinceCorruptArmed += 1;
      if (this.#chunksSinceCorruptArmed === this.#faults.corruptChunk) {
        corrupt = true;
        delete this.#faults.corruptChunk;
      }
    }
    if (this.#faults.dropAfterChunks !== undefined) {
      this.#chunksSinceDropArmed += 1;
      if (this.#chunksSinceDropArmed === this.#faults.dropAfterChunks) {
        drop = true;
        delete this.#faults.dropAfterChunks;
      }
    }
    return { corrupt, drop };
  }

  get failSelfTestComponent(): string | undefined {
    return this.#faults.failSelfTestComponent;
  }

  /**
   * True once when a power cut is armed for `phase` (then disarmed) and, with `powerCutComponent`,
   * the step at hand involves that component (`components`; omitted: any step matches).
   */
  takePowerCut(phase: PowerCutPhase, components?: readonly string[]): boolean {
    if (this.#faults.powerCutAt !== phase) return false;
    const only = this.#faults.powerCutComponent;
    if (only !== undefined && components !== undefined && !components.includes(only)) return false;
    delete this.#faults.powerCutAt;
    return true;
  }
}

/** Flip one byte in a copy of `data` (the middle one), so its CRC-32 no longer matches. */
export function corruptCopy(data: Uint8Array): Uint8Array {
  const copy = Uint8Array.from(data);
  const i = copy.length >> 1;
  copy[i] = copy[i]! ^ 0xff;
  return copy;
}

// ---- CLI target specs: "<who>" or "<who>:<value>", who = a count (first k devices) or ids ----

export type DeviceSelector = { first: number } | { ids: string[] };

/** Parse "3" (first 3 devices) or "dev-001,dev-004" (those ids). */
export function parseSelector(text: string, flag: string): DeviceSelector {
  if (/^\d+$/.test(text)) {
    const n = Number(text);
    if (!Number.isSafeInteger(n) || n < 1) throw new FwError('E_USAGE', `${flag}: device count must be >= 1, got "${text}"`);
    return { first: n };
  }
  const ids = text.split(',').map((s) => s.trim());
  for (const id of ids) {
    if (!isValidDeviceId(id)) throw new FwError('E_USAGE', `${flag}: "${id}" is neither a device count nor a valid device id`);
  }
  return { ids };
}

/** Parse "<who>:<value>" where who is as in parseSelector; value is returned as text. */
export function parseTargetSpec(text: string, flag: string): { who: DeviceSelector; value: string } {
  const i = text.lastIndexOf(':');
  if (i <= 0 || i === text.length - 1) throw new FwError('E_USAGE', `${flag}: expected <count|ids>:<value>, got "${text}"`);
  return { who: parseSelector(text.slice(0, i), flag), value: text.slice(i + 1) };
}

export function selects(who: DeviceSelector, index: number, id: string): boolean {
  return 'first' in who ? index < who.first : who.ids.includes(id);
}
