/**
 * Reading CBOR heads (RFC 8949 §3) by hand, for the few hot messages that are decoded without the
 * generic decoder when they are in the reference encoding (docs/protocol.md §1.4): keys in table
 * order, shortest integer and length heads (§1.4.5). Anything else is left to the generic path.
 */

/**
 * The argument of the head at p[pos] if it has major type `major` and is in shortest form below
 * 2^32; [value, position after the head], or undefined.
 */
export function cborArgument(p: Uint8Array, pos: number, major: number): [number, number] | undefined {
  if (pos >= p.length) return undefined;
  const ib = p[pos]!;
  if (ib >> 5 !== major) return undefined;
  const ai = ib & 0x1f;
  if (ai <= 23) return [ai, pos + 1];
  if (ai === 24 && pos + 2 <= p.length && p[pos + 1]! >= 24) return [p[pos + 1]!, pos + 2];
  if (ai === 25 && pos + 3 <= p.length) {
    const v = (p[pos + 1]! << 8) | p[pos + 2]!;
    return v > 0xff ? [v, pos + 3] : undefined;
  }
  if (ai === 26 && pos + 5 <= p.length) {
    const v = p[pos + 1]! * 0x100_0000 + ((p[pos + 2]! << 16) | (p[pos + 3]! << 8) | p[pos + 4]!);
    return v > 0xffff ? [v, pos + 5] : undefined;
  }
  return undefined;
}

/** Position after `expected` if p holds exactly those bytes at pos, else undefined. */
export function cborExpect(p: Uint8Array, pos: number, expected: Uint8Array): number | undefined {
  if (pos + expected.length > p.length) return undefined;
  for (let i = 0; i < expected.length; i++) if (p[pos + i] !== expected[i]) return undefined;
  return pos + expected.length;
}

/** The CBOR text string `s` (ASCII) with its shortest head. */
export function cborText(s: string): Uint8Array {
  if (s.length > 23) throw new RangeError('cborText: keys of at most 23 characters');
  return Uint8Array.from([0x60 + s.length, ...Buffer.from(s, 'ascii')]);
}

/** Bytes of the shortest head for an argument below 2^32 (§1.4.5). */
export function cborHeadLength(value: number): number {
  return value <= 23 ? 1 : value <= 0xff ? 2 : value <= 0xffff ? 3 : 5;
}

/**
 * Write the shortest head of major type `major` with argument `value` (an integer below 2^32) at
 * dst[pos]; returns the position after it.
 */
export function cborWriteHead(dst: Uint8Array, pos: number, major: number, value: number): number {
  const mt = major << 5;
  if (value <= 23) {
    dst[pos] = mt | value;
    return pos + 1;
  }
  if (value <= 0xff) {
    dst[pos] = mt | 24;
    dst[pos + 1] = value;
    return pos + 2;
  }
  if (value <= 0xffff) {
    dst[pos] = mt | 25;
    dst[pos + 1] = value >>> 8;
    dst[pos + 2] = value & 0xff;
    return pos + 3;
  }
  dst[pos] = mt | 26;
  dst[pos + 1] = value >>> 24;
  dst[pos + 2] = (value >>> 16) & 0xff;
  dst[pos + 3] = (value >>> 8) & 0xff;
  dst[pos + 4] = value & 0xff;
  return pos + 5;
}
