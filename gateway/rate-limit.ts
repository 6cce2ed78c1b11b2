/**
 * Connect rate per remote address: one token bucket per address, holding at most `perMinute`
 * tokens (a full minute's worth: a site that boots all at once gets through) and refilled at
 * `perMinute` per minute. A connection takes one token; none left = refused. Buckets that have
 * refilled completely are forgotten, so memory follows the addresses seen in the last minute.
 * The clock is injected.
 */
export class ConnectRateLimiter {
  readonly #buckets = new Map<string, { tokens: number; at: number }>();
  readonly #perMs: number;
  #lastSweep: number;

  constructor(readonly perMinute: number, private readonly now: () => number = Date.now) {
    this.#perMs = perMinute / 60_000;
    this.#lastSweep = now();
  }

  /** Take a token for `address`; false when its bucket is empty. Always true when perMinute is 0 (off). */
  take(address: string): boolean {
    if (this.perMinute === 0) return true;
    const t = this.now();
    this.#sweep(t);
    const b = this.#buckets.get(address);
    const tokens = b ? Math.min(this.perMinute, b.tokens + (t - b.at) * this.#perMs) : this.perMinute;
    if (tokens < 1) {
      if (b) {
        b.tokens = tokens;
        b.at = t;
      }
      return false;
    }
    this.#buckets.set(address, { tokens: tokens - 1, at: t });
    return true;
  }

  /** Addresses with a bucket that is not full. */
  get tracked(): number {
    return this.#buckets.size;
  }

  #sweep(t: number): void {
    if (t - this.#lastSweep < 60_000) return;
    this.#lastSweep = t;
    for (const [addr, b] of this.#buckets) if (b.tokens + (t - b.at) * this.#perMs >= this.perMinute) this.#buckets.delete(addr);
  }
}
