import { createHash } from 'node:crypto';

/**
 * Sample firmware image format shared by the generator and the device simulator.
 *
 *   "FWSAMPLE1 " + JSON {"name","version","hw","selftest"} + "\n" + pseudo-random body
 *
 * The body is a deterministic stream seeded by name + version, so the same inputs always give
 * the same bytes (and the same SHA-256). The simulated bootloader reads the header to decide
 * whether the image passes its self-test on the first (trial) boot.
 */
export const SAMPLE_MAGIC = 'FWSAMPLE1 ';
/** The header line is never longer than this (bytes, including magic and newline). */
export const MAX_SAMPLE_HEADER = 1024;

export type SelfTest = 'pass' | 'fail';

export interface SampleHeader {
  name: string;
  version: string;
  hw: string;
  selftest: SelfTest;
}

export interface SampleImageOptions {
  name: string;
  version: string;
  hw: string;
  /** Total image size in bytes, header included. */
  size: number;
  selftest?: SelfTest;
}

function headerBytes(h: SampleHeader): Buffer {
  // Fixed key order: the header text is part of the image bytes and must be reproducible.
  const json = JSON.stringify({ name: h.name, version: h.version, hw: h.hw, selftest: h.selftest });
  return Buffer.from(`${SAMPLE_MAGIC}${json}\n`, 'utf8');
}

/** Build a sample image. Throws RangeError when `size` cannot hold the header. */
export function makeSampleImage(opts: SampleImageOptions): Uint8Array {
  const header = headerBytes({ name: opts.name, version: opts.version, hw: opts.hw, selftest: opts.selftest ?? 'pass' });
  if (header.length > MAX_SAMPLE_HEADER) throw new RangeError(`sample header is ${header.length} bytes, limit ${MAX_SAMPLE_HEADER}`);
  if (!Number.isInteger(opts.size) || opts.size < header.length) {
    throw new RangeError(`sample image size ${opts.size} must be an integer >= header length ${header.length}`);
  }
  const image = Buffer.alloc(opts.size);
  header.copy(image, 0);
  fillPseudoRandom(image.subarray(header.length), `${opts.name}\u0000${opts.version}`);
  return new Uint8Array(image.buffer, image.byteOffset, image.length);
}

/** Parse the header of a sample image; null when the bytes do not start with a valid header. */
export function readSampleHeader(bytes: Uint8Array): SampleHeader | null {
  const magic = Buffer.from(SAMPLE_MAGIC, 'latin1');
  if (bytes.length < magic.length || !Buffer.from(bytes.buffer, bytes.byteOffset, magic.length).equals(magic)) return null;
  const limit = Math.min(bytes.length, MAX_SAMPLE_HEADER);
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, limit);
  const nl = view.indexOf(0x0a, magic.length);
  if (nl < 0) return null;
  let value: unknown;
  try {
    value = JSON.parse(view.subarray(magic.length, nl).toString('utf8'));
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null) return null;
  const v = value as Record<string, unknown>;
  if (typeof v.name !== 'string' || typeof v.version !== 'string' || typeof v.hw !== 'string') return null;
  if (v.selftest !== 'pass' && v.selftest !== 'fail') return null;
  return { name: v.name, version: v.version, hw: v.hw, selftest: v.selftest };
}

/** xoshiro128** seeded from SHA-256 of the seed text; fills `out` in place. */
function fillPseudoRandom(out: Buffer, seed: string): void {
  const h = createHash('sha256').update(seed, 'utf8').digest();
  const s = new Uint32Array([h.readUInt32LE(0), h.readUInt32LE(4), h.readUInt32LE(8), h.readUInt32LE(12)]);
  if ((s[0]! | s[1]! | s[2]! | s[3]!) === 0) s[0] = 1;
  const rotl = (x: number, k: number): number => ((x << k) | (x >>> (32 - k))) >>> 0;
  const words = Math.floor(out.length / 4);
  for (let i = 0; i <= words; i++) {
    const result = Math.imul(rotl(Math.imul(s[1]!, 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1]! << 9) >>> 0;
    s[2] = s[2]! ^ s[0]!;
    s[3] = s[3]! ^ s[1]!;
    s[1] = s[1]! ^ s[2]!;
    s[0] = s[0]! ^ s[3]!;
    s[2] = s[2]! ^ t;
    s[3] = rotl(s[3]!, 11);
    const off = i * 4;
    if (off + 4 <= out.length) out.writeUInt32LE(result, off);
    else for (let j = 0; off + j < out.length; j++) out[off + j] = (result >>> (8 * j)) & 0xff;
  }
}
