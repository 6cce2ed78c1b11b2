import { FwError } from '../errors.ts';
import { cobsMaxEncodedLength } from './constants.ts';

/**
 * Consistent Overhead Byte Stuffing (Cheshire & Baker, 1999), docs/protocol.md §3.1.
 * The encoding contains no 0x00 byte, so 0x00 can delimit frames. A block that reaches 254 data
 * bytes gets code 0xFF and no implied zero; when such a block ends the input exactly, no empty
 * block follows (the Wikipedia form). The decoder also accepts a trailing empty block there.
 */

/** Encode src into dst at offset; returns the offset just past the encoding. */
export function cobsEncodeInto(src: Uint8Array, dst: Uint8Array, offset = 0): number {
  const n = src.length;
  if (dst.length - offset < cobsMaxEncodedLength(n)) throw new RangeError('COBS destination too small');
  let codeAt = offset;
  let o = offset + 1;
  let code = 1;
  for (let i = 0; i < n; i++) {
    const b = src[i]!;
    if (b === 0) {
      dst[codeAt] = code;
      codeAt = o++;
      code = 1;
    } else {
      dst[o++] = b;
      code++;
      if (code === 0xff && i + 1 < n) {
        dst[codeAt] = code;
        codeAt = o++;
        code = 1;
      }
    }
  }
  dst[codeAt] = code;
  return o;
}

export function cobsEncode(src: Uint8Array): Uint8Array {
  const dst = new Uint8Array(cobsMaxEncodedLength(src.length));
  return dst.slice(0, cobsEncodeInto(src, dst));
}

/**
 * Decode src (one frame, delimiter excluded) into dst; returns the decoded length, or -1 when src
 * is not valid COBS: empty, contains 0x00, or a code byte points past the end.
 * dst must hold at least src.length - 1 bytes (the decoding is always shorter than the encoding).
 */
export function cobsDecodeInto(src: Uint8Array, dst: Uint8Array): number {
  const n = src.length;
  if (n === 0) return -1;
  if (dst.length < n - 1) throw new RangeError('COBS destination too small');
  let i = 0;
  let o = 0;
  while (i < n) {
    const code = src[i]!;
    const end = i + code;
    if (code === 0 || end > n) return -1;
    for (i++; i < end; i++) {
      const b = src[i]!;
      if (b === 0) return -1;
      dst[o++] = b;
    }
    if (code !== 0xff && end < n) dst[o++] = 0;
  }
  return o;
}

/** Decode one COBS block; throws FwError E_FRAME_COBS when it is malformed. */
export function cobsDecode(src: Uint8Array): Uint8Array {
  const dst = new Uint8Array(Math.max(0, src.length - 1));
  const n = cobsDecodeInto(src, dst);
  if (n < 0) throw new FwError('E_FRAME_COBS');
  return n === dst.length ? dst : dst.slice(0, n);
}
