import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { CompleteMessage } from '../../protocol/uplink.ts';
import type { UnfinishedCampaign } from './journal.ts';

/**
 * Why an unfinished campaign cannot resume because its image is gone (docs/reliability.md):
 * quarantined at start-up (its stored copy failed verification) or missing. Said to the
 * operator's log, written into the journal's completion and replayed to the laptop (§7.8.2).
 */
export function imageGoneReason(storeDir: string, sha256: string): string {
  let quarantined = false;
  try {
    quarantined = readdirSync(join(storeDir, 'quarantine')).some((n) => n.includes(sha256)); // <stamp>-<sha>.bin
  } catch { /* no quarantine folder: missing */ }
  const short = `${sha256.slice(0, 12)}…`;
  return quarantined
    ? `its image ${short} failed verification at the gateway's start (stored copy corrupt, moved to store/quarantine/): re-push the image`
    : `its image ${short} is no longer in the gateway's store: re-push the image`;
}

/**
 * The completion of a campaign that will not resume: the results its journal had, and `closed`
 * with the reason (§7.8.2). Devices without a result were never activated by it (a device with
 * `activating` and no result keeps whatever its own trial rules give it).
 */
export function closedCompletion(u: UnfinishedCampaign, reason: string, now = Date.now()): CompleteMessage {
  const results = [...u.state.results.values()];
  const count = (o: (typeof results)[number]['outcome']): number => results.filter((r) => r.outcome === o).length;
  return {
    t: 'complete', campaign: u.state.id, devices: results.length, updated: count('updated'), failed: count('failed'),
    rolledBack: count('rolled-back'), skipped: count('skipped'), durationMs: Math.max(0, now - u.state.startedAt),
    closed: { code: 'image-unavailable', reason: reason.slice(0, 256) },
  };
}
