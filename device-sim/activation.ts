import type { SlotName } from '../protocol/ota.ts';
import { componentNames, componentOf, otherSlot, type SlotRecord, type SlotStateRecord } from './state-record.ts';

/**
 * The combined activation and confirmation of a device's components (docs/protocol.md §6.15.2,
 * §6.15.3): which components an `activate {sid, with}` or a `confirm {sha256, with}` names, and
 * the one state change that applies it to all of them. Pure, over the slot-state record.
 */

/** The slot holds an image verified under offer session `sid` (the sid survives reboots). */
export function isReadyFor(r: SlotRecord, sid: number): boolean {
  return r.state === 'ready' && r.sid === sid;
}

/** The component whose inactive slot is `ready` under `sid`, if any. */
export function readyComponent(rec: SlotStateRecord, sid: number): { component: string; slot: SlotName } | undefined {
  for (const component of componentNames(rec)) {
    const slot = otherSlot(componentOf(rec, component).active);
    if (isReadyFor(componentOf(rec, component).slots[slot], sid)) return { component, slot };
  }
  return undefined;
}

export interface ActivationPart {
  component: string;
  slot: SlotName;
  sid: number;
}

/**
 * `activate {sid, with}`: every listed sid `ready` in the inactive slot of a distinct component,
 * else `why` (the device ignores the activate and changes nothing).
 */
export function planActivation(rec: SlotStateRecord, sid: number, withSids: readonly number[] = []): { parts: ActivationPart[] } | { why: string } {
  const parts: ActivationPart[] = [];
  for (const s of [sid, ...withSids]) {
    const r = readyComponent(rec, s);
    if (r === undefined) return { why: `no component is ready under sid ${s}` };
    if (parts.some((p) => p.component === r.component)) return { why: `sid ${s} names component ${r.component} again` };
    parts.push({ ...r, sid: s });
  }
  return { parts };
}

/** Mark every part `pending` (the caller writes the record once). */
export function applyActivation(rec: SlotStateRecord, parts: readonly ActivationPart[]): void {
  for (const p of parts) {
    const r = componentOf(rec, p.component).slots[p.slot];
    r.state = 'pending';
    delete r.sid;
  }
}

export type ConfirmPlan =
  /** Confirm these components (all those in trial), then answer with `version`. */
  | { kind: 'confirm'; components: string[]; version: string }
  /** Everything listed already runs confirmed: answer again. */
  | { kind: 'repeat'; version: string }
  | { kind: 'ignore'; why: string };

/**
 * `confirm {sha256, with}` (§6.15.3): every listed digest must be a running component's; when
 * every component in trial is listed, they are all confirmed together; when every listed one is
 * already confirmed, the answer is repeated; anything else is ignored.
 */
export function planConfirm(rec: SlotStateRecord, sha256: string, withDigests: readonly string[] = []): ConfirmPlan {
  const running = componentNames(rec).map((name) => {
    const c = componentOf(rec, name);
    return { name, slot: c.slots[c.active] };
  });
  const listed = [sha256, ...withDigests];
  for (const d of listed) {
    const r = running.find((x) => x.slot.sha256 === d && (x.slot.state === 'trial' || x.slot.state === 'confirmed'));
    if (r === undefined) return { kind: 'ignore', why: `${d} is not a running image` };
  }
  const version = running.find((x) => x.slot.sha256 === sha256)!.slot.version!;
  const inTrial = running.filter((x) => x.slot.state === 'trial');
  if (inTrial.length === 0) return { kind: 'repeat', version };
  const unlisted = inTrial.filter((x) => !listed.includes(x.slot.sha256!));
  if (unlisted.length > 0) return { kind: 'ignore', why: `component(s) ${unlisted.map((x) => x.name).join(', ')} in trial not listed` };
  return { kind: 'confirm', components: inTrial.map((x) => x.name), version };
}

/**
 * Confirm the components (one write by the caller); each component's anti-rollback seq follows the
 * highest it has confirmed (§6.5.7, per component: §6.15.1).
 */
export function applyConfirm(rec: SlotStateRecord, components: readonly string[]): void {
  for (const name of components) {
    const c = componentOf(rec, name);
    c.slots[c.active].state = 'confirmed';
    c.trial = false;
    const seq = Math.max(c.seq ?? 0, c.slots[c.active].seq ?? 0);
    if (seq > 0) c.seq = seq;
  }
}
