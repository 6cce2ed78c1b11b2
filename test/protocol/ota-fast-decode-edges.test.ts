import assert from 'node:assert/strict';
import { encodeCbor } from '../../protocol/cbor.ts';
import { MAX_ACK_MISSING, MAX_CHUNK_SIZE, MAX_OTA_MESSAGE } from '../../protocol/limits.ts';
import {
  decodeDeviceMessage, decodeGatewayMessage, deviceMessage, encodeDeviceMessage, encodeGatewayMessage, gatewayMessage,
} from '../../protocol/ota.ts';
import { outcome, plain } from '../helpers/decode-outcome.ts';
import { schemaCalls } from '../helpers/schema-calls.ts';

/**
 * The short decode paths of the hot OTA messages (docs/protocol.md §6.6 `chunk` / `ack`, §6.4.3
 * `probe` / `probed`) at their edges: in the reference encoding (§1.4: keys in table order,
 * shortest heads, nothing after) every value up to the field's bound is read without the generic
 * decoder and schema, chunk and probe data as a view of the payload; one past a bound, another
 * encoding or trailing bytes take the generic path and get its answer (§1.5).
 */

/** Integers at each head width (§1.4.5: 1, 2, 3 and 5 bytes). */
const WIDTHS = [0, 23, 24, 255, 256, 65_535, 65_536, 0xffff_ffff];

/** Decoded the short way: no schema call, and (for byte fields) a view of the payload. */
function short(decode: (p: Uint8Array) => unknown, schema: typeof deviceMessage | typeof gatewayMessage, p: Uint8Array): unknown {
  const { calls, value } = schemaCalls(schema, () => decode(p));
  assert.equal(calls, 0, `${Buffer.from(p.subarray(0, 24)).toString('hex')}: read without the schema`);
  const data = (value as { data?: Uint8Array }).data;
  if (data !== undefined && data.length > 0) assert.equal(data.buffer, p.buffer, 'the data is a view of the payload');
  return value;
}

/** Decoded (or refused) by the generic path: the schema is consulted. */
function generic(decode: (p: Uint8Array) => unknown, schema: typeof deviceMessage | typeof gatewayMessage, p: Uint8Array): unknown {
  const { calls, value } = schemaCalls(schema, () => outcome(decode, p));
  assert.equal(calls, 1, `${Buffer.from(p.subarray(0, 24)).toString('hex')}: the generic path`);
  return value;
}

describe('OTA short decode paths at their edges (docs/protocol.md §6.6, §6.4.3, §1.4)', () => {
  describe('ack (device -> gateway)', () => {
    it(`every sid, next and missing offset width, 0 to ${MAX_ACK_MISSING} missing entries: the short path`, () => {
      for (const v of WIDTHS) {
        const m = { t: 'ack' as const, sid: v, next: v, missing: [v, 0, v] };
        assert.deepStrictEqual(short(decodeDeviceMessage, deviceMessage, encodeDeviceMessage(m)), m);
      }
      for (const n of [0, 1, 23, 24, 255, MAX_ACK_MISSING]) {
        const m = { t: 'ack' as const, sid: 1, next: 0, missing: Array.from({ length: n }, (_, i) => i * 4096) };
        assert.deepStrictEqual(short(decodeDeviceMessage, deviceMessage, encodeDeviceMessage(m)), m);
      }
    });

    it(`${MAX_ACK_MISSING + 1} missing entries, another key order, a longer head: the generic path and its answer`, () => {
      const over = encodeDeviceMessage({ t: 'ack', sid: 1, next: 0, missing: Array.from({ length: MAX_ACK_MISSING + 1 }, (_, i) => i) });
      assert.match(String((generic(decodeDeviceMessage, deviceMessage, over) as { message: string }).message), /"ack": missing: /);
      assert.deepEqual(generic(decodeDeviceMessage, deviceMessage, encodeCbor({ t: 'ack', next: 4, sid: 1, missing: [] })), { ok: { t: 'ack', sid: 1, next: 4, missing: [] } });
      // {"t": "ack", "sid": 18 01, ...}: sid 1 with a 2-byte head
      const longHead = Buffer.from('a461746361636b637369641801646e65787400676d697373696e6780', 'hex');
      assert.deepEqual(generic(decodeDeviceMessage, deviceMessage, longHead), { ok: { t: 'ack', sid: 1, next: 0, missing: [] } });
      // {..., "missing": [18 01]}: a missing offset of 1 with a 2-byte head
      const longEntry = Buffer.from('a461746361636b6373696401646e65787400676d697373696e67811801', 'hex');
      assert.deepEqual(generic(decodeDeviceMessage, deviceMessage, longEntry), { ok: { t: 'ack', sid: 1, next: 0, missing: [1] } });
    });

    it('a cut list or a byte after the ack: refused (E_CBOR), never read short', () => {
      const p = encodeDeviceMessage({ t: 'ack', sid: 1, next: 0, missing: [64, 128] });
      for (const q of [p.subarray(0, p.length - 1), Buffer.concat([p, Buffer.of(0)])]) {
        assert.equal((outcome(decodeDeviceMessage, q) as { code?: string }).code, 'E_CBOR');
      }
    });
  });

  describe('probed (device -> gateway)', () => {
    it('every n and size width: the short path; another key order or a longer head: the generic path', () => {
      for (const v of WIDTHS) {
        const m = { t: 'probed' as const, n: v, size: v };
        assert.deepStrictEqual(short(decodeDeviceMessage, deviceMessage, encodeDeviceMessage(m)), m);
      }
      assert.deepEqual(generic(decodeDeviceMessage, deviceMessage, encodeCbor({ t: 'probed', size: 2, n: 1 })), { ok: { t: 'probed', n: 1, size: 2 } });
      // {"t": "probed", "n": 1, "size": 19 0001}: size 1 with a 3-byte head
      const longHead = Buffer.from('a361746670726f626564616e016473697a6519 0001'.replace(/ /g, ''), 'hex');
      assert.deepEqual(generic(decodeDeviceMessage, deviceMessage, longHead), { ok: { t: 'probed', n: 1, size: 1 } });
      const p = encodeDeviceMessage({ t: 'probed', n: 1, size: 2 });
      assert.equal((outcome(decodeDeviceMessage, Buffer.concat([p, Buffer.of(0)])) as { code?: string }).code, 'E_CBOR');
    });
  });

  describe('chunk (gateway -> device)', () => {
    const chunk = (n: number, v = 1): Uint8Array => encodeGatewayMessage({ t: 'chunk', sid: v, off: v, data: new Uint8Array(n).fill(0x5a), crc: v });

    it(`data of 1 to ${MAX_CHUNK_SIZE} bytes at every length width, every sid, off and crc width: the short path, data a view`, () => {
      for (const n of [1, 2, 23, 24, 255, 256, 65_535, MAX_CHUNK_SIZE]) {
        const d = short(decodeGatewayMessage, gatewayMessage, chunk(n)) as { data: Uint8Array };
        assert.equal(d.data.length, n);
      }
      for (const v of WIDTHS) {
        assert.deepEqual(plain(short(decodeGatewayMessage, gatewayMessage, chunk(3, v))), { t: 'chunk', sid: v, off: v, data: '5a5a5a', crc: v });
      }
    });

    it(`no data or ${MAX_CHUNK_SIZE + 1} bytes: refused by the generic path naming data; a byte after it: E_CBOR`, () => {
      for (const n of [0, MAX_CHUNK_SIZE + 1]) {
        const r = generic(decodeGatewayMessage, gatewayMessage, chunk(n)) as { code: string; message: string };
        assert.equal(r.code, 'E_MESSAGE_INVALID');
        assert.match(r.message, /"chunk": data: /);
      }
      assert.equal((outcome(decodeGatewayMessage, Buffer.concat([chunk(4), Buffer.of(0)])) as { code?: string }).code, 'E_CBOR');
      assert.equal((outcome(decodeGatewayMessage, chunk(4).subarray(0, 30)) as { code?: string }).code, 'E_CBOR');
    });
  });

  describe('probe (gateway -> device)', () => {
    const probe = (n: number, v = 1): Uint8Array => encodeGatewayMessage({ t: 'probe', n: v, data: new Uint8Array(n).fill(0xa5) });

    it(`data of 0 to ${MAX_CHUNK_SIZE} bytes at every length width, every n width: the short path, data a view`, () => {
      for (const n of [0, 1, 23, 24, 255, 256, 65_535, MAX_CHUNK_SIZE]) {
        assert.equal((short(decodeGatewayMessage, gatewayMessage, probe(n)) as { data: Uint8Array }).data.length, n);
      }
      for (const v of WIDTHS) assert.deepEqual(plain(short(decodeGatewayMessage, gatewayMessage, probe(1, v))), { t: 'probe', n: v, data: 'a5' });
    });

    it(`${MAX_CHUNK_SIZE + 1} bytes: refused by the generic path naming data; another key order: the generic path`, () => {
      const r = generic(decodeGatewayMessage, gatewayMessage, probe(MAX_CHUNK_SIZE + 1)) as { code: string; message: string };
      assert.equal(r.code, 'E_MESSAGE_INVALID');
      assert.match(r.message, /"probe": data: /);
      assert.deepEqual(generic(decodeGatewayMessage, gatewayMessage, encodeCbor({ n: 1, t: 'probe', data: Uint8Array.of(7) })), { ok: { t: 'probe', n: 1, data: '07' } });
    });
  });

  it(`a payload over ${MAX_OTA_MESSAGE} bytes is refused before it is decoded (§1.5 step 1), in either direction`, () => {
    for (const [decode, p] of [
      [decodeGatewayMessage, encodeGatewayMessage({ t: 'ping', n: 1, pad: new Uint8Array(MAX_OTA_MESSAGE) })],
      [decodeDeviceMessage, encodeDeviceMessage({ t: 'pong', n: 1, pad: new Uint8Array(MAX_OTA_MESSAGE) })],
    ] as const) {
      const r = outcome(decode, p) as { code: string; message: string };
      assert.equal(r.code, 'E_MESSAGE_INVALID');
      assert.match(r.message, /exceeds 66560/);
    }
  });
});
