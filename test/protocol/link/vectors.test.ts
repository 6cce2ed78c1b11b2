import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { decodeFrame, encodeFrame } from '../../../protocol/link/index.ts';
import { frameToVectorValue, fromHex, hex, vectorValueToFrame, type FrameVectorValue } from './helpers.ts';

// Cross-checked against an independent encoder (Python zlib.crc32 + a COBS encoder written from
// the paper) when they were made.
const vectors: { name: string; value: FrameVectorValue; hex: string }[] = [
  { name: 'data-more', value: { kind: 'DATA', seq: 0x0102, more: true, payload: '48656c6c6f00' }, hex: '0a0101010248656c6c6f0520877b1700' },
  { name: 'data-final', value: { kind: 'DATA', seq: 0x0103, more: false, payload: '776f726c64' }, hex: '02010c0103776f726c642dc49fa900' },
  { name: 'ack', value: { kind: 'ACK', cum: 0x0104, sack: 5 }, hex: '02020301040101060569b159fe00' },
  { name: 'nak', value: { kind: 'NAK', missing: [0x0104, 0x0106] }, hex: '020301010901040106a460834700' },
  { name: 'reset', value: { kind: 'RESET', nonce: 0xdeadbeef }, hex: '0204010109deadbeefbcb0add500' },
  { name: 'reset-ack', value: { kind: 'RESET_ACK', nonce: 0xdeadbeef }, hex: '0205010109deadbeef701aad4b00' },
];

const docPath = fileURLToPath(new URL('../../../docs/protocol.md', import.meta.url));

/**
 * The `kind=frame` blocks of docs/protocol.md (§10.1): ```vector name=<name> kind=frame, then
 * exactly a `value: <JSON>` line and a `hex: <hex>` line. Any other block shape naming kind=frame
 * fails here; the other kinds are checked by test/protocol/doc-vectors.test.ts.
 */
function docFrameVectors(markdown: string): { name: string; value: unknown; hex: string }[] {
  const out: { name: string; value: unknown; hex: string }[] = [];
  const opened = markdown.match(/^```vector .*kind=frame.*$/gm)?.length ?? 0;
  for (const m of markdown.matchAll(/^```vector name=([\w-]+) kind=frame\n([\s\S]*?)^```$/gm)) {
    const lines = m[2]!.split('\n').filter((l) => l !== '');
    const value = lines.length === 2 ? /^value: (.+)$/.exec(lines[0]!)?.[1] : undefined;
    const hexLine = lines.length === 2 ? /^hex: ([0-9a-f]+)$/.exec(lines[1]!)?.[1] : undefined;
    assert.ok(value !== undefined && hexLine !== undefined, `vector ${m[1]} needs exactly a value: line and a hex: line`);
    out.push({ name: m[1]!, value: JSON.parse(value) as unknown, hex: hexLine });
  }
  assert.equal(out.length, opened, 'every kind=frame block has the form ```vector name=<name> kind=frame');
  return out;
}

describe('link hex vectors (docs/protocol.md §10.4)', () => {
  for (const v of vectors) {
    it(`${v.name}: encode == hex and decode(hex) == value`, () => {
      assert.equal(hex(encodeFrame(vectorValueToFrame(v.value))), v.hex);
      assert.deepEqual(frameToVectorValue(decodeFrame(fromHex(v.hex))), v.value);
    });
  }

  it('the protocol document lists exactly these frame vectors', () => {
    const fromDoc = docFrameVectors(readFileSync(docPath, 'utf8'));
    assert.deepEqual(fromDoc, vectors);
  });

  it('the protocol document states the CRC-32 check value and the COBS bound', () => {
    const doc = readFileSync(docPath, 'utf8');
    assert.match(doc, /crc32\("123456789"\) = 0xCBF43926/);
    assert.match(doc, /n \+ floor\(n \/ 254\) \+ 1/);
  });
});
