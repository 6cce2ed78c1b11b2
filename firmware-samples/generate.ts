import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { Command, CommanderError } from 'commander';
import { FwError, describeError } from '../protocol/errors.ts';
import { DEFAULT_CHUNK_SIZE, manifestForImage, type Manifest } from '../protocol/manifest.ts';
import { MAX_CHUNK_SIZE, MIN_CHUNK_SIZE } from '../protocol/limits.ts';
import { makeSampleImage, type SelfTest } from './image-format.ts';
import { generateReleases, RELEASE_SAMPLES } from './releases.ts';

/**
 * Writes sample images and their JSON manifests (docs/protocol.md §5) for demos and tests:
 *
 *   npx tsx firmware-samples/generate.ts --out firmware-samples/out [--size 262144] [--chunk 4096]
 *
 * For each hw model (sensor-v1, sensor-v2) versions 1.0.0, 1.1.0, 2.0.0, plus for sensor-v1:
 * 2.1.0 that fails its self-test, and 2.2.0 whose manifest SHA-256 does not match ("bad-digest").
 */
export const SAMPLE_NAME = 'sensor-fw';
export const SAMPLE_HW = ['sensor-v1', 'sensor-v2'] as const;
export const SAMPLE_VERSIONS = ['1.0.0', '1.1.0', '2.0.0'] as const;
export const DEFAULT_SAMPLE_SIZE = 256 * 1024;

export interface SampleSpec {
  /** File stem: <stem>.bin and <stem>.manifest.json. */
  stem: string;
  version: string;
  hw: string;
  selftest: SelfTest;
  /** The manifest SHA-256 is deliberately wrong. */
  badDigest: boolean;
  note: string;
}

export function sampleSpecs(): SampleSpec[] {
  const specs: SampleSpec[] = [];
  for (const hw of SAMPLE_HW) {
    for (const version of SAMPLE_VERSIONS) {
      specs.push({ stem: `${SAMPLE_NAME}-${hw}-${version}`, version, hw, selftest: 'pass', badDigest: false, note: 'good image' });
    }
  }
  specs.push({ stem: `${SAMPLE_NAME}-sensor-v1-2.1.0-selftest-fail`, version: '2.1.0', hw: 'sensor-v1', selftest: 'fail', badDigest: false, note: 'verifies, then fails its self-test at the trial boot: the device reverts' });
  specs.push({ stem: `${SAMPLE_NAME}-sensor-v1-2.2.0-bad-digest`, version: '2.2.0', hw: 'sensor-v1', selftest: 'pass', badDigest: true, note: 'manifest SHA-256 does not match the image: verify fails with sha256' });
  return specs;
}

/** Build one sample: the image bytes and its manifest (wrong SHA-256 for bad-digest samples). */
export function buildSample(spec: SampleSpec, size: number, chunk: number): { image: Uint8Array; manifest: Manifest } {
  const image = makeSampleImage({ name: SAMPLE_NAME, version: spec.version, hw: spec.hw, size, selftest: spec.selftest });
  const manifest = manifestForImage(image, { name: SAMPLE_NAME, version: spec.version, hw: [spec.hw], chunk });
  if (spec.badDigest) {
    const last = manifest.sha256.at(-1) === '0' ? '1' : '0';
    manifest.sha256 = `${manifest.sha256.slice(0, -1)}${last}`;
  }
  return { image, manifest };
}

export async function generate(outDir: string, size = DEFAULT_SAMPLE_SIZE, chunk = DEFAULT_CHUNK_SIZE): Promise<{ stem: string; note: string }[]> {
  await mkdir(outDir, { recursive: true });
  const index: { stem: string; image: string; manifest: string; version: string; hw: string; note: string }[] = [];
  for (const spec of sampleSpecs()) {
    const { image, manifest } = buildSample(spec, size, chunk);
    await writeFile(join(outDir, `${spec.stem}.bin`), image);
    await writeFile(join(outDir, `${spec.stem}.manifest.json`), `${JSON.stringify(manifest, null, 2)}\n`);
    index.push({ stem: spec.stem, image: `${spec.stem}.bin`, manifest: `${spec.stem}.manifest.json`, version: spec.version, hw: spec.hw, note: spec.note });
  }
  // the two-component release pair (firmware-samples/releases.ts)
  const releases = await generateReleases(outDir, size, chunk);
  await writeFile(join(outDir, 'index.json'), `${JSON.stringify({ name: SAMPLE_NAME, size, chunk, samples: index, releases }, null, 2)}\n`);
  return index;
}

function intArg(flag: string, min: number, max: number): (v: string) => number {
  return (v) => {
    const n = /^\d+$/.test(v) ? Number(v) : NaN;
    if (!(n >= min && n <= max)) throw new FwError('E_USAGE', `${flag}: must be an integer ${min}..${max}, got "${v}"`);
    return n;
  };
}

export async function main(argv: readonly string[]): Promise<number> {
  const program = new Command('generate')
    .description('Write sample firmware images and manifests')
    .option('--out <dir>', 'output folder', 'firmware-samples/out')
    .option('--size <bytes>', 'image size', String(DEFAULT_SAMPLE_SIZE))
    .option('--chunk <bytes>', 'preferred chunk size in the manifests', String(DEFAULT_CHUNK_SIZE))
    .exitOverride()
    .configureOutput({ writeErr: () => undefined });
  let out: string;
  let size: number;
  let chunk: number;
  try {
    program.parse([...argv], { from: 'user' });
    const o = program.opts<{ out: string; size: string; chunk: string }>();
    out = resolve(o.out);
    size = intArg('--size', 1024, 64 * 1024 * 1024)(o.size);
    chunk = intArg('--chunk', MIN_CHUNK_SIZE, MAX_CHUNK_SIZE)(o.chunk);
  } catch (err) {
    if (err instanceof CommanderError && err.code === 'commander.helpDisplayed') return 0;
    process.stderr.write(`generate: ${err instanceof CommanderError ? err.message : describeError(err)}\n`);
    return 2;
  }
  const written = await generate(out, size, chunk);
  for (const s of written) process.stdout.write(`${s.stem}  ${s.note}\n`);
  process.stdout.write(`${RELEASE_SAMPLES.join(', ')}  two-component release descriptions (release 1.1.0's net is release 1.0.0's)\n`);
  process.stdout.write(`${written.length} samples in ${out}\n`);
  return 0;
}

const script = process.argv[1];
if (script !== undefined && import.meta.url === pathToFileURL(realpathSync(script)).href) {
  main(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (err: unknown) => {
    process.stderr.write(`generate: ${describeError(err)}\n`);
    process.exitCode = 1;
  });
}
