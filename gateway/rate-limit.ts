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

/** Window over which a client's dropped publishes are counted against `dropLimit`. */
export const PUBLISH_DROP_WINDOW_MS = 10_000;

export type PublishVerdict = 'ok' | 'drop' | 'disconnect';

/**
 * Publish rate per client (issue 18 item 7): a token bucket of `burst` tokens refilled at
 * `perSec`; a publish without a token is dropped (counted), and a client with more than
 * `dropLimit` drops within PUBLISH_DROP_WINDOW_MS is disconnected. State lives as long as the
 * client is connected (forget() on disconnect). The clock is injected.
 */
export class PublishRateLimiter {
  readonly #clients = new Map<string, { tokens: number; at: number; drops: number; since: number }>();

  constructor(readonly perSec: number, readonly burst: number, readonly dropLimit: number, private readonly now: () => number = Date.now) {}

  /** Account one publish of `clientId`. Always 'ok' when perSec is 0 (off). */
  take(clientId: string): PublishVerdict {
    if (this.perSec === 0) return 'ok';
    const t = this.now();
    let c = this.#clients.get(clientId);
    if (!c) {
      c = { tokens: this.burst, at: t, drops: 0, since: t };
      this.#clients.set(clientId, c);
    }
    c.tokens = Math.min(this.burst, c.tokens + ((t - c.at) * this.perSec) / 1000);
    c.at = t;
    if (c.tokens >= 1) {
      c.tokens -= 1;
      return 'ok';
    }
    if (t - c.since > PUBLISH_DROP_WINDOW_MS) {
      c.drops = 0;
      c.since = t;
    }
    c.drops++;
    return c.drops > this.dropLimit ? 'disconnect' : 'drop';
  }

  forget(clientId: string): void {
    this.#clients.delete(clientId);
  }

  get tracked(): number {
    return this.#clients.size;
  }
}

/**
 * Rate-limited logging of repeated refusals (issue 18 item 7): per key (e.g. the kind of refusal
 * and the client or address), the first line is logged, then at most one per `intervalMs`, which
 * says how many were left out since. At most `maxKeys` keys are tracked (the oldest is forgotten).
 */
export class LogThrottle {
  readonly #keys = new Map<string, { at: number; suppressed: number }>();

  constructor(readonly intervalMs: number, private readonly now: () => number = Date.now, readonly maxKeys = 10_000) {}

  /** Whether to log now for `key`, and how many lines for it were left out since the last one. */
  allow(key: string): { log: boolean; suppressed: number } {
    const t = this.now();
    const k = this.#keys.get(key);
    if (k && t - k.at < this.intervalMs) {
      k.suppressed++;
      return { log: false, suppressed: k.suppressed };
    }
    const suppressed = k?.suppressed ?? 0;
    this.#keys.delete(key);
    this.#keys.set(key, { at: t, suppressed: 0 });
    if (this.#keys.size > this.maxKeys) this.#keys.delete(this.#keys.keys().next().value!);
    return { log: true, suppressed };
  }

  /** `line`, with the count of left-out repeats, through `log` when allowed for `key`. */
  log(key: string, line: string, log: (line: string) => void): void {
    const a = this.allow(key);
    if (a.log) log(a.suppressed > 0 ? `${line} (and ${a.suppressed} more like it since the last such line)` : line);
  }
}
