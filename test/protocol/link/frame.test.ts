import assert from 'node:assert/strict';
import fc from 'fast-check';
import { crc32 } from '../../../protocol/crc.ts';
import { isFwError } from '../../../protocol/errors.ts';
import {
  FLAG_MORE, FrameKind, FrameParser, ackFields, ackFrame, cobsEncode, dataFrame, decodeFrame, encodeFrame, frameNonce,
  isMore, nakFrame, nakSeqs, resetAckFrame, resetFrame, type Frame, type ParserStats,
} from '../../../protocol/link/index.ts';
import { fromHex, hex } from './helpers.ts';

const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffff_ffff });

function arbFrame(maxPayload = 300): fc.Arbitrary<Frame> {
  return fc.oneof(
    fc.tuple(u16, fc.uint8Array({ minLength: 1, maxLength: maxPayload }), fc.boolean()).map(([s, p, m]) => dataFrame(s, p, m)),
    fc.tuple(u16, u32).map(([c, b]) => ackFrame(c, b)),
    fc.array(u16, { minLength: 1, maxLength: 32 }).map((seqs) => nakFrame(seqs)),
    u32.map((n) => resetFrame(n)),
    u32.map((n) => resetAckFrame(n)),
  );
}

/** Frames as plain values for deep comparison. */
const plain = (f: Frame): { kind: number; flags: number; seq: number; payload: string } =>
  ({ kind: f.kind, flags: f.flags, seq: f.seq, payload: hex(f.payload) });

function concat(parts: readonly Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts));
}

function dropped(s: Readonly<ParserStats>): number {
  return s.cobs + s.short + s.tooLong + s.crc + s.kind + s.flags + s.malformed;
}

/** A body with a correct CRC, COBS-encoded and delimited: lets tests build frames the encoder refuses. */
function rawWire(body: number[], crcXor = 0): Uint8Array {
  const b = Uint8Array.from(body);
  const crc = (crc32(b) ^ crcXor) >>> 0;
  const full = Uint8Array.from([...b, crc >>> 24, (crc >>> 16) & 0xff, (crc >>> 8) & 0xff, crc & 0xff]);
  return concat([cobsEncode(full), Uint8Array.of(0)]);
}

describe('link frame (§3.3)', () => {
  it('CRC-32 check value is 0xCBF43926 (§3.4)', () => {
    assert.equal(crc32(new TextEncoder().encode('123456789')), 0xcbf43926);
  });

  it('round-trips each kind through encode/decode with typed readers', () => {
    const d = decodeFrame(encodeFrame(dataFrame(0xfffe, Uint8Array.of(0, 1, 0), true)));
    assert.deepEqual(plain(d), { kind: FrameKind.DATA, flags: FLAG_MORE, seq: 0xfffe, payload: '000100' });
    assert.equal(isMore(d), true);
    assert.equal(isMore(decodeFrame(encodeFrame(dataFrame(1, Uint8Array.of(9), false)))), false);
    assert.deepEqual(ackFields(decodeFrame(encodeFrame(ackFrame(513, 0x8000_0001)))), { cum: 513, sack: 0x8000_0001 });
    assert.deepEqual(nakSeqs(decodeFrame(encodeFrame(nakFrame([0, 7, 0xffff])))), [0, 7, 0xffff]);
    assert.equal(frameNonce(decodeFrame(encodeFrame(resetFrame(0xdeadbeef)))), 0xdeadbeef);
    const ra = decodeFrame(encodeFrame(resetAckFrame(42)));
    assert.equal(ra.kind, FrameKind.RESET_ACK);
    assert.equal(frameNonce(ra), 42);
    assert.ok(Object.isFrozen(ra));
  });

  it('typed readers refuse the wrong kind', () => {
    assert.throws(() => ackFields(resetFrame(1)), TypeError);
    assert.throws(() => nakSeqs(ackFrame(1, 0)), TypeError);
    assert.throws(() => frameNonce(nakFrame([1])), TypeError);
  });

  it('property: any frame round-trips; the wire holds exactly one 0x00, at the end', () => {
    fc.assert(
      fc.property(arbFrame(), (f) => {
        const wire = encodeFrame(f);
        assert.equal(wire.indexOf(0), wire.length - 1);
        assert.deepEqual(plain(decodeFrame(wire)), plain(f));
      }),
      { numRuns: 400 },
    );
  });

  it('round-trips the largest DATA payload and refuses one byte more', () => {
    const big = new Uint8Array(16_384).fill(0x5a);
    assert.equal(decodeFrame(encodeFrame(dataFrame(3, big, false))).payload.length, 16_384);
    assert.throws(() => encodeFrame(dataFrame(3, new Uint8Array(16_385), false)), (e) => isFwError(e, 'E_FRAME_TOO_LONG'));
  });

  it('the encoder refuses frames a receiver would drop', () => {
    assert.throws(() => encodeFrame(dataFrame(0, new Uint8Array(0), false)), (e) => isFwError(e, 'E_FRAME_KIND'));
    assert.throws(() => encodeFrame({ kind: FrameKind.ACK, flags: 1, seq: 0, payload: new Uint8Array(4) }), (e) => isFwError(e, 'E_FRAME_KIND'));
    assert.throws(() => encodeFrame({ kind: FrameKind.RESET, flags: 0, seq: 5, payload: new Uint8Array(4) }), (e) => isFwError(e, 'E_FRAME_KIND'));
    assert.throws(() => encodeFrame({ kind: 9 as FrameKind, flags: 0, seq: 0, payload: new Uint8Array(4) }), (e) => isFwError(e, 'E_FRAME_KIND'));
    assert.throws(() => nakFrame([]), RangeError);
    assert.throws(() => nakFrame(new Array<number>(33).fill(1)), RangeError);
  });

  describe('decodeFrame drop reasons (§3.6)', () => {
    const cases: [string, Uint8Array, string][] = [
      ['bad COBS', fromHex('05112200'), 'E_FRAME_COBS'],
      ['short body', concat([cobsEncode(Uint8Array.of(1, 0, 0, 0, 0, 0, 0)), Uint8Array.of(0)]), 'E_FRAME_SHORT'],
      ['bad CRC', rawWire([0x04, 0, 0, 0, 0, 0, 0, 1], 0x0000_0100), 'E_FRAME_CRC'],
      ['unknown kind', rawWire([0x06, 0, 0, 0, 1, 2, 3, 4]), 'E_FRAME_KIND'],
      ['kind 0', rawWire([0x00, 0, 0, 0, 1, 2, 3, 4]), 'E_FRAME_KIND'],
      ['DATA reserved flag', rawWire([0x01, 0x02, 0, 0, 1]), 'E_FRAME_KIND'],
      ['ACK with flags', rawWire([0x02, 0x01, 0, 0, 0, 0, 0, 0]), 'E_FRAME_KIND'],
      ['empty DATA', rawWire([0x01, 0x00, 0, 0]), 'E_FRAME_KIND'],
      ['ACK with 3-byte bitmap', rawWire([0x02, 0, 0, 0, 0, 0, 0]), 'E_FRAME_KIND'],
      ['NAK with odd length', rawWire([0x03, 0, 0, 0, 0, 1, 2]), 'E_FRAME_KIND'],
      ['NAK with seq', rawWire([0x03, 0, 0, 1, 0, 1]), 'E_FRAME_KIND'],
      ['NAK with 33 seqs', rawWire([0x03, 0, 0, 0, ...new Array<number>(66).fill(1)]), 'E_FRAME_KIND'],
      ['RESET with seq', rawWire([0x04, 0, 0, 1, 0, 0, 0, 1]), 'E_FRAME_KIND'],
      ['RESET_ACK with 5-byte nonce', rawWire([0x05, 0, 0, 0, 0, 0, 0, 0, 1]), 'E_FRAME_KIND'],
    ];
    for (const [name, wire, code] of cases) {
      it(`${name} -> ${code}`, () => {
        assert.throws(() => decodeFrame(wire), (e) => isFwError(e, code as 'E_FRAME_KIND'));
      });
    }

    it('DATA longer than the accepted payload -> E_FRAME_TOO_LONG, before any CRC check', () => {
      const wire = encodeFrame(dataFrame(0, new Uint8Array(100).fill(1), false));
      assert.throws(() => decodeFrame(wire, 64), (e) => isFwError(e, 'E_FRAME_TOO_LONG'));
      assert.equal(decodeFrame(wire, 100).payload.length, 100);
      const huge = concat([new Uint8Array(20_000).fill(7), Uint8Array.of(0)]);
      assert.throws(() => decodeFrame(huge), (e) => isFwError(e, 'E_FRAME_TOO_LONG'));
    });
  });
});

describe('link parser (§3.2, §3.6)', () => {
  const arbFrames = fc.array(arbFrame(40), { minLength: 1, maxLength: 4 });

  it('property: a stream of frames split at every offset gives the same frames', () => {
    fc.assert(
      fc.property(arbFrames, fc.boolean(), (frames, leadingFlush) => {
        const stream = concat([...(leadingFlush ? [Uint8Array.of(0)] : []), ...frames.map((f) => encodeFrame(f))]);
        const expected = frames.map(plain);
        for (let k = 0; k <= stream.length; k++) {
          const p = new FrameParser();
          const got = [...p.push(stream.subarray(0, k)), ...p.push(stream.subarray(k))];
          assert.deepEqual(got.map(plain), expected);
          assert.equal(p.stats.frames, frames.length);
          assert.equal(p.stats.idle, leadingFlush ? 1 : 0);
          assert.equal(dropped(p.stats), 0);
          assert.equal(p.bufferedBytes, 0);
        }
      }),
      { numRuns: 60 },
    );
  });

  it('property: random multi-splits (including empty pushes) give the same frames', () => {
    fc.assert(
      fc.property(arbFrames, fc.array(fc.nat(), { maxLength: 20 }), (frames, rawCuts) => {
        const stream = concat(frames.map((f) => encodeFrame(f)));
        const cuts = rawCuts.map((c) => c % (stream.length + 1)).sort((a, b) => a - b);
        const p = new FrameParser();
        const got: Frame[] = [];
        let from = 0;
        for (const c of [...cuts, stream.length]) {
          got.push(...p.push(stream.subarray(from, c)));
          from = c;
        }
        assert.deepEqual(got.map(plain), frames.map(plain));
      }),
      { numRuns: 300 },
    );
  });

  it('property: flipping any single bit of a frame (delimiter excepted) is rejected and counted', () => {
    fc.assert(
      fc.property(arbFrame(40), (f) => {
        const wire = encodeFrame(f);
        for (let bit = 0; bit < (wire.length - 1) * 8; bit++) {
          const bad = wire.slice();
          bad[bit >> 3]! ^= 1 << (bit & 7);
          const p = new FrameParser();
          const out = p.push(bad);
          assert.deepEqual(out, [], `bit ${bit} of ${hex(wire)} gave a frame`);
          // A flip to 0x00 splits the frame: every delimited piece is counted (an empty one as idle).
          const pieces = bad.reduce((n, b) => n + (b === 0 ? 1 : 0), 0);
          assert.equal(dropped(p.stats) + p.stats.idle, pieces);
          assert.ok(dropped(p.stats) >= 1);
        }
      }),
      { numRuns: 60 },
    );
  });

  it('property: garbage before and between frames is counted, and the frames after a delimiter still decode', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.uint8Array({ maxLength: 300 }), arbFrame(40)), { minLength: 1, maxLength: 4 }), (items) => {
        const p = new FrameParser();
        let segments = 0;
        const got: Frame[] = [];
        for (const [junk, f] of items) {
          const noise = concat([junk, Uint8Array.of(0)]);
          segments += noise.reduce((n, b) => n + (b === 0 ? 1 : 0), 0);
          got.push(...p.push(noise), ...p.push(encodeFrame(f)));
        }
        assert.deepEqual(got.map(plain), items.map(([, f]) => plain(f)));
        assert.equal(dropped(p.stats) + p.stats.idle, segments);
      }),
      { numRuns: 200 },
    );
  });

  it('counts each drop reason separately', () => {
    const p = new FrameParser({ maxPayload: 64 });
    const good = encodeFrame(ackFrame(1, 0));
    const badCrc = rawWire([0x04, 0, 0, 0, 0, 0, 0, 5], 0x8000_0000);
    const stream = concat([
      Uint8Array.of(0, 0), // two idle flushes
      fromHex('05112200'), // bad COBS
      concat([cobsEncode(Uint8Array.of(2, 0, 0)), Uint8Array.of(0)]), // short
      encodeFrame(dataFrame(0, new Uint8Array(65).fill(1), false)), // too long for 64
      badCrc,
      rawWire([0x07, 0, 0, 0]), // kind
      rawWire([0x01, 0x80, 0, 0, 1]), // flags
      rawWire([0x02, 0, 0, 0, 1]), // malformed
      good,
    ]);
    const out = p.push(stream);
    assert.deepEqual(out.map(plain), [plain(ackFrame(1, 0))]);
    assert.deepEqual({ ...p.stats }, { frames: 1, idle: 2, cobs: 1, short: 1, tooLong: 1, crc: 1, kind: 1, flags: 1, malformed: 1 });
  });

  it('drops an over-long run without a delimiter with bounded buffering, then resynchronises', () => {
    const p = new FrameParser({ maxPayload: 64 });
    const noise = new Uint8Array(7).fill(0x55);
    for (let i = 0; i < 10_000; i++) {
      assert.deepEqual(p.push(noise), []);
      assert.ok(p.bufferedBytes <= p.maxEncoded);
    }
    assert.equal(p.stats.tooLong, 1);
    const frame = dataFrame(9, Uint8Array.of(1, 2, 3), false);
    const out = p.push(concat([Uint8Array.of(0x55, 0), encodeFrame(frame)]));
    assert.deepEqual(out.map(plain), [plain(frame)]);
    assert.equal(p.stats.tooLong, 1);
    assert.equal(p.stats.frames, 1);
  });

  it('an over-long delimited run in a single push is dropped as tooLong', () => {
    const p = new FrameParser({ maxPayload: 64 });
    assert.deepEqual(p.push(concat([new Uint8Array(p.maxEncoded + 1).fill(3), Uint8Array.of(0)])), []);
    assert.equal(p.stats.tooLong, 1);
    assert.equal(p.bufferedBytes, 0);
  });

  it('accepts NAKs and other control frames even at the smallest maxPayload', () => {
    const p = new FrameParser({ maxPayload: 64 });
    const nak = nakFrame(Array.from({ length: 32 }, (_, i) => i));
    assert.deepEqual(p.push(encodeFrame(nak)).map(plain), [plain(nak)]);
  });

  it('refuses a maxPayload outside MIN..MAX_FRAME_PAYLOAD', () => {
    assert.throws(() => new FrameParser({ maxPayload: 63 }), (e) => isFwError(e, 'E_CONFIG'));
    assert.throws(() => new FrameParser({ maxPayload: 16_385 }), (e) => isFwError(e, 'E_CONFIG'));
  });
});
