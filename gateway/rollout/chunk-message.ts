import { encodeCbor } from '../../protocol/cbor.ts';

/**
 * The wire bytes of a `chunk` message (docs/protocol.md §6.6), spliced instead of encoded per
 * device. In the field order of §6.6 (`t`, `sid`, `off`, `data`, `crc`; §1.4.3) only `sid` differs
 * between the devices that get the same chunk, and it comes before the rest: a message is the
 * fixed head `{5 entries, "t": "chunk", "sid":`, the sid as a CBOR unsigned integer in its
 * shortest form (§1.4.5), then the chunk's `off`, `data` and `crc` entries — encoded once per chunk
 * (`encodeChunkTail`) and shared by every device session. The bytes equal
 * `encodeGatewayMessage({ t: 'chunk', sid, off, data, crc })` (test/gateway/rollout/chunk-message.test.ts
 * checks that for every integer width and against the `down-chunk` vector of §10.6).
 */
const HEAD = Buffer.from('a5' + '6174' + '656368756e6b' + '63736964', 'hex');

/** The `off`, `data` and `crc` entries of a chunk message, CBOR, without the map header. */
export function encodeChunkTail(off: number, data: Uint8Array, crc: number): Buffer {
  const map = encodeCbor({ off, data, crc });
  if (map[0] !== 0xa3) throw new Error(`chunk tail: unexpected CBOR map header 0x${map[0]?.toString(16)}`);
  return Buffer.from(map.subarray(1)); // a copy: the encoder's buffer is not ours to keep
}

/** A whole chunk message: the head, `sid`, and a tail from encodeChunkTail. */
export function encodeChunkMessage(sid: number, tail: Uint8Array): Buffer {
  const n = sid < 24 ? 1 : sid < 0x100 ? 2 : sid < 0x1_0000 ? 3 : 5;
  const out = Buffer.allocUnsafe(HEAD.length + n + tail.length);
  HEAD.copy(out, 0);
  let p = HEAD.length;
  if (n === 1) out[p++] = sid;
  else if (n === 2) {
    out[p++] = 0x18;
    out[p++] = sid;
  } else if (n === 3) {
    out[p++] = 0x19;
    out.writeUInt16BE(sid, p);
    p += 2;
  } else {
    out[p++] = 0x1a;
    out.writeUInt32BE(sid, p);
    p += 4;
  }
  out.set(tail, p);
  return out;
}
