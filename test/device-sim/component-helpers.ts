import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { manifestForImage, type Manifest } from '../../protocol/manifest.ts';
import type { DeviceMessage } from '../../protocol/ota.ts';
import { makeSampleImage, type SelfTest } from '../../firmware-samples/image-format.ts';
import type { Rig } from './helpers.ts';

/**
 * Helpers of the multi-component tests: component images, a scripted multi-part update, and the
 * running set judged from a device's own files (state.json and the slot files' SHA-256), read
 * here with JSON.parse and node:crypto — not with the simulator's bootloader code.
 */

export interface ComponentImage {
  component: string;
  image: Uint8Array;
  manifest: Manifest;
}

/** A sample image of `component` (image name `sensor-fw-<component>`, `sensor-fw` for app). */
export function componentImage(component: string, version: string, opts: { selftest?: SelfTest; size?: number } = {}): ComponentImage {
  const name = component === 'app' ? 'sensor-fw' : `sensor-fw-${component}`;
  const image = makeSampleImage({ name, version, hw: 'sensor-v1', size: opts.size ?? 24 * 1024 + 77, selftest: opts.selftest ?? 'pass' });
  return { component, image, manifest: manifestForImage(image, { name, version, hw: ['sensor-v1'], chunk: 4096 }) };
}

/** One component as the device's files say it runs. */
export interface RunningComponent {
  version: string;
  /** SHA-256 of the active slot file, computed here. */
  sha256: string;
  state: string;
}

/**
 * The running set from the files alone: for each component the active slot of state.json
 * (`app`: the top level; others: `components.<name>`), whose state must be `confirmed` or `trial`
 * and whose slot file's SHA-256 and size must equal the record's. Throws when they do not.
 */
export async function runningSetFromFiles(dir: string, id: string): Promise<Map<string, RunningComponent>> {
  const folder = join(dir, id);
  const rec = JSON.parse(await readFile(join(folder, 'state.json'), 'utf8')) as {
    active: 'a' | 'b'; slots: Record<'a' | 'b', { state: string; version?: string; sha256?: string; size?: number }>;
    components?: Record<string, { active: 'a' | 'b'; slots: Record<'a' | 'b', { state: string; version?: string; sha256?: string; size?: number }> }>;
  };
  const units: [string, string, typeof rec][] = [['app', '', rec]];
  for (const [name, c] of Object.entries(rec.components ?? {})) units.push([name, `${name}-`, c as typeof rec]);
  const out = new Map<string, RunningComponent>();
  for (const [name, prefix, u] of units) {
    const slot = u.slots[u.active];
    if (slot.state !== 'confirmed' && slot.state !== 'trial') throw new Error(`${id}: ${name}'s active slot ${u.active} is ${slot.state}`);
    const bytes = await readFile(join(folder, `${prefix}slot-${u.active}.bin`));
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    if (sha256 !== slot.sha256 || bytes.length !== slot.size) throw new Error(`${id}: ${name}'s slot ${u.active} file does not match its record`);
    out.set(name, { version: slot.version!, sha256, state: slot.state });
  }
  return out;
}

/** Which of the two sets runs: 'old', 'new', or 'mixed' (a component of each, or neither). */
export function judgeSet(running: ReadonlyMap<string, RunningComponent>, old: ReadonlyMap<string, string>, next: readonly ComponentImage[]): 'old' | 'new' | 'mixed' {
  const isOld = next.every((c) => running.get(c.component)?.sha256 === old.get(c.component));
  const isNew = next.every((c) => running.get(c.component)?.sha256 === c.manifest.sha256);
  return isOld ? 'old' : isNew ? 'new' : 'mixed';
}

/** The running digests by component, from the files. */
export async function digestsFromFiles(dir: string, id: string): Promise<Map<string, string>> {
  return new Map([...(await runningSetFromFiles(dir, id))].map(([k, v]) => [k, v.sha256]));
}

/** offer (with `component`) -> accept -> transfer -> verify ok, under `sid`. */
export async function deliverComponent(rig: Rig, id: string, sid: number, c: ComponentImage): Promise<void> {
  await rig.gw.send(id, rig.gw.offerFor(sid, c.manifest, { component: c.component }));
  const accept = await rig.gw.expect(id, 'accept', (a) => a.sid === sid);
  await rig.gw.transfer(id, sid, c.image, accept);
  await rig.gw.send(id, { t: 'verify', sid });
  const v = await rig.gw.expect(id, 'verified', (m) => m.sid === sid);
  if (!v.ok) throw new Error(`verify of ${c.component} failed: ${v.code ?? '?'} ${v.reason ?? ''}`);
}

/**
 * The whole update of a set, as the gateway does it (§6.15): each component offered, transferred
 * and verified in turn (sids from `firstSid`), one `activate {sid, with}`, the trial boot, one
 * `confirm {sha256, with}`. Resolves with the boot message of the trial boot.
 */
export async function updateSet(rig: Rig, id: string, set: readonly ComponentImage[], firstSid: number): Promise<Extract<DeviceMessage, { t: 'boot' }>> {
  const sids = set.map((_, i) => firstSid + i);
  for (const [i, c] of set.entries()) await deliverComponent(rig, id, sids[i]!, c);
  await rig.gw.send(id, { t: 'activate', sid: sids[0]!, ...(sids.length > 1 ? { with: sids.slice(1) } : {}) });
  await rig.gw.expect(id, 'activated', (a) => a.sid === sids[0]);
  const boot = await rig.gw.expect(id, 'boot', (b) => b.components?.some((c) => c.trial) ?? b.trial);
  const [first, ...rest] = set.map((c) => c.manifest.sha256);
  await rig.gw.send(id, { t: 'confirm', sha256: first!, ...(rest.length > 0 ? { with: rest } : {}) });
  await rig.gw.expect(id, 'confirmed', (c) => c.sha256 === first);
  return boot;
}
