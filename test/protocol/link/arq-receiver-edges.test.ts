import assert from 'node:assert/strict';
import { isFwError, type FwError } from '../../../protocol/errors.ts';
import {
  FrameKind, ackFields, ackFrame, dataFrame, nakFrame, nakSeqs, resetAckFrame, resetFrame, type Frame,
} from '../../../protocol/link/index.ts';
import { harness, hex } from './helpers.ts';

// docs/protocol.md §4.3-§4.5, the receiving direction at its edges: the 64-frame window both
// ways, the SACK bitmap's last bit, the message size limit, what one chunk of bytes answers.

const bytes = (...b: number[]): Uint8Array => Uint8Array.from(b);
const acks = (frames: Frame[]): { cum: number; sack: number }[] => frames.map(ackFields);

describe('link ARQ receive window (§4.4)', () => {
  it('d = 63 is buffered, d = 64 is outside the window', () => {
    const h = harness();
    h.feed(dataFrame(64, bytes(64), false));
    assert.equal(h.link.stats.outOfWindow, 1);
    h.feed(dataFrame(63, bytes(63), false));
    assert.equal(h.link.stats.outOfWindow, 1);
    for (let s = 0; s < 63; s++) h.feed(dataFrame(s, bytes(s), false));
    assert.equal(h.messages.length, 64, 'seq 63 was kept');
    assert.deepEqual(acks(h.take(FrameKind.ACK)).at(-1), { cum: 64, sack: 0 });
  });

  it('d = -64 is a duplicate, d = -65 is outside the window; both are ACKed at once', () => {
    const h = harness();
    for (let s = 0; s < 65; s++) h.feed(dataFrame(s, bytes(s), false)); // rcvNext 65
    h.take();
    h.feed(dataFrame(1, bytes(1), false));
    assert.deepEqual([h.link.stats.duplicates, h.link.stats.outOfWindow], [1, 0]);
    h.feed(dataFrame(0, bytes(0), false));
    assert.deepEqual([h.link.stats.duplicates, h.link.stats.outOfWindow], [1, 1]);
    assert.deepEqual(acks(h.take()), [{ cum: 65, sack: 0 }, { cum: 65, sack: 0 }]);
    assert.equal(h.messages.length, 65);
  });

  it('distances are signed modulo 65536: just below rcvNext 0 are seqs 0xffff down to 0xffc0 (duplicates)', () => {
    const h = harness();
    h.feed(dataFrame(0xffff, bytes(1), false), dataFrame(0xffc0, bytes(1), false));
    assert.deepEqual([h.link.stats.duplicates, h.link.stats.outOfWindow], [2, 0]);
    h.feed(dataFrame(0xffbf, bytes(1), false), dataFrame(0x8000, bytes(1), false));
    assert.deepEqual([h.link.stats.duplicates, h.link.stats.outOfWindow], [2, 2]);
    assert.deepEqual(h.messages, []);
    assert.deepEqual(acks(h.take()), [{ cum: 0, sack: 0 }, { cum: 0, sack: 0 }]);
  });

  it('bit 31 of the SACK bitmap is seq rcvNext + 32; rcvNext + 33 is buffered but not in the bitmap', () => {
    const h = harness();
    h.feed(dataFrame(32, bytes(32), false));
    assert.deepEqual(acks(h.take(FrameKind.ACK)), [{ cum: 0, sack: 0x8000_0000 }]);
    h.feed(dataFrame(33, bytes(33), false));
    assert.deepEqual(acks(h.take(FrameKind.ACK)), [{ cum: 0, sack: 0x8000_0000 }]);
  });

  it('a DATA frame that fills rcvNext while frames beyond a further gap are buffered is answered with ACK and NAK', () => {
    const h = harness();
    h.feed(dataFrame(1, bytes(1), false), dataFrame(3, bytes(3), false));
    h.take();
    h.clock.advance(300); // past the NAK interval (initial RTO 200)
    h.feed(dataFrame(0, bytes(0), false));
    const out = h.take();
    assert.deepEqual(out.map((f) => f.kind), [FrameKind.ACK, FrameKind.NAK]);
    assert.deepEqual(ackFields(out[0]!), { cum: 2, sack: 0b1 });
    assert.deepEqual(nakSeqs(out[1]!), [2]);
  });

  it('a NAK lists the missing seqs below the highest buffered one, up to rcvNext + 63', () => {
    const h = harness();
    h.feed(dataFrame(63, bytes(63), false));
    const naks = h.take(FrameKind.NAK).map(nakSeqs);
    assert.deepEqual(naks, [Array.from({ length: 32 }, (_, i) => i)], 'at most 32, from rcvNext');
    const h2 = harness();
    h2.feed(dataFrame(5, bytes(5), false), dataFrame(2, bytes(2), false));
    assert.deepEqual(h2.take(FrameKind.NAK).map(nakSeqs), [[0, 1, 3, 4]], 'in increasing order, buffered ones left out');
  });

  it('a NAKed seq is NAKed again once the smoothed RTT has passed since, not before', () => {
    const h = harness();
    h.link.send(bytes(9));
    h.clock.advance(40);
    h.feed(ackFrame(1, 0)); // our own DATA acknowledged: SRTT 40
    assert.equal(h.link.stats.rttMs, 40);
    h.take();
    h.feed(dataFrame(2, bytes(2), false));
    assert.deepEqual(h.take(FrameKind.NAK).map(nakSeqs), [[0, 1]]);
    h.clock.advance(39);
    h.feed(dataFrame(3, bytes(3), false));
    assert.deepEqual(h.take(FrameKind.NAK), []);
    h.clock.advance(1);
    h.feed(dataFrame(4, bytes(4), false));
    assert.deepEqual(h.take(FrameKind.NAK).map(nakSeqs), [[0, 1]]);
    assert.equal(h.link.stats.naksSent, 2);
  });
});

describe('link ARQ reassembly and the message size limit (§4.3)', () => {
  it('a message of exactly maxMessage is delivered; one byte more is dropped up to its last fragment, reported, and the next one delivered', () => {
    const h = harness({ maxMessage: 3 });
    const errors: FwError[] = [];
    h.link.on('error', (e) => errors.push(e));
    h.feed(dataFrame(0, bytes(1, 2), true), dataFrame(1, bytes(3), false));
    assert.deepEqual(h.messages.map(hex), ['010203']);
    h.feed(dataFrame(2, bytes(1, 2), true), dataFrame(3, bytes(3, 4), true));
    assert.equal(errors.length, 1, 'reported when the limit is passed');
    assert.ok(isFwError(errors[0], 'E_MESSAGE_TOO_LONG'));
    assert.deepEqual(errors[0].details, { limit: 3 });
    h.feed(dataFrame(4, bytes(5, 6), true), dataFrame(5, bytes(7, 8), false));
    assert.equal(h.messages.length, 1, 'the rest of the oversize message is dropped with it, and not counted again');
    h.feed(dataFrame(6, bytes(7), false));
    assert.deepEqual(h.messages.map(hex), ['010203', '07']);
    assert.equal(h.link.stats.oversize, 1);
    assert.equal(h.link.stats.messagesIn, 2);
    assert.equal(errors.length, 1);
    assert.deepEqual(acks(h.take(FrameKind.ACK)).at(-1), { cum: 7, sack: 0 }, 'every frame acknowledged');
  });

  it('a single-fragment message over the limit is dropped alone', () => {
    const h = harness({ maxMessage: 1 });
    let errors = 0;
    h.link.on('error', () => errors++);
    h.feed(dataFrame(0, bytes(1, 2), false), dataFrame(1, bytes(3), false));
    assert.deepEqual(h.messages.map(hex), ['03']);
    assert.equal(errors, 1);
  });

  it('an oversize message without an error listener is counted, not thrown', () => {
    const h = harness({ maxMessage: 1 });
    h.feed(dataFrame(0, bytes(1, 2), false));
    assert.equal(h.link.stats.oversize, 1);
  });
});

describe('link ARQ: one chunk of bytes read (§4.4)', () => {
  it('a RESET in the chunk cancels the ACK owed for DATA before it; DATA after it is ACKed', () => {
    const h = harness();
    h.feed(dataFrame(0, bytes(1), false), resetFrame(9));
    assert.deepEqual(h.take().map((f) => f.kind), [FrameKind.RESET_ACK]);
    h.feed(dataFrame(5, bytes(1), false), resetFrame(10), dataFrame(0, bytes(2), false));
    assert.deepEqual(h.take().map((f) => f.kind), [FrameKind.RESET_ACK, FrameKind.ACK], 'no NAK for the gap of the old session either');
    assert.deepEqual(h.messages.map(hex), ['01', '02']);
  });

  it('counts frames and bytes in', () => {
    const h = harness();
    h.feed(dataFrame(0, bytes(1), false), ackFrame(0, 0), nakFrame([3]));
    assert.equal(h.link.stats.framesIn, 3);
    assert.equal(h.link.stats.wireBytesIn, 11 + 14 + 12);
    h.link.receive(bytes(1, 2, 0));
    assert.equal(h.link.stats.framesIn, 3, 'a dropped frame is not a frame in');
    assert.equal(h.link.stats.wireBytesIn, 37 + 3);
  });

  it('close() from a message listener stops the rest of the chunk: no later message, no ACK', () => {
    const h = harness();
    h.link.once('message', () => h.link.close());
    h.feed(dataFrame(0, bytes(1), false), dataFrame(1, bytes(2), false));
    assert.deepEqual(h.messages.map(hex), ['01']);
    assert.equal(h.link.state, 'closed');
    h.link.receive(bytes(0));
    assert.equal(h.link.stats.wireBytesIn, 22, 'nothing is read once closed');
  });

  it('close() from the output during a chunk (answering its RESET) leaves the frames after it unread', () => {
    const h = harness({}, (wire) => {
      if (wire.length > 0 && h2.link.state === 'up') h2.link.close();
    });
    const h2 = h;
    h.feed(resetFrame(1), dataFrame(0, bytes(1), false));
    assert.deepEqual(h.take().map((f) => f.kind), [FrameKind.RESET_ACK]);
    assert.equal(h.link.stats.framesIn, 1);
    assert.deepEqual(h.messages, []);
  });

  it('while opening, DATA is neither delivered nor acknowledged; a RESET_ACK while up is ignored', async () => {
    const h = harness({ nonce: () => 3 });
    const opened = h.link.open();
    h.take();
    h.feed(dataFrame(0, bytes(1), false));
    assert.deepEqual(h.take(), []);
    assert.equal(h.link.stats.ignored, 1);
    h.feed(resetAckFrame(3));
    await opened;
    h.feed(resetAckFrame(3));
    assert.equal(h.link.stats.ignored, 2);
    assert.equal(h.link.state, 'up');
  });
});
