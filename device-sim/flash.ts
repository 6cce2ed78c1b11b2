import { closeSync, constants, ftruncateSync, mkdirSync, openSync, writeFile as writeFileCallback, writeSync, writevSync } from 'node:fs';
import { mkdir, open, readFile, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { promisify } from 'node:util';

const writeFileCb = promisify(writeFileCallback);

/**
 * What "durable" means for the simulator's files. The simulated power cut is modelled in the
 * simulator itself (pending flash writes are dropped in RAM), and a killed process (SIGKILL)
 * loses no write() already made, so the model needs nothing from the disk. `fsync: true` also
 * fsyncs every flush and atomic replace, which only adds protection against a crash of the host
 * OS, at a cost: one fsync per flush and two per replace (device option `fsync`).
 */
export interface FileSync {
  fsync: boolean;
}

const SYNC: FileSync = { fsync: true };

/**
 * Simulated flash for one slot, backed by a file.
 *
 * Writes go to an in-memory pending list (the controller's write buffer) and only become
 * durable on `flush()`, which applies them to the file in order (and fsyncs it, with
 * `fsync`). `powerCut()` discards whatever is still pending, exactly what a real power loss
 * does to buffered writes. Reads see durable contents only, so nothing can be reported as held
 * before it would survive a cut.
 */
export class Flash {
  readonly path: string;
  readonly capacity: number;
  readonly #sync: FileSync;
  #pending: { off: number; data: Uint8Array }[] = [];
  #pendingBytes = 0;
  /** The folder is known to exist (made once, not before every flush). */
  #dirMade = false;
  /**
   * Without `fsync`: the slot file's descriptor, opened at the first flush or erase and kept
   * for the transfer instead of an open and a close per flush. `close()` releases it (the device
   * does at the end of a transfer, an abort, a power cut, a reboot and a shutdown); any later
   * flush or erase opens it again. It only saves system calls: every flush still reaches the
   * file before it resolves, exactly as before.
   */
  #fd: number | null = null;

  constructor(path: string, capacity: number, sync: FileSync = SYNC) {
    this.path = path;
    this.capacity = capacity;
    this.#sync = sync;
  }

  /** Buffer a write; throws RangeError beyond the slot capacity. */
  write(off: number, data: Uint8Array): void {
    this.#buffer(off, data, true);
  }

  /**
   * write() for a buffer the caller hands over and never changes again (the device's decoded
   * chunk data, a fresh buffer per MQTT message): buffered without the copy write() makes. The
   * model is the same: nothing reaches the file before flush(), a power cut drops it.
   */
  writeOwned(off: number, data: Uint8Array): void {
    this.#buffer(off, data, false);
  }

  #buffer(off: number, data: Uint8Array, copy: boolean): void {
    if (!Number.isInteger(off) || off < 0 || off + data.length > this.capacity) {
      throw new RangeError(`flash write [${off}, ${off + data.length}) outside slot of ${this.capacity} bytes`);
    }
    this.#pending.push({ off, data: copy ? new Uint8Array(data) : data }); // copy: one memcpy, the caller may reuse its buffer
    this.#pendingBytes += data.length;
  }

  get pendingWrites(): number {
    return this.#pending.length;
  }

  get pendingBytes(): number {
    return this.#pendingBytes;
  }

  /**
   * Apply pending writes in order (with `fsync`, then fsync the file). Durable once this
   * resolves. Writes that continue one another (chunks in sequence) go to the file as one
   * writev. Without `fsync` the writes only reach the page cache — a few system calls of tens
   * of microseconds — and are made synchronously: cheaper than a round trip through the thread
   * pool for each, and a flush is then a single step that nothing can interleave with.
   */
  async flush(): Promise<void> {
    if (this.#pending.length === 0) return;
    const runs = coalesce(this.#pending);
    this.#pending = [];
    this.#pendingBytes = 0;
    if (!this.#sync.fsync) {
      const fd = this.#openSync(); // no await before the writes: the flush is one step
      for (const r of runs) checkWritten(writevSync(fd, r.parts, r.off), r.bytes, this.path);
      return;
    }
    const fh = await this.#open();
    try {
      for (const r of runs) checkWritten((await fh.writev(r.parts, r.off)).bytesWritten, r.bytes, this.path);
      await fh.sync();
    } finally {
      await fh.close();
    }
  }

  /** The kept descriptor (without `fsync`), opened (and the folder made) when there is none. */
  #openSync(): number {
    if (this.#fd !== null) return this.#fd;
    if (!this.#dirMade) {
      mkdirSync(dirname(this.path), { recursive: true });
      this.#dirMade = true;
    }
    this.#fd = openSync(this.path, constants.O_RDWR | constants.O_CREAT, 0o644);
    return this.#fd;
  }

  /** Release the kept descriptor, if any (pending writes stay pending). */
  close(): void {
    const fd = this.#fd;
    this.#fd = null;
    if (fd !== null) closeSync(fd);
  }

  /** Whether a descriptor is kept open (for tests). */
  get isOpen(): boolean {
    return this.#fd !== null;
  }

  async #open(): Promise<FileHandle> {
    if (!this.#dirMade) {
      await mkdir(dirname(this.path), { recursive: true });
      this.#dirMade = true;
    }
    return open(this.path, constants.O_RDWR | constants.O_CREAT, 0o644);
  }

  /** Power loss: pending writes are gone (and the descriptor closed). Returns how many writes were lost. */
  powerCut(): number {
    const lost = this.discard();
    this.close();
    return lost;
  }

  /** Drop pending writes (what a power cut does; also used when a transfer is abandoned). */
  discard(): number {
    const lost = this.#pending.length;
    this.#pending = [];
    this.#pendingBytes = 0;
    return lost;
  }

  /** Erase the slot (truncate to 0, durable at once) and drop anything pending. */
  async erase(): Promise<void> {
    this.discard();
    if (!this.#sync.fsync) {
      ftruncateSync(this.#openSync(), 0); // page cache only: synchronous, as flush
      return;
    }
    const fh = await this.#open();
    try {
      await fh.truncate(0);
      if (this.#sync.fsync) await fh.sync();
    } finally {
      await fh.close();
    }
  }

  /** Durable contents (a missing file reads as empty). */
  async read(): Promise<Uint8Array> {
    try {
      const b = await readFile(this.path);
      return new Uint8Array(b.buffer, b.byteOffset, b.length); // a view, not a copy of the slot
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Uint8Array(0);
      throw err;
    }
  }

  /** Durable size in bytes (0 when the file does not exist). */
  async size(): Promise<number> {
    try {
      return (await stat(this.path)).size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
      throw err;
    }
  }
}

/**
 * Atomically replace a JSON file: write `<path>.tmp` (fsync it, with `fsync`), rename over
 * `<path>` (then fsync the folder, with `fsync`). A reader (or a boot after a power cut, or
 * after the process was killed) sees either the old or the new content, never a mix: rename is
 * atomic. `beforeRename` is a fault hook: when it returns true the write is abandoned after the
 * temporary file is written and before the rename — a power cut in the middle of the update.
 *
 * Without `fsync` the old file is unlinked first and the temporary file then renamed to the free
 * name: on ext4 a rename *over* an existing file forces a writeback of the new one
 * (`auto_da_alloc`; 1.2 ms per replace measured here, against 0.05 ms this way), which the
 * simulated power cut (modelled in RAM) does not need. A process killed between the unlink and
 * the rename leaves only `<path>.tmp`, complete (it was written and closed before the unlink):
 * `recoverAtomic` puts it in place at the next start, so a reader after `recoverAtomic` still sees
 * the old or the new content.
 */
export async function writeJsonAtomic(path: string, value: unknown, beforeRename?: () => boolean, sync: FileSync = SYNC): Promise<'written' | 'cut'> {
  return writeTextAtomic(path, jsonText(value), beforeRename, sync);
}

/** The text writeJsonAtomic writes for `value`. */
export function jsonText(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

/** writeJsonAtomic for text already made. */
export async function writeTextAtomic(path: string, text: string, beforeRename?: () => boolean, sync: FileSync = SYNC): Promise<'written' | 'cut'> {
  const tmp = `${path}.tmp`;
  const dir = dirname(path);
  if (!sync.fsync) {
    // one callback-API writeFile (open, write, close on the thread pool): no FileHandle object and
    // no promise per step; the same steps, the temporary file complete and closed before the rename
    try {
      await writeFileCb(tmp, text, { encoding: 'utf8', mode: 0o644 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      await mkdir(dir, { recursive: true });
      await writeFileCb(tmp, text, { encoding: 'utf8', mode: 0o644 });
    }
    if (beforeRename?.() === true) return 'cut';
    await removeDurably(path, sync); // not a replace: no forced writeback (above)
    await rename(tmp, path);
    return 'written';
  }
  let fh: FileHandle;
  try {
    fh = await open(tmp, 'w', 0o644);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    await mkdir(dir, { recursive: true });
    fh = await open(tmp, 'w', 0o644);
  }
  try {
    await fh.writeFile(text, 'utf8');
    if (sync.fsync) await fh.sync();
  } finally {
    await fh.close();
  }
  if (beforeRename?.() === true) return 'cut';
  await rename(tmp, path);
  await syncDir(dir);
  return 'written';
}

/**
 * At start-up, finish or undo a replace by writeTextAtomic that a kill interrupted: `<path>`
 * missing and `<path>.tmp` present and `valid` → the kill came between the unlink and the
 * rename, and the temporary file is the complete new content: renamed into place ('recovered').
 * Otherwise a leftover `<path>.tmp` is an update abandoned before its rename (the old content
 * stands) and is removed.
 */
export async function recoverAtomic(path: string, valid: (value: unknown) => boolean, sync: FileSync = SYNC): Promise<'recovered' | 'none'> {
  const tmp = `${path}.tmp`;
  if ((await readJson(path).catch(() => true)) === null) {
    const value = await readJson(tmp).catch(() => null);
    if (value !== null && valid(value)) {
      await rename(tmp, path);
      if (sync.fsync) await syncDir(dirname(path));
      return 'recovered';
    }
  }
  await removeDurably(tmp, sync);
  return 'none';
}

/**
 * Overwrite a file in place with bytes of its own length (no truncation, no rename; fsync with
 * `fsync`). Not atomic: only for an update where any mix of old and new bytes is as good as the
 * old content (transfer.ts: bits of a bitmap that only ever go from 0 to 1). False, writing
 * nothing, when the file is missing.
 */
export async function overwriteInPlace(path: string, bytes: Uint8Array, sync: FileSync = SYNC): Promise<boolean> {
  if (!sync.fsync) {
    // page cache only: synchronous, as Flash.flush
    let fd: number;
    try {
      fd = openSync(path, 'r+');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
    try {
      checkWritten(writeSync(fd, bytes, 0, bytes.length, 0), bytes.length, path);
    } finally {
      closeSync(fd);
    }
    return true;
  }
  let fh: FileHandle;
  try {
    fh = await open(path, 'r+');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
  try {
    await fh.write(bytes, 0, bytes.length, 0);
    if (sync.fsync) await fh.sync();
  } finally {
    await fh.close();
  }
  return true;
}

/**
 * overwriteInPlace for one file written many times (a transfer's progress file): without
 * `fsync` the descriptor stays open between writes instead of an open and a close per write.
 * The owner calls `close()` before it replaces or removes the file (a kept descriptor would
 * write to the old one) and when the transfer ends; a later overwrite opens it again.
 * With `fsync` every write is overwriteInPlace as it was.
 */
export class InPlaceFile {
  readonly path: string;
  readonly #sync: FileSync;
  #fd: number | null = null;

  constructor(path: string, sync: FileSync = SYNC) {
    this.path = path;
    this.#sync = sync;
  }

  /** As overwriteInPlace: false, writing nothing, when the file is missing. */
  async overwrite(bytes: Uint8Array): Promise<boolean> {
    if (this.#sync.fsync) return overwriteInPlace(this.path, bytes, this.#sync);
    if (this.#fd === null) {
      try {
        this.#fd = openSync(this.path, 'r+');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
        throw err;
      }
    }
    checkWritten(writeSync(this.#fd, bytes, 0, bytes.length, 0), bytes.length, this.path);
    return true;
  }

  close(): void {
    const fd = this.#fd;
    this.#fd = null;
    if (fd !== null) closeSync(fd);
  }

  get isOpen(): boolean {
    return this.#fd !== null;
  }
}

/** Read and parse a JSON file; null when it does not exist. Parse errors are thrown. */
export async function readJson(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  return JSON.parse(text) as unknown;
}

/** Remove a file durably (a missing file, or folder, is fine); the folder is fsynced with `fsync`. */
export async function removeDurably(path: string, sync: FileSync = SYNC): Promise<void> {
  try {
    await unlink(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (sync.fsync) await syncDir(dirname(path));
}

interface Run {
  off: number;
  parts: Uint8Array[];
  bytes: number;
}

/** Most buffers in one writev (IOV_MAX is 1024 on Linux). */
const MAX_PARTS = 1024;

/** Writes in order, each run of writes that continue one another as one run (one writev). */
function coalesce(writes: readonly { off: number; data: Uint8Array }[]): Run[] {
  const out: Run[] = [];
  let run: Run | undefined;
  for (const w of writes) {
    if (run && w.off === run.off + run.bytes && run.parts.length < MAX_PARTS) {
      run.parts.push(w.data);
      run.bytes += w.data.length;
      continue;
    }
    run = { off: w.off, parts: [w.data], bytes: w.data.length };
    out.push(run);
  }
  return out;
}

/** A regular file takes a whole write or fails; anything else (a full disk) is an error here. */
function checkWritten(written: number, expected: number, path: string): void {
  if (written !== expected) throw new Error(`${path}: short write (${written} of ${expected} bytes)`);
}

async function syncDir(dir: string): Promise<void> {
  const dh = await open(dir, 'r');
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
}
