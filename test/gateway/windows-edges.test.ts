import assert from 'node:assert/strict';
import { getTasks } from 'node-cron';
import { MaintenanceWindows, cronProblem, nodeCronStarts, systemClock, type WindowSpec } from '../../gateway/windows.ts';
import { FakeWallClock } from '../helpers/fake-wall-clock.ts';

/**
 * gateway/windows.ts at its edges: what a refused cron says when several things are wrong, the
 * clock contract (Node's longest timeout; clearTimeout only with a handle it gave), recheck() and
 * onStop(), windows that touch or chain without end, a start beyond the search horizon, repeated and
 * skipped wall times on DST days (several starts in the repeated hour, the change instant itself, a
 * zone whose change comes late in the UTC day), and node-cron's zone for the start scheduler.
 * Complements test/gateway/windows.test.ts and windows-details.test.ts.
 */

/** A wall clock whose timers fire when the test advances it; clearTimeout only takes handles setTimeout returned. */
const strictClock = (t: number): FakeWallClock => new FakeWallClock(t, { strict: true });

const at = (iso: string): number => Date.parse(iso);
const iso = (t: number | undefined): string | undefined => (t === undefined ? undefined : new Date(t).toISOString());

/** Start at `from`, run to `to`: the events with their instants. */
function events(specs: WindowSpec[], from: string, to: string): string[] {
  const clock = strictClock(at(from));
  const w = new MaintenanceWindows(specs, clock);
  const out: string[] = [];
  w.on('open', () => out.push(`open ${iso(clock.now())}`));
  w.on('close', () => out.push(`close ${iso(clock.now())}`));
  w.start();
  clock.advanceTo(at(to));
  w.stop();
  return out;
}

describe('maintenance windows: edges', () => {
  it('cronProblem names every bad field, and every unsupported day form', () => {
    assert.equal(cronProblem('61 25 * * *'),
      '"61 25 * * *" is not a valid cron expression (minute: 61 is a invalid expression for minute; hour: 25 is a invalid expression for hour)');
    assert.equal(cronProblem('0 2 L * 5#2'), '"0 2 L * 5#2": L, 5#2 is not supported for maintenance windows (no L, W or # day forms)');
  });

  it('systemClock.clearTimeout cancels the timer', async () => {
    let fired = false;
    const h = systemClock.setTimeout(() => { fired = true; }, 1);
    systemClock.clearTimeout(h);
    await new Promise<void>((resolve) => systemClock.setTimeout(resolve, 20)); // due after the cancelled one
    assert.equal(fired, false);
  });

  it('a wait longer than Node allows is chained in timeouts of at most 2^31-1 ms, the first exactly that', () => {
    const clock = strictClock(at('2026-01-02T00:00:00Z'));
    const w = new MaintenanceWindows([{ cron: '0 0 1 1 *', durationMin: 60, timeZone: 'UTC' }], clock);
    w.start();
    assert.deepEqual(clock.delays, [2 ** 31 - 1]);
    w.stop();
  });

  it('clearTimeout only ever gets a handle setTimeout returned: stop before start, stop twice, timers that fire, rechecks', () => {
    const clock = strictClock(at('2026-01-14T00:00:00Z'));
    const w = new MaintenanceWindows([{ cron: '0 2 * * *', durationMin: 60, timeZone: 'UTC' }], clock);
    w.stop();
    w.start();
    clock.advanceTo(at('2026-01-14T02:30:00Z')); // opened by its timer
    w.recheck();
    clock.advanceTo(at('2026-01-15T12:00:00Z'));
    w.stop();
    w.stop();
    assert.equal(clock.timers.size, 0);
    assert.ok(clock.cleared.length > 0, 'the live timer was cleared');
  });

  it('recheck() mid-window says nothing and keeps one timer; on a stopped instance it does nothing at all', () => {
    const clock = strictClock(at('2026-01-14T02:10:00Z'));
    const w = new MaintenanceWindows([{ cron: '0 2 * * *', durationMin: 60, timeZone: 'UTC' }], clock);
    const seen: string[] = [];
    w.on('open', () => seen.push('open'));
    w.on('close', () => seen.push('close'));
    w.recheck();
    assert.deepEqual([clock.timers.size, seen], [0, []], 'not started: no timer, no event');
    w.start();
    clock.t = at('2026-01-14T02:20:00Z');
    w.recheck(); // a scheduler's start or a clock-jump watch, inside the window
    assert.deepEqual(seen, []);
    assert.deepEqual([...clock.timers.values()].map((t) => iso(t.at)), ['2026-01-14T03:00:00.000Z'], 'one timer, for the close');
    w.stop();
    clock.t = at('2026-01-14T05:00:00Z');
    w.recheck();
    assert.deepEqual([clock.timers.size, seen], [0, []], 'stopped: no timer, no event');
  });

  it('onStop(fn): fn runs at stop(), once', () => {
    const w = new MaintenanceWindows([{ cron: '0 2 * * *', durationMin: 60, timeZone: 'UTC' }], strictClock(at('2026-01-14T00:00:00Z')));
    let stops = 0;
    w.onStop(() => { stops++; });
    w.start();
    w.stop();
    w.stop();
    assert.equal(stops, 1);
  });

  it('a window that starts exactly as another ends extends it: the state says so before the seam', () => {
    const w = new MaintenanceWindows([
      { cron: '0 1 * * *', durationMin: 60, timeZone: 'UTC' },
      { cron: '0 2 * * *', durationMin: 30, timeZone: 'UTC' },
    ], strictClock(0));
    assert.deepEqual(w.state(at('2026-01-14T01:30:00Z')), { open: true, endsAt: at('2026-01-14T02:30:00Z'), nextOpenAt: at('2026-01-15T01:00:00Z') });
  });

  it('windows that chain without end (every minute, 2 minutes long): open, the chain followed well past the current window, in bounded time', () => {
    const clock = strictClock(at('2026-01-14T00:00:00Z'));
    const w = new MaintenanceWindows([{ cron: '* * * * *', durationMin: 2, timeZone: 'UTC' }], clock);
    const s = w.state();
    assert.equal(s.open, true);
    assert.ok(s.endsAt !== undefined && s.endsAt > clock.t + 60 * 60_000, `endsAt ${iso(s.endsAt)}`);
    assert.equal(s.nextOpenAt, undefined);
    const seen: string[] = [];
    w.on('close', () => seen.push('close'));
    w.start();
    clock.advanceTo(s.endsAt);
    assert.deepEqual([seen, w.state().open], [[], true], 're-checked at that end: still open');
    w.stop();
  });

  it('a start beyond the 30-year search (a Monday 29 February after 2072 is 2112): no nextOpenAt, no timer', () => {
    const spec: WindowSpec = { cron: '0 0 29 2 1', durationMin: 60, timeZone: 'UTC' };
    const clock = strictClock(at('2072-02-29T00:30:00Z'));
    const w = new MaintenanceWindows([spec], clock);
    assert.deepEqual(w.state(), { open: true, endsAt: at('2072-02-29T01:00:00Z') });
    assert.deepEqual(w.state(at('2072-03-01T00:00:00Z')), { open: false });
    assert.deepEqual(w.state(at('2016-03-01T00:00:00Z')), { open: false, nextOpenAt: at('2044-02-29T00:00:00Z') }, '28 years ahead is found');
    clock.t = at('2072-03-01T00:00:00Z');
    w.start();
    assert.equal(clock.timers.size, 0);
    w.stop();
  });

  describe('daylight-saving edges', () => {
    it('several starts in the hour a fall back repeats (Europe/Berlin, 25 October): each runs twice, in time order', () => {
      assert.deepEqual(events([{ cron: '*/20 2 * * *', durationMin: 10, timeZone: 'Europe/Berlin' }], '2026-10-24T23:00:00Z', '2026-10-25T03:00:00Z'), [
        'open 2026-10-25T00:00:00.000Z', 'close 2026-10-25T00:10:00.000Z', // 02:00 CEST
        'open 2026-10-25T00:20:00.000Z', 'close 2026-10-25T00:30:00.000Z',
        'open 2026-10-25T00:40:00.000Z', 'close 2026-10-25T00:50:00.000Z',
        'open 2026-10-25T01:00:00.000Z', 'close 2026-10-25T01:10:00.000Z', // 02:00 CET
        'open 2026-10-25T01:20:00.000Z', 'close 2026-10-25T01:30:00.000Z',
        'open 2026-10-25T01:40:00.000Z', 'close 2026-10-25T01:50:00.000Z',
      ]);
    });

    it('the wall time of the change itself: 02:00 on 25 October happens twice in Berlin; 01:30 on 29 March once', () => {
      assert.deepEqual(events([{ cron: '0 2 * * *', durationMin: 30, timeZone: 'Europe/Berlin' }], '2026-10-24T23:00:00Z', '2026-10-25T03:00:00Z'), [
        'open 2026-10-25T00:00:00.000Z', 'close 2026-10-25T00:30:00.000Z', // 02:00 CEST
        'open 2026-10-25T01:00:00.000Z', 'close 2026-10-25T01:30:00.000Z', // 02:00 CET, the instant of the change
      ]);
      assert.deepEqual(events([{ cron: '30 1 * * *', durationMin: 30, timeZone: 'Europe/Berlin' }], '2026-03-28T12:00:00Z', '2026-03-29T12:00:00Z'), [
        'open 2026-03-29T00:30:00.000Z', 'close 2026-03-29T01:00:00.000Z', // 01:30 CET, before the spring forward
      ]);
    });

    it('a fall back across midnight (America/Goose_Bay, 1 November 2009: 00:01 ADT -> 23:01 AST): the new date\'s 00:00 comes before the old date\'s second 23:30', () => {
      const spec = (durationMin: number): WindowSpec => ({ cron: '0,30 0,23 * * *', durationMin, timeZone: 'America/Goose_Bay' });
      const short = new MaintenanceWindows([spec(10)], strictClock(0));
      // 00:00:30 ADT, first pass of the new date: next comes 23:30 AST of the old date (03:30Z), then 00:00 AST (04:00Z)
      assert.deepEqual(short.state(at('2009-11-01T03:00:30Z')), { open: true, endsAt: at('2009-11-01T03:10:00Z'), nextOpenAt: at('2009-11-01T03:30:00Z') });
      assert.deepEqual(short.state(at('2009-11-01T03:35:00Z')), { open: true, endsAt: at('2009-11-01T03:40:00Z'), nextOpenAt: at('2009-11-01T04:00:00Z') });
      // 40-minute windows chain through the night: at 23:35 AST the latest start is 23:30 AST (03:30Z), not 00:00 ADT (03:00Z)
      const long = new MaintenanceWindows([spec(40)], strictClock(0));
      assert.deepEqual(long.state(at('2009-11-01T03:35:00Z')), { open: true, endsAt: at('2009-11-01T05:10:00Z'), nextOpenAt: at('2009-11-02T03:00:00Z') });
    });

    it('a change late in the UTC day (America/Los_Angeles, 8 March 02:00 PST = 10:00Z): 02:30 is skipped, 03:30 is PDT', () => {
      assert.deepEqual(events([
        { cron: '30 2 * * *', durationMin: 10, timeZone: 'America/Los_Angeles' },
        { cron: '30 3 * * *', durationMin: 10, timeZone: 'America/Los_Angeles' },
      ], '2026-03-08T00:00:00Z', '2026-03-08T23:00:00Z'), ['open 2026-03-08T10:30:00.000Z', 'close 2026-03-08T10:40:00.000Z']);
    });
  });

  it('nodeCronStarts schedules the start in the window\'s zone', () => {
    const before = new Set(getTasks().keys());
    const stop = nodeCronStarts('0 2 * * *', 'Asia/Tokyo', () => undefined);
    try {
      const task = [...getTasks()].find(([k]) => !before.has(k))?.[1] as unknown as { getNextRun(): Date | null };
      const next = task.getNextRun();
      assert.ok(next);
      const wall = new Intl.DateTimeFormat('en-GB', { timeZone: 'Asia/Tokyo', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).format(next);
      assert.equal(wall, '02:00');
    } finally {
      stop();
    }
  });
});
