import { FwError, type ErrorCode } from '../protocol/errors.ts';

/** Injected clock and timers, so timeouts are testable without sleeping. */
export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  now(): number;
}

export const realTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
  now: () => performance.now(),
};

/**
 * Wait for the first value a source produces that matches (herdsman's "waitress"): the waiter
 * owns its timeout and creates its error where the request was made, so a timeout names what was
 * awaited. `listen` registers a callback and returns its unregister function.
 */
export function waitForValue<T, R extends T>(
  listen: (fn: (v: T) => void) => () => void,
  match: (v: T) => v is R,
  timeoutMs: number,
  timers: Timers,
  code: ErrorCode,
  what: string,
): Promise<R> {
  const error = new FwError(code, `timed out after ${timeoutMs} ms waiting for ${what}`);
  return new Promise<R>((resolve, reject) => {
    const stop = listen((v) => {
      if (!match(v)) return;
      timers.clearTimeout(timer);
      stop();
      resolve(v);
    });
    const timer = timers.setTimeout(() => {
      stop();
      reject(error);
    }, timeoutMs);
  });
}

/**
 * A bounded queue of values with one consumer awaiting the next: nothing that arrives between
 * two awaits is lost (acks during a chunk window, for instance).
 */
export class Inbox<T> {
  private readonly queue: T[] = [];
  private waiting: { resolve: (v: T) => void; reject: (e: unknown) => void; timer: unknown } | undefined;
  private closedWith: { error: unknown } | undefined;
  dropped = 0;

  constructor(private readonly timers: Timers, private readonly capacity = 4096) {}

  push(value: T): void {
    if (this.closedWith) return;
    const w = this.waiting;
    if (w) {
      this.waiting = undefined;
      this.timers.clearTimeout(w.timer);
      w.resolve(value);
      return;
    }
    if (this.queue.length >= this.capacity) {
      this.queue.shift();
      this.dropped++;
    }
    this.queue.push(value);
  }

  /** The next value, or a rejection with `code` after `timeoutMs`. One consumer at a time. */
  next(timeoutMs: number, code: ErrorCode, what: string): Promise<T> {
    if (this.closedWith) return Promise.reject(this.closedWith.error);
    if (this.queue.length > 0) return Promise.resolve(this.queue.shift() as T);
    if (this.waiting) return Promise.reject(new FwError('E_CANCELLED', 'inbox already has a consumer'));
    return new Promise<T>((resolve, reject) => {
      const timer = this.timers.setTimeout(() => {
        this.waiting = undefined;
        reject(new FwError(code, `timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      this.waiting = { resolve, reject, timer };
    });
  }

  /** Drain what is queued without waiting. */
  takeAll(): T[] {
    return this.queue.splice(0, this.queue.length);
  }

  /** Fail the current and every later next() with `err`; values pushed afterwards are ignored. */
  close(err: unknown): void {
    this.closedWith ??= { error: err };
    this.queue.length = 0;
    const w = this.waiting;
    this.waiting = undefined;
    if (w) {
      this.timers.clearTimeout(w.timer);
      w.reject(err);
    }
  }
}
