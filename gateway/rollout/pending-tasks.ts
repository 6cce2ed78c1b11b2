/**
 * §6.14.1: what a device that reports `status` is told it still has to do: the live campaigns
 * with an update for it (it is in one's order without a result, or one not started yet would
 * select it), at most 8, with the next window's opening as `notBefore` while the gate is closed.
 */
import type { DeviceRecord } from '../fleet.ts';
import type { Campaign } from './campaign.ts';
import { selectDevices } from './planner.ts';

export type PendingTask = {
  campaign: string; name: string; version: string; sha256: string; size: number;
  steps: ('download' | 'verify' | 'activate')[]; notBefore?: number;
};

export function pendingTasks(live: Iterable<Campaign>, device: DeviceRecord, notBefore: number | undefined): PendingTask[] {
  return [...live]
    .filter((c) => (c.targets(device.id) ? !c.resultOf(device.id) : !c.started && selectDevices(c.image.manifest, [device]).eligible.length === 1))
    .slice(0, 8)
    .map((c) => ({
      campaign: c.id, name: c.image.manifest.name, version: c.image.manifest.version, sha256: c.image.manifest.sha256, size: c.image.size,
      steps: ['download', 'verify', 'activate'],
      ...(notBefore !== undefined ? { notBefore: Math.round(notBefore) } : {}),
    }));
}
