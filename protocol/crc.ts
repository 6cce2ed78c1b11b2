import { crc32 as zlibCrc32 } from 'node:zlib';

/**
 * CRC-32 (IEEE 802.3, reflected, poly 0xEDB88320, init 0xFFFFFFFF, xorout 0xFFFFFFFF) —
 * the same CRC as zlib, Ethernet and PNG. Check value: crc32("123456789") = 0xCBF43926.
 * Uses node's zlib.crc32 (Node >= 20.15), about 10x faster than a JS table.
 */
export function crc32(data: Uint8Array, initial = 0): number {
  return zlibCrc32(data, initial) >>> 0;
}
