import assert from 'node:assert/strict';
import { crc32 } from '../../../protocol/crc.ts';
import { isFwError, type FwError } from '../../../protocol/errors.ts';
import {
  FrameKind, FrameParser, MAX_CONTROL_PAYLOAD, ackFields, ackFrame, cobsDecodeInto, cobsEncode, cobsEncodeInto, cobsMaxEncodedLength, dataFrame,
  decodeFrame, dropError, encodeFrame, frameKindName, frameNonce, isFrameKind, maxBodySize, maxWireSize, nakFrame, nakSeqs, resetFrame, type Frame,
} from '../../../protocol/link/index.ts';
import { fromHex, hex } from './helpers.ts';

// docs/protocol.md §3: the edges of the frame format — each limit at, below and above its
// bound, and which check (§3.6) names a dropped frame.

function concat(parts: readonly Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts));
}

/** A body with a correct CRC, COBS-encoded and delimited: frames the encoder refuses to build. */
function rawWire(body: readonly number[]): Uint8Array {
  const b = Uint8Array.from(body);
  const crc = crc32(b);
  return concat([cobsEncode(Uint8Array.from([...b, crc >>> 24, (crc >>> 16) & 0xff, (crc >>> 8) & 0xff, crc & 0xff])), Uint8Array.of(0)]);
}

/** The drop reason of a frame decoded on its own (§3.6), from the error's details. */
function reasonOf(wire: Uint8Array, maxPayload?: number): { code: string; reason: unknown } {
  try {
    decodeFrame(wire, maxPayload);
  } catch (e) {
    assert.ok(isFwError(e), String(e));
    return { code: e.code, reason: e.details?.reason };
  }
  return { code: 'accepted', reason: undefined };
}

const plain = (f: Frame): { kind: number; flags: number; seq: number; payload: string } =>
  ({ kind: f.kind, flags: f.flags, seq: f.seq, payload: hex(f.payload) });

describe('link frame kinds (§3.3)', () => {
  it('names exactly the five kinds 01..05', () => {
    assert.deepEqual([1, 2, 3, 4, 5].map((k) => frameKindName(k as FrameKind)), ['DATA', 'ACK', 'NAK', 'RESET', 'RESET_ACK']);
    assert.deepEqual([0, 1, 5, 6, 0xff].map(isFrameKind), [false, true, true, false, false]);
    assert.throws(() => frameKindName(6 as FrameKind), (e: Error) => e instanceof RangeError && /not a frame kind: 6/.test(e.message));
  });
});

describe('link COBS buffers (§3.1)', () => {
  it('encodes into a buffer at an offset, needing room for the documented bound from there', () => {
    const src = fromHex('11220033');
    const bound = cobsMaxEncodedLength(src.length);
    const dst = new Uint8Array(3 + bound).fill(0xee);
    const end = cobsEncodeInto(src, dst, 3);
    assert.equal(end, 3 + 5);
    assert.equal(hex(dst.subarray(0, end)), 'eeeeee0311220233');
    assert.throws(() => cobsEncodeInto(src, new Uint8Array(3 + bound - 1), 3), (e: Error) => e instanceof RangeError && /COBS destination too small/.test(e.message));
    assert.equal(cobsEncodeInto(src, new Uint8Array(bound)), 5, 'offset 0 by default');
  });

  it('decodes into a buffer of the encoded length minus one, not less', () => {
    const enc = fromHex('0511223344');
    const dst = new Uint8Array(4);
    assert.equal(cobsDecodeInto(enc, dst), 4);
    assert.equal(hex(dst), '11223344');
    assert.throws(() => cobsDecodeInto(enc, new Uint8Array(3)), (e: Error) => e instanceof RangeError && /COBS destination too small/.test(e.message));
  });

  it('a 0x00 inside a block is invalid even when the code bytes fit (a frame never contains 0x00)', () => {
    assert.equal(cobsDecodeInto(fromHex('03110001'), new Uint8Array(8)), -1);
    assert.equal(cobsDecodeInto(fromHex('03110101'), new Uint8Array(8)), 3, 'the same with 0x01 decodes');
  });
});

describe('link frame limits (§3.5)', () => {
  it('maxBody and the largest frame on the wire for the default and the smallest maxPayload', () => {
    assert.equal(maxBodySize(16_384), 16_392);
    assert.equal(cobsMaxEncodedLength(maxBodySize(16_384)), 16_457);
    assert.equal(maxWireSize(16_384), 16_458);
    assert.equal(maxBodySize(64), 4 + 64 + 4);
    assert.equal(MAX_CONTROL_PAYLOAD, 64, 'a full NAK: 32 seqs of 2 bytes');
    // a control frame fits even a receiver configured below the control payload
    assert.equal(maxBodySize(10), 4 + 64 + 4);
  });

  it('no encoded frame exceeds maxWireSize of its payload', () => {
    for (const n of [1, 246, 247, 500, 4096, 16_384]) {
      const wire = encodeFrame(dataFrame(0xffff, new Uint8Array(n).fill(0xab), false));
      assert.ok(wire.length <= maxWireSize(n), `${n}: ${wire.length} > ${maxWireSize(n)}`);
    }
    assert.equal(encodeFrame(dataFrame(1, Uint8Array.of(1), false)).length, maxWireSize(1), 'a 9-byte body: one code byte per zero, and the delimiter');
  });

  it('decodes a body of exactly maxBody; the encoded length is checked first (tooLong, not cobs)', () => {
    const full = encodeFrame(dataFrame(7, new Uint8Array(64).fill(3), false), 64);
    assert.equal(decodeFrame(full, 64).payload.length, 64);
    // an encoding longer than maxEncoded for maxPayload 64 that is not even valid COBS
    const long = new Uint8Array(cobsMaxEncodedLength(maxBodySize(64)) + 1).fill(0xff);
    assert.deepEqual(reasonOf(long, 64), { code: 'E_FRAME_TOO_LONG', reason: 'tooLong' });
    // the same length is only a COBS error for a larger maxPayload
    assert.deepEqual(reasonOf(long, 1024), { code: 'E_FRAME_COBS', reason: 'cobs' });
  });

  it('a body one byte over maxBody is tooLong even when its CRC is wrong', () => {
    const body = [0x01, 0, 0, 0, ...new Array<number>(65).fill(1), 1, 2, 3, 4];
    assert.equal(body.length, maxBodySize(64) + 1);
    const wire = concat([cobsEncode(Uint8Array.from(body)), Uint8Array.of(0)]);
    assert.deepEqual(reasonOf(wire, 64), { code: 'E_FRAME_TOO_LONG', reason: 'tooLong' });
    assert.deepEqual(reasonOf(wire, 65), { code: 'E_FRAME_CRC', reason: 'crc' });
  });

  it('valid COBS of an empty body is short, not a COBS error', () => {
    assert.deepEqual(reasonOf(fromHex('0100')), { code: 'E_FRAME_SHORT', reason: 'short' });
    const p = new FrameParser();
    assert.deepEqual(p.push(fromHex('0100')), []);
    assert.deepEqual([p.stats.short, p.stats.cobs], [1, 0]);
  });

  it('a body over maxBody whose encoding still fits maxEncoded is tooLong (check 4), before its CRC (check 5)', () => {
    // maxPayload 256: maxBody 264, maxEncoded 266; a 265-byte body with zeros encodes to 266 bytes
    const body = Uint8Array.from({ length: 265 }, (_, i) => (i % 100 === 0 ? 0 : 1));
    body[0] = 0x02; // an ACK: were the length not checked, it would fail only as malformed or crc
    const wire = concat([cobsEncode(body), Uint8Array.of(0)]);
    assert.equal(wire.length - 1, cobsMaxEncodedLength(maxBodySize(256)));
    assert.deepEqual(reasonOf(wire, 256), { code: 'E_FRAME_TOO_LONG', reason: 'tooLong' });
    const p = new FrameParser({ maxPayload: 256 });
    p.push(wire);
    assert.deepEqual([p.stats.tooLong, p.stats.crc], [1, 0]);
  });

  it('the trailing delimiter is optional when a frame is decoded on its own', () => {
    const wire = encodeFrame(ackFrame(9, 3));
    assert.deepEqual(plain(decodeFrame(wire.subarray(0, wire.length - 1))), plain(ackFrame(9, 3)));
    assert.deepEqual(reasonOf(new Uint8Array(0)), { code: 'E_FRAME_COBS', reason: 'cobs' });
    assert.deepEqual(reasonOf(Uint8Array.of(0)), { code: 'E_FRAME_COBS', reason: 'cobs' });
  });
});

describe('link frame drop reasons by check (§3.6)', () => {
  const cases: [string, Uint8Array, string, string][] = [
    ['7-byte body', concat([cobsEncode(Uint8Array.of(1, 0, 0, 0, 1, 2, 3)), Uint8Array.of(0)]), 'E_FRAME_SHORT', 'short'],
    ['kind 6', rawWire([0x06, 0, 0, 0]), 'E_FRAME_KIND', 'kind'],
    ['DATA flag bit 1', rawWire([0x01, 0x02, 0, 0, 1]), 'E_FRAME_KIND', 'flags'],
    ['ACK with the MORE bit', rawWire([0x02, 0x01, 0, 0, 0, 0, 0, 0]), 'E_FRAME_KIND', 'flags'],
    ['NAK with flag bit 7', rawWire([0x03, 0x80, 0, 0, 0, 1]), 'E_FRAME_KIND', 'flags'],
    ['RESET with flags', rawWire([0x04, 0x01, 0, 0, 0, 0, 0, 1]), 'E_FRAME_KIND', 'flags'],
    ['RESET_ACK with flags', rawWire([0x05, 0x10, 0, 0, 0, 0, 0, 1]), 'E_FRAME_KIND', 'flags'],
    ['empty DATA', rawWire([0x01, 0x01, 0, 5]), 'E_FRAME_KIND', 'malformed'],
    ['ACK with a 5-byte bitmap', rawWire([0x02, 0, 0, 0, 0, 0, 0, 0, 0]), 'E_FRAME_KIND', 'malformed'],
    ['NAK without seqs', rawWire([0x03, 0, 0, 0]), 'E_FRAME_KIND', 'malformed'],
    ['NAK with seq 0x0100', rawWire([0x03, 0, 1, 0, 0, 1]), 'E_FRAME_KIND', 'malformed'],
    ['NAK with 33 seqs', rawWire([0x03, 0, 0, 0, ...new Array<number>(66).fill(1)]), 'E_FRAME_KIND', 'malformed'],
    ['NAK with 3 bytes', rawWire([0x03, 0, 0, 0, 0, 1, 2]), 'E_FRAME_KIND', 'malformed'],
    ['RESET with a 3-byte nonce', rawWire([0x04, 0, 0, 0, 0, 0, 1]), 'E_FRAME_KIND', 'malformed'],
    ['RESET_ACK with seq', rawWire([0x05, 0, 0x80, 0, 0, 0, 0, 1]), 'E_FRAME_KIND', 'malformed'],
  ];
  for (const [name, wire, code, reason] of cases) {
    it(`${name} -> ${code} (${reason})`, () => {
      assert.deepEqual(reasonOf(wire), { code, reason });
    });
  }

  it('accepts the shortest and longest of each kind', () => {
    const ok: [Uint8Array, Frame][] = [
      [rawWire([0x01, 0x01, 0xff, 0xff, 9]), dataFrame(0xffff, Uint8Array.of(9), true)],
      [rawWire([0x03, 0, 0, 0, 0xff, 0xfe]), nakFrame([0xfffe])],
      [rawWire([0x03, 0, 0, 0, ...new Array<number>(64).fill(2)]), nakFrame(new Array<number>(32).fill(0x0202))],
      [rawWire([0x04, 0, 0, 0, 0, 0, 0, 0]), resetFrame(0)],
    ];
    for (const [wire, frame] of ok) assert.deepEqual(plain(decodeFrame(wire)), plain(frame));
  });

  it('DATA payload longer than maxPayload is tooLong, one byte less is accepted', () => {
    const wire = encodeFrame(dataFrame(0, new Uint8Array(100).fill(1), false));
    assert.deepEqual(reasonOf(wire, 99), { code: 'E_FRAME_TOO_LONG', reason: 'tooLong' });
    assert.equal(decodeFrame(wire, 100).payload.length, 100);
  });

  it('the errors of flags and malformed say which check failed', () => {
    const flags = dropError('flags');
    assert.equal(flags.code, 'E_FRAME_KIND');
    assert.equal(flags.message, 'reserved frame flag bits set');
    assert.deepEqual(flags.details, { reason: 'flags' });
    const malformed = dropError('malformed');
    assert.equal(malformed.message, 'frame fields do not fit its kind');
    assert.equal(dropError('kind').message, 'unknown frame kind', 'the code\'s own message otherwise');
    assert.equal(dropError('crc').code, 'E_FRAME_CRC');
  });
});

describe('link frame typed readers', () => {
  it('say which kind they expected', () => {
    assert.throws(() => ackFields(resetFrame(1)), (e: Error) => e instanceof TypeError && e.message === 'not an ACK frame');
    assert.throws(() => nakSeqs(ackFrame(1, 0)), (e: Error) => e instanceof TypeError && e.message === 'not a NAK frame');
    assert.throws(() => frameNonce(nakFrame([1])), (e: Error) => e instanceof TypeError && e.message === 'not a RESET or RESET_ACK frame');
  });
});

describe('link frame encoder refusals (§3.3)', () => {
  const refuses = (frame: Frame, maxPayload?: number) => () => encodeFrame(frame, maxPayload);
  it('refuses a seq that is not a u16, naming it', () => {
    for (const seq of [-1, 0x1_0000, 1.5, Number.NaN]) {
      assert.throws(refuses({ kind: FrameKind.DATA, flags: 0, seq, payload: Uint8Array.of(1) }),
        (e: FwError) => isFwError(e, 'E_FRAME_KIND') && e.message === 'frame seq is not a u16', String(seq));
    }
    assert.equal(decodeFrame(encodeFrame({ kind: FrameKind.DATA, flags: 0, seq: 0xffff, payload: Uint8Array.of(1) })).seq, 0xffff);
  });

  it('refuses a DATA payload over the given maxPayload and names the reason', () => {
    assert.throws(refuses(dataFrame(0, new Uint8Array(65), false), 64), (e: FwError) => isFwError(e, 'E_FRAME_TOO_LONG') && e.details?.reason === 'tooLong');
    assert.equal(encodeFrame(dataFrame(0, new Uint8Array(64), false), 64).length > 0, true);
    assert.throws(refuses({ kind: FrameKind.DATA, flags: 0x02, seq: 0, payload: Uint8Array.of(1) }), (e: FwError) => e.details?.reason === 'flags');
    assert.throws(refuses({ kind: FrameKind.NAK, flags: 0, seq: 1, payload: Uint8Array.of(0, 1) }), (e: FwError) => e.details?.reason === 'malformed');
  });

  it('a NAK lists 1 to 32 seqs, each as a u16', () => {
    assert.throws(() => nakFrame([]), (e: Error) => e instanceof RangeError && e.message === 'NAK lists 1..32 seqs');
    assert.equal(nakFrame(new Array<number>(32).fill(1)).payload.length, 64);
    assert.throws(() => nakFrame(new Array<number>(33).fill(1)), RangeError);
    assert.equal(hex(nakFrame([0x1_0005, 0x12345]).payload), '00052345', 'reduced mod 65536');
    assert.equal(dataFrame(0x1_0003, Uint8Array.of(1), false).seq, 3);
    assert.equal(ackFrame(0x1_ffff, 0).seq, 0xffff);
  });
});

describe('link parser buffering (§3.2)', () => {
  it('holds an unfinished frame, drops it on reset(), and keeps its counters', () => {
    const p = new FrameParser({ maxPayload: 64 });
    const wire = encodeFrame(ackFrame(5, 1));
    assert.deepEqual(p.push(wire.subarray(0, 6)), []);
    assert.equal(p.bufferedBytes, 6);
    p.reset();
    assert.equal(p.bufferedBytes, 0);
    assert.deepEqual(p.push(wire.subarray(6)), [], 'the tail alone is no frame');
    assert.equal(p.stats.frames, 0);
    assert.equal(p.stats.cobs + p.stats.short + p.stats.crc, 1);
    assert.deepEqual(p.push(wire).map(plain), [plain(ackFrame(5, 1))]);
  });

  it('buffers a frame of exactly maxEncoded bytes across pushes; one byte more is tooLong, counted once', () => {
    const p = new FrameParser({ maxPayload: 64 });
    assert.equal(p.maxEncoded, cobsMaxEncodedLength(maxBodySize(64)));
    const frame = dataFrame(3, new Uint8Array(64).fill(0x42), false);
    const wire = encodeFrame(frame, 64);
    assert.equal(wire.length, p.maxEncoded + 1, 'the largest DATA frame: maxEncoded and the delimiter');
    assert.deepEqual(p.push(wire.subarray(0, 40)), []);
    assert.equal(p.bufferedBytes, 40);
    assert.deepEqual(p.push(wire.subarray(40)).map(plain), [plain(frame)]);
    assert.equal(p.stats.tooLong, 0);
    // one stray byte ahead of it: maxEncoded + 1 bytes without a delimiter
    const p2 = new FrameParser({ maxPayload: 64 });
    assert.deepEqual(p2.push(Uint8Array.of(0x42)), []);
    assert.deepEqual(p2.push(wire), []);
    assert.equal(p2.stats.tooLong, 1);
    assert.equal(p2.bufferedBytes, 0);
    assert.deepEqual(p2.push(wire).map(plain), [plain(frame)], 'in step again after the delimiter');
    assert.equal(p2.stats.tooLong, 1);
  });

  it('after an over-long run it discards up to the next delimiter across pushes, then decodes', () => {
    const p = new FrameParser({ maxPayload: 64 });
    const frame = ackFrame(1, 2);
    assert.deepEqual(p.push(new Uint8Array(p.maxEncoded + 1).fill(9)), []);
    assert.equal(p.stats.tooLong, 1);
    assert.equal(p.bufferedBytes, 0);
    const wire = encodeFrame(frame);
    assert.deepEqual(p.push(wire.subarray(0, wire.length - 1)), [], 'still discarding: a frame without its own start');
    assert.equal(p.bufferedBytes, 0);
    assert.deepEqual(p.push(Uint8Array.of(0)), []);
    assert.equal(p.stats.frames + p.stats.idle, 0, 'the discarded run ends at that delimiter');
    assert.deepEqual(p.push(wire).map(plain), [plain(frame)]);
    assert.equal(p.stats.tooLong, 1);
  });

  it('a frame completed across pushes after buffered bytes', () => {
    const p = new FrameParser();
    const a = ackFrame(300, 0x0f);
    const b = resetFrame(0xabcdef01);
    const stream = concat([encodeFrame(a), encodeFrame(b)]);
    const first = encodeFrame(a).length;
    assert.deepEqual(p.push(stream.subarray(0, first + 3)).map(plain), [plain(a)]);
    assert.equal(p.bufferedBytes, 3);
    assert.deepEqual(p.push(stream.subarray(first + 3)).map(plain), [plain(b)]);
    assert.equal(p.bufferedBytes, 0);
  });

  it('counts each idle flush', () => {
    const p = new FrameParser();
    assert.deepEqual(p.push(Uint8Array.of(0, 0, 0)), []);
    assert.equal(p.stats.idle, 3);
    assert.equal(p.stats.frames, 0);
  });

  it('the maxPayload of a parser is an integer in 64..16384', () => {
    assert.equal(new FrameParser().maxPayload, 16_384);
    assert.equal(new FrameParser({ maxPayload: 64 }).maxPayload, 64);
    assert.equal(new FrameParser({ maxPayload: 16_384 }).maxEncoded, 16_457);
    assert.throws(() => new FrameParser({ maxPayload: 100.5 }), (e: FwError) => isFwError(e, 'E_CONFIG') && /64\.\.16384/.test(e.message));
  });
});
