import { crc32 } from '../../protocol/crc.ts';
import type { Manifest } from '../../protocol/manifest.ts';

/**
 * An image held in memory for distribution. Chunks are views into one buffer (no copies), and
 * each chunk's CRC-32 is computed once per chunk size and shared by every device session.
 */
export class ImageSource {
  private readonly crcs = new Map<number, Uint32Array>();
  private readonly known = new Map<number, Uint8Array>();

  constructor(readonly manifest: Manifest, readonly bytes: Buffer) {}

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
}
