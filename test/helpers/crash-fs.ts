import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';

/**
 * A recording file-system layer for crash-consistency tests in the style of ALICE (Pillai et al.,
 * OSDI 2014) and CrashMonkey (Mohan et al., OSDI 2018). While recording, the node:fs functions the
 * gateway uses (promises open/rename/unlink, FileHandle write/writev/writeFile/truncate/sync/
 * datasync, and openSync/writeSync/truncateSync/renameSync/unlinkSync/fsyncSync/fdatasyncSync/
 * fdatasync) still do their work, and each effect under `root` is logged: every write (as the file's
 * whole content after it), every fsync/fdatasync (which version of the file it made durable), every
 * directory entry change (create, rename, unlink) and every directory fsync. ESM named imports of
 * node builtins follow the CommonJS module object after `syncBuiltinESMExports()`, so the code under
 * test is not changed; FileHandle methods are patched on FileHandle.prototype.
 *
 * `crashStates(k)` then builds the states a power cut after the k-th operation may leave on disk,
 * under a pessimistic model (what POSIX promises, not what ext4 happens to do):
 * - a file's content is its last fsynced version, or any later version written before the crash
 *   (writes reach the disk in order, as a prefix), or the latest one torn halfway;
 * - a directory entry change is durable only once its directory (for a rename: either directory)
 *   was fsynced after it; of the changes not yet durable, any prefix in issue order survives
 *   (none, some, all) — so a rename may survive while the data it points at does not.
 */

type Op =
  | { k: 'write'; inode: number; version: number }
  | { k: 'sync'; inode: number; version: number }
  | { k: 'create'; path: string; inode: number }
  | { k: 'rename'; from: string; to: string; inode: number }
  | { k: 'unlink'; path: string }
  | { k: 'dirsync'; dir: string }
  | { k: 'mark'; label: string };

interface Inode { versions: Buffer[] }

/** One state a crash may leave: relative path -> content. */
export interface CrashState { files: Map<string, Buffer>; describe: string }

const FH_METHODS = ['write', 'writev', 'writeFile', 'truncate', 'sync', 'datasync'] as const;

export class CrashRecorder {
  readonly ops: Op[] = [];
  private readonly inodes: Inode[] = [];
  private readonly initial = new Map<string, number>();
  private readonly live = new Map<string, number>();
  /** fd -> inode (files) or directory path (a directory opened for fsync). */
  private readonly fds = new Map<number, number | string>();
  private readonly restore: (() => void)[] = [];
  private readonly root: string;

  constructor(root: string) {
    this.root = resolve(root);
  }

  /** Snapshot `root` (everything in it counts as durable) and start recording. */
  async start(): Promise<void> {
    this.scan(this.root);
    const probe = await fs.promises.open(join(this.root, '.probe'), 'w');
    const FileHandle = Object.getPrototypeOf(probe) as Record<string, unknown>;
    await probe.close();
    fs.unlinkSync(join(this.root, '.probe'));
    this.wrapPromises();
    this.wrapSync();
    this.wrapFileHandle(FileHandle);
    syncBuiltinESMExports();
  }

  stop(): void {
    for (const r of this.restore.splice(0).reverse()) r();
    syncBuiltinESMExports();
  }

  /** An outside event (an acknowledgement) at this point of the operation sequence. */
  mark(label: string): void {
    this.ops.push({ k: 'mark', label });
  }

  /** Index of the op after the mark `label` (crash points at or after it come after the event). */
  markAt(label: string): number {
    const i = this.ops.findIndex((o) => o.k === 'mark' && o.label === label);
    if (i < 0) throw new Error(`no mark ${label}`);
    return i + 1;
  }

  /** How many file and directory syncs were recorded (a test's self-check). */
  counts(): { writes: number; syncs: number; dirsyncs: number; renames: number } {
    const n = (k: Op['k']): number => this.ops.filter((o) => o.k === k).length;
    return { writes: n('write'), syncs: n('sync'), dirsyncs: n('dirsync'), renames: n('rename') };
  }

  /** Every state a crash after `k` operations may leave (see the class comment). */
  crashStates(k: number): CrashState[] {
    const ops = this.ops.slice(0, k);
    // A rename is two directory changes: the new name (durable once its directory is fsynced) and
    // the old name's removal (durable once that directory is): either may survive without the other.
    type Entry = { kind: 'add'; path: string; inode: number } | { kind: 'remove'; path: string };
    const entries: { e: Entry; i: number }[] = [];
    ops.forEach((o, i) => {
      if (o.k === 'create') entries.push({ e: { kind: 'add', path: o.path, inode: o.inode }, i });
      else if (o.k === 'unlink') entries.push({ e: { kind: 'remove', path: o.path }, i });
      else if (o.k === 'rename') {
        entries.push({ e: { kind: 'add', path: o.to, inode: o.inode }, i });
        entries.push({ e: { kind: 'remove', path: o.from }, i });
      }
    });
    const durable = ({ e, i }: { e: Entry; i: number }): boolean => ops.some((s, j) => j > i && s.k === 'dirsync' && s.dir === dirname(e.path));
    const unsynced = entries.filter((x) => !durable(x));
    // content: per inode, the last synced version and the latest one
    const synced = new Map<number, number>();
    const latest = new Map<number, number>();
    for (const o of ops) {
      if (o.k === 'sync') synced.set(o.inode, Math.max(synced.get(o.inode) ?? 0, o.version));
      if (o.k === 'write') latest.set(o.inode, o.version);
    }
    const lo = (ino: number): number => synced.get(ino) ?? 0;
    const hi = (ino: number): number => latest.get(ino) ?? 0;
    type Pick = (ino: number) => Buffer;
    const picks: { name: string; pick: Pick }[] = [
      { name: 'synced data', pick: (ino) => this.inodes[ino]!.versions[lo(ino)]! },
      { name: 'all data', pick: (ino) => this.inodes[ino]!.versions[Math.max(lo(ino), hi(ino))]! },
      { name: 'latest write torn', pick: (ino) => torn(this.inodes[ino]!, lo(ino), hi(ino)) },
    ];
    for (const [ino, h] of latest) {
      for (let v = lo(ino) + 1; v < h; v++) {
        picks.push({ name: `inode ${ino} at version ${v}`, pick: (i) => (i === ino ? this.inodes[i]!.versions[v]! : this.inodes[i]!.versions[lo(i)]!) });
      }
    }
    const out: CrashState[] = [];
    for (let p = 0; p <= unsynced.length; p++) {
      const lost = new Set(unsynced.slice(p));
      const names = new Map(this.initial);
      for (const x of entries) {
        if (lost.has(x)) continue;
        if (x.e.kind === 'add') names.set(x.e.path, x.e.inode);
        else names.delete(x.e.path);
      }
      for (const { name, pick } of picks) {
        const files = new Map<string, Buffer>();
        for (const [path, ino] of names) files.set(relative(this.root, path), pick(ino));
        out.push({ files, describe: `crash after op ${k} (${describeOp(this.ops[k - 1])}), ${unsynced.length - p} of ${unsynced.length} unsynced entry changes lost, ${name}` });
      }
    }
    return out;
  }

  /** Write `state` under `dir` (emptied first); directories are created as needed. */
  static materialize(state: CrashState, dir: string): void {
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true });
    for (const [rel, content] of state.files) {
      fs.mkdirSync(dirname(join(dir, rel)), { recursive: true });
      fs.writeFileSync(join(dir, rel), content);
    }
  }

  // ---------------------------------------------------------------- recording

  private scan(dir: string): void {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) this.scan(p);
      else if (e.isFile()) {
        const ino = this.newInode(fs.readFileSync(p));
        this.initial.set(p, ino);
        this.live.set(p, ino);
      }
    }
  }

  private newInode(content: Buffer): number {
    this.inodes.push({ versions: [content] });
    return this.inodes.length - 1;
  }

  private mine(path: unknown): string | undefined {
    if (typeof path !== 'string') return undefined;
    const abs = resolve(path);
    return abs === this.root || abs.startsWith(`${this.root}/`) ? abs : undefined;
  }

  /** After open(path, flags) returned fd. */
  private opened(path: unknown, flags: unknown, fd: number): void {
    const abs = this.mine(path);
    if (abs === undefined) return;
    if (fs.fstatSync(fd).isDirectory()) {
      this.fds.set(fd, abs);
      return;
    }
    let ino = this.live.get(abs);
    if (ino === undefined) {
      ino = this.newInode(Buffer.alloc(0));
      this.live.set(abs, ino);
      this.ops.push({ k: 'create', path: abs, inode: ino });
    }
    this.fds.set(fd, ino);
    const f = typeof flags === 'number' ? flags : fs.constants.O_RDONLY;
    const truncates = typeof flags === 'string' ? flags.startsWith('w') : (f & fs.constants.O_TRUNC) !== 0;
    if (truncates) this.wrote(fd);
  }

  /** After a write/truncate through fd: the file's whole content is its next version. */
  private wrote(fd: number): void {
    const ino = this.fds.get(fd);
    if (typeof ino !== 'number') return;
    const v = this.inodes[ino]!.versions;
    v.push(fs.readFileSync(`/proc/self/fd/${fd}`));
    this.ops.push({ k: 'write', inode: ino, version: v.length - 1 });
  }

  /** An fsync/fdatasync of fd that started when the file was at `version` has completed. */
  private synced(fd: number, version: number | undefined): void {
    const what = this.fds.get(fd);
    if (typeof what === 'string') this.ops.push({ k: 'dirsync', dir: what });
    else if (typeof what === 'number' && version !== undefined) this.ops.push({ k: 'sync', inode: what, version });
  }

  private versionOf(fd: number): number | undefined {
    const ino = this.fds.get(fd);
    return typeof ino === 'number' ? this.inodes[ino]!.versions.length - 1 : undefined;
  }

  private renamed(from: unknown, to: unknown): void {
    const a = this.mine(from);
    const b = this.mine(to);
    if (a === undefined || b === undefined) return;
    const ino = this.live.get(a);
    if (ino === undefined) return;
    this.live.delete(a);
    this.live.set(b, ino);
    this.ops.push({ k: 'rename', from: a, to: b, inode: ino });
  }

  private unlinked(path: unknown): void {
    const abs = this.mine(path);
    if (abs === undefined || !this.live.has(abs)) return;
    this.live.delete(abs);
    this.ops.push({ k: 'unlink', path: abs });
  }

  private truncatedPath(path: unknown): void {
    const abs = this.mine(path);
    if (abs === undefined) return;
    const ino = this.live.get(abs);
    if (ino === undefined) return;
    const v = this.inodes[ino]!.versions;
    v.push(fs.readFileSync(abs));
    this.ops.push({ k: 'write', inode: ino, version: v.length - 1 });
  }

  private patch<T extends object>(obj: T, name: string, make: (orig: (...a: unknown[]) => unknown) => (...a: unknown[]) => unknown): void {
    const o = obj as Record<string, unknown>;
    const orig = o[name] as (...a: unknown[]) => unknown;
    o[name] = make(orig);
    this.restore.push(() => {
      o[name] = orig;
    });
  }

  private wrapPromises(): void {
    const p = fs.promises;
    this.patch(p, 'open', (orig) => async (...a) => {
      const h = (await orig.apply(p, a)) as fs.promises.FileHandle;
      this.opened(a[0], a[1] ?? 'r', h.fd);
      return h;
    });
    this.patch(p, 'rename', (orig) => async (...a) => {
      await orig.apply(p, a);
      this.renamed(a[0], a[1]);
    });
    this.patch(p, 'unlink', (orig) => async (...a) => {
      await orig.apply(p, a);
      this.unlinked(a[0]);
    });
  }

  private wrapSync(): void {
    this.patch(fs, 'openSync', (orig) => (...a) => {
      const fd = orig.apply(fs, a) as number;
      this.opened(a[0], a[1] ?? 'r', fd);
      return fd;
    });
    this.patch(fs, 'writeSync', (orig) => (...a) => {
      const n = orig.apply(fs, a);
      this.wrote(a[0] as number);
      return n;
    });
    this.patch(fs, 'truncateSync', (orig) => (...a) => {
      orig.apply(fs, a);
      this.truncatedPath(a[0]);
    });
    this.patch(fs, 'renameSync', (orig) => (...a) => {
      orig.apply(fs, a);
      this.renamed(a[0], a[1]);
    });
    this.patch(fs, 'unlinkSync', (orig) => (...a) => {
      orig.apply(fs, a);
      this.unlinked(a[0]);
    });
    for (const name of ['fsyncSync', 'fdatasyncSync']) {
      this.patch(fs, name, (orig) => (...a) => {
        const v = this.versionOf(a[0] as number);
        orig.apply(fs, a);
        this.synced(a[0] as number, v);
      });
    }
    for (const name of ['fsync', 'fdatasync']) {
      this.patch(fs, name, (orig) => (...a) => {
        const fd = a[0] as number;
        const v = this.versionOf(fd);
        const cb = a[1] as (err: Error | null) => void;
        orig.call(fs, fd, (err: Error | null) => {
          if (!err) this.synced(fd, v);
          cb(err);
        });
      });
    }
  }

  private wrapFileHandle(proto: Record<string, unknown>): void {
    const recorder = this;
    for (const name of FH_METHODS) {
      this.patch(proto, name, (orig) => async function (this: fs.promises.FileHandle, ...a: unknown[]) {
        const fd = this.fd;
        const v = recorder.versionOf(fd);
        const r = await orig.apply(this, a);
        if (name === 'sync' || name === 'datasync') recorder.synced(fd, v);
        else recorder.wrote(fd);
        return r;
      });
    }
  }
}

/** The latest version cut halfway through what it added to the synced one (a torn append), or halfway when it rewrote the file. */
function torn(inode: Inode, lo: number, hi: number): Buffer {
  const a = inode.versions[lo]!;
  if (hi <= lo) return a;
  const b = inode.versions[hi]!;
  if (b.length > a.length && b.subarray(0, a.length).equals(a)) return b.subarray(0, a.length + ((b.length - a.length) >> 1));
  return b.subarray(0, b.length >> 1);
}

function describeOp(o: Op | undefined): string {
  if (!o) return 'start';
  switch (o.k) {
    case 'write': return `write inode ${o.inode} v${o.version}`;
    case 'sync': return `sync inode ${o.inode} v${o.version}`;
    case 'create': return `create ${o.path}`;
    case 'rename': return `rename ${o.from} -> ${o.to}`;
    case 'unlink': return `unlink ${o.path}`;
    case 'dirsync': return `fsync dir ${o.dir}`;
    case 'mark': return `mark ${o.label}`;
  }
}
