import type { ResultMessage } from '../protocol/uplink.ts';

/**
 * The fleet has confirmed a higher seq than the pushed manifest's when devices refuse it as
 * `seq-rollback` (§6.5.7); the gateway's fleet report carries no seq, so this is what fwpush can
 * tell. The warning names the seq and the next step (a new release signed with a higher seq).
 */
/**
 * Before any data (§7.3.7): the gateway says the highest seq its targeted devices confirmed; a
 * manifest below it will be refused by them (§6.5.7). Undefined when it is not below.
 */
export function preflightSeqWarning(seq: number | undefined, confirmedSeq: number | undefined): string | undefined {
  if (confirmedSeq === undefined || (seq ?? 0) >= confirmedSeq) return undefined;
  return `warning: the manifest's seq ${seq ?? 0} is below seq ${confirmedSeq}, which devices of this site already confirmed: they will refuse it (seq-rollback); `
    + 'sign the release again with a higher seq (fwsign --seq)';
}

export function seqWarning(seq: number | undefined, results: Iterable<ResultMessage>): string | undefined {
  const refused = [...results].filter((r) => r.code === 'seq-rollback').map((r) => r.id);
  if (refused.length === 0) return undefined;
  const shown = refused.slice(0, 5).join(', ') + (refused.length > 5 ? ` and ${refused.length - 5} more` : '');
  return `warning: the manifest's seq ${seq ?? 0} is below what ${refused.length} device${refused.length === 1 ? ' has' : 's have'} installed (seq-rollback: ${shown}); `
    + 'sign the release again with a higher seq (fwsign --seq, above the last release the fleet confirmed)';
}
