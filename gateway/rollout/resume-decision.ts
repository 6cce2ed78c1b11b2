import type { Manifest } from '../../protocol/manifest.ts';
import type { ComponentStatus } from '../../protocol/ota.ts';
import type { DeviceRecord } from '../fleet.ts';

/**
 * Where a device stands when a restarted gateway resumes its update past `activate` (the journal
 * says `activate` may have been sent, docs/reliability.md), from its last `status` as the fleet
 * holds it. Pure: the device session acts on the answer.
 *
 * - `done`: it runs the new image(s) confirmed;
 * - `confirm`: it runs them in trial: confirm, never activate again;
 * - `reboot-then-confirm`: they are `pending` in the other slot: the reboot is under way;
 * - `normal`: no activation is in effect (still `ready`, or reverted): the normal attempt follows;
 *   `reverted` when the slot of the earlier activation is `bad` (its trial ended unconfirmed).
 */
export type ResumeDecision<P> =
  | { kind: 'done' }
  | { kind: 'confirm' | 'reboot-then-confirm'; left: P[] }
  | { kind: 'normal'; reverted: boolean };

export type ResumeStatus = Pick<DeviceRecord, 'version' | 'slot' | 'slots' | 'trial' | 'components'>;

const other = (slot: 'a' | 'b'): 'a' | 'b' => (slot === 'a' ? 'b' : 'a');

/** One image (no components): the device's own slots. */
export function resumeSingle(s: ResumeStatus, target: Manifest): ResumeDecision<undefined> {
  const running = s.slots[s.slot];
  const next = s.slots[other(s.slot)];
  const runsTarget = s.version === target.version && (running.sha256 === undefined || running.sha256 === target.sha256);
  const pending = next.state === 'pending' && next.sha256 === target.sha256;
  if (pending) return { kind: 'reboot-then-confirm', left: [undefined] };
  if (!runsTarget) return { kind: 'normal', reverted: next.state === 'bad' && next.sha256 === target.sha256 };
  return s.trial ? { kind: 'confirm', left: [undefined] } : { kind: 'done' };
}

/**
 * A release (§6.15.5): parts whose component runs its image confirmed are done; if every other part
 * runs its image in trial or has it `pending`, the activation is in effect.
 */
export function resumeRelease<P extends { component: string; image: { manifest: Manifest } }>(s: ResumeStatus, parts: readonly P[]): ResumeDecision<P> {
  const comp = (p: P): ComponentStatus | undefined => s.components?.find((c) => c.name === p.component);
  const runs = (p: P): boolean => comp(p)?.sha256 === p.image.manifest.sha256;
  const left = parts.filter((p) => !(runs(p) && comp(p)?.trial === false));
  if (left.length === 0) return { kind: 'done' };
  const pending = (p: P): boolean => {
    const c = comp(p);
    const next = c?.slots && c.slot ? c.slots[other(c.slot)] : undefined;
    return next?.state === 'pending' && next.sha256 === p.image.manifest.sha256;
  };
  const inTrial = left.filter((p) => runs(p) && comp(p)?.trial === true);
  const waiting = left.filter(pending);
  if (inTrial.length + waiting.length !== left.length) return { kind: 'normal', reverted: false };
  return { kind: waiting.length > 0 ? 'reboot-then-confirm' : 'confirm', left };
}
