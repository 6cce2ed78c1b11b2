import { describeError, FwError, isFwError } from '../protocol/errors.ts';
import type { LinkNotice, RunPhase } from './notices.ts';
import { fmtMs } from './render.ts';

/** Time, injected so the backoff is tested without sleeping. */
export interface Clock {
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const realClock: Clock = {
  now: () => Date.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

/** What the reconnect loop needs of a connection: whether its link was lost, and closing it. */
export interface Lossy {
  readonly lost: FwError | undefined;
  close(): Promise<void>;
}

export interface ReconnectOptions<C extends Lossy> {
  /** The port path, for messages. */
  port: string;
  /** Open a new connection (port, link handshake, hello) within `timeoutMs`. */
  open(timeoutMs: number): Promise<C>;
  /** How long to keep trying after a loss; 0: give up at once. */
  timeoutMs: number;
  /** First wait between attempts; doubles up to backoffMaxMs. */
  backoffMs: number;
  backoffMaxMs: number;
  /** Most one attempt may take (it gets less when less time is left). */
  attemptTimeoutMs: number;
  notify(n: LinkNotice): void;
  clock?: Clock;
  /** Aborted (fwpush interrupted): a loss is not retried. */
  signal?: AbortSignal;
}

/**
 * Runs the steps of a push over a connection that may be lost (cable pulled, port gone, peer
 * silent): on a loss it reopens the same port with bounded backoff, up to `timeoutMs`, and runs
 * the step again on the new connection. The step keeps its own progress and continues from it.
 * Errors that are not a lost link pass through untouched.
 */
export class Reconnecting<C extends Lossy> {
  private conn: C;
  private readonly clock: Clock;

  constructor(first: C, private readonly o: ReconnectOptions<C>) {
    this.conn = first;
    this.clock = o.clock ?? realClock;
  }

  /** The connection in use now. */
  get current(): C {
    return this.conn;
  }

  /** Run `step`, and again after each reconnect (`again` true) until it settles without a lost link. */
  async run<T>(phase: () => RunPhase, step: (conn: C, again: boolean) => Promise<T>): Promise<T> {
    let again = false;
    for (;;) {
      try {
        return await step(this.conn, again);
      } catch (err) {
        const lost = this.conn.lost;
        if (!lost || this.o.signal?.aborted) throw err;
        if (this.o.timeoutMs <= 0) {
          throw new FwError(lost.code, `lost the link to the gateway on ${this.o.port} (${lost.message}); not reconnecting (--reconnect-timeout 0)`, {
            cause: err, details: { port: this.o.port, phase: phase() },
          });
        }
        await this.reconnect(lost, phase());
        again = true;
      }
    }
  }

  private async reconnect(lost: FwError, phase: RunPhase): Promise<void> {
    const { port, timeoutMs, notify } = this.o;
    const started = this.clock.now();
    const deadline = started + timeoutMs;
    notify({ event: 'link-lost', port, phase, code: lost.code, message: lost.message, reconnectTimeoutMs: timeoutMs });
    await this.conn.close();
    let delay = this.o.backoffMs;
    let attempts = 0;
    let last: unknown = lost;
    for (;;) {
      if (this.o.signal?.aborted) throw new FwError('E_LINK_CLOSED', `interrupted while reconnecting on ${port}`, { cause: last });
      const left = deadline - this.clock.now();
      if (left <= 0) break;
      attempts++;
      try {
        this.conn = await this.o.open(Math.min(left, this.o.attemptTimeoutMs));
        notify({ event: 'reconnected', port, phase, attempts, afterMs: this.clock.now() - started });
        return;
      } catch (err) {
        // A port that is not back yet, a handshake or hello that is not answered: try again.
        // Anything else (the gateway refuses the session) ends the run.
        if (!isFwError(err) || !err.code.startsWith('E_LINK_')) throw err;
        last = err;
      }
      const wait = Math.min(delay, deadline - this.clock.now());
      if (wait > 0) await this.clock.sleep(wait);
      delay = Math.min(delay * 2, this.o.backoffMaxMs);
    }
    throw new FwError('E_LINK_CLOSED',
      `lost the link to the gateway on ${port} and could not reconnect in ${fmtMs(this.clock.now() - started)} ` +
      `(${attempts} attempt${attempts === 1 ? '' : 's'}, --reconnect-timeout ${timeoutMs / 1000} s; last: ${describeError(last)})`,
      { cause: last, details: { port, phase, attempts, reconnectTimeoutMs: timeoutMs } });
  }
}
