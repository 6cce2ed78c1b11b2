import { constants } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';

/**
 * Simulated flash for one slot, backed by a file.
 *
 * Writes go to an in-memory pending list (the controller's write buffer) and only become
 * durable on `flush()`, which applies them in order and fsyncs the file. `powerCut()` discards
 * whatever is still pending, exactly what a real power loss does to buffered writes. Reads see
 * durable contents only, so nothing can be reported as held before it would survive a cut.
 */
export class Flash {
  readonly path: string;
  readonly capacity: number;
  #pending: { off: number; data: Uint8Array }[] = [];
  #pendingBytes = 0;

  constructor(path: string, capacity: number) {
    this.path = path;
    this.capacity = capacity;
  }

  /** Buffer a write; throws RangeError beyond the slot capacity. */
  write(off: number, data: Uint8Array): void {
    if (!Number.isInteger(off) || off < 0 || off + data.length > this.capacity) {
      throw new RangeError(`flash write [${off}, ${off + data.length}) outside slot of ${this.capacity} bytes`);
    }
    this.#pending.push({ off, data: Uint8Array.from(data) });
    this.#pendingBytes += data.length;
  }

  get pendingWrites(): number {
    return this.#pending.length;
  }

  get pendingBytes(): number {
    return this.#pendingBytes;
  }

  /** Apply pending writes and fsync. Durable once this resolves. */
  async flush(): Promise<void> {
    if (this.#pending.length === 0) return;
    const batch = this.#pending;
    this.#pending = [];
    this.#pendingBytes = 0;
    await mkdir(dirname(this.path), { recursive: true });
    const fh = await open(this.path, constants.O_RDWR | constants.O_CREAT, 0o644);
    try {
      for (const w of batch) await fh.write(w.data, 0, w.data.length, w.off);
      await fh.sync();
    } finally {
      await fh.close();
    }
  }

  /** Power loss: pending writes are gone. Returns how many writes were lost. */
  powerCut(): number {
    return this.discard();
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
    await mkdir(dirname(this.path), { recursive: true });
    const fh = await open(this.path, constants.O_RDWR | constants.O_CREAT, 0o644);
    try {
      await fh.truncate(0);
      await fh.sync();
    } finally {
      await fh.close();
    }
  }

  /** Durable contents (a missing file reads as empty). */
  async read(): Promise<Uint8Array> {
    try {
      return new Uint8Array(await readFile(this.path));
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
 * Atomically replace a JSON file: write `<path>.tmp`, fsync it, rename over `<path>`, fsync the
 * folder. A reader (or a boot after a power cut) sees either the old or the new content, never a
 * mix. `beforeRename` is a fault hook: when it returns true the write is abandoned after the
 * temporary file is durable and before the rename — a power cut in the middle of the update.
 */
export async function writeJsonAtomic(path: string, value: unknown, beforeRename?: () => boolean): Promise<'written' | 'cut'> {
  const tmp = `${path}.tmp`;
  const dir = dirname(path);
  await mkdir(dir, { recursive: true });
  const fh = await open(tmp, 'w', 0o644);
  try {
    await fh.writeFile(`${JSON.stringify(value, null, 2)}\n`, 'utf8');
    await fh.sync();
  } finally {
    await fh.close();
  }
  if (beforeRename?.() === true) return 'cut';
  await rename(tmp, path);
  await syncDir(dir);
  return 'written';
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

/** Remove a file durably (a missing file, or folder, is fine). */
export async function removeDurably(path: string): Promise<void> {
  try {
    await stat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  await rm(path, { force: true });
  await syncDir(dirname(path));
}

async function syncDir(dir: string): Promise<void> {
  const dh = await open(dir, 'r');
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
}
