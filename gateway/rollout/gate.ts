import { EventEmitter } from 'node:events';

/**
 * When a campaign may start device transfers and activations: inside a maintenance window
 * (docs/operations.md "Maintenance windows"), or always. The campaign only asks and listens;
 * the schedule behind it is gateway/windows.ts.
 */
export interface WindowGate {
  /** False: there are no windows, the gate is always open (`now` campaigns, or none configured). */
  readonly windowed: boolean;
  /** Wall-clock ms, the clock the windows are computed on. */
  now(): number;
  isOpen(): boolean;
  /** Wall-clock ms the current window closes (open gate with windows), else undefined. */
  endsAt(): number | undefined;
  /** Wall-clock ms the next window opens, when known. */
  nextOpenAt(): number | undefined;
  /** Subscribe to openings and closings; returns the unsubscribe function. */
  onChange(fn: (open: boolean) => void): () => void;
  /** Run `fn` at wall-clock ms `at` on this gate's clock (the campaign's expiry); returns the cancel function. */
  at(at: number, fn: () => void): () => void;
}

/** A timer at an absolute instant on `clock`, chained past the 2^31 − 1 ms limit of setTimeout. */
function timerAt(clock: WallTimers, at: number, fn: () => void): () => void {
  let handle: unknown;
  const arm = (): void => {
    const left = at - clock.now();
    if (left <= 0) {
      fn();
      return;
    }
    handle = clock.setTimeout(arm, Math.min(left, 2 ** 31 - 1));
  };
  arm();
  return () => clock.clearTimeout(handle);
}

/** The clock a gate runs on: wall-clock `now` and timers on it. */
export interface WallTimers {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const systemTimers: WallTimers = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/** The gate of a campaign that runs at once and is never paused. */
export const ALWAYS_OPEN: WindowGate = Object.freeze({
  windowed: false,
  now: () => Date.now(),
  isOpen: () => true,
  endsAt: () => undefined,
  nextOpenAt: () => undefined,
  onChange: () => () => undefined,
  at: (at: number, fn: () => void) => timerAt(systemTimers, at, fn),
});

/** What gateway/windows.ts provides, as far as the gate needs it. */
export interface WindowSource extends EventEmitter<{ open: [unknown]; close: [unknown] }> {
  readonly configured: boolean;
  state(at?: number): { open: boolean; endsAt?: number; nextOpenAt?: number };
}

/** A gate over the configured maintenance windows, on the windows' clock. */
export function windowGate(windows: WindowSource, clock: WallTimers): WindowGate {
  if (!windows.configured) return ALWAYS_OPEN;
  const now = (): number => clock.now();
  return {
    windowed: true,
    now,
    at: (at, fn) => timerAt(clock, at, fn),
    isOpen: () => windows.state(now()).open,
    endsAt: () => {
      const s = windows.state(now());
      return s.open ? s.endsAt : undefined;
    },
    nextOpenAt: () => windows.state(now()).nextOpenAt,
    onChange: (fn) => {
      const opened = (): void => fn(true);
      const closed = (): void => fn(false);
      windows.on('open', opened);
      windows.on('close', closed);
      return () => {
        windows.off('open', opened);
        windows.off('close', closed);
      };
    },
  };
}
