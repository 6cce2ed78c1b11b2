import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { FwError } from '../protocol/errors.ts';
import { DEFAULT_CHUNK_SIZE, digestImage } from '../protocol/manifest.ts';
import { componentName, parseReleaseManifest, releaseDigest, versionRange, type ReleaseManifest } from '../protocol/release.ts';
import { formatIssues } from '../protocol/schema.ts';

/**
 * A release description (docs/operations.md "Releases"): the JSON a firmware engineer writes to
 * say what makes up a release — its name, version, hardware models, optional chunk size and seq,
 * and its components, each with the image file (relative to the description), the image's name
 * and version, and optional `requires` and `agent`. From it and the files, the release manifest
 * (docs/protocol.md §5.5) is computed: sizes, CRC-32 and SHA-256 of each image.
 */
export const releaseDescriptionSchema = z.strictObject({
  release: z.string().min(1),
  version: z.string().min(1),
  hw: z.array(z.string().min(1)).min(1),
  chunk: z.number().int().optional(),
  seq: z.number().int().min(0).max(0xffff_ffff).optional(),
  components: z.array(z.strictObject({
    component: componentName,
    /** The image file, relative to the description. */
    file: z.string().min(1),
    /** The image's name (default `<release>-<component>`). */
    name: z.string().min(1).optional(),
    version: z.string().min(1),
    requires: z.record(componentName, versionRange).optional(),
    agent: z.literal(true).optional(),
  })).min(1),
});
export type ReleaseDescription = z.infer<typeof releaseDescriptionSchema>;

/** A release as read from its description and files: the (unsigned) manifest and each component's bytes. */
export interface LoadedRelease {
  /** The description's path. */
  path: string;
  manifest: ReleaseManifest;
  /** component → the image bytes. */
  images: Map<string, Buffer>;
}

/** Read a release description and its component files; the release manifest computed from them. E_USAGE / E_MANIFEST_INVALID naming the file or field. */
export async function readReleaseDescription(path: string): Promise<LoadedRelease> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new FwError('E_USAGE', `cannot read release description ${path}: ${(err as Error).message}`);
  }
  const parsed = releaseDescriptionSchema.safeParse(raw);
  if (!parsed.success) throw new FwError('E_MANIFEST_INVALID', `release description ${path}: ${formatIssues(parsed.error)}`);
  const d = parsed.data;
  const images = new Map<string, Buffer>();
  const components = [];
  for (const c of d.components) {
    const file = resolve(dirname(path), c.file);
    let image: Buffer;
    try {
      image = await readFile(file);
    } catch (err) {
      throw new FwError('E_USAGE', `release description ${path}: component ${c.component}: cannot read ${file}: ${(err as Error).message}`);
    }
    images.set(c.component, image);
    const digest = digestImage(image);
    components.push({
      component: c.component, name: c.name ?? `${d.release}-${c.component}`, version: c.version,
      size: digest.size, crc32: digest.crc32, sha256: digest.sha256,
      ...(c.requires ? { requires: c.requires } : {}), ...(c.agent ? { agent: true as const } : {}),
    });
  }
  let manifest: ReleaseManifest;
  try {
    manifest = parseReleaseManifest({
      release: d.release, version: d.version, hw: d.hw, chunk: d.chunk ?? DEFAULT_CHUNK_SIZE,
      ...(d.seq !== undefined ? { seq: d.seq } : {}), components,
    });
  } catch (err) {
    throw new FwError('E_MANIFEST_INVALID', `release description ${path}: ${(err as Error).message}`, { cause: err });
  }
  return { path, manifest, images };
}

/**
 * A signed release manifest (from `fwsign release`) for the release a description describes: it
 * must list the same components with the same image bytes (name, version, size, CRC-32, SHA-256)
 * as the files; E_MANIFEST_INVALID names the first component and field that differ.
 */
export async function readSignedRelease(path: string, loaded: LoadedRelease): Promise<ReleaseManifest> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new FwError('E_USAGE', `cannot read release manifest ${path}: ${(err as Error).message}`);
  }
  const signed = parseReleaseManifest(raw);
  const want = loaded.manifest;
  for (const f of ['release', 'version'] as const) {
    if (signed[f] !== want[f]) throw new FwError('E_MANIFEST_INVALID', `release manifest ${path} is for ${f} ${signed[f]}, the description ${loaded.path} says ${want[f]}`);
  }
  for (const c of want.components) {
    const s = signed.components.find((x) => x.component === c.component);
    if (!s) throw new FwError('E_MANIFEST_INVALID', `release manifest ${path} has no component ${c.component} (the description lists it)`);
    for (const f of ['name', 'version', 'size', 'crc32', 'sha256'] as const) {
      if (s[f] !== c[f]) throw new FwError('E_MANIFEST_INVALID', `release manifest ${path}: component ${c.component}: ${f} ${s[f]}, but the file of the description gives ${c[f]} (rebuilt image? sign the release again)`);
    }
  }
  const extra = signed.components.find((s) => !want.components.some((c) => c.component === s.component));
  if (extra) throw new FwError('E_MANIFEST_INVALID', `release manifest ${path} lists component ${extra.component}, which the description ${loaded.path} does not`);
  return signed;
}

/** "sensor-release 1.1 (app 1.1.0, net 1.5.0), digest 3f2a…" */
export function describeRelease(r: ReleaseManifest): string {
  return `${r.release} ${r.version} (${r.components.map((c) => `${c.component} ${c.version}`).join(', ')}), digest ${releaseDigest(r).slice(0, 12)}`;
}
