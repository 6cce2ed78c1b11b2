import type { Manifest } from '../../protocol/manifest.ts';
import type { PreflightInfo, Targeting } from '../../protocol/uplink.ts';
import type { DeviceRecord } from '../fleet.ts';
import { selectDevices, type Plan } from './planner.ts';

/**
 * Which known devices a new campaign targets (docs/operations.md "Targeting and waves"), pure:
 * the whole known fleet, online or not, narrowed by `only` (in that order; ids the gateway does
 * not know are left out) and `group` (the device list's groups). Sorted by id otherwise.
 */
export function campaignTargets(fleet: readonly DeviceRecord[], t: Pick<Targeting, 'only' | 'group'>, groupsOf: (id: string) => readonly string[]): DeviceRecord[] {
  const byId = new Map(fleet.map((d) => [d.id, d]));
  let scope = t.only ? [...new Set(t.only)].map((id) => byId.get(id)).filter((d) => d !== undefined) : [...fleet].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  if (t.group !== undefined) scope = scope.filter((d) => groupsOf(d.id).includes(t.group!));
  return scope;
}

/**
 * The pre-flight counts of an upload (§7.3.7), pure: over the targets, who is eligible online or
 * offline, who is not (by the planner's exclusion codes), who is busy, and how many known devices
 * the targeting leaves out.
 */
export function preflightCounts(
  manifest: Manifest, fleet: readonly DeviceRecord[], targets: readonly DeviceRecord[], downgrade: boolean,
  /** A release's selection (release-plan.ts selectForRelease) instead of the manifest's. */
  select?: (targets: readonly DeviceRecord[]) => Plan,
): PreflightInfo {
  const plan = select ? select(targets) : selectDevices(manifest, targets, { downgrade });
  const code = (c: string): number => plan.excluded.filter((x) => x.code === c).length;
  return {
    ...(select ? { unmetDependency: code('unmet-dependency') } : {}),
    eligibleOnline: plan.eligible.length,
    eligibleOffline: code('offline'),
    notNewer: code('not-newer'),
    otherHw: code('incompatible-hw'),
    belowFloor: code('below-floor'),
    busy: plan.eligible.filter((d) => d.busy).length,
    notTargeted: fleet.length - targets.length,
  };
}
