import { closeSync, fsyncSync, openSync, unlinkSync } from 'node:fs';
import { basename } from 'node:path';
import { describeError } from '../protocol/errors.ts';
import { endedAt, journalFiles, readJournal } from './history.ts';

/** `storage.keepCampaigns` (gateway/config.ts): journals of ended campaigns kept. 0 = no limit of that kind. */
export interface KeepCampaigns {
  /** The newest this many ended campaigns are kept (by the time they ended). */
  count: number;
  /** Ended campaigns that ended longer ago than this are removed. */
  maxAgeDays: number;
}

export interface RemovedJournal {
  id: string;
  file: string;
  ended: number;
  /** Beyond the count, or older than the age. */
  why: 'count' | 'age';
}

const DAY_MS = 24 * 3600 * 1000;

/**
 * Campaign retention: remove the journals of ENDED campaigns (halted, cancelled, completed,
 * expired) beyond `policy.count` (newest kept, by the time they ended) or that ended more than
 * `policy.maxAgeDays` ago. A campaign that has not ended is never touched, nor a journal that
 * cannot be read (it is reported through `warn` and left for a person to look at). Each removal
 * is an unlink, made durable by one fsync of the directory at the end. `dryRun`: nothing is
 * removed, the list says what would be. Returns the journals removed, oldest first.
 */
export function pruneJournals(
  journalDir: string, policy: KeepCampaigns, now: number, opts: { dryRun?: boolean; warn?: (msg: string) => void } = {},
): RemovedJournal[] {
  const ended: { id: string; file: string; ended: number }[] = [];
  for (const file of journalFiles(journalDir)) {
    try {
      const j = readJournal(file);
      const at = endedAt(j);
      if (at !== null) ended.push({ id: j.state.id, file, ended: at });
    } catch (err) {
      opts.warn?.(`retention: ${describeError(err)}; left as it is`);
    }
  }
  ended.sort((a, b) => b.ended - a.ended || b.id.localeCompare(a.id)); // newest first
  const removed: RemovedJournal[] = [];
  ended.forEach((e, i) => {
    if (policy.count > 0 && i >= policy.count) removed.push({ ...e, why: 'count' });
    else if (policy.maxAgeDays > 0 && e.ended < now - policy.maxAgeDays * DAY_MS) removed.push({ ...e, why: 'age' });
  });
  if (opts.dryRun || removed.length === 0) return removed.reverse();
  const done: RemovedJournal[] = [];
  for (const r of removed) {
    try {
      unlinkSync(r.file);
      done.push(r);
    } catch (err) {
      opts.warn?.(`retention: cannot remove ${basename(r.file)} from ${journalDir}: ${(err as Error).message}`);
    }
  }
  if (done.length > 0) fsyncDir(journalDir);
  return done.reverse();
}

function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
