import type { Timers } from './options.ts';

export interface TrialClockOptions {
  /** Trial time with the gateway reachable (§6.9.3 T; `trialTimeoutMs`). */
  timeoutMs: number;
  /** Longest trial in all, reachable or not, from the trial boot (`trialMaxMs`). */
  maxMs: number;
  timers: Timers;
  now: () => number;
  /** The trial is over unconfirmed: reboot (and revert, §6.9.2 rule 1). */
  onExpire(why: string): void;
}

/**
 * The trial timeout of a device (docs/protocol.md §6.9.3): it runs only while the device is
 * connected to the gateway's broker, so a gateway that is down (restarting, crashed, its host
 * rebooting) does not make the device revert an image it could still confirm — the device waits
 * for it; and the whole trial, connected or not, is bounded by `maxMs` from the trial boot, so an
 * image that never gets through to the gateway is reverted all the same (issue 17.5).
 */
export class TrialClock {
  private left: number;
  private since: number | undefined;
  private countdown: unknown;
  private readonly bound: unknown;
  private over = false;

  constructor(private readonly o: TrialClockOptions, connected: boolean) {
    this.left = o.timeoutMs;
    const maxMs = Math.max(o.maxMs, o.timeoutMs);
    this.bound = o.timers.setTimeout(() => this.expire(`trial not confirmed within ${maxMs} ms of the trial boot (the gateway unreachable for most of it)`), maxMs);
    if (connected) this.connected();
  }

  /** Connected to the broker: the trial time runs. */
  connected(): void {
    if (this.over || this.since !== undefined) return;
    this.since = this.o.now();
    this.countdown = this.o.timers.setTimeout(() => this.expire(`trial not confirmed within ${this.o.timeoutMs} ms`), this.left);
  }

  /** Disconnected: the trial time stops until the next connect. */
  disconnected(): void {
    if (this.over || this.since === undefined) return;
    this.left = Math.max(0, this.left - (this.o.now() - this.since));
    this.since = undefined;
    this.o.timers.clearTimeout(this.countdown);
    this.countdown = undefined;
  }

  /** Confirmed, rebooting or powered off: no more timers. */
  stop(): void {
    this.over = true;
    this.o.timers.clearTimeout(this.bound);
    if (this.countdown !== undefined) this.o.timers.clearTimeout(this.countdown);
    this.countdown = undefined;
  }

  private expire(why: string): void {
    if (this.over) return;
    this.stop();
    this.o.onExpire(why);
  }
}
