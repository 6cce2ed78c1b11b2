import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';

/** One event line of fwdevice's console (the same shape as `fwsim --json`). */
export interface CEvent {
  type: string;
  id: string;
  [k: string]: unknown;
}

/** What `fwdevice show` reads from a device's own files. */
export interface CState {
  active: 'a' | 'b';
  trial: boolean;
  seq: number;
  slots: Record<'a' | 'b', { state: string; version: string; sha256: string; size: number }>;
}

/**
 * A C device (device-c/ports/posix, `fwdevice`) as its own process: its JSON console collected,
 * killed like a power cut (SIGKILL) and powered on again on the same files.
 */
export class CDevice {
  readonly events: CEvent[] = [];
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();
  #watchers = new Set<() => void>();

  constructor(readonly bin: string, readonly id: string, readonly dir: string, readonly args: readonly string[]) {}

  /** Power on: start the process on the device's files. */
  start(): void {
    const child = spawn(this.bin, ['--id', this.id, '--dir', this.dir, ...this.args], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.#child = child;
    this.#exited = new Promise((resolve) => child.once('exit', () => resolve()));
    child.stderr.resume();
    createInterface({ input: child.stdout }).on('line', (line) => {
      try {
        this.events.push(JSON.parse(line) as CEvent);
      } catch {
        return;
      }
      for (const w of [...this.#watchers]) w();
    });
  }

  /** Resolves when an event matching `pred` has been seen (also one seen before), within `ms`. */
  waitFor(pred: (e: CEvent) => boolean, ms: number, what: string): Promise<CEvent> {
    const seen = this.events.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#watchers.delete(w);
        reject(new Error(`${this.id}: no ${what} within ${ms} ms; events: ${this.events.map((e) => e.type).join(' ')}`));
      }, ms);
      const w = (): void => {
        const e = this.events.find(pred);
        if (!e) return;
        clearTimeout(timer);
        this.#watchers.delete(w);
        resolve(e);
      };
      this.#watchers.add(w);
    });
  }

  /** The process id while it runs (a reboot re-executes in the same process). */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  count(type: string): number {
    return this.events.filter((e) => e.type === type).length;
  }

  /** Power cut: SIGKILL, no clean-up. */
  async kill(): Promise<void> {
    this.#child?.kill('SIGKILL');
    await this.#exited;
  }

  /** Clean stop: SIGTERM (the device disconnects), SIGKILL after 5 s. */
  async stop(): Promise<void> {
    const c = this.#child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    c.kill('SIGTERM');
    const t = setTimeout(() => c.kill('SIGKILL'), 5000);
    await this.#exited;
    clearTimeout(t);
  }

  /** The device's durable state record, read from its own files by `fwdevice show`. */
  async state(): Promise<CState> {
    const { stdout } = await promisify(execFile)(this.bin, ['show', '--dir', this.dir]);
    return JSON.parse(stdout) as CState;
  }
}
