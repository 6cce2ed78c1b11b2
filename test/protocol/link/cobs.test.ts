import assert from 'node:assert/strict';
import fc from 'fast-check';
import { isFwError } from '../../../protocol/errors.ts';
import { cobsDecode, cobsDecodeInto, cobsEncode, cobsMaxEncodedLength } from '../../../protocol/link/index.ts';
import { fromHex, hex } from './helpers.ts';

const seq = (from: number, to: number): string => hex(Uint8Array.from({ length: to - from + 1 }, (_, i) => from + i));

// docs/protocol.md §3.1; vectors from Cheshire & Baker and the Wikipedia COBS article.
const vectors: [name: string, decoded: string, encoded: string][] = [
  ['empty', '', '01'],
  ['one zero', '00', '0101'],
  ['two zeros', '0000', '010101'],
  ['zero inside', '11220033', '0311220233'],
  ['no zeros', '11223344', '0511223344'],
  ['trailing zeros', '11000000', '0211010101'],
  ['254 non-zero bytes', seq(1, 254), `ff${seq(1, 254)}`],
  ['zero then 254 non-zero', `00${seq(1, 254)}`, `01ff${seq(1, 254)}`],
  ['255 non-zero bytes', seq(1, 255), `ff${seq(1, 254)}02ff`],
  ['254 non-zero then zero', `${seq(2, 255)}00`, `ff${seq(2, 255)}0101`],
  ['253 non-zero, zero, one', `${seq(3, 255)}0001`, `fe${seq(3, 255)}0201`],
];

describe('link COBS (§3.1)', () => {
  for (const [name, decoded, encoded] of vectors) {
    it(`vector: ${name}`, () => {
      assert.equal(hex(cobsEncode(fromHex(decoded))), encoded);
      assert.equal(hex(cobsDecode(fromHex(encoded))), decoded);
    });
  }

  it('round-trips any bytes, never emits 0x00, and stays within the documented bound', () => {
    const zeroHeavy = fc.uint8Array({ maxLength: 1200, max: 3 });
    const noZeros = fc.uint8Array({ maxLength: 1200, min: 1 });
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 1200 }), zeroHeavy, noZeros), (data) => {
        const enc = cobsEncode(data);
        assert.equal(enc.indexOf(0), -1);
        assert.ok(enc.length <= cobsMaxEncodedLength(data.length));
        // The encoder never needs the +1 of the bound except for the empty input.
        assert.ok(enc.length <= data.length + Math.max(1, Math.ceil(data.length / 254)));
        assert.deepEqual(cobsDecode(enc), data);
      }),
      { numRuns: 300 },
    );
  });

  it('accepts an empty final block after a full 254-byte block (other encoders emit it)', () => {
    assert.equal(hex(cobsDecode(fromHex(`ff${seq(1, 254)}01`))), seq(1, 254));
  });

  const malformed: [string, string][] = [
    ['empty input', ''],
    ['zero code byte', '00'],
    ['zero inside a block', '03110022'],
    ['code points past the end', '05112233'],
    ['second code points past the end', '021105'],
  ];
  for (const [name, encoded] of malformed) {
    it(`rejects ${name}`, () => {
      assert.equal(cobsDecodeInto(fromHex(encoded), new Uint8Array(16)), -1);
      assert.throws(() => cobsDecode(fromHex(encoded)), (e) => isFwError(e, 'E_FRAME_COBS'));
    });
  }

  it('never throws anything but E_FRAME_COBS on arbitrary input', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (junk) => {
        try {
          const out = cobsDecode(junk);
          assert.ok(out.length < junk.length);
        } catch (e) {
          assert.ok(isFwError(e, 'E_FRAME_COBS'));
        }
      }),
      { numRuns: 500 },
    );
  });
});
