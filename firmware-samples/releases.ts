import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeSampleImage } from './image-format.ts';

/**
 * A two-component release pair for demos and tests (docs/operations.md "Releases"):
 *
 *   release-1.0.0.json  sensor-release 1.0.0: app 1.0.0, net 1.5.0
 *   release-1.1.0.json  sensor-release 1.1.0: app 1.1.0 requiring {"net": ">=1.5.0"}, net 1.5.0
 *
 * Release 1.1.0's `net` is the very file of release 1.0.0's (byte-identical), so a gateway or a
 * device that holds release 1.0.0 needs only 1.1.0's `app`. Descriptions are unsigned and name
 * their files relative to themselves; sign them with `fwsign release`.
 */
export const RELEASE_NAME = 'sensor-release';
export const RELEASE_HW = 'sensor-v1';
/** The release descriptions written. */
export const RELEASE_SAMPLES = ['release-1.0.0.json', 'release-1.1.0.json'] as const;
/** seq of release 1.0.0; 1.1.0 has the next. */
export const RELEASE_SEQ = 10;

export interface ReleaseSample {
  /** The description's file name. */
  file: string;
  version: string;
  components: { component: string; file: string; version: string }[];
}

/** The component image files: name, version, file. */
const files = {
  app100: { name: 'sensor-app', version: '1.0.0', file: 'release-app-1.0.0.bin' },
  app110: { name: 'sensor-app', version: '1.1.0', file: 'release-app-1.1.0.bin' },
  net150: { name: 'sensor-net', version: '1.5.0', file: 'release-net-1.5.0.bin' },
} as const;

/** Write the component images and the two release descriptions into `outDir`; `size` is app's size (net is half). */
export async function generateReleases(outDir: string, size: number, chunk: number): Promise<ReleaseSample[]> {
  for (const [key, f] of Object.entries(files)) {
    const image = makeSampleImage({ name: f.name, version: f.version, hw: RELEASE_HW, size: key === 'net150' ? Math.max(1024, size >> 1) : size, selftest: 'pass' });
    await writeFile(join(outDir, f.file), image);
  }
  const describe = (version: string, seq: number, app: typeof files.app100 | typeof files.app110, requires: boolean): object => ({
    release: RELEASE_NAME, version, hw: [RELEASE_HW], chunk, seq,
    components: [
      { component: 'app', file: app.file, name: app.name, version: app.version, ...(requires ? { requires: { net: '>=1.5.0' } } : {}) },
      { component: 'net', file: files.net150.file, name: files.net150.name, version: files.net150.version },
    ],
  });
  const out: ReleaseSample[] = [
    { file: 'release-1.0.0.json', version: '1.0.0', components: [{ component: 'app', file: files.app100.file, version: '1.0.0' }, { component: 'net', file: files.net150.file, version: '1.5.0' }] },
    { file: 'release-1.1.0.json', version: '1.1.0', components: [{ component: 'app', file: files.app110.file, version: '1.1.0' }, { component: 'net', file: files.net150.file, version: '1.5.0' }] },
  ];
  await writeFile(join(outDir, out[0]!.file), `${JSON.stringify(describe('1.0.0', RELEASE_SEQ, files.app100, false), null, 2)}\n`);
  await writeFile(join(outDir, out[1]!.file), `${JSON.stringify(describe('1.1.0', RELEASE_SEQ + 1, files.app110, true), null, 2)}\n`);
  return out;
}
