import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { encodeChunkMessage, encodeChunkTail } from '../../../gateway/rollout/chunk-message.ts';
import { ImageSource } from '../../../gateway/rollout/image-source.ts';
import { crc32 } from '../../../protocol/crc.ts';
import { manifestForImage } from '../../../protocol/manifest.ts';
import { decodeGatewayMessage, encodeGatewayMessage } from '../../../protocol/ota.ts';

/** The `down-chunk` vector of docs/protocol.md §10.6. */
function docVector(): { sid: number; off: number; data: Buffer; crc: number; hex: string } {
  const doc = readFileSync(fileURLToPath(new URL('../../../docs/protocol.md', import.meta.url)), 'utf8');
  const m = /```vector name=down-chunk kind=ota-down\nvalue: (.*)\nhex: ([0-9a-f]+)\n```/.exec(doc);
  assert.ok(m, 'docs/protocol.md has the down-chunk vector');
  const v = JSON.parse(m[1]!) as { sid: number; off: number; data: { $bytes: string }; crc: number };
  return { sid: v.sid, off: v.off, data: Buffer.from(v.data.$bytes, 'hex'), crc: v.crc, hex: m[2]! };
}

describe('spliced chunk messages (docs/protocol.md §6.6, §1.4)', () => {
  it('give the bytes of the down-chunk vector of §10.6', () => {
    const v = docVector();
    assert.equal(Buffer.from(encodeChunkMessage(v.sid, encodeChunkTail(v.off, v.data, v.crc))).toString('hex'), v.hex);
  });

  const u32 = fc.oneof(
    fc.constantFrom(0, 1, 23, 24, 255, 256, 65_535, 65_536, 0xffff_ffff),
    fc.integer({ min: 0, max: 0xffff_ffff }),
  );

  it('equal encodeGatewayMessage for every sid, offset, CRC and data length (each integer width)', () => {
    fc.assert(fc.property(
      fc.integer({ min: 1, max: 0xffff_ffff }), u32, u32,
      fc.oneof(fc.uint8Array({ minLength: 1, maxLength: 300 }), fc.constantFrom(1, 23, 24, 255, 256, 4096, 65_535, 65_536).map((n) => new Uint8Array(n).fill(0x5a))),
      (sid, off, crc, bytes) => {
        const data = Buffer.from(bytes);
        const spliced = encodeChunkMessage(sid, encodeChunkTail(off, data, crc));
        assert.deepEqual(Buffer.from(spliced), Buffer.from(encodeGatewayMessage({ t: 'chunk', sid, off, data, crc })));
      },
    ), { numRuns: 300 });
    for (const sid of [1, 23, 24, 255, 256, 65_535, 65_536, 0xffff_ffff]) {
      const data = Buffer.alloc(64, 1);
      const spliced = encodeChunkMessage(sid, encodeChunkTail(64, data, 7));
      assert.deepEqual(Buffer.from(spliced), Buffer.from(encodeGatewayMessage({ t: 'chunk', sid, off: 64, data, crc: 7 })), `sid ${sid}`);
    }
  });

  it('the image source shares one tail per chunk between sessions, and the message decodes to that chunk', () => {
    const bytes = Buffer.from(Array.from({ length: 1000 }, (_, i) => i & 0xff));
    const image = new ImageSource(manifestForImage(bytes, { name: 'fw', version: '1.1.0', hw: ['hw'], chunk: 256 }), bytes);
    const a = image.encodedChunk(768, 256);
    assert.equal(image.encodedChunk(768, 256).tail, a.tail, 'encoded once');
    const msg = decodeGatewayMessage(encodeChunkMessage(42, a.tail));
    assert.deepEqual(msg, { t: 'chunk', sid: 42, off: 768, data: bytes.subarray(768), crc: crc32(bytes.subarray(768)) });
  });

  it('beyond the cache bound a tail is encoded at each send (same bytes, not kept)', () => {
    const bytes = Buffer.alloc(1024, 3);
    const image = new ImageSource(manifestForImage(bytes, { name: 'fw', version: '1.1.0', hw: ['hw'], chunk: 256 }), bytes, 300);
    const first = image.encodedChunk(0, 256);
    assert.equal(image.encodedChunk(0, 256).tail, first.tail, 'the first fits the bound');
    const second = image.encodedChunk(256, 256);
    const again = image.encodedChunk(256, 256);
    assert.notEqual(again.tail, second.tail);
    assert.deepEqual(again.tail, second.tail);
  });
});
