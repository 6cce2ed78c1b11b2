import type { Manifest } from '../../protocol/manifest.ts';
import type { DeviceEvent } from '../device-channel.ts';

/**
 * Reading a boot report (docs/protocol.md §6.9.2, §6.15.3): which image a component runs and
 * whether in trial, from `boot.components` or, for a single-image device, the top-level fields.
 */

type Ev<T extends DeviceEvent['t']> = Extract<DeviceEvent, { t: T }>;

/** The boot report's view of one component (undefined: the device's single image, or `app`). */
function view(boot: Ev<'boot'>, component: string | undefined): { version: string; sha256?: string | undefined; trial: boolean } | undefined {
  if (component !== undefined && boot.components) return boot.components.find((c) => c.name === component);
  return component === undefined || component === 'app' ? { version: boot.version, sha256: boot.sha256, trial: boot.trial } : undefined;
}

/** The component runs this image: its version, and its digest when reported. */
export function runsImage(boot: Ev<'boot'>, component: string | undefined, m: Manifest): boolean {
  const v = view(boot, component);
  return v !== undefined && v.version === m.version && (v.sha256 === undefined || v.sha256 === m.sha256);
}

/** The component runs this image in trial. */
export function runsInTrial(boot: Ev<'boot'>, component: string | undefined, m: Manifest): boolean {
  return runsImage(boot, component, m) && view(boot, component)?.trial === true;
}

/** The boot report a `status` in trial stands for when the `boot` itself was lost (§6.9.1). */
export function trialBootOf(s: Ev<'status'>): Ev<'boot'> {
  const sha256 = s.slots[s.slot].sha256;
  const components = s.components?.map((c) => ({ name: c.name, version: c.version, ...(c.sha256 !== undefined ? { sha256: c.sha256 } : {}), ...(c.slot ? { slot: c.slot } : {}), trial: c.trial }));
  return { t: 'boot', version: s.version, slot: s.slot, ...(sha256 !== undefined ? { sha256 } : {}), trial: s.trial, reverted: false, ...(components ? { components } : {}) };
}

