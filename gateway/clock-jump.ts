import type { Timers } from './waiter.ts';

export interface ClockJumpOptions {
  /** Wall-clock time, epoch ms (Date.now, or a test's fake). */
  wall: () => number;
  /** A clock that never jumps (performance.now, or a test's fake). */
  monotonic: () => number;
  /** Where the tick is scheduled (timers run on monotonic time). */
  timers: Pick<Timers, 'setTimeout' | 'clearTimeout'>;
  /** How often the two clocks are compared (config `windows.clockCheckMs`). */
  tickMs: number;
  /** A difference larger than this between the two elapsed times is a jump (config `windows.clockJumpMs`). */
  toleranceMs: number;
  /** The wall clock stepped by `deltaMs` (forward > 0, backward < 0) since the last tick. */
  onJump(deltaMs: number): void;
}

/**
 * Notices a step of the wall clock (an NTP correction, an operator's `date -s`, a RTC read after a
 * power cut) within one tick: a timer armed for a wall-clock instant (a maintenance window's
 * opening) runs on monotonic time and would otherwise fire as far off as the step was
 * (docs/operations.md "Maintenance windows", issue 17.7). Each tick compares how far the wall
 * clock moved with how far the monotonic clock moved.
 */
export class ClockJumpWatch {
  private timer: unknown;
  private lastWall = 0;
  private lastMono = 0;

  constructor(private readonly o: ClockJumpOptions) {}

  start(): void {
    if (this.timer !== undefined) return;
    this.lastWall = this.o.wall();
    this.lastMono = this.o.monotonic();
    this.arm();
  }

  stop(): void {
    if (this.timer !== undefined) this.o.timers.clearTimeout(this.timer);
    this.timer = undefined;
  }

  private arm(): void {
    this.timer = this.o.timers.setTimeout(() => this.tick(), this.o.tickMs);
  }

  private tick(): void {
    const wall = this.o.wall();
    const mono = this.o.monotonic();
    const delta = (wall - this.lastWall) - (mono - this.lastMono);
    this.lastWall = wall;
    this.lastMono = mono;
    this.arm();
    if (Math.abs(delta) > this.o.toleranceMs) this.o.onJump(Math.round(delta));
  }
}

/**
 * With maintenance windows configured: re-check them whenever the wall clock steps (logged as a
 * warning with the step). Stopped with the windows.
 */
export function watchClockJumps(
  windows: { configured: boolean; recheck(): void; onStop(fn: () => void): void },
  wall: Timers,
  monotonic: () => number,
  o: { clockCheckMs: number; clockJumpMs: number },
  log: { warn(obj: object, msg: string): void },
): void {
  if (!windows.configured) return;
  const watch = new ClockJumpWatch({
    wall: () => wall.now(), monotonic, timers: wall, tickMs: o.clockCheckMs, toleranceMs: o.clockJumpMs,
    onJump: (deltaMs) => {
      log.warn({ deltaMs }, `wall clock stepped ${deltaMs > 0 ? 'forward' : 'back'} by ${Math.abs(deltaMs)} ms; maintenance windows re-checked`);
      windows.recheck();
    },
  });
  watch.start();
  windows.onStop(() => watch.stop());
}
