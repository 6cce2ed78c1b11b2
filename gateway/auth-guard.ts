import { FwError } from '../protocol/errors.ts';

/**
 * What a failed login costs the gateway (issue 18 item 6). Each password check is one scrypt
 * (16 MiB, ~45 ms of CPU) on the libuv thread pool, which the image store and the journal use for
 * their file I/O too. So:
 *  - FailureBackoff: after a failed password check, further checks from the same address and for
 *    the same client id are refused without scrypt for a while (doubling per consecutive failure,
 *    capped); a success clears it;
 *  - ScryptLimiter: at most `maxConcurrent` scrypt derivations run at once (well below the pool's
 *    4 threads, so file I/O always finds a free thread), at most `maxQueued` wait; beyond that a
 *    check is refused at once (E_BROKER_LIMIT: CONNACK 3, server unavailable).
 */

interface Failures { count: number; last: number }

export interface BackoffOptions {
  /** First wait after a failure, ms; doubles per consecutive failure. 0 = off. */
  baseMs: number;
  maxMs: number;
  /** Addresses and ids tracked at most (the oldest is forgotten). */
  maxTracked?: number;
}

export class FailureBackoff {
  readonly #byAddress = new Map<string, Failures>();
  readonly #byId = new Map<string, Failures>();
  readonly #max: number;

  constructor(private readonly opts: BackoffOptions, private readonly now: () => number = Date.now) {
    this.#max = opts.maxTracked ?? 10_000;
  }

  /** Why a password check from `address` for `clientId` must wait, or undefined when it may run now. */
  refusal(address: string, clientId: string): string | undefined {
    const a = this.#wait(this.#byAddress.get(address));
    if (a > 0) return `too many failed logins from ${address}: retry in ${a} ms`;
    const i = this.#wait(this.#byId.get(clientId));
    if (i > 0) return `too many failed logins for ${clientId}: retry in ${i} ms`;
    return undefined;
  }

  failed(address: string, clientId: string): void {
    if (this.opts.baseMs === 0) return;
    this.#bump(this.#byAddress, address);
    this.#bump(this.#byId, clientId);
  }

  succeeded(address: string, clientId: string): void {
    this.#byAddress.delete(address);
    this.#byId.delete(clientId);
  }

  /** ms left of the wait after `f`'s failures (0: none). */
  #wait(f: Failures | undefined): number {
    if (!f || this.opts.baseMs === 0) return 0;
    const wait = Math.min(this.opts.maxMs, this.opts.baseMs * 2 ** Math.min(f.count - 1, 30));
    return Math.max(0, f.last + wait - this.now());
  }

  #bump(map: Map<string, Failures>, key: string): void {
    const t = this.now();
    const f = map.get(key);
    // a failure long after the last one (twice the cap) starts a new series
    const count = f && t - f.last <= 2 * this.opts.maxMs ? f.count + 1 : 1;
    map.delete(key);
    map.set(key, { count, last: t });
    if (map.size > this.#max) map.delete(map.keys().next().value!);
  }
}

export class ScryptLimiter {
  #running = 0;
  readonly #waiting: (() => void)[] = [];
  /** Highest number running at once so far (tests, measurements). */
  peak = 0;
  /** Checks refused because the queue was full. */
  refused = 0;
  /** Derivations run so far. */
  runs = 0;

  constructor(readonly maxConcurrent: number, readonly maxQueued: number) {
    if (!Number.isInteger(maxConcurrent) || maxConcurrent < 1) throw new FwError('E_CONFIG', 'maxConcurrentScrypt must be an integer >= 1');
  }

  /** Run `derive` when a slot is free; E_BROKER_LIMIT at once when maxQueued are already waiting. */
  async run<T>(derive: () => Promise<T>): Promise<T> {
    if (this.#running >= this.maxConcurrent) {
      if (this.#waiting.length >= this.maxQueued) {
        this.refused++;
        throw new FwError('E_BROKER_LIMIT', `${this.maxQueued} password checks already waiting`);
      }
      await new Promise<void>((resolve) => this.#waiting.push(resolve)); // the slot is handed over: #running already counts it
    } else {
      this.#running++;
    }
    this.peak = Math.max(this.peak, this.#running);
    this.runs++;
    try {
      return await derive();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#running--;
    }
  }

  get running(): number {
    return this.#running;
  }

  get queued(): number {
    return this.#waiting.length;
  }
}
