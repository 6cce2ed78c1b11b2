import assert from 'node:assert/strict';
import fc from 'fast-check';
import { encodeCbor } from '../../../protocol/cbor.ts';
import { MAX_UPLINK_MESSAGE } from '../../../protocol/limits.ts';
import { decodeMessage } from '../../../protocol/schema.ts';
import { decodeLaptopMessage, encodeUplinkMessage, laptopMessage } from '../../../protocol/uplink.ts';
import { outcome } from '../../helpers/decode-outcome.ts';

// The gateway decodes each `data` message of an upload (docs/protocol.md §7.4) the short way when
// it is in the reference encoding; it must accept and refuse exactly what the generic decoder does.

const generic = (p: Uint8Array): unknown => decodeMessage(laptopMessage, p, MAX_UPLINK_MESSAGE, 'laptop message');

const dataMessages = fc.record({
  off: fc.oneof(fc.constantFrom(0, 23, 24, 255, 256, 65_535, 65_536, 0xffff_ffff), fc.nat({ max: 0xffff_ffff })),
  data: fc.oneof(fc.uint8Array({ maxLength: 30 }), fc.uint8Array({ minLength: 250, maxLength: 300 }), fc.uint8Array({ minLength: 4060, maxLength: 4100 })),
});

describe('uplink `data` decode (§7.4): the short path for the reference encoding', () => {
  it('decodes every data message as the generic decoder does; the image bytes are a view of the payload, not a copy', () => {
    fc.assert(fc.property(dataMessages, ({ off, data }) => {
      const p = encodeUplinkMessage({ t: 'data', off, data });
      const m = decodeLaptopMessage(p);
      assert.ok(m.t === 'data');
      assert.equal(m.off, off);
      assert.deepEqual(Buffer.from(m.data), Buffer.from(data));
      assert.deepEqual(Object.keys(m), ['t', 'off', 'data']);
      assert.equal(m.data.buffer, p.buffer, 'a view of the payload');
      assert.deepEqual(outcome(decodeLaptopMessage, p), outcome(generic, p));
    }), { numRuns: 300 });
  });

  it('any flipped bit, cut or extra byte: the same value or the same error as the generic decoder', () => {
    fc.assert(fc.property(dataMessages, fc.nat(), fc.nat(7), fc.constantFrom('flip', 'cut', 'append'), fc.integer({ min: 0, max: 255 }), ({ off, data }, at, bit, how, extra) => {
      const p = Buffer.from(encodeUplinkMessage({ t: 'data', off, data }));
      const i = at % p.length;
      let q: Uint8Array;
      if (how === 'flip') {
        q = Buffer.from(p);
        q[i]! ^= 1 << bit;
      } else if (how === 'cut') {
        q = p.subarray(0, i);
      } else {
        q = Buffer.concat([p, Buffer.of(extra)]);
      }
      assert.deepEqual(outcome(decodeLaptopMessage, q), outcome(generic, q));
    }), { numRuns: 3000 });
  });

  it('other encodings of data (another key order, an extra key, a longer integer head) take the generic path', () => {
    const data = Uint8Array.of(1, 2, 3);
    const cases: Uint8Array[] = [
      encodeCbor({ off: 5, t: 'data', data }),
      encodeCbor({ t: 'data', off: 5, data, note: 'x' }),
      Buffer.from('a361746464617461636f666618056464617461430102 03'.replace(/ /g, ''), 'hex'), // off 5 as 18 05
      Buffer.from('a361746464617461636f66661b0000000100000000646461746143010203', 'hex'), // off 2^32 in 8 bytes
      Buffer.from('a361746464617461636f6666056464617461830102 03'.replace(/ /g, ''), 'hex'), // data an array
    ];
    for (const p of cases) assert.deepEqual(outcome(decodeLaptopMessage, p), outcome(generic, p), Buffer.from(p).toString('hex'));
    assert.deepEqual(outcome(decodeLaptopMessage, cases[0]!), { ok: { off: 5, t: 'data', data: '010203' } });
    assert.match(String((outcome(decodeLaptopMessage, cases[3]!) as { message?: string }).message), /off/);
  });
});

describe('uplink `data` encode (§7.4): the short path for the reference encoding', () => {
  it('writes the bytes the generic encoder gives for { t, off, data }', () => {
    fc.assert(fc.property(dataMessages, ({ off, data }) => {
      const p = encodeUplinkMessage({ t: 'data', off, data });
      assert.deepEqual(Buffer.from(p), Buffer.from(encodeCbor({ t: 'data', off, data })));
    }), { numRuns: 300 });
  });

  it('each encoded message has bytes of its own: encoding more does not change one already made', () => {
    const first = encodeUplinkMessage({ t: 'data', off: 0, data: new Uint8Array(4064).fill(0xaa) });
    const copy = Buffer.from(first);
    for (let i = 1; i <= 40; i++) encodeUplinkMessage({ t: 'data', off: i * 4064, data: new Uint8Array(4064).fill(i) });
    assert.deepEqual(Buffer.from(first), copy);
  });

  it('puts the keys in table order whatever the order of the object', () => {
    const data = Uint8Array.from([1, 2, 3]);
    const p = encodeUplinkMessage({ off: 5, t: 'data', data } as never);
    assert.deepEqual(Buffer.from(p), Buffer.from(encodeCbor({ t: 'data', off: 5, data })));
  });

  it('anything else takes the generic encoder: an extra key, an offset that is not a u32', () => {
    const data = Uint8Array.from([1, 2, 3]);
    const odd: unknown[] = [
      { t: 'data', off: 5, data, extra: 1 },
      { t: 'data', off: -1, data },
      { t: 'data', off: 1.5, data },
      { t: 'data', off: 2 ** 32, data },
    ];
    for (const m of odd) {
      assert.deepEqual(Buffer.from(encodeUplinkMessage(m as never)), Buffer.from(encodeCbor(m)), JSON.stringify(m, (_, v: unknown) => (v instanceof Uint8Array ? [...v] : v)));
    }
  });
});
