import type { GatewayUplinkMessage } from '../../protocol/uplink.ts';
import type { JournalState } from './journal.ts';

/**
 * A finished (or not resumed) campaign's messages from its journal, for `status --campaign`
 * (§7.11.5): its order, its results, and its completion. Progress is not journaled: the replay has
 * none.
 */
export function replayFromJournal(j: JournalState): GatewayUplinkMessage[] {
  return [
    ...(j.order ? [j.order] : []),
    ...j.results.values(),
    ...(j.complete ? [j.complete] : []),
  ];
}
