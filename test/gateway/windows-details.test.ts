import assert from 'node:assert/strict';
import { MAX_WINDOW_MIN, MaintenanceWindows, cronProblem, systemClock, timeZoneProblem, type Clock } from '../../gateway/windows.ts';
import { isFwError } from '../../protocol/errors.ts';

/**
 * gateway/windows.ts in detail (docs/operations.md "Maintenance windows"): what a refused spec says,
 * the duration's bounds, cron lists given out of order, the state's memo, start/stop, and the
 * system clock. Complements test/gateway/windows.test.ts (opening, closing, DST, node-cron oracle).
 */

/** A clock that records its timers and never fires them on its own. */
class RecordingClock implements Clock {
  readonly pending = new Map<number, number>();
  private seq = 0;
  constructor(public t: number) {}
  now(): number {
    return this.t;
  }
  setTimeout(_fn: () => void, ms: number): unknown {
    this.pending.set(++this.seq, this.t + ms);
    return this.seq;
  }
  clearTimeout(h: unknown): void {
    this.pending.delete(h as number);
  }
}

const at = (iso: string): number => Date.parse(iso);

describe('maintenance windows: specs, bounds and bookkeeping', () => {
  it('cronProblem names the field and the value; L, W and # day forms are refused by name', () => {
    assert.equal(cronProblem('0 2 * * *'), undefined);
    assert.equal(cronProblem('61 * * * *'), '"61 * * * *" is not a valid cron expression (minute: 61 is a invalid expression for minute)');
    assert.equal(cronProblem('bad'), '"bad" is not a valid cron expression (expected 5 or 6 fields but got 1)');
    assert.equal(cronProblem('0 2 L * *'), '"0 2 L * *": L is not supported for maintenance windows (no L, W or # day forms)');
    assert.equal(cronProblem('0 2 * * 5#2'), '"0 2 * * 5#2": 5#2 is not supported for maintenance windows (no L, W or # day forms)');
  });

  it('timeZoneProblem: an IANA zone is fine, anything else is named', () => {
    assert.equal(timeZoneProblem('Europe/Berlin'), undefined);
    assert.equal(timeZoneProblem('Mars/Olympus'), 'unknown time zone "Mars/Olympus"');
  });

  it('durationMin: 1..MAX_WINDOW_MIN whole minutes; a refusal names the window and the bound', () => {
    const clock = new RecordingClock(at('2026-11-22T00:00:00Z'));
    const mk = (durationMin: number, index = 0): MaintenanceWindows => new MaintenanceWindows(
      [...Array.from({ length: index }, () => ({ cron: '0 1 * * *', durationMin: 10, timeZone: 'UTC' })), { cron: '0 2 * * *', durationMin, timeZone: 'UTC' }], clock);
    assert.equal(mk(1).configured, true);
    assert.equal(mk(MAX_WINDOW_MIN).state(at('2026-11-29T01:59:00Z')).open, true, 'a window of exactly a week');
    for (const bad of [0, MAX_WINDOW_MIN + 1, 1.5, -5]) {
      assert.throws(() => mk(bad, 1), (err: unknown) => isFwError(err, 'E_CONFIG') && err.message === `maintenance window 1: durationMin ${bad} is not 1..${MAX_WINDOW_MIN}`, String(bad));
    }
    assert.throws(() => new MaintenanceWindows([{ cron: '0 2 * * *', durationMin: 5, timeZone: 'Mars/Olympus' }], clock),
      (err: unknown) => isFwError(err, 'E_CONFIG') && err.message === 'maintenance window 0: unknown time zone "Mars/Olympus"');
  });

  it('a cron list given out of order opens at each of its times in order', () => {
    const clock = new RecordingClock(at('2026-11-22T00:00:00Z'));
    const w = new MaintenanceWindows([{ cron: '50,10 45,15 2 * * *', durationMin: 10, timeZone: 'UTC' }], clock);
    assert.deepEqual(w.state(at('2026-11-22T02:00:00Z')), { open: false, nextOpenAt: at('2026-11-22T02:15:10Z') });
    assert.deepEqual(w.state(at('2026-11-22T02:20:00Z')), { open: true, endsAt: at('2026-11-22T02:25:50Z'), nextOpenAt: at('2026-11-22T02:45:10Z') });
    assert.deepEqual(w.state(at('2026-11-22T02:56:00Z')), { open: false, nextOpenAt: at('2026-11-23T02:15:10Z') });
  });

  it('no windows: always open, nothing scheduled; state(at) is remembered for the same instant only', () => {
    const clock = new RecordingClock(at('2026-11-22T00:00:00Z'));
    const none = new MaintenanceWindows([], clock);
    assert.equal(none.configured, false);
    assert.deepEqual(none.state(), { open: true });
    none.start();
    assert.equal(clock.pending.size, 0);
    const w = new MaintenanceWindows([{ cron: '0 2 * * *', durationMin: 60, timeZone: 'UTC' }], clock);
    const s = w.state(at('2026-11-22T02:30:00Z'));
    assert.equal(w.state(at('2026-11-22T02:30:00Z')), s, 'the same object for the same instant');
    assert.ok(Object.isFrozen(s));
    assert.notEqual(w.state(at('2026-11-22T02:31:00Z')), s);
  });

  it('start() twice arms one timer; stop() clears it; a listener-free restart arms it again', () => {
    const clock = new RecordingClock(at('2026-11-22T01:00:00Z'));
    const w = new MaintenanceWindows([{ cron: '0 2 * * *', durationMin: 60, timeZone: 'UTC' }], clock);
    w.start();
    w.start();
    assert.deepEqual([...clock.pending.values()], [at('2026-11-22T02:00:00Z')], 'one timer, for the opening');
    w.stop();
    assert.equal(clock.pending.size, 0, 'stop() clears the timer');
    w.start();
    assert.equal(clock.pending.size, 1);
    w.stop();
  });

  it('systemClock is the wall clock, and its timers run', async () => {
    assert.ok(Math.abs(systemClock.now() - Date.now()) < 1000);
    await new Promise<void>((resolve) => systemClock.setTimeout(resolve, 1));
    let fired = false;
    const h = systemClock.setTimeout(() => { fired = true; }, 60_000);
    systemClock.clearTimeout(h);
    assert.equal(fired, false);
  });
});
