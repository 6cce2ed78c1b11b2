import type { Manifest } from '../../protocol/manifest.ts';
import type { ExcludedEntry, OrderEntry } from '../../protocol/uplink.ts';
import { compareVersions } from '../../protocol/version.ts';
import type { DeviceRecord } from '../fleet.ts';

export interface Plan {
  eligible: DeviceRecord[];
  excluded: ExcludedEntry[];
}

/**
 * Who gets the image: devices of a hardware model the manifest names, running an older version
 * (semver), and online. Everyone else is excluded with the reason (docs/protocol.md §7.5).
 */
export function selectDevices(manifest: Manifest, devices: readonly DeviceRecord[]): Plan {
  const eligible: DeviceRecord[] = [];
  const excluded: ExcludedEntry[] = [];
  for (const d of devices) {
    if (!manifest.hw.includes(d.hw)) {
      excluded.push({ id: d.id, code: 'incompatible-hw', reason: `hardware ${d.hw} is not in the image's list (${manifest.hw.join(', ')})`, version: d.version });
    } else if (compareVersions(d.version, manifest.version) >= 0) {
      excluded.push({ id: d.id, code: 'not-newer', reason: `runs ${d.version}, not older than ${manifest.version}`, version: d.version });
    } else if (!d.online) {
      excluded.push({ id: d.id, code: 'offline', reason: 'device is offline', version: d.version });
    } else {
      eligible.push(d);
    }
  }
  return { eligible, excluded };
}

/**
 * Expected transfer time of the image to a device from its measured round trip: chunks go in
 * windows of `window`, one round trip per window, plus a fixed round trip each for offer,
 * verify, activate and confirm. Issue #3 refines this with measured throughput.
 */
export function estimateTransferMs(manifest: Manifest, device: DeviceRecord, window: number): number | undefined {
  const rtt = device.link?.rttMs;
  if (rtt === undefined) return undefined;
  const chunk = Math.min(manifest.chunk, device.maxChunk);
  const rounds = Math.ceil(Math.ceil(manifest.size / chunk) / window);
  return Math.round((rounds + 4) * Math.max(rtt, 0.1));
}

/**
 * Rank eligible devices fastest first (shortest expected transfer). Devices without figures go
 * last; ties are broken by device id so the order is deterministic.
 */
export function rankDevices(manifest: Manifest, eligible: readonly DeviceRecord[], window: number): OrderEntry[] {
  const withEta = eligible.map((d) => ({ d, eta: estimateTransferMs(manifest, d, window) }));
  withEta.sort((a, b) => {
    const ea = a.eta ?? Number.POSITIVE_INFINITY;
    const eb = b.eta ?? Number.POSITIVE_INFINITY;
    if (ea !== eb) return ea - eb;
    return a.d.id < b.d.id ? -1 : a.d.id > b.d.id ? 1 : 0;
  });
  return withEta.map(({ d, eta }, i) => ({
    id: d.id,
    rank: i + 1,
    from: d.version,
    ...(d.link ? { rttMs: d.link.rttMs } : {}),
    ...(eta !== undefined ? { etaMs: eta } : {}),
  }));
}
