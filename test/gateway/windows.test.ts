import assert from 'node:assert/strict';
import { MAX_TIMEOUT_MS, MaintenanceWindows, nodeCronStarts, type WindowSpec, type WindowState } from '../../gateway/windows.ts';
import { createTask, getTasks } from 'node-cron';
import { isFwError } from '../../protocol/errors.ts';
import { FakeWallClock } from '../helpers/fake-wall-clock.ts';

const at = (iso: string): number => Date.parse(iso);
const iso = (t: number | undefined): string | undefined => (t === undefined ? undefined : new Date(t).toISOString());

/** Start the windows at `from`, run the clock to `to`, return each event with the instant it came. */
function run(specs: WindowSpec[], from: string, to: string): { events: string[]; windows: MaintenanceWindows; clock: FakeWallClock } {
  const clock = new FakeWallClock(at(from));
  const windows = new MaintenanceWindows(specs, clock);
  const events: string[] = [];
  const record = (name: string) => (s: WindowState): void => {
    events.push(`${name} ${iso(clock.now())}`);
    assert.equal(s.open, name === 'open');
  };
  windows.on('open', record('open'));
  windows.on('close', record('close'));
  windows.start();
  clock.advanceTo(at(to));
  return { events, windows, clock };
}

describe('maintenance windows', () => {
  it('no windows configured: always open, no timer', () => {
    const clock = new FakeWallClock(at('2026-05-01T00:00:00Z'));
    const w = new MaintenanceWindows([], clock);
    assert.equal(w.configured, false);
    assert.deepEqual(w.state(), { open: true });
    w.start();
    assert.equal(clock.timers.size, 0);
  });

  it('opens and closes at the right instants; overlapping windows of two specs merge', () => {
    const specs: WindowSpec[] = [
      { cron: '0 2 * * *', durationMin: 150, timeZone: 'UTC' }, // 02:00-04:30Z
      { cron: '0 5 * * *', durationMin: 120, timeZone: 'Europe/Berlin' }, // 05:00 CET = 04:00-06:00Z
    ];
    const { events, windows } = run(specs, '2026-01-14T00:00:00Z', '2026-01-16T00:00:00Z');
    assert.deepEqual(events, [
      'open 2026-01-14T02:00:00.000Z', 'close 2026-01-14T06:00:00.000Z',
      'open 2026-01-15T02:00:00.000Z', 'close 2026-01-15T06:00:00.000Z',
    ]);
    const s = windows.state(at('2026-01-15T03:00:00Z'));
    assert.deepEqual([s.open, iso(s.endsAt), iso(s.nextOpenAt)], [true, '2026-01-15T06:00:00.000Z', '2026-01-16T02:00:00.000Z']);
  });

  it('a window that starts as another ends continues it (no close/open at the seam)', () => {
    const specs: WindowSpec[] = [
      { cron: '0 1 * * *', durationMin: 60, timeZone: 'UTC' },
      { cron: '0 2 * * *', durationMin: 30, timeZone: 'UTC' },
    ];
    const { events } = run(specs, '2026-01-14T00:00:00Z', '2026-01-14T12:00:00Z');
    assert.deepEqual(events, ['open 2026-01-14T01:00:00.000Z', 'close 2026-01-14T02:30:00.000Z']);
  });

  it('at start-up: inside a window (emits nothing, closes at its end) and outside one', () => {
    const spec: WindowSpec = { cron: '0 22 * * 1-5', durationMin: 360, timeZone: 'Europe/Berlin' }; // weeknights 21:00-03:00Z in winter
    const clock = new FakeWallClock(at('2026-01-15T01:00:00Z')); // Thursday 02:00 CET: Wednesday's window
    const w = new MaintenanceWindows([spec], clock);
    const events: string[] = [];
    w.on('open', () => events.push(`open ${iso(clock.now())}`));
    w.on('close', () => events.push(`close ${iso(clock.now())}`));
    w.start();
    const s = w.state();
    assert.deepEqual([s.open, iso(s.endsAt), iso(s.nextOpenAt)], [true, '2026-01-15T03:00:00.000Z', '2026-01-15T21:00:00.000Z']);
    assert.deepEqual(events, []);
    clock.advanceTo(at('2026-01-15T12:00:00Z'));
    assert.deepEqual(events, ['close 2026-01-15T03:00:00.000Z']);
    // Saturday noon: closed until Monday 22:00 CET.
    const sat = w.state(at('2026-01-17T12:00:00Z'));
    assert.deepEqual([sat.open, sat.endsAt, iso(sat.nextOpenAt)], [false, undefined, '2026-01-19T21:00:00.000Z']);
    // Half-open: open at its first instant, closed at its end.
    assert.equal(w.state(at('2026-01-19T21:00:00Z')).open, true);
    assert.equal(w.state(at('2026-01-20T03:00:00Z')).open, false);
  });

  describe('daylight-saving changes (Europe/Berlin 2026: spring forward 29 March 02:00 CET, fall back 25 October 03:00 CEST)', () => {
    const daily0230: WindowSpec = { cron: '30 2 * * *', durationMin: 60, timeZone: 'Europe/Berlin' };

    it('spring forward: 02:30 does not exist on 29 March, so there is no window that day', () => {
      const { events, windows } = run([daily0230], '2026-03-28T00:00:00Z', '2026-03-31T00:00:00Z');
      assert.deepEqual(events, [
        'open 2026-03-28T01:30:00.000Z', 'close 2026-03-28T02:30:00.000Z', // 02:30-03:30 CET
        'open 2026-03-30T00:30:00.000Z', 'close 2026-03-30T01:30:00.000Z', // 02:30-03:30 CEST
      ]);
      const s = windows.state(at('2026-03-29T01:30:00Z')); // 03:30 CEST
      assert.deepEqual([s.open, iso(s.nextOpenAt)], [false, '2026-03-30T00:30:00.000Z']);
    });

    it('fall back: 02:30 happens twice on 25 October; both windows run, merged (02:30 CEST to 03:30 CET)', () => {
      const { events } = run([daily0230], '2026-10-24T12:00:00Z', '2026-10-26T12:00:00Z');
      assert.deepEqual(events, [
        'open 2026-10-25T00:30:00.000Z', 'close 2026-10-25T02:30:00.000Z',
        'open 2026-10-26T01:30:00.000Z', 'close 2026-10-26T02:30:00.000Z',
      ]);
    });

    it('fall back: 01:30 in Berlin is before the change and happens once; in New York (back at 02:00 EDT) it happens twice', () => {
      const berlin = run([{ cron: '30 1 * * *', durationMin: 30, timeZone: 'Europe/Berlin' }], '2026-10-24T12:00:00Z', '2026-10-25T12:00:00Z');
      assert.deepEqual(berlin.events, ['open 2026-10-24T23:30:00.000Z', 'close 2026-10-25T00:00:00.000Z']);
      const ny = run([{ cron: '30 1 * * *', durationMin: 30, timeZone: 'America/New_York' }], '2026-11-01T00:00:00Z', '2026-11-01T12:00:00Z');
      assert.deepEqual(ny.events, [
        'open 2026-11-01T05:30:00.000Z', 'close 2026-11-01T06:00:00.000Z', // 01:30-02:00 EDT
        'open 2026-11-01T06:30:00.000Z', 'close 2026-11-01T07:00:00.000Z', // 01:30-02:00 EST
      ]);
    });

    it('inside at start-up when the window began before the change: 00:00 CET + 4 h ends at 05:00 CEST', () => {
      const spec: WindowSpec = { cron: '0 0 * * *', durationMin: 240, timeZone: 'Europe/Berlin' };
      const clock = new FakeWallClock(at('2026-03-29T02:30:00Z')); // 04:30 CEST
      const w = new MaintenanceWindows([spec], clock);
      const s = w.state();
      assert.deepEqual([s.open, iso(s.endsAt)], [true, '2026-03-29T03:00:00.000Z']); // began 2026-03-28T23:00Z
      assert.equal(w.state(at('2026-03-29T03:00:00Z')).open, false);
      // And across the fall back: 00:00 CEST + 4 h = 03:00 CET; at 02:30 CET (second pass) still inside.
      const f = w.state(at('2026-10-25T01:30:00Z'));
      assert.deepEqual([f.open, iso(f.endsAt)], [true, '2026-10-25T02:00:00.000Z']);
      const events: string[] = [];
      w.on('close', () => events.push(`close ${iso(clock.now())}`));
      w.start();
      clock.advanceTo(at('2026-03-29T12:00:00Z'));
      assert.deepEqual(events, ['close 2026-03-29T03:00:00.000Z']);
    });

    it('a midnight DST change (America/Santiago): no midnight on 6 September, one on 5 April', () => {
      const w = new MaintenanceWindows([{ cron: '0 0 * * *', durationMin: 60, timeZone: 'America/Santiago' }], new FakeWallClock(0));
      assert.equal(iso(w.state(at('2026-09-05T12:00:00Z')).nextOpenAt), '2026-09-07T03:00:00.000Z');
      assert.equal(iso(w.state(at('2026-04-04T12:00:00Z')).nextOpenAt), '2026-04-05T04:00:00.000Z');
    });
  });

  it('chains waits longer than a Node timeout and opens on time', () => {
    const { events, clock } = run([{ cron: '0 0 1 1 *', durationMin: 60, timeZone: 'UTC' }], '2026-01-02T00:00:00Z', '2027-01-02T00:00:00Z');
    assert.deepEqual(events, ['open 2027-01-01T00:00:00.000Z', 'close 2027-01-01T01:00:00.000Z']);
    assert.ok(clock.delays.every((d) => d <= MAX_TIMEOUT_MS), 'no delay above 2^31-1 ms');
    assert.ok(clock.delays.length >= 365 * 86_400_000 / MAX_TIMEOUT_MS, `chained (${clock.delays.length} timeouts)`);
  });

  it('a timer that fires early does not open the window early', () => {
    const clock = new FakeWallClock(at('2026-01-14T00:00:00Z'), { early: 5 });
    const w = new MaintenanceWindows([{ cron: '0 2 * * *', durationMin: 60, timeZone: 'UTC' }], clock);
    const events: string[] = [];
    w.on('open', () => events.push(`open ${iso(clock.now())}`));
    w.start();
    clock.advanceTo(at('2026-01-14T02:00:00Z') - 1);
    assert.deepEqual(events, []);
    clock.advanceTo(at('2026-01-14T02:00:00Z'));
    assert.deepEqual(events, ['open 2026-01-14T02:00:00.000Z']);
  });

  it('stop() clears the timer, also from a listener', () => {
    const clock = new FakeWallClock(at('2026-01-14T00:00:00Z'));
    const w = new MaintenanceWindows([{ cron: '0 * * * *', durationMin: 30, timeZone: 'UTC' }], clock);
    let opens = 0;
    w.on('open', () => {
      opens++;
      w.stop();
    });
    w.start();
    assert.equal(clock.timers.size, 1);
    clock.advanceTo(at('2026-01-15T00:00:00Z'));
    assert.equal(opens, 1);
    assert.equal(clock.timers.size, 0);
    w.start();
    w.stop();
    assert.equal(clock.timers.size, 0);
  });

  it('refuses a spec the config would refuse', () => {
    for (const spec of [
      { cron: '61 * * * *', durationMin: 10, timeZone: 'UTC' },
      { cron: '0 2 * * *', durationMin: 0, timeZone: 'UTC' },
      { cron: '0 2 * * *', durationMin: 10, timeZone: 'Mars/Olympus' },
    ]) {
      assert.throws(() => new MaintenanceWindows([spec], new FakeWallClock(0)), (e: unknown) => isFwError(e, 'E_CONFIG'));
    }
  });
});

describe('maintenance windows against node-cron\'s own matcher', () => {
  // Every minute whose wall clock node-cron matches starts a window; compare state() with that, around DST changes.
  const cases: [WindowSpec, string][] = [
    [{ cron: '30 2 * * *', durationMin: 60, timeZone: 'Europe/Berlin' }, '2026-03-28T12:00:00Z'],
    [{ cron: '*/20 2 * * *', durationMin: 45, timeZone: 'Europe/Berlin' }, '2026-10-24T12:00:00Z'],
    [{ cron: '30 1 * * *', durationMin: 40, timeZone: 'America/New_York' }, '2026-10-31T12:00:00Z'],
    [{ cron: '0 0 * * *', durationMin: 90, timeZone: 'America/Santiago' }, '2026-04-04T00:00:00Z'],
    [{ cron: '15 2 * * *', durationMin: 30, timeZone: 'Australia/Lord_Howe' }, '2026-10-03T00:00:00Z'], // a 30-minute change
    // a fall back across midnight (00:01 ADT -> 23:01 AST on 1 November 2009): 00:00 of the new date comes before 23:30 of the old one repeats
    [{ cron: '0,30 0,23 * * *', durationMin: 10, timeZone: 'America/Goose_Bay' }, '2009-10-31T12:00:00Z'],
    [{ cron: '0,30 0,23 * * *', durationMin: 40, timeZone: 'America/Goose_Bay' }, '2009-10-31T12:00:00Z'],
    [{ cron: '30 0 * * *', durationMin: 60, timeZone: 'Pacific/Kiritimati' }, '2026-06-01T00:00:00Z'], // UTC+14: the local date runs a day ahead
  ];
  for (const [spec, from] of cases) {
    it(`${spec.cron} ${spec.timeZone} from ${from}`, () => {
      const task = createTask(spec.cron, () => undefined, { timezone: spec.timeZone });
      try {
        const start = at(from);
        const end = start + 2 * 86_400_000;
        const starts: number[] = [];
        for (let t = start - spec.durationMin * 60_000; t <= end + 86_400_000; t += 60_000) if (task.match(new Date(t))) starts.push(t);
        const w = new MaintenanceWindows([spec], new FakeWallClock(0));
        for (let t = start; t <= end; t += 7 * 60_000) {
          const open = starts.some((s) => s <= t && t < s + spec.durationMin * 60_000);
          const s = w.state(t);
          assert.equal(s.open, open, `open at ${iso(t)}`);
          if (!open) assert.equal(iso(s.nextOpenAt), iso(starts.find((x) => x > t)), `next opening after ${iso(t)}`);
        }
      } finally {
        void task.destroy();
      }
    });
  }
});

describe('maintenance windows: the start scheduler (node-cron in production)', () => {
  it('a start fired by the scheduler opens the window once; the timer that follows does not open it again', () => {
    const clock = new FakeWallClock(at('2026-11-22T01:59:00Z'));
    const fired: { cron: string; timeZone: string; fn: () => void }[] = [];
    let cancelled = 0;
    const windows = new MaintenanceWindows([{ cron: '0 2 * * *', durationMin: 60, timeZone: 'Europe/Berlin' }], clock, (cron, timeZone, fn) => {
      fired.push({ cron, timeZone, fn });
      return () => { cancelled++; };
    });
    const events: string[] = [];
    windows.on('open', () => events.push(`open ${iso(clock.now())}`));
    windows.on('close', () => events.push(`close ${iso(clock.now())}`));
    windows.start();
    assert.deepEqual(fired.map((f) => [f.cron, f.timeZone]), [['0 2 * * *', 'Europe/Berlin']], 'each window is handed to the scheduler with its zone');
    // 02:00 Berlin is 01:00 UTC: the window opened an hour ago and closes at 02:00 UTC
    assert.equal(windows.state().open, true);
    clock.advanceTo(at('2026-11-22T02:00:00Z'));
    assert.deepEqual(events, ['close 2026-11-22T02:00:00.000Z']);
    // the next start, as node-cron would fire it (the clock reached it; the timer has not run yet)
    const t = [...clock.timers.values()][0]!;
    assert.equal(iso(t.at), '2026-11-23T01:00:00.000Z');
    clock.t = at('2026-11-23T01:00:00Z');
    fired[0]!.fn();
    assert.deepEqual(events.slice(1), ['open 2026-11-23T01:00:00.000Z']);
    clock.advanceTo(at('2026-11-23T01:30:00Z'));
    assert.deepEqual(events.slice(1), ['open 2026-11-23T01:00:00.000Z'], 'no second open from the timer');
    windows.stop();
    assert.equal(cancelled, 1, 'stop() cancels the scheduled starts');
  });

  it('nodeCronStarts registers a node-cron task for the window and removes it when cancelled', () => {
    const before = getTasks().size;
    const stop = nodeCronStarts('0 2 * * *', 'Europe/Berlin', () => undefined);
    assert.equal(getTasks().size, before + 1, 'one node-cron task per window');
    stop();
    assert.equal(getTasks().size, before, 'cancelled: the task is gone');
  });
});
