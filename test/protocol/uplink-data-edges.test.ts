import assert from 'node:assert/strict';
import { encodeCbor } from '../../protocol/cbor.ts';
import { MAX_UPLINK_MESSAGE } from '../../protocol/limits.ts';
import { DATA_MESSAGE_OVERHEAD, decodeLaptopMessage, encodeUplinkMessage, laptopMessage } from '../../protocol/uplink.ts';
import { outcome, plain } from '../helpers/decode-outcome.ts';
import { schemaCalls } from '../helpers/schema-calls.ts';

/**
 * The short paths of the upload's `data` messages (docs/protocol.md §7.4) at their edges: in the
 * reference encoding (keys t, off, data; shortest heads; nothing after) every offset and length is
 * written and read without the generic encoder, decoder and schema, the image bytes a view of the
 * payload; up to the message limit (§1.6, §1.5 step 1) and not one byte more.
 */

const WIDTHS = [0, 23, 24, 255, 256, 65_535, 65_536, 0xffff_ffff];

function short(p: Uint8Array): { off: number; data: Uint8Array } {
  const { calls, value } = schemaCalls(laptopMessage, () => decodeLaptopMessage(p));
  assert.equal(calls, 0, `${p.length} bytes: read without the schema`);
  assert.ok(value.t === 'data');
  assert.equal(value.data.buffer, p.buffer, 'the image bytes are a view of the payload');
  return value;
}

describe('uplink `data` short paths at their edges (docs/protocol.md §7.4, §1.6)', () => {
  it('the shortest data message (off below 24, no image bytes: 19 bytes) and every offset width are read the short way', () => {
    const smallest = encodeUplinkMessage({ t: 'data', off: 0, data: new Uint8Array(0) });
    assert.equal(smallest.length, 19);
    assert.deepEqual(plain(short(smallest)), { t: 'data', off: 0, data: '' });
    for (const off of WIDTHS) {
      for (const n of [0, 1, 23, 24, 255, 256, 4064]) {
        const m = short(encodeUplinkMessage({ t: 'data', off, data: new Uint8Array(n).fill(3) }));
        assert.equal(m.off, off);
        assert.equal(m.data.length, n);
      }
    }
  });

  it(`a data message of exactly ${MAX_UPLINK_MESSAGE} bytes is read the short way; one byte more is refused before it is decoded`, () => {
    // off as a 4-byte head, the length as a 4-byte head: 12 + 5 + 5 + 5 bytes of envelope
    const data = new Uint8Array(MAX_UPLINK_MESSAGE - 27).fill(1);
    const limit = encodeUplinkMessage({ t: 'data', off: 0x1_0000, data });
    assert.equal(limit.length, MAX_UPLINK_MESSAGE);
    assert.ok(27 <= DATA_MESSAGE_OVERHEAD, 'within the envelope the uplink reserves');
    assert.equal(short(limit).data.length, data.length);
    const over = encodeUplinkMessage({ t: 'data', off: 0x1_0000, data: new Uint8Array(data.length + 1) });
    const r = outcome(decodeLaptopMessage, over) as { code: string; message: string };
    assert.equal(r.code, 'E_MESSAGE_INVALID');
    assert.match(r.message, new RegExp(`${MAX_UPLINK_MESSAGE + 1} bytes exceeds ${MAX_UPLINK_MESSAGE}`));
  });

  it('a cut message, a byte after it, or the "data" key misspelt: the generic path and its answer', () => {
    const p = Buffer.from(encodeUplinkMessage({ t: 'data', off: 300, data: Uint8Array.of(1, 2, 3) }));
    for (const q of [p.subarray(0, p.length - 1), p.subarray(0, 14), p.subarray(0, 18), Buffer.concat([p, Buffer.of(0)])]) {
      assert.equal((outcome(decodeLaptopMessage, q) as { code?: string }).code, 'E_CBOR', q.toString('hex'));
    }
    // "data" -> "dats": a map of t, off and an unknown key: data is missing
    const misspelt = Buffer.from(p);
    misspelt[p.indexOf('data', 12) + 3] = 0x73;
    const { calls, value } = schemaCalls(laptopMessage, () => outcome(decodeLaptopMessage, misspelt));
    assert.equal(calls, 1);
    assert.match(String((value as { message?: string }).message), /"data": data: /);
  });

  it('a map laid out like data but of another type, or with another second key, is not read as data', () => {
    const data = Uint8Array.of(1, 2, 3);
    const otherType = outcome(decodeLaptopMessage, encodeCbor({ t: 'dada', off: 5, data })) as { code?: string };
    assert.equal(otherType.code, 'E_MESSAGE_TYPE');
    const otherKey = outcome(decodeLaptopMessage, encodeCbor({ t: 'data', ofs: 5, data })) as { code?: string; message?: string };
    assert.equal(otherKey.code, 'E_MESSAGE_INVALID');
    assert.match(String(otherKey.message), /"data": off: /);
  });

  it('encode: any key order gives the reference bytes; data that is not a byte string takes the generic encoder', () => {
    for (const off of WIDTHS) {
      const data = Uint8Array.of(9, 8, 7);
      assert.deepEqual(Buffer.from(encodeUplinkMessage({ data, off, t: 'data' } as never)), Buffer.from(encodeCbor({ t: 'data', off, data })));
    }
    // an array of numbers is a CBOR array, not a byte string (§1.4.7): the receiver refuses it
    const asArray = { t: 'data', off: 1, data: [1, 2, 3] };
    const p = encodeUplinkMessage(asArray as never);
    assert.deepEqual(Buffer.from(p), Buffer.from(encodeCbor(asArray)));
    assert.match(String((outcome(decodeLaptopMessage, p) as { message?: string }).message), /"data": data: /);
  });
});
