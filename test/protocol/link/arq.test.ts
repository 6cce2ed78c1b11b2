import assert from 'node:assert/strict';
import { isFwError, type FwError } from '../../../protocol/errors.ts';
import {
  ArqLink, FrameKind, ackFields, ackFrame, dataFrame, encodeFrame, frameNonce, isMore, nakFrame, nakSeqs,
  resetAckFrame, resetFrame, type Frame,
} from '../../../protocol/link/index.ts';
import { FakeClock, harness, type Harness, hex, type LinkSettings, linkPair, openPair, randomMessages, Rng, sendAll } from './helpers.ts';

// docs/protocol.md §4, one link driven frame by frame.

const bytes = (...b: number[]): Uint8Array => Uint8Array.from(b);
const acks = (frames: Frame[]): { cum: number; sack: number }[] => frames.map(ackFields);

describe('link ARQ receiver (§4.4, §4.5)', () => {
  it('a passive link works without open(): DATA seq 0 is delivered and ACKed', () => {
    const h = harness();
    h.feed(dataFrame(0, bytes(1, 2), false));
    assert.deepEqual(h.messages.map(hex), ['0102']);
    assert.deepEqual(acks(h.take()), [{ cum: 1, sack: 0 }]);
  });

  it('buffers out-of-order frames, SACKs and NAKs the gap, then delivers in order', () => {
    const h = harness();
    h.feed(dataFrame(1, bytes(0x11), false));
    assert.deepEqual(acks(h.take(FrameKind.ACK)), [{ cum: 0, sack: 0b1 }]);
    h.feed(dataFrame(3, bytes(0x33), false));
    const out = h.take();
    assert.deepEqual(out.map((f) => f.kind), [FrameKind.ACK, FrameKind.NAK], 'ACK first, then NAK');
    assert.deepEqual(ackFields(out[0]!), { cum: 0, sack: 0b101 });
    // seq 0 was NAKed with the first gap less than one RTO ago: only seq 2 is new.
    assert.deepEqual(nakSeqs(out[1]!), [2]);
    assert.deepEqual(h.messages, []);
    h.feed(dataFrame(0, bytes(0x00), false));
    assert.deepEqual(h.messages.map(hex), ['00', '11']);
    assert.deepEqual(acks(h.take(FrameKind.ACK)), [{ cum: 2, sack: 0b1 }]);
    h.feed(dataFrame(2, bytes(0x22), false));
    assert.deepEqual(h.messages.map(hex), ['00', '11', '22', '33']);
    assert.deepEqual(h.take().map((f) => f.kind), [FrameKind.ACK], 'no NAK without a gap');
  });

  it('NAKs each missing seq at most once per RTT estimate', () => {
    const h = harness();
    h.feed(dataFrame(2, bytes(2), false));
    assert.deepEqual(h.take(FrameKind.NAK).map(nakSeqs), [[0, 1]]);
    h.clock.advance(100);
    h.feed(dataFrame(3, bytes(3), false));
    assert.deepEqual(h.take(FrameKind.NAK), [], 'within the 200 ms initial RTO');
    h.clock.advance(100);
    h.feed(dataFrame(4, bytes(4), false));
    assert.deepEqual(h.take(FrameKind.NAK).map(nakSeqs), [[0, 1]]);
  });

  it('lists at most 32 seqs in a NAK', () => {
    const h = harness();
    h.feed(dataFrame(40, bytes(1), false));
    const naks = h.take(FrameKind.NAK).map(nakSeqs);
    assert.deepEqual(naks, [Array.from({ length: 32 }, (_, i) => i)]);
  });

  it('drops and counts duplicates and out-of-window frames, but still ACKs them', () => {
    const h = harness();
    h.feed(dataFrame(0, bytes(0), false), dataFrame(1, bytes(1), false), dataFrame(5, bytes(5), false));
    h.take();
    h.feed(dataFrame(1, bytes(1), false));
    h.feed(dataFrame(5, bytes(5), false));
    assert.equal(h.link.stats.duplicates, 2);
    h.feed(dataFrame(2 + 64, bytes(9), false));
    h.feed(dataFrame((2 - 65) & 0xffff, bytes(9), false));
    assert.equal(h.link.stats.outOfWindow, 2);
    assert.deepEqual(acks(h.take(FrameKind.ACK)), new Array(4).fill({ cum: 2, sack: 0b100 }));
    assert.deepEqual(h.messages.map(hex), ['00', '01']);
  });

  it('accepts the whole 64-frame receive window and reports 32 seqs in the SACK bitmap', () => {
    const h = harness();
    for (let s = 63; s >= 1; s--) h.feed(dataFrame(s, bytes(s), false));
    const last = acks(h.take(FrameKind.ACK)).at(-1);
    assert.deepEqual(last, { cum: 0, sack: 0xffff_ffff });
    h.feed(dataFrame(0, bytes(0), false));
    assert.equal(h.messages.length, 64);
    assert.deepEqual(h.messages.map((m) => m[0]), Array.from({ length: 64 }, (_, i) => i));
  });

  it('reassembles MORE fragments into one message', () => {
    const h = harness();
    h.feed(dataFrame(0, bytes(1, 2), true), dataFrame(1, bytes(3), true));
    assert.deepEqual(h.messages, []);
    h.feed(dataFrame(2, bytes(4, 5), false));
    assert.deepEqual(h.messages.map(hex), ['0102030405']);
    assert.equal(Object.getPrototypeOf(h.messages[0]), Uint8Array.prototype, 'messages are plain Uint8Arrays');
  });

  it('never throws on garbage; counts it; a good frame after a delimiter still gets through', () => {
    const h = harness({ acceptPayload: 64 });
    const rng = new Rng(5);
    for (let i = 0; i < 200; i++) h.link.receive(rng.bytes(rng.int(0, 100)));
    h.link.receive(encodeFrame(dataFrame(0, new Uint8Array(65), false)));
    const p = h.link.stats.parser;
    assert.ok(p.cobs + p.crc + p.short + p.tooLong > 0);
    h.link.receive(bytes(0));
    h.feed(dataFrame(0, bytes(7), false));
    assert.deepEqual(h.messages.map(hex), ['07']);
    assert.ok(h.link.stats.wireBytesIn > 0);
  });
});

describe('link ARQ delayed ACK (§4.4)', () => {
  const owed = (h: Harness): { cum: number; sack: number }[] => acks(h.take(FrameKind.ACK));

  it('off by default: every batch of DATA read is ACKed at once', () => {
    const h = harness();
    for (let seq = 0; seq < 3; seq++) h.feed(dataFrame(seq, bytes(seq), false));
    assert.deepEqual(owed(h), [{ cum: 1, sack: 0 }, { cum: 2, sack: 0 }, { cum: 3, sack: 0 }]);
  });

  it('in-order DATA is ACKed at most ackDelayMs after the previous ACK, or at once when ackEvery frames are owed; messages are never held', () => {
    const h = harness({ ackDelayMs: 5, ackEvery: 4 });
    h.feed(dataFrame(0, bytes(0), false));
    assert.deepEqual(owed(h), [{ cum: 1, sack: 0 }], 'no ACK for ackDelayMs: at once');
    h.clock.advance(1);
    h.feed(dataFrame(1, bytes(1), false));
    h.clock.advance(1);
    h.feed(dataFrame(2, bytes(2), false));
    assert.deepEqual(owed(h), [], 'within ackDelayMs of the last ACK: held');
    assert.deepEqual(h.messages.map(hex), ['00', '01', '02'], 'delivery is not delayed');
    h.clock.advance(2);
    assert.deepEqual(owed(h), [], 'still within 5 ms of the last ACK');
    h.clock.advance(1);
    assert.deepEqual(h.out.map((o) => o.at), [5], 'the delayed ACK goes 5 ms after the previous one');
    assert.deepEqual(owed(h), [{ cum: 3, sack: 0 }], 'one ACK for both');
    assert.equal(h.link.stats.acksDelayed, 1);
    for (let seq = 3; seq < 6; seq++) h.feed(dataFrame(seq, bytes(seq), false));
    assert.deepEqual(owed(h), []);
    h.feed(dataFrame(6, bytes(6), false));
    assert.deepEqual(owed(h), [{ cum: 7, sack: 0 }], 'the 4th frame owed an ACK is ACKed at once');
    h.clock.advance(10);
    assert.deepEqual(owed(h), [], 'nothing owed: no timer ACK');
    assert.equal(h.clock.pending, 0);
  });

  it('ackEvery is at most half the window: a small window is not left waiting for the timer', () => {
    const h = harness({ window: 4, ackDelayMs: 50, ackEvery: 8 });
    h.feed(dataFrame(0, bytes(0), false));
    assert.deepEqual(owed(h), [{ cum: 1, sack: 0 }]);
    h.feed(dataFrame(1, bytes(1), false));
    assert.deepEqual(owed(h), []);
    h.feed(dataFrame(2, bytes(2), false));
    assert.deepEqual(owed(h), [{ cum: 3, sack: 0 }], 'two frames owed: half of the window of 4');
    h.link.configure({ window: 1 });
    h.feed(dataFrame(3, bytes(3), false));
    assert.deepEqual(owed(h), [{ cum: 4, sack: 0 }], 'window 1: every frame');
  });

  it('a duplicate or a gap is answered at once (with its NAK)', () => {
    const h = harness({ ackDelayMs: 50, ackEvery: 16 });
    h.feed(dataFrame(0, bytes(0), false));
    h.feed(dataFrame(1, bytes(1), false));
    assert.deepEqual(owed(h), [{ cum: 1, sack: 0 }]);
    h.feed(dataFrame(1, bytes(1), false));
    assert.deepEqual(owed(h), [{ cum: 2, sack: 0 }], 'duplicate: the sender may have lost our ACK');
    h.feed(dataFrame(2, bytes(2), false));
    assert.deepEqual(owed(h), []);
    h.feed(dataFrame(4, bytes(4), false));
    const out = h.take();
    assert.deepEqual(out.map((f) => f.kind), [FrameKind.ACK, FrameKind.NAK]);
    assert.deepEqual(ackFields(out[0]!), { cum: 3, sack: 0b1 });
    assert.deepEqual(nakSeqs(out[1]!), [3]);
    h.clock.advance(100);
    assert.deepEqual(owed(h), [], 'the ACK owed went with the gap');
  });

  it('configure() turns it on and off; a RESET drops an ACK owed to the old session', () => {
    const h = harness();
    h.link.configure({ ackDelayMs: 5, ackEvery: 8 });
    h.feed(dataFrame(0, bytes(0), false));
    h.feed(dataFrame(1, bytes(1), false));
    assert.deepEqual(owed(h), [{ cum: 1, sack: 0 }]);
    h.feed(resetFrame(0x77));
    assert.deepEqual(h.take().map((f) => f.kind), [FrameKind.RESET_ACK]);
    h.clock.advance(10);
    assert.deepEqual(h.take(), [], 'no ACK for the old session');
    h.link.configure({ ackDelayMs: 0 });
    h.feed(dataFrame(0, bytes(0), false));
    h.feed(dataFrame(1, bytes(1), false));
    assert.deepEqual(owed(h), [{ cum: 1, sack: 0 }, { cum: 2, sack: 0 }]);
    assert.throws(() => h.link.configure({ ackDelayMs: 101 }), (e: FwError) => isFwError(e, 'E_CONFIG'));
    assert.throws(() => h.link.configure({ ackEvery: 0 }), (e: FwError) => isFwError(e, 'E_CONFIG'));
  });

  it('two links with a delayed-ACK receiver deliver everything over a lossy, reordering line', async () => {
    for (const seed of [1, 2, 3]) {
      const p = linkPair({ seed, ab: { latencyMs: 3, jitterMs: 4, loss: 0.05, duplicate: 0.02 }, a: { window: 16, maxPayload: 128 }, b: { ackDelayMs: 3, ackEvery: 4 } });
      await openPair(p);
      const msgs = randomMessages(new Rng(seed), 60, 1, 600);
      sendAll(p.a, msgs);
      assert.ok(p.clock.runUntil(() => p.atB.length === msgs.length, p.clock.now() + 600_000), `seed ${seed}: ${p.atB.length}/${msgs.length}`);
      assert.deepEqual(p.atB.map(hex), msgs.map(hex));
    }
  });
});

describe('link ARQ sender (§4.6, §4.7, §4.8)', () => {
  it('fragments with MORE on all but the last frame, up to the window', () => {
    const h = harness({ maxPayload: 64, window: 2 });
    assert.equal(h.link.send(new Uint8Array(150).fill(9)), true);
    let data = h.take(FrameKind.DATA);
    assert.deepEqual(data.map((f) => [f.seq, f.payload.length, isMore(f)]), [[0, 64, true], [1, 64, true]]);
    assert.equal(h.link.unacked, 2);
    assert.equal(h.link.queuedBytes, 22);
    h.feed(ackFrame(1, 0));
    data = h.take(FrameKind.DATA);
    assert.deepEqual(data.map((f) => [f.seq, f.payload.length, isMore(f)]), [[2, 22, false]]);
  });

  it('copies the message at send(): later changes by the caller do not leak onto the wire', () => {
    const h = harness({ window: 1 });
    const m = new Uint8Array(300).fill(1);
    h.link.send(m);
    m.fill(2);
    h.feed(ackFrame(1, 0));
    assert.ok(h.take(FrameKind.DATA).every((f) => f.payload.every((b) => b === 1)));
  });

  it('SACK bits free frames; the window slides past them once the base is acked', () => {
    const h = harness({ maxPayload: 64, window: 4 });
    h.link.send(new Uint8Array(64 * 6).fill(1));
    assert.equal(h.take(FrameKind.DATA).length, 4);
    h.feed(ackFrame(0, 0b111)); // 1, 2, 3 received, 0 missing
    assert.equal(h.link.unacked, 1);
    assert.equal(h.take(FrameKind.DATA).length, 0, 'the window is measured from the oldest unacked frame');
    h.feed(ackFrame(4, 0));
    assert.deepEqual(h.take(FrameKind.DATA).map((f) => f.seq), [4, 5]);
    assert.equal(h.link.unacked, 2);
  });

  it('retransmits a NAKed frame at once, but not twice within one smoothed RTT', () => {
    const h = harness({ maxPayload: 64, window: 4 });
    h.link.send(new Uint8Array(64 * 3).fill(1));
    h.clock.advance(50);
    h.feed(ackFrame(0, 0b11)); // sample: RTT 50
    assert.equal(h.link.stats.rttMs, 50);
    h.take();
    h.feed(nakFrame([0]));
    assert.deepEqual(h.take(FrameKind.DATA).map((f) => f.seq), [0]);
    h.clock.advance(30);
    h.feed(nakFrame([0, 1])); // 1 is acked already; 0 was NAK-retransmitted 30 ms ago
    assert.deepEqual(h.take(FrameKind.DATA), []);
    h.clock.advance(20);
    h.feed(nakFrame([0]));
    assert.deepEqual(h.take(FrameKind.DATA).map((f) => f.seq), [0]);
    assert.equal(h.link.stats.retransmits, 2);
    assert.equal(h.link.stats.naksReceived, 3);
  });

  it('computes RTO with Jacobson/Karels and takes no sample from retransmitted frames (Karn)', () => {
    const h = harness({ window: 1 });
    h.link.send(bytes(1));
    h.clock.advance(100);
    h.feed(ackFrame(1, 0));
    assert.equal(h.link.stats.rttMs, 100);
    assert.equal(h.link.stats.rtoMs, 100 + 4 * 50);
    h.link.send(bytes(2));
    h.clock.advance(50);
    h.feed(ackFrame(2, 0));
    // RTTVAR = 3/4 * 50 + 1/4 * |100 - 50| = 50; SRTT = 7/8 * 100 + 1/8 * 50 = 93.75
    assert.equal(h.link.stats.rttMs, 93.75);
    assert.equal(h.link.stats.rtoMs, 93.75 + 4 * 50);
    h.link.send(bytes(3));
    h.clock.advance(300); // > RTO 293.75: retransmitted
    assert.equal(h.link.stats.retransmits, 1);
    h.clock.advance(5);
    h.feed(ackFrame(3, 0));
    assert.equal(h.link.stats.rttMs, 93.75, 'no sample from a retransmitted frame');
  });

  it('scales the timeout of a frame larger than any measured by its size (§4.7): a 4 KiB frame after 1-byte samples', () => {
    const h = harness({ window: 1, maxPayload: 4096 });
    h.link.send(bytes(1));
    h.clock.advance(10);
    h.feed(ackFrame(1, 0));
    assert.equal(h.link.stats.rtoMs, 30); // 10 + 4 * 5
    h.link.send(new Uint8Array(4096).fill(1)); // ~300 times the wire size of the sampled frame
    h.clock.advance(1000);
    assert.equal(h.link.stats.retransmits, 0, 'not timed out after 30 ms: its time on the line is not known yet');
    h.clock.advance(2000);
    assert.equal(h.link.stats.retransmits, 1, 'rtoMax bounds the scaled timeout');
    h.clock.advance(10);
    h.feed(ackFrame(2, 0));
    h.link.send(bytes(3));
    h.clock.advance(61);
    assert.equal(h.link.stats.retransmits, 2, 'a small frame is not scaled: the backed-off floor 2 x 30 ms after that timeout');
  });

  it('clamps RTO to rtoMin and rtoMax', () => {
    const fast = harness({ window: 1, rtoMinMs: 20 });
    fast.link.send(bytes(1));
    fast.clock.advance(1);
    fast.feed(ackFrame(1, 0));
    assert.equal(fast.link.stats.rtoMs, 20);
    const slow = harness({ window: 1, rtoInitialMs: 3000, rtoMaxMs: 3000 });
    slow.link.send(bytes(1));
    slow.clock.advance(2000);
    slow.feed(ackFrame(1, 0));
    assert.equal(slow.link.stats.rtoMs, 3000);
  });

  it('backs off exponentially per frame up to rtoMax, with a single timer, then goes down', () => {
    const h = harness({ window: 8, maxPayload: 64, maxRetransmits: 7 });
    const errors: FwError[] = [];
    let down = 0;
    h.link.on('error', (e) => errors.push(e));
    h.link.on('down', () => down++);
    h.link.send(new Uint8Array(64 * 8).fill(1));
    assert.equal(h.clock.pending, 1, 'one timer for eight frames in flight');
    h.clock.advance(100_000);
    const times = h.out.filter((o) => o.frame.kind === FrameKind.DATA && o.frame.seq === 0).map((o) => o.at);
    // seq 0's first timeout (200) starts only seq 1's clock (§4.7: it may have been queued behind
    // seq 0); seq 1 then times out too with nothing acknowledged (400), so all frames are timed
    // from their own sends and go again. The floor doubles per timer pass: 400, 800, 1600, 3000.
    assert.deepEqual(times, [0, 200, 600, 1400, 4400, 7400, 10400, 13400]);
    const seq1 = h.out.filter((o) => o.frame.kind === FrameKind.DATA && o.frame.seq === 1).map((o) => o.at);
    assert.deepEqual(seq1.slice(0, 3), [0, 400, 800]);
    assert.equal(down, 1);
    assert.equal(errors.length, 1);
    assert.ok(isFwError(errors[0], 'E_LINK_TIMEOUT'));
    assert.deepEqual(errors[0].details, { seq: 0, retransmits: 7 });
    assert.equal(h.link.state, 'down');
    assert.equal(h.clock.pending, 0);
    assert.equal(h.link.unacked, 8);
  });

  it('a NAK proves the peer alive: NAK retransmissions do not count towards the limit', () => {
    const h = harness({ window: 1, maxRetransmits: 2 });
    let down = 0;
    h.link.on('down', () => down++);
    h.link.send(bytes(1));
    h.clock.advance(200); // timeout: resent
    for (let i = 0; i < 10; i++) {
      h.clock.advance(250); // each NAK comes more than an RTO after the last copy was sent (§4.6)
      h.feed(nakFrame([0]));
    }
    assert.equal(down, 0);
    assert.equal(h.link.state, 'up');
    assert.equal(h.link.stats.retransmits, 1 + 10, 'one timeout, then ten NAKs');
  });

  it('ignores stale and bogus ACKs without losing frames', () => {
    const h = harness({ window: 4, maxPayload: 64 });
    h.link.send(new Uint8Array(64 * 4).fill(1));
    h.feed(ackFrame(2, 0));
    h.feed(ackFrame(1, 0)); // stale: older than the base
    h.feed(ackFrame(300, 0xffff_ffff)); // beyond anything sent
    assert.equal(h.link.unacked, 2);
    assert.equal(h.link.stats.ignored, 2);
    h.feed(ackFrame(4, 0));
    assert.equal(h.link.unacked, 0);
  });

  it('send() reports backpressure above highWaterBytes; drain below half; idle when all is acked', () => {
    const h = harness({ window: 1, maxPayload: 100, highWaterBytes: 1000 });
    const events: string[] = [];
    h.link.on('drain', () => events.push('drain'));
    h.link.on('idle', () => events.push('idle'));
    assert.equal(h.link.send(new Uint8Array(900)), true);
    assert.equal(h.link.send(new Uint8Array(900)), false);
    assert.equal(h.link.queuedBytes, 1700);
    let seq = 0;
    while (h.link.unacked > 0) {
      h.feed(ackFrame(++seq, 0));
      if (h.link.queuedBytes >= 500) assert.deepEqual(events, []);
    }
    assert.deepEqual(events, ['drain', 'idle']);
    assert.equal(seq, 18);
  });

  it('refuses empty messages and bad options', () => {
    const h = harness();
    assert.throws(() => h.link.send(new Uint8Array(0)), (e) => isFwError(e, 'E_MESSAGE_INVALID'));
    const clock = new FakeClock();
    const make = (o: LinkSettings) => () => new ArqLink({ ...o, timers: clock, output: () => undefined });
    for (const bad of [{ window: 0 }, { window: 65 }, { maxPayload: 63 }, { maxPayload: 16_385 }, { acceptPayload: 10 }, { rtoMinMs: 500, rtoInitialMs: 200 }, { maxRetransmits: -1 }]) {
      assert.throws(make(bad), (e) => isFwError(e, 'E_CONFIG'), JSON.stringify(bad));
    }
    assert.throws(() => h.link.configure({ window: 100 }), (e) => isFwError(e, 'E_CONFIG'));
  });
});

describe('link ARQ RESET handshake and lifecycle (§4.1)', () => {
  it('RESET drops all state both ways, answers RESET_ACK and emits reset; a repeated nonce only gets RESET_ACK', () => {
    const h = harness({ maxPayload: 64, window: 2 });
    const resets: number[] = [];
    h.link.on('reset', (n) => resets.push(n));
    h.link.send(new Uint8Array(500));
    h.feed(dataFrame(0, bytes(1), true)); // half a message
    h.feed(dataFrame(2, bytes(3), false)); // buffered beyond a gap
    h.take();
    h.feed(resetFrame(7));
    assert.deepEqual(h.take().map((f) => [f.kind, frameNonce(f)]), [[FrameKind.RESET_ACK, 7]]);
    assert.deepEqual(resets, [7]);
    assert.equal(h.link.unacked, 0);
    assert.equal(h.link.queuedBytes, 0);
    assert.equal(h.clock.pending, 0);
    h.feed(dataFrame(0, bytes(9), false));
    assert.deepEqual(h.messages.map(hex), ['09'], 'the half message was dropped, seq restarted at 0');
    h.link.send(bytes(5));
    assert.deepEqual(h.take(FrameKind.DATA).map((f) => f.seq), [0]);
    h.feed(resetFrame(7));
    assert.deepEqual(h.take().map((f) => f.kind), [FrameKind.RESET_ACK]);
    assert.deepEqual(resets, [7], 'a retransmitted RESET does not reset again');
    assert.equal(h.link.unacked, 1);
    h.feed(resetFrame(8));
    assert.deepEqual(resets, [7, 8]);
    assert.equal(h.link.unacked, 0);
  });

  it('open() retransmits RESET with backoff, ignores other traffic and foreign nonces, opens on its RESET_ACK', async () => {
    const h = harness({ nonce: () => 0xabcd });
    let opened = 0;
    h.link.on('open', () => opened++);
    const outcome = h.link.open().then(() => 'open', (e: unknown) => e);
    assert.equal(h.link.state, 'opening');
    h.link.send(bytes(1, 1)); // queued while opening
    h.clock.advance(250);
    assert.deepEqual(h.out.map((o) => [o.at, o.frame.kind]), [[0, FrameKind.RESET], [200, FrameKind.RESET]]);
    h.take();
    h.feed(dataFrame(0, bytes(1), false), ackFrame(3, 0), resetAckFrame(0xabce));
    assert.deepEqual(h.messages, []);
    assert.deepEqual(h.take(), []);
    assert.equal(h.link.stats.ignored, 3);
    h.feed(resetAckFrame(0xabcd));
    assert.equal(await outcome, 'open');
    assert.equal(opened, 1);
    assert.equal(h.link.state, 'up');
    assert.deepEqual(h.take(FrameKind.DATA).map((f) => [f.seq, hex(f.payload)]), [[0, '0101']]);
    assert.equal(h.link.stats.rttMs, undefined, 'no RTT sample from a retransmitted RESET');
  });

  it('takes the first RTT sample from an unretransmitted RESET', async () => {
    const h = harness({ nonce: () => 5 });
    const opened = h.link.open();
    h.clock.advance(30);
    h.feed(resetAckFrame(5));
    await opened;
    assert.equal(h.link.stats.rttMs, 30);
  });

  it('close() clears timers, rejects a pending open, ignores input and refuses sends', async () => {
    const h = harness();
    const outcome = h.link.open().then(() => undefined, (e: unknown) => e);
    h.link.close();
    assert.ok(isFwError(await outcome, 'E_LINK_CLOSED'));
    assert.equal(h.clock.pending, 0);
    h.take();
    h.feed(dataFrame(0, bytes(1), false));
    assert.deepEqual(h.take(), []);
    assert.deepEqual(h.messages, []);
    assert.throws(() => h.link.send(bytes(1)), (e) => isFwError(e, 'E_LINK_CLOSED'));
    await assert.rejects(h.link.open(), (e) => isFwError(e, 'E_LINK_CLOSED'));
  });

  it('close() while frames are in flight leaves no timer behind', () => {
    const h = harness();
    h.link.send(new Uint8Array(2000));
    assert.equal(h.clock.pending, 1);
    h.link.close();
    assert.equal(h.clock.pending, 0);
  });

  it('sequence numbers wrap at 65536 without loss or duplication', async function () {
    this.timeout(20_000); // about 70,000 frames each way
    const p = linkPair({ ab: { latencyMs: 1, loss: 0.02 }, seed: 21, a: { window: 64, maxPayload: 64 } });
    await openPair(p);
    const msgs = randomMessages(new Rng(21), 1100, 64 * 60, 64 * 64);
    sendAll(p.a, msgs);
    assert.ok(p.clock.runUntil(() => p.atB.length >= msgs.length, p.clock.now() + 60 * 60_000));
    assert.ok(p.a.stats.framesOut > 66_000, 'the run must pass the wrap');
    assert.equal(p.atB.length, msgs.length);
    assert.ok(p.atB.every((m, i) => hex(m) === hex(msgs[i]!)));
  });
});
