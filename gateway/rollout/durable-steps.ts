import { rootCause } from '../disk-full.ts';
import type { Timers } from '../waiter.ts';

export interface DurableStepsDeps {
  /** Resolves once every record so far is written and durable; rejects while the disk refuses (CampaignJournal.durable). */
  durable(): Promise<void>;
  timers: Timers;
  /** How long to wait before trying the disk again (config `rollout.journalRetryMs`). */
  retryMs: number;
  /** The campaign stopped waiting (its journal was detached at shutdown, or it was cancelled): give up. */
  stopped(): boolean;
  /** The first failure of a pause: the reason in words ("no space left on device"). */
  onPause(reason: string, err: unknown): void;
  /** The records are durable again after a pause of `pausedMs`. */
  onResume(pausedMs: number): void;
}

/**
 * "A step whose record could not be made durable does not happen" (docs/reliability.md, "Disk
 * full"): every step of a campaign that waits for its journal record — the first transfer for
 * the order, each `activate` for its `activating` record, each result and the completion before
 * the laptop hears of them — awaits settle(). While the journal cannot be written or synced
 * (ENOSPC, EIO) the campaign is **paused**: the steps wait, the reason is reported once per
 * pause (onPause), and the disk is tried again every `retryMs` until it takes the records; then
 * the pause ends (onResume) and the steps go on, in order. Resolves without the record only
 * when the campaign stopped (the caller checks that before acting).
 */
export class DurableSteps {
  private pausedSince: number | undefined;
  private reason: string | undefined;

  constructor(private readonly d: DurableStepsDeps) {}

  /** Why the campaign is paused now, or undefined. */
  get paused(): string | undefined {
    return this.pausedSince === undefined ? undefined : this.reason;
  }

  async settle(): Promise<void> {
    for (;;) {
      try {
        await this.d.durable();
        if (this.pausedSince !== undefined) {
          const ms = this.d.timers.now() - this.pausedSince;
          this.pausedSince = undefined;
          this.d.onResume(ms);
        }
        return;
      } catch (err) {
        if (this.d.stopped()) return;
        if (this.pausedSince === undefined) {
          this.pausedSince = this.d.timers.now();
          this.reason = rootCause(err);
          this.d.onPause(this.reason, err);
        }
        await new Promise<void>((resolve) => this.d.timers.setTimeout(resolve, this.d.retryMs));
        if (this.d.stopped()) return;
      }
    }
  }
}
