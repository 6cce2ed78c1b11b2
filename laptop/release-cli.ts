import { readFile } from 'node:fs/promises';
import { FwError } from '../protocol/errors.ts';
import { parseReleaseManifest, signRelease, type ReleaseManifest } from '../protocol/release.ts';
import { parsePrivateKey } from '../protocol/signature.ts';
import type { Opts } from './args.ts';
import { readReleaseDescription, readSignedRelease } from './release-description.ts';

/**
 * fwpush's release commands (docs/operations.md "Releases"):
 *   fwpush release <desc.json> [--manifest <signed release>] [--sign-key <key> --seq <n>] [--deferred]
 *   fwpush release live <name> <version> [--now|--in-window] [--only …] [--group …] [--waves …]
 */
export type ReleaseMode =
  | { kind: 'release'; descPath: string }
  | { kind: 'release-live'; release: string; version: string };

/** `release …` on the command line as what to do; E_USAGE for anything else. */
export function releaseModeOf(arg: string | undefined, more: readonly string[]): ReleaseMode {
  if (arg === 'live') {
    if (more.length !== 2) throw new FwError('E_USAGE', 'release live needs the release name and version: fwpush release live <name> <version> (fwgate releases lists them)');
    return { kind: 'release-live', release: more[0]!, version: more[1]! };
  }
  if (arg === undefined) throw new FwError('E_USAGE', 'release needs a release description (JSON) or "live <name> <version>"; see --help');
  if (more.length > 0) throw new FwError('E_USAGE', `unexpected argument "${more[0]}" after the release description ${arg}; see --help`);
  return { kind: 'release', descPath: arg };
}

/**
 * The release to push and its component images: the description's files; the manifest is the
 * signed one given with --manifest (checked against the files), or the description's signed here
 * with --sign-key, or unsigned (a gateway in development mode only).
 */
export async function loadRelease(descPath: string, o: Pick<Opts, 'manifest' | 'signKey' | 'seq' | 'allowSeqZero'>): Promise<{ release: ReleaseManifest; images: Map<string, Buffer> }> {
  const loaded = await readReleaseDescription(descPath);
  if (o.manifest !== undefined) {
    if (o.signKey !== undefined || o.seq !== undefined) throw new FwError('E_USAGE', 'the release manifest given with --manifest is sent unchanged: drop --sign-key and --seq');
    return { release: await readSignedRelease(o.manifest, loaded), images: loaded.images };
  }
  if (o.signKey === undefined) return { release: o.seq !== undefined ? parseReleaseManifest({ ...loaded.manifest, seq: o.seq }) : loaded.manifest, images: loaded.images };
  const seq = o.seq ?? loaded.manifest.seq ?? 0;
  if (seq === 0 && !o.allowSeqZero) throw new FwError('E_USAGE', 'refusing to sign the release with seq 0: give "seq" in the description or --seq <n> (--allow-seq-zero for a first release)');
  let pem: string;
  try {
    pem = await readFile(o.signKey, 'utf8');
  } catch (err) {
    throw new FwError('E_USAGE', `cannot read signing key ${o.signKey}: ${(err as Error).message}`);
  }
  return { release: parseReleaseManifest(signRelease({ ...loaded.manifest, seq }, parsePrivateKey(pem))), images: loaded.images };
}
