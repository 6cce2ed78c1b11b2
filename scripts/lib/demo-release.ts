import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fleetDeviceId } from '../../device-sim/fleet.ts';

/**
 * The release demo's check from the devices' side (npm run demo -- --release): each device's own
 * files — state.json read as plain JSON, the active slot files hashed here — must show `app` and
 * `net` running the release's images (SHA-256 of release-app-1.1.0.bin and release-net-1.5.0.bin),
 * confirmed, nothing in trial. Shares no code with the simulator's bootloader.
 */
export async function releaseDemoCheck(devicesDir: string, devices: number, releaseDir: string): Promise<{ onRelease: number; problems: string[] }> {
  const digest = async (file: string): Promise<string> => createHash('sha256').update(await readFile(file)).digest('hex');
  const want = { app: await digest(join(releaseDir, 'release-app-1.1.0.bin')), net: await digest(join(releaseDir, 'release-net-1.5.0.bin')) };
  let onRelease = 0;
  const problems: string[] = [];
  for (let i = 0; i < devices; i++) {
    const id = fleetDeviceId('dev', i);
    const folder = join(devicesDir, id);
    try {
      type Unit = { active: 'a' | 'b'; trial: boolean; slots: Record<'a' | 'b', { state: string; sha256?: string }> };
      const rec = JSON.parse(await readFile(join(folder, 'state.json'), 'utf8')) as Unit & { components?: Record<string, Unit> };
      const units: [string, string, Unit | undefined][] = [['app', '', rec], ['net', 'net-', rec.components?.net]];
      const wrong: string[] = [];
      for (const [name, prefix, u] of units) {
        if (!u) {
          wrong.push(`no ${name} component`);
          continue;
        }
        const slot = u.slots[u.active];
        const sha = await digest(join(folder, `${prefix}slot-${u.active}.bin`));
        if (slot.state !== 'confirmed' || u.trial) wrong.push(`${name} is ${slot.state}${u.trial ? ' (trial)' : ''}`);
        if (sha !== want[name as 'app' | 'net'] || slot.sha256 !== sha) wrong.push(`${name} runs another image`);
      }
      if (wrong.length === 0) onRelease++;
      else problems.push(`${id}: ${wrong.join(', ')}`);
    } catch (err) {
      problems.push(`${id}: ${(err as Error).message}`);
    }
  }
  return { onRelease, problems };
}
