import type { Manifest } from '../../protocol/manifest.ts';
import {
  componentManifest, DEFAULT_COMPONENT, describeUnmet, unmetRequirements,
  type ReleaseComponent, type ReleaseManifest, type UnmetRequirement,
} from '../../protocol/release.ts';
import type { ExcludedEntry, OrderEntry } from '../../protocol/uplink.ts';
import { compareVersions, isValidVersion } from '../../protocol/version.ts';
import type { DeviceRecord } from '../fleet.ts';

/**
 * Which components of a release each device gets (docs/protocol.md §5.5.6, §7.5.9): only those whose
 * image differs from what the device runs (by SHA-256), never one the device has no slot for, the
 * update agent first; the `requires` of every component the device will run from the release must
 * hold afterwards, and a component another signed release held by the gateway provides is added to
 * meet one ("selecting one selects what it depends on"). Pure: no I/O.
 */

/** One component image a device is sent. */
export interface ReleasePart {
  component: string;
  /** The single-image manifest the offer carries (componentManifest). */
  manifest: Manifest;
  /** The signed release whose signature covers this image (the offer's `release`). */
  release: ReleaseManifest;
  agent: boolean;
  /** Added from another release to meet a `requires`: "release@version". */
  via?: string;
}

export interface DeviceReleasePlan {
  /** In install order: the agent first, then the release's order, then added components. */
  parts: ReleasePart[];
  /** Components of the release the device already runs byte for byte (not sent). */
  skipped: string[];
  /** Bytes those skipped components would have taken. */
  savedBytes: number;
}

export interface ReleaseSelection {
  eligible: DeviceRecord[];
  excluded: ExcludedEntry[];
  plans: Map<string, DeviceReleasePlan>;
}

/** What a device runs, per component: its status's `components`, or the single `app` of a single-image device. */
export function runningComponents(d: Pick<DeviceRecord, 'version' | 'slot' | 'slots' | 'components'>): Map<string, { version: string; sha256?: string | undefined }> {
  if (d.components) return new Map(d.components.map((c) => [c.name, { version: c.version, sha256: c.sha256 }]));
  return new Map([[DEFAULT_COMPONENT, { version: d.version, sha256: d.slots[d.slot]?.sha256 }]]);
}

/**
 * One device's plan, or why it gets nothing. `held`: other signed releases whose every image the
 * gateway holds (the newest that meets a constraint is used).
 */
export function planDevice(
  release: ReleaseManifest, d: DeviceRecord, held: readonly ReleaseManifest[], opts: { downgrade?: boolean } = {},
): DeviceReleasePlan | Omit<ExcludedEntry, 'id'> {
  const version = d.version;
  if (!release.hw.includes(d.hw)) {
    return { code: 'incompatible-hw', reason: `hardware ${d.hw} is not in the release's list (${release.hw.join(', ')})`, version };
  }
  const running = runningComponents(d);
  const app = release.components.find((c) => c.component === DEFAULT_COMPONENT);
  if (app && d.floor !== undefined && isValidVersion(d.floor) && compareVersions(app.version, d.floor) < 0) {
    return { code: 'below-floor', reason: `app ${app.version} is below the device's security floor ${d.floor} (anti-rollback)`, version };
  }
  const parts: ReleasePart[] = [];
  const skipped: string[] = [];
  const notNewer: string[] = [];
  let savedBytes = 0;
  /** Components the device will run from a release after the update (their `requires` must hold). */
  const fromRelease: ReleaseComponent[] = [];
  const after = new Map([...running].map(([k, v]) => [k, v.version]));
  for (const c of release.components) {
    const have = running.get(c.component);
    if (!have) continue; // no slot for it on this device
    if (have.sha256 === c.sha256) {
      skipped.push(c.component);
      savedBytes += c.size;
      fromRelease.push(c);
      continue;
    }
    const cmp = compareVersions(c.version, have.version);
    if (cmp < 0 && !opts.downgrade) {
      notNewer.push(`${c.component} ${c.version} (runs ${have.version})`);
      continue;
    }
    if (cmp === 0) {
      notNewer.push(`${c.component} ${c.version} (runs ${have.version}, another build)`);
      continue;
    }
    parts.push({ component: c.component, manifest: componentManifest(release, c), release, agent: c.agent === true });
    fromRelease.push(c);
    after.set(c.component, c.version);
  }
  if (parts.length === 0) {
    const why = notNewer.length > 0 ? `; not newer: ${notNewer.join(', ')}` : '';
    return { code: 'not-newer', reason: `already runs every component of ${release.release} ${release.version} it has${skipped.length ? ` (${skipped.join(', ')} by digest)` : ''}${why}`, version };
  }
  // "selecting one selects what it depends on": meet each unmet constraint from another held release
  for (let round = 0; round <= release.components.length + held.length; round++) {
    const unmet = unmetRequirements(fromRelease, after);
    if (unmet.length === 0) break;
    const added = addProvider(unmet, d, held, running, after, opts);
    if (!added) {
      return { code: 'unmet-dependency', reason: `release ${release.release} ${release.version}: ${unmet.map(describeUnmet).join('; ')}`, version };
    }
    parts.push(added.part);
    fromRelease.push(added.entry);
    after.set(added.entry.component, added.entry.version);
  }
  const unmet = unmetRequirements(fromRelease, after);
  if (unmet.length > 0) return { code: 'unmet-dependency', reason: unmet.map(describeUnmet).join('; '), version };
  parts.sort((a, b) => Number(b.agent) - Number(a.agent));
  return { parts, skipped, savedBytes };
}

/** The newest component of another held release that meets one of `unmet` on this device, or undefined. */
function addProvider(
  unmet: readonly UnmetRequirement[], d: DeviceRecord, held: readonly ReleaseManifest[],
  running: ReadonlyMap<string, { version: string }>, after: ReadonlyMap<string, string>, opts: { downgrade?: boolean },
): { part: ReleasePart; entry: ReleaseComponent } | undefined {
  for (const u of unmet) {
    if (!running.has(u.requires)) continue; // no slot for it: nothing can meet it
    const candidates = held
      .filter((r) => r.hw.includes(d.hw))
      .flatMap((r) => r.components.filter((c) => c.component === u.requires).map((c) => ({ r, c })))
      .filter(({ c }) => unmetRequirements([{ component: u.component, requires: { [u.requires]: u.range } }], new Map([...after, [u.requires, c.version]])).length === 0)
      .filter(({ c }) => opts.downgrade === true || compareVersions(c.version, running.get(u.requires)!.version) > 0)
      .sort((a, b) => compareVersions(b.c.version, a.c.version));
    const best = candidates[0];
    if (best) {
      return {
        part: { component: best.c.component, manifest: componentManifest(best.r, best.c), release: best.r, agent: best.c.agent === true, via: `${best.r.release}@${best.r.version}` },
        entry: best.c,
      };
    }
  }
  return undefined;
}

/**
 * The release counterpart of selectDevices (planner.ts): eligible devices (online) with their plans,
 * the rest excluded with the code a device would refuse with, offline ones as `offline`.
 */
export function selectForRelease(release: ReleaseManifest, devices: readonly DeviceRecord[], held: readonly ReleaseManifest[], opts: { downgrade?: boolean } = {}): ReleaseSelection {
  const eligible: DeviceRecord[] = [];
  const excluded: ExcludedEntry[] = [];
  const plans = new Map<string, DeviceReleasePlan>();
  for (const d of devices) {
    const p = planDevice(release, d, held, opts);
    if (!('parts' in p)) {
      excluded.push({ id: d.id, ...p });
      continue;
    }
    plans.set(d.id, p);
    if (!d.online) excluded.push({ id: d.id, code: 'offline', reason: 'device is offline', version: d.version });
    else eligible.push(d);
  }
  return { eligible, excluded, plans };
}

/** The order entry's `components` and `savedBytes` for a device's plan (§7.5.9). */
export function orderFields(p: DeviceReleasePlan): Pick<OrderEntry, 'components' | 'savedBytes'> {
  return {
    components: p.parts.map((x) => ({ name: x.component, version: x.manifest.version, size: x.manifest.size, ...(x.via ? { via: x.via } : {}) })),
    savedBytes: p.savedBytes,
  };
}
