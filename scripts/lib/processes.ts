import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

/** Project root (this file is scripts/lib/processes.ts). */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface Proc {
  child: ChildProcess;
  name: string;
  /** Every stdout line so far. */
  lines: string[];
  /** Resolves with the first stdout line matching, within timeoutMs. */
  waitForLine(match: RegExp | ((line: string) => boolean), timeoutMs: number): Promise<string>;
  /** SIGTERM, then SIGKILL after graceMs; resolves with the exit code. */
  stop(graceMs?: number): Promise<number | null>;
  exited: Promise<number | null>;
}

/**
 * Start a TypeScript entry point of this project as its own process (node --import tsx).
 * stdout is captured line by line (and optionally echoed); stderr goes where you say.
 */
export function startTs(name: string, entry: string, args: string[], opts: StartOptions = {}): Proc {
  return startProcess(name, process.execPath, ['--import', 'tsx', entry, ...args], opts);
}

export interface StartOptions { echo?: (line: string) => void; stderr?: 'inherit' | 'pipe' | 'ignore' | number; env?: NodeJS.ProcessEnv }

/** Start any executable the same way (e.g. device-c's fwdevice): stdout line by line, stop() by SIGTERM then SIGKILL. */
export function startProcess(name: string, command: string, args: string[], opts: StartOptions = {}): Proc {
  const child = spawn(command, args, {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', opts.stderr ?? 'pipe'],
    env: { ...process.env, ...opts.env },
  });
  const lines: string[] = [];
  const watchers = new Set<(line: string) => void>();
  createInterface({ input: child.stdout! }).on('line', (line) => {
    lines.push(line);
    opts.echo?.(line);
    for (const w of [...watchers]) w(line);
  });
  if (child.stderr) child.stderr.resume();
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 : null))));
  const test = (m: RegExp | ((l: string) => boolean), l: string): boolean => (typeof m === 'function' ? m(l) : m.test(l));
  return {
    child, name, lines, exited,
    waitForLine(match, timeoutMs) {
      const seen = lines.find((l) => test(match, l));
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => {
          watchers.delete(w);
          reject(new Error(`${name}: no line matching ${String(match)} within ${timeoutMs} ms`));
        }, timeoutMs);
        const w = (l: string): void => {
          if (!test(match, l)) return;
          clearTimeout(timer);
          watchers.delete(w);
          resolve(l);
        };
        watchers.add(w);
        void exited.then((code) => {
          if (!watchers.has(w)) return;
          clearTimeout(timer);
          watchers.delete(w);
          reject(new Error(`${name} exited (${code}) before printing a line matching ${String(match)}`));
        });
      });
    },
    async stop(graceMs = 5000) {
      if (child.exitCode !== null || child.signalCode !== null) return exited;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
  };
}

/** A free TCP port on 127.0.0.1 (bind to 0, read, close). */
export async function freePort(): Promise<number> {
  const srv = createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const port = (srv.address() as { port: number }).port;
  srv.close();
  await once(srv, 'close');
  return port;
}
