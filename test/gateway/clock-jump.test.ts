import assert from 'node:assert/strict';
import { ClockJumpWatch, watchClockJumps } from '../../gateway/clock-jump.ts';
import { windowGate } from '../../gateway/rollout/gate.ts';
import { MaintenanceWindows, type Clock, type WindowSpec } from '../../gateway/windows.ts';

/**
 * A host clock: timers run on monotonic time; the wall clock is monotonic time plus an offset
 * that a step (NTP, `date -s`) changes without any time passing.
 */
class HostClock implements Clock {
  private mono = 0;
  private offset: number;
  private seq = 0;
  private readonly timers = new Map<number, { at: number; fn: () => void }>();
  constructor(wallStart: number) {
    this.offset = wallStart;
  }
  now(): number {
    return this.mono + this.offset;
  }
  monotonic(): number {
    return this.mono;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    this.timers.set(++this.seq, { at: this.mono + Math.max(1, ms), fn });
    return this.seq;
  }
  clearTimeout(h: unknown): void {
    this.timers.delete(h as number);
  }
  /** The wall clock steps by `ms`; no time passes. */
  step(ms: number): void {
    this.offset += ms;
  }
  /** Let `ms` of real (monotonic) time pass, firing timers in order. */
  advance(ms: number): void {
    const until = this.mono + ms;
    for (let n = 0; n < 100_000; n++) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const e of this.timers) if (!next || e[1].at < next[1].at) next = e;
      if (!next || next[1].at > until) break;
      this.timers.delete(next[0]);
      this.mono = next[1].at;
      next[1].fn();
    }
    this.mono = until;
  }
}

const at = (iso: string): number => Date.parse(iso);
const MIN = 60_000;
const NIGHTLY: WindowSpec[] = [{ cron: '0 3 * * *', durationMin: 60, timeZone: 'UTC' }];

/** The windows with the gateway's clock-jump watch (5 s tick, 2 s tolerance), recording each change at its wall time. */
function site(start: string, jumpWatch = true): { clock: HostClock; events: string[]; warnings: string[]; windows: MaintenanceWindows } {
  const clock = new HostClock(at(start));
  const windows = new MaintenanceWindows(NIGHTLY, clock);
  const events: string[] = [];
  windows.on('open', () => events.push(`open ${new Date(clock.now()).toISOString()}`));
  windows.on('close', () => events.push(`close ${new Date(clock.now()).toISOString()}`));
  windows.start();
  const warnings: string[] = [];
  if (jumpWatch) watchClockJumps(windows, clock, () => clock.monotonic(), { clockCheckMs: 5000, clockJumpMs: 2000 }, { warn: (_o, msg) => warnings.push(msg) });
  return { clock, events, warnings, windows };
}

describe('a wall-clock step re-checks the maintenance windows (issue 17.7)', () => {
  it('a step forward before a window: it opens when the wall clock reaches its start, not when the old timer fires', () => {
    const { clock, events, warnings, windows } = site('2026-06-01T02:00:00Z');
    clock.advance(10 * MIN); // 02:10
    clock.step(30 * MIN); // NTP: it was really 02:40
    clock.advance(30 * MIN);
    assert.deepEqual(events, ['open 2026-06-01T03:00:00.000Z']);
    assert.match(warnings.join(), /wall clock stepped forward by 1800000 ms/);
    windows.stop();
  });

  it('without the watch the window opens as late as the step (what the watch guards)', () => {
    const { clock, events, windows } = site('2026-06-01T02:00:00Z', false);
    clock.advance(10 * MIN);
    clock.step(30 * MIN);
    clock.advance(60 * MIN);
    assert.deepEqual(events, ['open 2026-06-01T03:30:00.000Z']);
    windows.stop();
  });

  it('a step into a window opens it within one check; its close follows the wall clock too', () => {
    const { clock, events, windows } = site('2026-06-01T02:00:00Z');
    const gate = windowGate(windows, clock);
    clock.advance(10 * MIN);
    clock.step(70 * MIN); // 02:10 -> 03:20, inside the window
    clock.advance(5000);
    assert.equal(gate.isOpen(), true);
    assert.deepEqual(events, ['open 2026-06-01T03:20:05.000Z']);
    clock.advance(40 * MIN);
    assert.deepEqual(events, ['open 2026-06-01T03:20:05.000Z', 'close 2026-06-01T04:00:00.000Z']);
    windows.stop();
  });

  it('a step back inside a window keeps it open until its end by the wall clock', () => {
    const { clock, events, windows } = site('2026-06-01T03:10:00Z');
    clock.step(-5 * MIN); // 03:05
    clock.advance(54 * MIN); // 03:59
    assert.deepEqual(events, []);
    clock.advance(2 * MIN);
    assert.deepEqual(events, ['close 2026-06-01T04:00:00.000Z']);
    windows.stop();
  });

  it('a step past a whole window skips it (its time has passed); the next one opens on time', () => {
    const { clock, events, windows } = site('2026-06-01T02:00:00Z');
    clock.step(3 * 60 * MIN); // 02:00 -> 05:00
    clock.advance(24 * 60 * MIN);
    assert.deepEqual(events, ['open 2026-06-02T03:00:00.000Z', 'close 2026-06-02T04:00:00.000Z']);
    windows.stop();
  });

  it('the watch: drift within the tolerance is not a step; stop() ends the ticks', () => {
    const clock = new HostClock(0);
    const jumps: number[] = [];
    const watch = new ClockJumpWatch({ wall: () => clock.now(), monotonic: () => clock.monotonic(), timers: clock, tickMs: 1000, toleranceMs: 200, onJump: (d) => jumps.push(d) });
    watch.start();
    clock.advance(3000);
    clock.step(150);
    clock.advance(1000);
    clock.step(-500);
    clock.advance(1000);
    assert.deepEqual(jumps, [-500]);
    watch.stop();
    clock.step(10_000);
    clock.advance(5000);
    assert.deepEqual(jumps, [-500]);
  });
});
