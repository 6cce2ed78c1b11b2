import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { buildDeviceC } from './device-c.ts';
import { startProcess, type Proc } from './processes.ts';

/**
 * The demo's C devices (`npm run demo -- --c-devices N`): device-c's POSIX device `fwdevice`,
 * built on demand with CMake, one process per device, logging in with its password from the
 * demo's credentials file and pinning the demo's vendor key. Ids `c-dev-001`, `c-dev-002`, ...
 */
export const cDeviceId = (i: number): string => `c-dev-${String(i + 1).padStart(3, '0')}`;

export async function startCDevices(n: number, o: { broker: string; dir: string; credentials: string; pinnedKey: string; hw: string; version: string }): Promise<Proc[]> {
  if (n === 0) return [];
  const { fwdevice } = await buildDeviceC();
  const procs: Proc[] = [];
  for (let i = 0; i < n; i++) {
    const id = cDeviceId(i);
    procs.push(startProcess(id, fwdevice, [
      '--broker', o.broker, '--id', id, '--dir', join(o.dir, id), '--credentials', o.credentials,
      '--pinned-key', o.pinnedKey, '--hw', o.hw, '--version', o.version,
    ]));
  }
  await Promise.all(procs.map((p) => p.waitForLine(/"type":"connected"/, 60_000)));
  return procs;
}

/** How many C devices run `version`, confirmed, read from their own files (`fwdevice show`). */
export async function cDevicesOn(n: number, dir: string, version: string): Promise<number> {
  if (n === 0) return 0;
  const { fwdevice } = await buildDeviceC();
  let on = 0;
  for (let i = 0; i < n; i++) {
    try {
      const { stdout } = await promisify(execFile)(fwdevice, ['show', '--dir', join(dir, cDeviceId(i))]);
      const s = JSON.parse(stdout) as { active: 'a' | 'b'; trial: boolean; slots: Record<string, { state: string; version: string }> };
      if (s.slots[s.active]?.version === version && s.slots[s.active]?.state === 'confirmed' && !s.trial) on++;
    } catch { /* no record: not updated */ }
  }
  return on;
}
