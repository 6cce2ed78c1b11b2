import assert from 'node:assert/strict';
import type { Clock } from '../../gateway/windows.ts';

/**
 * A wall clock for the maintenance windows (gateway/windows.ts `Clock`) whose timers fire only when
 * the test advances it, each at its own instant. `early`: every timer fires that many ms early (as
 * a timer can be against the wall clock), but after at least 1 ms, as Node's are. `strict`:
 * clearTimeout accepts only handles setTimeout returned.
 */
export class FakeWallClock implements Clock {
  private seq = 0;
  readonly timers = new Map<number, { at: number; fn: () => void }>();
  /** Every delay asked for, in order. */
  readonly delays: number[] = [];
  /** Every handle cleared, in order. */
  readonly cleared: unknown[] = [];
  constructor(public t: number, private readonly opts: { early?: number; strict?: boolean } = {}) {}
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    this.delays.push(ms);
    const early = this.opts.early ?? 0;
    this.timers.set(++this.seq, { at: this.t + Math.max(ms - early, Math.min(ms, 1)), fn });
    return this.seq;
  }
  clearTimeout(h: unknown): void {
    if (this.opts.strict) assert.ok(typeof h === 'number' && h >= 1 && h <= this.seq, `clearTimeout(${String(h)}): not a handle setTimeout returned`);
    this.cleared.push(h);
    this.timers.delete(h as number);
  }
  /** Run the timers due up to `until`, in order, each at its own instant; then stand at `until`. */
  advanceTo(until: number): void {
    for (let fired = 0; ; fired++) {
      assert.ok(fired < 10_000, 'timers keep firing without time passing');
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const e of this.timers) if (!next || e[1].at < next[1].at) next = e;
      if (!next || next[1].at > until) break;
      this.timers.delete(next[0]);
      this.t = Math.max(this.t, next[1].at);
      next[1].fn();
    }
    this.t = until;
  }
}
