import type { Logger } from './log.ts';
import type { Timers } from './waiter.ts';

/** The part of the device registry (fleet.ts) the grace follows. */
export interface PresenceSource {
  get(id: string): { online: boolean } | undefined;
  on(event: 'online' | 'status', fn: (d: { id: string }) => void): unknown;
  off(event: 'online' | 'status', fn: (d: { id: string }) => void): unknown;
}

/**
 * Right after a (re)start no device has reconnected yet, so "offline" then means "not back yet",
 * not "away" (docs/operations.md "Restarts"). A campaign that starts within `graceMs` of the
 * gateway's start first waits — until `graceMs` after the start at the latest — for the devices
 * that were connected when the previous run stopped (the fleet file's `online` and
 * `connectedAtStop`), so that they are ranked and updated with the others instead of being left to
 * their next check-in. Devices that were away before the restart are not waited for.
 */
export class ReconnectGrace {
  private readonly missing: Set<string>;
  private readonly until: number;
  private readonly waiters = new Set<() => void>();
  private timer: unknown;
  private readonly onBack = (d: { id: string }): void => {
    if (!this.missing.delete(d.id) || this.missing.size > 0) return;
    this.end();
  };

  constructor(
    expected: Iterable<string>,
    private readonly presence: PresenceSource,
    private readonly timers: Timers,
    graceMs: number,
    private readonly log?: Logger,
  ) {
    this.until = timers.now() + graceMs;
    this.missing = new Set([...expected].filter((id) => presence.get(id)?.online !== true));
    if (this.missing.size === 0 || graceMs <= 0) {
      this.missing.clear();
      return;
    }
    presence.on('online', this.onBack);
    presence.on('status', this.onBack);
    this.timer = timers.setTimeout(() => this.end(), graceMs);
  }

  /** Devices connected before the restart that are not back yet (empty once the grace ended). */
  get waitingFor(): string[] {
    return [...this.missing].sort();
  }

  /**
   * Resolves at once when the grace is over or every expected device is back; else when that
   * happens, or when `signal` aborts.
   */
  wait(signal?: AbortSignal): Promise<void> {
    if (this.missing.size === 0 || signal?.aborted) return Promise.resolve();
    this.log?.info({ devices: this.waitingFor.length, waitMs: Math.max(0, Math.round(this.until - this.timers.now())) }, 'campaign waits for the devices connected before the restart');
    return new Promise((resolve) => {
      const done = (): void => {
        this.waiters.delete(done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      this.waiters.add(done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  /** The gateway stops: nothing waits any more. */
  close(): void {
    this.end();
  }

  private end(): void {
    if (this.missing.size > 0) this.log?.info({ notBack: this.waitingFor }, 'reconnect grace over: devices not back wait for their check-in');
    this.missing.clear();
    this.timers.clearTimeout(this.timer);
    this.presence.off('online', this.onBack);
    this.presence.off('status', this.onBack);
    for (const w of [...this.waiters]) w();
  }
}
