import { EventEmitter } from 'node:events';
import { parse as parseCron, schedule as cronSchedule, validateDetailed } from 'node-cron';
import { FwError } from '../protocol/errors.ts';
import type { Timers } from './waiter.ts';

/**
 * Maintenance windows (docs/operations.md "Maintenance windows"): a window opens at every instant
 * whose wall-clock time in its zone matches its cron expression and stays open `durationMin`
 * minutes; overlapping or touching windows merge.
 *
 * node-cron gives the syntax and its reading (gateway/config.ts validates with it, and its parser
 * gives the fields here), but it does not fire the starts: its scheduler reads `new Date()` and the
 * global `setTimeout`, so no injected clock can drive it, and it has no "previous run", which
 * "inside a window at start-up" needs. This module computes the start instants itself from the
 * parsed fields, the same way forwards and backwards, and arms one timer of the injected clock for
 * the next open/close. (cron-parser was tried and dropped: its next() and prev() disagree at DST
 * changes and prev() throws at a midnight DST change, e.g. America/Santiago.)
 */
export interface WindowSpec {
  /** node-cron syntax: 5 fields, or 6 with seconds first; both day fields must match. */
  cron: string;
  /** Whole minutes, 1..MAX_WINDOW_MIN. */
  durationMin: number;
  /** IANA zone the cron expression is read in, e.g. Europe/Berlin. */
  timeZone: string;
}

export interface WindowState {
  open: boolean;
  /** Epoch ms the current (merged) window ends; open only. */
  endsAt?: number;
  /** Epoch ms the next window opens (closed), or the next one after this one (open); absent: none within the search horizon. */
  nextOpenAt?: number;
}

/** The waiter's Timers, except that now() MUST be wall-clock epoch ms (Date.now), not performance.now. */
export type Clock = Timers;

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

export const MAX_WINDOW_MIN = 7 * 24 * 60;
/** Longest single timeout Node accepts; longer waits are chained. */
export const MAX_TIMEOUT_MS = 2 ** 31 - 1;
/** How far ahead the next opening is looked for (a Feb 29 that must be a Monday recurs within 28 years). */
const HORIZON_MS = 30 * 366 * 86_400_000;
/** Merged windows followed at most this far; a longer chain reports its end so far (re-checked then). */
const MAX_MERGES = 1000;
const MINUTE_MS = 60_000;
const DAY_MS = 86_400_000;
/** More than any UTC offset (-12 h .. +14 h): the instants of one local date lie within it of that date. */
const SLACK_MS = 15 * 3_600_000;

/** Why a cron expression cannot be a window start, or undefined. */
export function cronProblem(expr: string): string | undefined {
  const r = validateDetailed(expr);
  if (!r.valid) {
    const why = r.errors.map((e) => (e.field === 'expression' ? e.message : `${e.field}: ${e.message}`)).join('; ');
    return `"${expr}" is not a valid cron expression (${why})`;
  }
  const f = parseCron(expr);
  const special = [...f.dayOfMonth, ...f.dayOfWeek].filter((v) => typeof v === 'string');
  if (special.length > 0) return `"${expr}": ${special.join(', ')} is not supported for maintenance windows (no L, W or # day forms)`;
  return undefined;
}

/** Why a string is not a usable IANA time zone, or undefined. */
export function timeZoneProblem(tz: string): string | undefined {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return undefined;
  } catch (err) {
    if (err instanceof RangeError) return `unknown time zone "${tz}"`;
    throw err;
  }
}

interface Compiled {
  readonly timeZone: string;
  readonly durMs: number;
  readonly times: readonly number[]; // ms after local midnight, ascending
  readonly months: ReadonlySet<number>;
  readonly days: ReadonlySet<number>;
  readonly weekdays: ReadonlySet<number>;
}

function compile(spec: WindowSpec, index: number): Compiled {
  const durOk = Number.isInteger(spec.durationMin) && spec.durationMin > 0 && spec.durationMin <= MAX_WINDOW_MIN;
  const problem = cronProblem(spec.cron) ?? timeZoneProblem(spec.timeZone)
    ?? (durOk ? undefined : `durationMin ${spec.durationMin} is not 1..${MAX_WINDOW_MIN}`);
  if (problem) throw new FwError('E_CONFIG', `maintenance window ${index}: ${problem}`);
  const f = parseCron(spec.cron);
  const times: number[] = [];
  for (const h of [...f.hour].sort((a, b) => a - b)) {
    for (const m of [...f.minute].sort((a, b) => a - b)) {
      for (const s of [...f.second].sort((a, b) => a - b)) times.push(((h * 60 + m) * 60 + s) * 1000);
    }
  }
  const nums = (v: readonly (number | string)[]): Set<number> => new Set(v.filter((x): x is number => typeof x === 'number'));
  return {
    timeZone: spec.timeZone,
    durMs: spec.durationMin * MINUTE_MS,
    times,
    months: new Set(f.month),
    days: nums(f.dayOfMonth),
    weekdays: nums(f.dayOfWeek),
  };
}

/**
 * Fires a callback at each start of a cron expression in a time zone; returns the cancel function.
 * In production node-cron (`nodeCronStarts`); tests with a fake clock pass none.
 */
export type StartScheduler = (cron: string, timeZone: string, fn: () => void) => () => void;

/** node-cron fires each window's start (its own scheduler, on the system clock). */
export const nodeCronStarts: StartScheduler = (cron, timeZone, fn) => {
  const task = cronSchedule(cron, fn, { timezone: timeZone });
  return () => void task.destroy();
};

export class MaintenanceWindows extends EventEmitter<{ open: [WindowState]; close: [WindowState] }> {
  private readonly specs: readonly Compiled[];
  private running = false;
  private timer: unknown;
  private readonly cronStops: (() => void)[] = [];
  private current: WindowState = { open: true };
  private memo: { at: number; state: WindowState } | undefined;

  /** Throws E_CONFIG for a spec that gateway/config.ts would have refused. */
  /**
   * `starts`: a scheduler that fires at each window's start (node-cron in production). Its fire
   * and the timer on `clock` both re-evaluate the state, so a start is seen once whichever comes
   * first; the timer also covers the ends, which no cron expression describes.
   */
  constructor(private readonly specsIn: readonly WindowSpec[], private readonly clock: Clock, private readonly starts?: StartScheduler) {
    super();
    this.specs = specsIn.map(compile);
  }

  /** No windows configured: always open (campaigns run at once). */
  get configured(): boolean {
    return this.specs.length > 0;
  }

  /** Open or closed at `at` (epoch ms, default now), when it closes, when the next one opens. */
  state(at = this.clock.now()): WindowState {
    if (this.memo?.at === at) return this.memo.state;
    const state = Object.freeze(this.compute(at));
    this.memo = { at, state };
    return state;
  }

  /** Arm the timer: 'open' when a window starts, 'close' when the last overlapping one ends. Emits nothing now: read state(). */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.current = this.state();
    this.arm();
    if (this.starts) for (const w of this.specsIn) this.cronStops.push(this.starts(w.cron, w.timeZone, () => this.recheck()));
  }

  /** Also undo this at stop() (a clock-jump watch that calls recheck()). */
  onStop(fn: () => void): void {
    this.cronStops.push(fn);
  }

  stop(): void {
    this.running = false;
    for (const stop of this.cronStops.splice(0)) stop();
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  private compute(at: number): WindowState {
    if (this.specs.length === 0) return { open: true };
    // Inside: some spec started in (at - duration, at]. Step back over the duration for its latest start.
    let end = at;
    for (const s of this.specs) {
      const last = startsUpTo(s, at, at - s.durMs).next();
      if (!last.done) end = Math.max(end, last.value + s.durMs);
    }
    const open = end > at;
    // Follow starts forwards: those at or before the end extend it (merge); the first after it opens next.
    const heads = this.specs.map((s) => {
      const it = startsAfter(s, at, at + HORIZON_MS);
      const first = it.next();
      return { it, start: first.done ? Infinity : first.value, durMs: s.durMs };
    });
    for (let merges = 0; merges < MAX_MERGES; merges++) {
      const h = heads.reduce((a, b) => (b.start < a.start ? b : a));
      if (h.start === Infinity) break;
      if (h.start > end) return open ? { open, endsAt: end, nextOpenAt: h.start } : { open, nextOpenAt: h.start };
      end = Math.max(end, h.start + h.durMs);
      const next = h.it.next();
      h.start = next.done ? Infinity : next.value;
    }
    return open ? { open, endsAt: end } : { open };
  }

  private arm(): void {
    const next = this.current.open ? this.current.endsAt : this.current.nextOpenAt;
    if (next !== undefined) this.wake(next);
  }

  private wake(at: number): void {
    const delay = Math.min(Math.max(at - this.clock.now(), 0), MAX_TIMEOUT_MS);
    this.timer = this.clock.setTimeout(() => this.onTimer(at), delay);
  }

  private onTimer(at: number): void {
    this.timer = undefined;
    if (!this.running) return;
    // Not there yet: a chained long wait, or a timer that fired early.
    if (this.clock.now() < at) return this.wake(at);
    this.recheck();
  }

  /**
   * Re-evaluate now (a timer or a cron start fired, or the wall clock stepped: ClockJumpWatch):
   * emit the change, if any, and re-arm the timer from the wall clock as it is now.
   */
  recheck(): void {
    this.memo = undefined;
    if (!this.running) return;
    const was = this.current.open;
    this.current = this.state();
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.arm();
    if (this.current.open !== was) this.emit(this.current.open ? 'open' : 'close', this.current);
  }
}

/** Start instants in (after, until], ascending. */
function* startsAfter(s: Compiled, after: number, until: number): Generator<number, void> {
  const pending: number[] = [];
  // From the previous local date: a DST change back across midnight puts later instants on an earlier date.
  for (let day = localDate(s.timeZone, after) - DAY_MS; day - SLACK_MS <= until; day += DAY_MS) {
    for (const t of startsOn(s, day)) if (t > after && t <= until) pending.push(t);
    pending.sort((a, b) => a - b);
    // Every start on a later date is at or after this.
    const later = day + DAY_MS - SLACK_MS;
    let i = 0;
    while (i < pending.length && (pending[i] as number) < later) yield pending[i++] as number;
    pending.splice(0, i);
  }
  yield* pending;
}

/** Start instants in (from, upTo], descending. */
function* startsUpTo(s: Compiled, upTo: number, from: number): Generator<number, void> {
  const pending: number[] = [];
  for (let day = localDate(s.timeZone, upTo) + DAY_MS; day + DAY_MS + SLACK_MS > from; day -= DAY_MS) {
    for (const t of startsOn(s, day)) if (t <= upTo && t > from) pending.push(t);
    pending.sort((a, b) => b - a);
    // Every start on an earlier date is before this.
    const earlier = day + SLACK_MS;
    let i = 0;
    while (i < pending.length && (pending[i] as number) >= earlier) yield pending[i++] as number;
    pending.splice(0, i);
  }
  yield* pending;
}

/**
 * The instants whose wall-clock time on local date `day` (its midnight as if UTC) matches: none
 * for a time the clocks skip (spring forward), two for a time they repeat (fall back).
 */
function startsOn(s: Compiled, day: number): number[] {
  const d = new Date(day);
  if (!s.months.has(d.getUTCMonth() + 1) || !s.days.has(d.getUTCDate()) || !s.weekdays.has(d.getUTCDay())) return [];
  const z = zoneAround(s.timeZone, day);
  const out: number[] = [];
  for (const ms of s.times) {
    const wall = day + ms;
    if (wall - z.before < z.change) out.push(wall - z.before);
    if (z.after !== z.before && wall - z.after >= z.change) out.push(wall - z.after);
  }
  return out;
}

/** The zone's offset before and after the one change (if any) around a local date, and when it changes. */
function zoneAround(tz: string, day: number): { before: number; after: number; change: number } {
  let lo = day - SLACK_MS;
  let hi = day + DAY_MS + SLACK_MS;
  const before = offsetAt(tz, lo);
  const after = offsetAt(tz, hi);
  if (before === after) return { before, after, change: Infinity };
  while (hi - lo > 1000) {
    const mid = lo + Math.floor((hi - lo) / 2000) * 1000;
    if (offsetAt(tz, mid) === before) lo = mid;
    else hi = mid;
  }
  return { before, after, change: hi };
}

/** Midnight (as if UTC) of the local date of instant t. */
function localDate(tz: string, t: number): number {
  const wall = t + offsetAt(tz, t);
  return wall - (((wall % DAY_MS) + DAY_MS) % DAY_MS);
}

const formatters = new Map<string, Intl.DateTimeFormat>();

/** Local wall time minus UTC at instant t, in ms (whole seconds). */
function offsetAt(tz: string, t: number): number {
  let f = formatters.get(tz);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: tz, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric',
    });
    formatters.set(tz, f);
  }
  const p: Record<string, number> = {};
  for (const { type, value } of f.formatToParts(t)) p[type] = Number(value);
  const wall = Date.UTC(p.year ?? 0, (p.month ?? 1) - 1, p.day ?? 1, p.hour ?? 0, p.minute ?? 0, p.second ?? 0);
  return wall - (t - (((t % 1000) + 1000) % 1000));
}
