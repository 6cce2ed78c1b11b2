import { z } from 'zod';
import { MAX_ACK_MISSING } from '../protocol/limits.ts';
import { SlotNames, type SlotName } from '../protocol/ota.ts';
import { sha256Hex } from '../protocol/schema.ts';
import { jsonText, overwriteInPlace, type InPlaceFile, readJson, removeDurably, writeTextAtomic, type FileSync } from './flash.ts';

/**
 * Receive progress of the image being written to the inactive slot: which chunks are held.
 * Kept in RAM and mirrored to a small progress file next to the slot, so a reconnect and a
 * power cycle resume instead of restarting. The file is written only after the flash holding
 * those chunks was flushed, so it never claims bytes a power cut would lose.
 */
export interface ImageMeta {
  name: string;
  version: string;
  size: number;
  crc32: number;
  sha256: string;
}

/** Bitmap of held chunks for an image of `size` bytes cut into `chunk`-byte pieces. */
export class ReceiveMap {
  readonly size: number;
  readonly chunk: number;
  /** Number of chunks. */
  readonly count: number;
  #bits: Uint8Array;
  #held = 0;
  /** Index of the first chunk not held (== count when complete). */
  #first = 0;
  /** Highest index held, -1 when none. */
  #highest = -1;

  constructor(size: number, chunk: number, bits?: Uint8Array) {
    this.size = size;
    this.chunk = chunk;
    this.count = Math.ceil(size / chunk);
    this.#bits = new Uint8Array(Math.ceil(this.count / 8));
    if (bits) {
      for (let i = 0; i < this.count; i++) if ((bits[i >> 3] ?? 0) & (1 << (i & 7))) this.add(i);
    }
  }

  has(i: number): boolean {
    return ((this.#bits[i >> 3] ?? 0) & (1 << (i & 7))) !== 0;
  }

  /** Mark chunk `i` held; false when it already was. */
  add(i: number): boolean {
    if (i < 0 || i >= this.count || this.has(i)) return false;
    this.#bits[i >> 3] = this.#bits[i >> 3]! | (1 << (i & 7));
    this.#held += 1;
    if (i > this.#highest) this.#highest = i;
    while (this.#first < this.count && this.has(this.#first)) this.#first += 1;
    return true;
  }

  get held(): number {
    return this.#held;
  }

  get complete(): boolean {
    return this.#held === this.count;
  }

  /** First byte offset not held; every byte below it is held. */
  get next(): number {
    return Math.min(this.#first * this.chunk, this.size);
  }

  /** Expected length of chunk `i` (the last one may be short). */
  lengthOf(i: number): number {
    return Math.min(this.chunk, this.size - i * this.chunk);
  }

  /**
   * Offsets of chunks not held from `next` up to the highest chunk held (the gaps), plus the
   * `bad` offsets (one, or a list) that are not held; sorted, at most MAX_ACK_MISSING entries.
   * The chunk at `next` itself is listed whenever something above it is held or it just arrived bad.
   */
  missing(bad?: number | readonly number[]): number[] {
    const out: number[] = [];
    for (let i = this.#first; i < this.#highest && out.length < MAX_ACK_MISSING; i++) {
      if (!this.has(i)) out.push(i * this.chunk);
    }
    const bads = bad === undefined ? [] : typeof bad === 'number' ? [bad] : bad;
    let added = false;
    for (const badOffset of bads) {
      if (out.length >= MAX_ACK_MISSING) break;
      const bi = badOffset / this.chunk;
      if (Number.isInteger(bi) && bi >= 0 && bi < this.count && !this.has(bi) && !out.includes(badOffset)) {
        out.push(badOffset);
        added = true;
      }
    }
    if (added) out.sort((a, b) => a - b);
    return out;
  }

  /** The same holdings at another chunk size: a new chunk is held when all its bytes are. */
  rechunk(chunk: number): ReceiveMap {
    if (chunk === this.chunk) return this;
    const out = new ReceiveMap(this.size, chunk);
    for (let j = 0; j < out.count; j++) {
      const start = j * chunk;
      const end = Math.min(start + chunk, this.size);
      let all = true;
      for (let i = Math.floor(start / this.chunk); i * this.chunk < end; i++) {
        if (!this.has(i)) {
          all = false;
          break;
        }
      }
      if (all) out.add(j);
    }
    return out;
  }

  toBase64(): string {
    return Buffer.from(this.#bits).toString('base64');
  }
}

const progressSchema = z.strictObject({
  format: z.literal(1),
  /** The component whose slot receives the image; absent = `app` (the file of a single-image device, unchanged). */
  component: z.string().optional(),
  slot: z.enum(SlotNames),
  name: z.string(),
  version: z.string(),
  size: z.number().int().min(1),
  crc32: z.number().int().min(0),
  sha256: sha256Hex,
  chunk: z.number().int().min(1),
  held: z.string(),
});

export interface Progress {
  /** Absent = `app`. */
  component?: string;
  slot: SlotName;
  meta: ImageMeta;
  map: ReceiveMap;
}

/**
 * Write the progress file; resolves with its length in bytes. Pass that length back as
 * `inPlaceOf` on the next save of the same transfer (same image, same chunk size): the file then
 * has the same length (same fields, a base64 bitmap of the same size) and is overwritten in
 * place instead of replaced — no temporary file and no rename, each of which costs a forced
 * writeback on ext4 (auto_da_alloc) — which is safe because between two such saves only bits
 * of `held` go from 0 to 1: any mix of old and new bytes (a write cut short at any byte) decodes
 * to chunks that were already flushed. Without `inPlaceOf`, or when the length differs or the
 * file is gone, the file is replaced atomically. `file` (the same path) keeps the descriptor of
 * in-place writes open between saves; it is closed before a replace.
 */
export async function saveProgress(path: string, p: Progress, sync?: FileSync, inPlaceOf?: number, file?: InPlaceFile): Promise<number> {
  const text = jsonText({
    format: 1, ...(p.component !== undefined && p.component !== 'app' ? { component: p.component } : {}), slot: p.slot, ...p.meta, chunk: p.map.chunk, held: p.map.toBase64(),
  } satisfies z.infer<typeof progressSchema>);
  const bytes = Buffer.from(text, 'utf8');
  if (inPlaceOf === bytes.length && (await (file ? file.overwrite(bytes) : overwriteInPlace(path, bytes, sync)))) return bytes.length;
  file?.close(); // the replace makes a new file: a kept descriptor would write to the old one
  await writeTextAtomic(path, text, undefined, sync);
  return bytes.length;
}

/** Load the progress file; null when absent, unreadable or not for `slot` / `sha256` / `component` (default `app`). */
export async function loadProgress(path: string, slot: SlotName, sha256: string, component = 'app'): Promise<Progress | null> {
  let raw: unknown;
  try {
    raw = await readJson(path);
  } catch {
    return null;
  }
  const r = progressSchema.safeParse(raw);
  if (!r.success || r.data.slot !== slot || r.data.sha256 !== sha256 || (r.data.component ?? 'app') !== component) return null;
  const { name, version, size, crc32, chunk, held } = r.data;
  return { ...(component !== 'app' ? { component } : {}), slot, meta: { name, version, size, crc32, sha256 }, map: new ReceiveMap(size, chunk, Buffer.from(held, 'base64')) };
}

export async function removeProgress(path: string, sync?: FileSync, file?: InPlaceFile): Promise<void> {
  file?.close();
  await removeDurably(path, sync);
}
