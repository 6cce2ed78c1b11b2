import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';

/**
 * File-system faults on demand, for the failure paths of code that uses node:fs: an operation on a
 * chosen path fails with an errno (EIO by default), or a FileHandle's writes come back short. The
 * same technique as test/helpers/crash-fs.ts: the node:fs functions are replaced on the module
 * objects (fs, fs.promises, FileHandle.prototype) and `syncBuiltinESMExports()` makes the ESM named
 * imports of the code under test follow, so that code is not changed. Always `restore()` (afterEach).
 *
 * Operations: 'mkdir', 'readdir', 'readFile', 'rename', 'unlink', 'utimes', 'stat', 'open'
 * (fs.promises.open, and the callback fs.open that createReadStream uses), and on a FileHandle
 * (matched by the path it was opened with) 'writev', 'write', 'writeFile', 'sync', 'datasync',
 * 'truncate', 'fstat'. A rename matches on either of its paths. Its sibling fs-faults-sync.ts does
 * the same for synchronous calls and fdatasync (the campaign journal).
 */
export interface Fault {
  op: string;
  /** Which paths fail: a test on the path as the code passed it. */
  path: (p: string) => boolean;
  /** errno code of the error thrown; default EIO. */
  code?: string;
  /** Fail this many matching calls, then let them through; default every one. */
  times?: number;
}

export class FaultyFs {
  /** Every injected failure, as `op path`. */
  readonly hits: string[] = [];
  /** How many writev calls were cut short by shortWrites(). */
  shortened = 0;
  private readonly faults: Fault[] = [];
  private readonly restorers: (() => void)[] = [];
  private readonly handlePaths = new WeakMap<object, string>();
  private shortLimit: number | undefined;

  /** Start injecting (no faults yet: add them with fail()). */
  static async install(): Promise<FaultyFs> {
    const f = new FaultyFs();
    const probePath = `${fs.realpathSync('/tmp')}/.fault-fs-probe-${process.pid}`;
    const probe = await fs.promises.open(probePath, 'w');
    const proto = Object.getPrototypeOf(probe) as Record<string, unknown>;
    await probe.close();
    fs.unlinkSync(probePath);
    f.wrap(proto);
    syncBuiltinESMExports();
    return f;
  }

  fail(fault: Fault): this {
    this.faults.push({ ...fault });
    return this;
  }

  /** From now on a FileHandle's write/writev writes at most `bytes` bytes per call (a short write). */
  shortWrites(bytes: number): this {
    this.shortLimit = bytes;
    return this;
  }

  restore(): void {
    for (const r of this.restorers.splice(0).reverse()) r();
    syncBuiltinESMExports();
  }

  private check(op: string, paths: unknown[]): void {
    for (const fault of this.faults) {
      if (fault.op !== op || fault.times === 0) continue;
      const p = paths.find((x): x is string => typeof x === 'string' && fault.path(x));
      if (p === undefined) continue;
      if (fault.times !== undefined) fault.times--;
      this.hits.push(`${op} ${p}`);
      const code = fault.code ?? 'EIO';
      throw Object.assign(new Error(`${code}: injected fault, ${op} '${p}'`), { code, syscall: op, path: p });
    }
  }

  private patch(obj: object, name: string, make: (orig: (...a: unknown[]) => unknown) => (...a: unknown[]) => unknown): void {
    const o = obj as Record<string, unknown>;
    const orig = o[name] as (...a: unknown[]) => unknown;
    o[name] = make(orig);
    this.restorers.push(() => {
      o[name] = orig;
    });
  }

  private wrap(fhProto: Record<string, unknown>): void {
    const p = fs.promises;
    for (const op of ['mkdir', 'readdir', 'readFile', 'rename', 'unlink', 'utimes', 'stat']) {
      this.patch(p, op, (orig) => async (...a) => {
        this.check(op, op === 'rename' ? [a[0], a[1]] : [a[0]]);
        return orig.apply(p, a);
      });
    }
    this.patch(p, 'open', (orig) => async (...a) => {
      this.check('open', [a[0]]);
      const h = (await orig.apply(p, a)) as object;
      if (typeof a[0] === 'string') this.handlePaths.set(h, a[0]);
      return h;
    });
    this.patch(fs, 'open', (orig) => (...a) => {
      const cb = a[a.length - 1] as (err: Error | null, fd?: number) => void;
      try {
        this.check('open', [a[0]]);
      } catch (err) {
        process.nextTick(cb, err);
        return undefined;
      }
      return orig.apply(fs, a);
    });
    const faulty = this;
    const fhOps: [string, string][] = [['writev', 'writev'], ['write', 'write'], ['writeFile', 'writeFile'], ['sync', 'sync'], ['datasync', 'datasync'], ['truncate', 'truncate'], ['stat', 'fstat']];
    for (const [method, op] of fhOps) {
      this.patch(fhProto, method, (orig) => async function (this: fs.promises.FileHandle, ...a: unknown[]) {
        faulty.check(op, [faulty.handlePaths.get(this)]);
        const limit = faulty.shortLimit;
        if (limit !== undefined && method === 'writev') {
          const all = Buffer.concat(a[0] as Uint8Array[]);
          const part = all.subarray(0, Math.min(limit, all.length));
          if (part.length < all.length) faulty.shortened++;
          const r = await this.write(part, 0, part.length, a[1] as number);
          return { bytesWritten: r.bytesWritten, buffers: a[0] };
        }
        if (limit !== undefined && method === 'write' && typeof a[0] !== 'string') {
          const buf = a[0] as Uint8Array;
          const off = (a[1] as number | undefined) ?? 0;
          const asked = (a[2] as number | undefined) ?? buf.length - off;
          // arguments Node refuses (past the buffer's end) go to Node unchanged, to be refused
          if (off + asked > buf.length) return orig.apply(this, a);
          return orig.call(this, buf, off, Math.min(asked, limit), a[3]);
        }
        return orig.apply(this, a);
      });
    }
  }
}
