import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { ROOT } from '../scripts/lib/processes.ts';

/** One line of `fwpush --json`, stamped with when the runner read it. */
export interface LaptopEvent {
  event: string;
  /** ms since the scenario started. */
  at: number;
  [k: string]: unknown;
}

export interface LaptopRunResult {
  code: number | null;
  events: LaptopEvent[];
  stderr: string;
}

/**
 * fwpush as the technician runs it, a real process on the laptop's port with `--json`: each
 * line is an event of the gateway (order, progress, result, complete, ...) or of fwpush itself
 * (upload, link-lost, summary). The runner times its faults from these (docs/hil.md).
 */
export class LaptopRun {
  readonly events: LaptopEvent[] = [];
  readonly exited: Promise<LaptopRunResult>;
  private stderr = '';
  private readonly child: ChildProcess;
  private readonly watchers = new Set<(e: LaptopEvent) => void>();

  constructor(args: string[], private readonly clock: () => number, onEvent: (e: LaptopEvent) => void, timeoutMs: number) {
    this.child = spawn(process.execPath, ['--import', 'tsx', 'laptop/cli.ts', ...args, '--json'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      let obj: Record<string, unknown>;
      try {
        obj = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return; // fwpush --json prints only JSON lines; anything else is not an event
      }
      const e = { ...obj, event: String(obj.event), at: this.clock() } as LaptopEvent;
      this.events.push(e);
      onEvent(e);
      for (const w of [...this.watchers]) w(e);
    });
    this.child.stderr!.on('data', (d: Buffer) => { this.stderr = (this.stderr + d.toString()).slice(-16_384); });
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    this.exited = new Promise((resolve) => {
      this.child.once('close', (code, signal) => {
        clearTimeout(timer);
        resolve({ code: code ?? (signal ? 128 : null), events: this.events, stderr: this.stderr });
      });
    });
  }

  /** The first event (already seen or to come) for which `match` holds; undefined if fwpush ends or the bound passes first. */
  waitFor(match: (e: LaptopEvent) => boolean, timeoutMs: number): Promise<LaptopEvent | undefined> {
    const seen = this.events.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => {
      const done = (e: LaptopEvent | undefined): void => {
        clearTimeout(timer);
        this.watchers.delete(w);
        resolve(e);
      };
      const w = (e: LaptopEvent): void => {
        if (match(e)) done(e);
      };
      const timer = setTimeout(() => done(undefined), timeoutMs);
      this.watchers.add(w);
      void this.exited.then(() => done(this.events.find(match)));
    });
  }

  /** Kill fwpush (the laptop's lid closed); resolves once it is gone. */
  async kill(): Promise<LaptopRunResult> {
    this.child.kill('SIGKILL');
    return this.exited;
  }
}
