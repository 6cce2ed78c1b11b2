/** What the operator and the laptop are told when a write fails for want of space (issue 17.4). */
export const NO_SPACE = 'no space left on device';

/** Whether an error, or any error in its `cause` chain, is ENOSPC (or EDQUOT: a quota is as full as a disk). */
export function isNoSpace(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e !== undefined && e !== null && depth < 8; depth++) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOSPC' || code === 'EDQUOT') return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

/** The system error at the bottom of a cause chain, in words ("no space left on device" for ENOSPC). */
export function rootCause(err: unknown): string {
  if (isNoSpace(err)) return NO_SPACE;
  let e: unknown = err;
  for (let depth = 0; depth < 8 && (e as { cause?: unknown } | undefined)?.cause !== undefined; depth++) e = (e as { cause?: unknown }).cause;
  return e instanceof Error ? e.message : String(e);
}

/** The `error` (§7.9 case 3) that tells the laptop a campaign is paused, and why. */
export function pausedMessage(campaign: string, reason: string, retryMs: number): { t: 'error'; code: string; reason: string } {
  return {
    t: 'error', code: reason === NO_SPACE ? 'E_DISK_FULL' : 'E_JOURNAL',
    reason: `campaign ${campaign} paused: ${reason} on the gateway; no device is activated until its journal can be written (tried again every ${Math.round(retryMs / 1000)} s)`,
  };
}

/** In a status replay: the pause message while the campaign is paused, else nothing. */
export function pausedReplay(steps: { paused: string | undefined } | undefined, campaign: string, retryMs: number): ReturnType<typeof pausedMessage>[] {
  const reason = steps?.paused;
  return reason === undefined ? [] : [pausedMessage(campaign, reason, retryMs)];
}
