import { readFile, rename, writeFile } from 'node:fs/promises';
import { z } from 'zod';
import { FwError } from '../protocol/errors.ts';
import { formatIssues } from '../protocol/schema.ts';

/**
 * fwsign's state file (docs/security.md "Signing releases on the build machine"): the highest
 * `seq` this signer has signed and the releases it signed, so a seq that is not above the last one
 * is refused before a manifest devices would reject (`seq-rollback`) leaves the build machine.
 * Written atomically (temp file + rename); read back and validated before use.
 */
const releaseSchema = z.object({
  seq: z.number().int().min(0).max(0xffff_ffff),
  name: z.string(),
  version: z.string(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  keyId: z.string(),
  at: z.string(),
});
const stateSchema = z.object({ format: z.literal(1), lastSeq: z.number().int().min(0).max(0xffff_ffff), releases: z.array(releaseSchema) });

export type SignedRelease = z.infer<typeof releaseSchema>;
export type ReleaseState = z.infer<typeof stateSchema>;

/** The state at `path`; a missing file is a fresh state (nothing signed yet). */
export async function readReleaseState(path: string): Promise<ReleaseState | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new FwError('E_USAGE', `cannot read the state file ${path}: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new FwError('E_USAGE', `state file ${path} is not valid JSON: ${(err as Error).message} (it is fwsign's record of the last seq signed; restore it from a backup)`);
  }
  const r = stateSchema.safeParse(json);
  if (!r.success) throw new FwError('E_USAGE', `state file ${path}: ${formatIssues(r.error)}`);
  return r.data;
}

/** Why `seq` may not be signed given the state, or undefined. */
export function seqRefusal(state: ReleaseState | undefined, seq: number): string | undefined {
  if (!state || seq > state.lastSeq) return undefined;
  const last = state.releases.findLast((r) => r.seq === state.lastSeq);
  return `--seq ${seq} is not above ${state.lastSeq}, the last seq signed${last ? ` (${last.name} ${last.version}, ${last.at})` : ''}: devices that installed it refuse a lower one (seq-rollback); use --seq ${state.lastSeq + 1} or higher`;
}

/** Record a signed release: lastSeq becomes its seq. */
export async function recordRelease(path: string, state: ReleaseState | undefined, release: SignedRelease): Promise<void> {
  const next: ReleaseState = { format: 1, lastSeq: release.seq, releases: [...(state?.releases ?? []), release] };
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(next, null, 2)}\n`);
  await rename(tmp, path);
}
