/**
 * Reading a campaign back from its journal by id (finished or not), and what a retry of it
 * (§7.12.2) repeats: its devices whose result is one of the asked outcomes, with the image or
 * release and the policy its journal recorded. No upload: the image must still be stored.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FwError } from '../protocol/errors.ts';
import type { ReleaseManifest } from '../protocol/release.ts';
import type { RetryMessage, Targeting } from '../protocol/uplink.ts';
import { parseJournal } from './rollout/journal.ts';
import type { ImageStore, StoredImage } from './store.ts';

export type JournalState = ReturnType<typeof parseJournal>['state'];

/** A campaign's journal state by id (finished or not). E_UNKNOWN_CAMPAIGN when there is none. */
export function readCampaignJournal(journalDir: string, id: string): JournalState {
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(id) || !readdirSync(journalDir).includes(`${id}.jsonl`)) {
    throw new FwError('E_UNKNOWN_CAMPAIGN', `no campaign ${id} in ${journalDir} (fwgate campaigns lists them)`);
  }
  const path = join(journalDir, `${id}.jsonl`);
  return parseJournal(readFileSync(path, 'utf8'), path).state;
}

export interface RetryOptions extends Targeting {
  only: string[];
  retryOf: string;
  policy?: 'now' | 'window';
  force: boolean;
  downgrade: boolean;
}

/**
 * What to create for a retry of the campaign in `j`: a release campaign is retried as a release
 * (each device gets what it lacks then, §6.15), else the stored image with the journal's manifest.
 * E_UNKNOWN_CAMPAIGN when the image is no longer stored, E_NOTHING_TO_RETRY when no device matches.
 */
export function retryPlan(j: JournalState, req: Omit<RetryMessage, 't'>, store: ImageStore): { opts: RetryOptions } & ({ release: ReleaseManifest } | { image: StoredImage }) {
  const want = new Set<string>(req.outcomes);
  const ids = [...j.results.values()].filter((r) => want.has(r.outcome)).map((r) => r.id);
  const opts: RetryOptions = {
    only: ids, retryOf: req.campaign,
    ...(req.policy ? { policy: req.policy } : {}),
    force: req.force ?? j.policy?.force ?? false, downgrade: j.policy?.downgrade ?? false,
  };
  const nothing = (): FwError => new FwError('E_NOTHING_TO_RETRY', `campaign ${req.campaign} has no device with result ${req.outcomes.join(' or ')}`);
  if (j.release) {
    if (ids.length === 0) throw nothing();
    return { opts, release: j.release };
  }
  const manifest = j.manifest;
  const image = store.get(manifest?.sha256 ?? j.sha256);
  if (!image) throw new FwError('E_UNKNOWN_CAMPAIGN', `the image of campaign ${req.campaign} is no longer stored; push it again`);
  if (ids.length === 0) throw nothing();
  return { opts, image: manifest ? { ...image, manifest } : image };
}
