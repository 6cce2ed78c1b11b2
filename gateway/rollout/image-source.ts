import { crc32 } from '../../protocol/crc.ts';
import type { Manifest } from '../../protocol/manifest.ts';
import { encodeChunkTail } from './chunk-message.ts';

/**
 * An image held in memory for distribution. Chunks are views into one buffer (no copies), and
 * each chunk's CRC-32 is computed once per chunk size and shared by every device session, as is
 * the CBOR of its `chunk` message apart from the session's `sid` (chunk-message.ts), while those
 * encodings fit in `tailCacheBytes` (beyond that a chunk's tail is encoded at each send).
 */
export class ImageSource {
  private readonly crcs = new Map<number, Uint32Array>();
  private readonly known = new Map<number, Uint8Array>();
  private readonly tails = new Map<number, (Buffer | undefined)[]>();
  private tailBytes = 0;

  constructor(readonly manifest: Manifest, readonly bytes: Buffer, private readonly tailCacheBytes = 16 * 1024 * 1024) {}

  get size(): number {
    return this.bytes.length;
  }

  chunkCount(chunkSize: number): number {
    return Math.ceil(this.size / chunkSize);
  }

  /** The chunk at `offset` (a multiple of chunkSize) and its CRC-32. */
  chunk(offset: number, chunkSize: number): { data: Buffer; crc: number } {
    const data = this.bytes.subarray(offset, Math.min(offset + chunkSize, this.size));
    let crcs = this.crcs.get(chunkSize);
    let known = this.known.get(chunkSize);
    if (!crcs || !known) {
      crcs = new Uint32Array(this.chunkCount(chunkSize));
      known = new Uint8Array(crcs.length);
      this.crcs.set(chunkSize, crcs);
      this.known.set(chunkSize, known);
    }
    const i = offset / chunkSize;
    if (!known[i]) {
      crcs[i] = crc32(data);
      known[i] = 1;
    }
    return { data, crc: crcs[i]! };
  }

  /** The chunk at `offset`: its data, CRC-32, and the CBOR of its message's `off`, `data`, `crc` entries. */
  encodedChunk(offset: number, chunkSize: number): { data: Buffer; crc: number; tail: Buffer } {
    const c = this.chunk(offset, chunkSize);
    let tails = this.tails.get(chunkSize);
    if (!tails) this.tails.set(chunkSize, tails = new Array<Buffer | undefined>(this.chunkCount(chunkSize)));
    const i = offset / chunkSize;
    let tail = tails[i];
    if (!tail) {
      tail = encodeChunkTail(offset, c.data, c.crc);
      if (this.tailBytes + tail.length <= this.tailCacheBytes) {
        tails[i] = tail;
        this.tailBytes += tail.length;
      }
    }
    return { ...c, tail };
  }
}
