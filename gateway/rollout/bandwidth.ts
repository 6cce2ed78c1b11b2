import type { Timers } from '../waiter.ts';

/**
 * A token bucket shared by every device session: the site's aggregate cap on chunk bytes per
 * second (`rollout.siteBps`). take() resolves when the bytes may go; waiters are served in order.
 * Bursts are bounded by `burstBytes`.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;
  private tail: Promise<void> = Promise.resolve();

  constructor(private readonly bps: number, private readonly timers: Timers, private readonly burstBytes = Math.max(16 * 1024, bps / 20)) {
    this.tokens = this.burstBytes;
    this.last = timers.now();
  }

  take(bytes: number): Promise<void> {
    const turn = this.tail.then(() => this.wait(bytes));
    this.tail = turn;
    return turn;
  }

  private async wait(bytes: number): Promise<void> {
    this.refill();
    if (this.tokens < bytes) {
      const ms = Math.ceil(((bytes - this.tokens) * 1000) / this.bps);
      await new Promise<void>((resolve) => this.timers.setTimeout(resolve, ms));
      this.refill();
    }
    this.tokens -= bytes;
  }

  private refill(): void {
    const now = this.timers.now();
    this.tokens = Math.min(this.burstBytes, this.tokens + ((now - this.last) * this.bps) / 1000);
    this.last = now;
  }
}
