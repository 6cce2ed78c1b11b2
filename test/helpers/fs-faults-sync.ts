import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { resolve } from 'node:path';

/**
 * Deterministic disk faults for unit tests of code that uses node:fs's synchronous calls and
 * `fdatasync` (the campaign journal): while started, calls on files under `root` go through the
 * test's hooks — a write can fail (ENOSPC, EIO) or take only part of its bytes, an `fdatasync` can
 * fail or be held until the test releases it — and every call is logged in order. ESM named
 * imports of node builtins follow the CommonJS module object after `syncBuiltinESMExports()` (as in
 * crash-fs.ts), so the code under test is not changed. Its sibling fs-faults-promises.ts does the
 * same for the promise API and FileHandle methods (the image store).
 */

export type Fault = 'ENOSPC' | 'EIO';

export function errno(code: Fault, syscall: string): NodeJS.ErrnoException {
  const text = code === 'ENOSPC' ? 'no space left on device' : 'i/o error';
  return Object.assign(new Error(`${code}: ${text}, ${syscall}`), { code, syscall, errno: code === 'ENOSPC' ? -28 : -5 });
}

export interface FsOp { op: string; path: string }

export class FsFaults {
  /** Each write to a file under root: a number = write at most that many bytes; a fault = throw it; undefined = write it all. */
  onWrite: (path: string, length: number) => number | Fault | undefined = () => undefined;
  /** Each `fdatasync` (async): a fault = fail it; 'hold' = run it only when the test calls release(). */
  onFdatasync: (path: string) => Fault | 'hold' | undefined = () => undefined;
  onFdatasyncSync: (path: string) => Fault | undefined = () => undefined;
  onFtruncate: (path: string) => Fault | undefined = () => undefined;
  /** Every call on a file or directory under root, in order. */
  readonly ops: FsOp[] = [];
  private readonly held: (() => void)[] = [];
  private readonly fds = new Map<number, string>();
  private readonly restore: (() => void)[] = [];
  private readonly root: string;

  constructor(root: string) {
    this.root = resolve(root);
  }

  /** Files (and directories) under root that are open now. */
  get open(): string[] {
    return [...this.fds.values()];
  }

  /** fdatasyncs held so far and not released. */
  get waiting(): number {
    return this.held.length;
  }

  /** Let the oldest held fdatasync run (with `fault`: fail it instead). */
  release(fault?: Fault): void {
    const next = this.held.shift();
    if (!next) throw new Error('no fdatasync is held');
    if (fault) this.failNext = fault;
    next();
  }

  private failNext: Fault | undefined;

  count(op: string, path?: string): number {
    return this.ops.filter((o) => o.op === op && (path === undefined || o.path === path)).length;
  }

  start(): void {
    const self = this;
    const syncNow = fs.fdatasyncSync;
    const mine = (p: fs.PathLike): string | undefined => {
      const abs = resolve(String(p));
      return abs === this.root || abs.startsWith(`${this.root}/`) ? abs : undefined;
    };
    const patch = <K extends keyof typeof fs>(name: K, make: (orig: (typeof fs)[K]) => (typeof fs)[K]): void => {
      const orig = fs[name];
      (fs as Record<string, unknown>)[name] = make(orig);
      this.restore.push(() => { (fs as Record<string, unknown>)[name] = orig; });
    };
    patch('openSync', (orig) => ((p: fs.PathLike, ...rest: unknown[]) => {
      const fd = (orig as (...a: unknown[]) => number)(p, ...rest);
      const path = mine(p);
      if (path !== undefined) {
        self.fds.set(fd, path);
        self.ops.push({ op: 'open', path });
      }
      return fd;
    }) as typeof fs.openSync);
    patch('closeSync', (orig) => ((fd: number) => {
      const path = self.fds.get(fd);
      orig(fd);
      if (path !== undefined) {
        self.fds.delete(fd);
        self.ops.push({ op: 'close', path });
      }
    }) as typeof fs.closeSync);
    patch('writeSync', (orig) => ((fd: number, buf: unknown, ...rest: unknown[]) => {
      const path = self.fds.get(fd);
      const call = orig as (...a: unknown[]) => number;
      if (path === undefined) return call(fd, buf, ...rest);
      const length = typeof buf === 'string' ? Buffer.byteLength(buf) : (rest[1] as number | undefined) ?? (buf as Buffer).length - ((rest[0] as number | undefined) ?? 0);
      const plan = self.onWrite(path, length);
      if (plan === 'ENOSPC' || plan === 'EIO') throw errno(plan, 'write');
      self.ops.push({ op: 'write', path });
      if (plan === undefined || plan >= length || typeof buf === 'string') return call(fd, buf, ...rest);
      return call(fd, buf, rest[0], plan, rest[2]);
    }) as typeof fs.writeSync);
    patch('ftruncateSync', (orig) => ((fd: number, len?: number) => {
      const path = self.fds.get(fd);
      if (path !== undefined) {
        const f = self.onFtruncate(path);
        if (f) throw errno(f, 'ftruncate');
        self.ops.push({ op: 'ftruncate', path });
      }
      orig(fd, len);
    }) as typeof fs.ftruncateSync);
    patch('fdatasyncSync', (orig) => ((fd: number) => {
      const path = self.fds.get(fd);
      if (path !== undefined) {
        const f = self.onFdatasyncSync(path);
        if (f) throw errno(f, 'fdatasync');
        self.ops.push({ op: 'fdatasyncSync', path });
      }
      orig(fd);
    }) as typeof fs.fdatasyncSync);
    patch('fsyncSync', (orig) => ((fd: number) => {
      const path = self.fds.get(fd);
      if (path !== undefined) self.ops.push({ op: 'fsyncSync', path });
      orig(fd);
    }) as typeof fs.fsyncSync);
    patch('renameSync', (orig) => ((from: fs.PathLike, to: fs.PathLike) => {
      const path = mine(to);
      orig(from, to);
      if (path !== undefined) self.ops.push({ op: 'rename', path });
    }) as typeof fs.renameSync);
    patch('fdatasync', (orig) => ((fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
      const path = self.fds.get(fd);
      if (path === undefined) return orig(fd, cb);
      const plan = self.onFdatasync(path);
      const run = (): void => {
        const f = self.failNext ?? (plan === 'hold' ? undefined : plan);
        self.failNext = undefined;
        self.ops.push({ op: f ? 'fdatasync failed' : 'fdatasync', path });
        if (f) {
          setImmediate(() => cb(errno(f, 'fdatasync')));
        } else if (plan === 'hold') {
          // released by the test: done now, reported on the next turn (no thread-pool timing in the test)
          let err: NodeJS.ErrnoException | null = null;
          try {
            syncNow(fd);
          } catch (e) {
            err = e as NodeJS.ErrnoException;
          }
          setImmediate(() => cb(err));
        } else {
          orig(fd, cb);
        }
      };
      if (plan === 'hold') self.held.push(run);
      else run();
    }) as typeof fs.fdatasync);
    syncBuiltinESMExports();
  }

  stop(): void {
    for (const r of this.restore.splice(0).reverse()) r();
    syncBuiltinESMExports();
    // a held fdatasync would never call back: run them, so nothing waits forever
    for (const h of this.held.splice(0)) h();
  }
}
