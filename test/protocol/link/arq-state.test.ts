import assert from 'node:assert/strict';
import { FrameKind, ackFields, ackFrame, dataFrame, frameNonce, nakFrame, nakSeqs, resetAckFrame, resetFrame } from '../../../protocol/link/index.ts';
import { harness, type Harness } from './helpers.ts';

// docs/protocol.md §4.1-§4.9 frame by frame: state a RESET must clear, the delayed ACK's bounds,
// which ACKs count as progress, and which reports and NAKs a resend ignores.

const bytes = (...b: number[]): Uint8Array => Uint8Array.from(b);
const sends = (h: Harness, seq: number, from = 0): number[] =>
  h.out.filter((o) => o.frame.kind === FrameKind.DATA && o.frame.seq === seq).map((o) => o.at - from);

describe('link ARQ delayed ACK bounds (§4.4)', () => {
  it('DATA arriving exactly ackDelayMs after the previous ACK is ACKed at once', () => {
    const h = harness({ ackDelayMs: 5, ackEvery: 8 });
    h.feed(dataFrame(0, bytes(0), false));
    h.take();
    h.clock.advance(5);
    h.feed(dataFrame(1, bytes(1), false));
    assert.deepEqual(h.take(FrameKind.ACK).map(ackFields), [{ cum: 2, sack: 0 }]);
    assert.equal(h.link.stats.acksSent, 2);
  });

  it('an ACK that goes at once cancels the delayed-ACK timer', () => {
    const h = harness({ ackDelayMs: 50, ackEvery: 8 });
    h.feed(dataFrame(0, bytes(0), false)); // at once
    h.feed(dataFrame(1, bytes(1), false)); // held: timer
    assert.equal(h.clock.pending, 1);
    h.feed(dataFrame(3, bytes(3), false)); // a gap: ACK and NAK at once
    assert.equal(h.clock.pending, 0, 'no timer left behind');
    assert.equal(h.link.stats.acksSent, 2);
  });

  it('DATA held in two chunks leaves one delayed-ACK timer, cancelled by the ACK that goes at once', () => {
    const h = harness({ ackDelayMs: 50, ackEvery: 8 });
    h.feed(dataFrame(0, bytes(0), false)); // at once
    h.feed(dataFrame(1, bytes(1), false)); // held
    h.feed(dataFrame(2, bytes(2), false)); // held: the same timer
    assert.equal(h.clock.pending, 1);
    h.feed(dataFrame(4, bytes(4), false)); // a gap: at once
    assert.equal(h.clock.pending, 0);
  });

  it('a frame already buffered arriving again is a duplicate: ACKed at once, without a NAK', () => {
    const h = harness({ ackDelayMs: 50, ackEvery: 8 });
    h.feed(dataFrame(2, bytes(2), false));
    assert.deepEqual(h.take().map((f) => f.kind), [FrameKind.ACK, FrameKind.NAK]);
    h.clock.advance(1);
    h.feed(dataFrame(2, bytes(2), false)); // within ackDelayMs of the last ACK: not held all the same
    assert.deepEqual(h.take().map((f) => f.kind), [FrameKind.ACK]);
    h.clock.advance(300); // past the NAK interval: a NAK would be allowed
    h.feed(dataFrame(2, bytes(2), false));
    assert.deepEqual(h.take().map((f) => f.kind), [FrameKind.ACK]);
    assert.equal(h.link.stats.duplicates, 2);
  });

  it('after a RESET, DATA is ACKed at once: no ACK was sent in this session yet', () => {
    const h = harness({ ackDelayMs: 50, ackEvery: 8 });
    h.feed(dataFrame(0, bytes(0), false));
    h.take();
    h.feed(resetFrame(4));
    h.take();
    h.feed(dataFrame(0, bytes(9), false));
    assert.deepEqual(h.take().map(ackFields), [{ cum: 1, sack: 0 }]);
  });

  it('after a RESET, a gap is NAKed in full: NAKs of the old session do not hold it back', () => {
    const h = harness();
    h.feed(resetFrame(4));
    h.take();
    h.feed(dataFrame(2, bytes(2), false));
    assert.deepEqual(h.take(FrameKind.NAK).map(nakSeqs), [[0, 1]]);
  });
});

describe('link ARQ sender state (§4.6, §4.9)', () => {
  it('drain is only for a writer that was told false', () => {
    const h = harness({ window: 1, maxPayload: 100, highWaterBytes: 1000 });
    let drains = 0;
    h.link.on('drain', () => drains++);
    assert.equal(h.link.send(new Uint8Array(900)), true);
    for (let seq = 1; h.link.unacked > 0; seq++) h.feed(ackFrame(seq, 0));
    assert.equal(drains, 0);
  });

  it('an ACK beyond sndNext is stale once the window has moved too', () => {
    const h = harness({ window: 2, maxPayload: 64 });
    h.link.send(new Uint8Array(64 * 4).fill(1));
    h.feed(ackFrame(2, 0)); // base 2, seqs 2 and 3 in flight
    h.feed(ackFrame(5, 0));
    assert.equal(h.link.stats.ignored, 1);
    assert.equal(h.link.unacked, 2);
    h.feed(ackFrame(4, 0));
    assert.equal(h.link.unacked, 0);
  });

  it('SACK bit 31 is the last: seq cum + 33 is not acknowledged by bit 0', () => {
    const h = harness({ window: 40, maxPayload: 64 });
    h.link.send(new Uint8Array(64 * 40).fill(1));
    h.feed(ackFrame(0, 0b1));
    assert.equal(h.link.unacked, 39, 'only seq 1');
    h.feed(ackFrame(0, 0x8000_0000));
    assert.equal(h.link.unacked, 38, 'and seq 32');
  });

  it('after a RESET an ACK of nothing is no idle: nothing was sent in the new session', () => {
    const h = harness({ window: 1 });
    let idles = 0;
    h.link.on('idle', () => idles++);
    h.link.send(bytes(1));
    h.feed(resetFrame(3));
    h.feed(ackFrame(0, 0));
    assert.equal(idles, 0);
  });

  it('a SACKed frame is not resent when its deadline passes', () => {
    const h = harness({ window: 2, maxPayload: 64 });
    h.link.send(new Uint8Array(128).fill(1)); // seqs 0, 1
    h.clock.advance(250); // seq 0 resent at 200; seq 1's clock from 200 (deadline 400)
    h.feed(ackFrame(0, 0b1)); // seq 1 acknowledged
    h.clock.advance(1000);
    assert.deepEqual(sends(h, 1), [0]);
    assert.ok(sends(h, 0).length >= 3, 'seq 0 keeps being resent');
  });
});

describe('link ARQ fresh link', () => {
  it('an ACK before anything was sent is no idle', () => {
    const h = harness();
    let idles = 0;
    h.link.on('idle', () => idles++);
    h.feed(ackFrame(0, 0));
    assert.equal(idles, 0);
  });

  it('DATA longer than acceptPayload is dropped by the link\'s parser as tooLong', () => {
    const h = harness({ acceptPayload: 64 });
    h.feed(dataFrame(0, new Uint8Array(65).fill(1), false));
    assert.equal(h.link.stats.parser.tooLong, 1);
    assert.deepEqual(h.messages, []);
    h.feed(dataFrame(0, new Uint8Array(64).fill(1), false));
    assert.equal(h.messages.length, 1);
  });

  it('draws its RESET nonces at random by default (§4.1)', async () => {
    const h = harness({ nonce: undefined });
    const nonces = new Set<number>();
    for (let i = 0; i < 20; i++) {
      void h.link.open();
      const reset = h.take(FrameKind.RESET);
      assert.equal(reset.length, 1);
      const n = frameNonce(reset[0]!);
      assert.ok(Number.isInteger(n) && n >= 0 && n <= 0xffff_ffff);
      nonces.add(n);
      h.feed(resetAckFrame(n));
    }
    assert.equal(nonces.size, 20, 'twenty opens, twenty different u32 nonces');
  });

  it('refuses an empty message, saying so', () => {
    const h = harness();
    assert.throws(() => h.link.send(new Uint8Array(0)), (e: Error) => e.message === 'an empty message cannot be sent on the link');
  });
});

describe('link ARQ progress, samples and reports (§4.7)', () => {
  it('an ACK that acknowledges nothing (a keepalive) is no progress: loss of everything still applies', () => {
    const h = harness({ window: 4, maxPayload: 64 });
    h.link.send(new Uint8Array(64 * 4).fill(1));
    h.clock.advance(300);
    h.feed(ackFrame(0, 0)); // between seq 0's resend (200) and seq 1's timeout (400)
    h.clock.advance(200);
    for (const seq of [1, 2, 3]) assert.deepEqual(sends(h, seq), [0, 400], `seq ${seq}`);
  });

  it('the RTT sample of a frame whose clock had not started counts from its write, if later than the ACK ahead', () => {
    const h = harness({ window: 3, maxPayload: 64 });
    h.link.send(new Uint8Array(128).fill(1)); // seqs 0, 1 at 0
    h.clock.advance(5);
    h.link.send(new Uint8Array(64).fill(2)); // seq 2 at 5, behind seq 1
    h.clock.advance(5);
    h.feed(ackFrame(1, 0)); // sample 10 (RTO 30); seq 1 left by 0
    h.clock.advance(15);
    h.feed(ackFrame(3, 0)); // at 25: seq 2's clock never started, it counts from its write at 5
    assert.equal(h.link.stats.rttMs, (7 / 8) * 10 + (1 / 8) * 20);
  });

  it('the size scale is against the largest sampled frame, not the latest', async () => {
    const h = harness({ window: 1, maxPayload: 1024, nonce: () => 3 });
    const opened = h.link.open();
    h.clock.advance(10);
    h.feed(resetAckFrame(3));
    await opened;
    h.link.send(new Uint8Array(1000).fill(1)); // 1013 bytes on the wire
    h.clock.advance(10);
    h.feed(ackFrame(1, 0)); // sampled: 1013 is now the largest
    h.link.send(Uint8Array.of(1)); // 11 bytes
    h.clock.advance(10);
    h.feed(ackFrame(2, 0)); // a sample from a smaller frame
    const rto = h.link.stats.rtoMs;
    const t0 = h.clock.now();
    h.link.send(new Uint8Array(1000).fill(2));
    h.clock.advance(3000);
    assert.equal(sends(h, 2, t0)[1], rto, 'not scaled: a frame of the largest sampled size');
  });

  it('the RTT of the handshake counts from when the RESET went out', async () => {
    const h = harness({ nonce: () => 6 });
    h.clock.advance(100);
    const opened = h.link.open();
    h.clock.advance(10);
    h.feed(resetAckFrame(6));
    await opened;
    assert.equal(h.link.stats.rttMs, 10);
  });

  it('a NAK for a frame just resent on timeout is ignored for one RTT estimate from its resend', () => {
    const h = harness({ window: 1 });
    h.link.send(bytes(1));
    h.clock.advance(210); // resent at 200
    h.feed(nakFrame([0]));
    assert.deepEqual(sends(h, 0), [0, 200]);
    h.clock.advance(190); // 400: 200 after the resend (the RTO, no sample yet)
    h.feed(nakFrame([0]));
    assert.deepEqual(sends(h, 0).slice(0, 3), [0, 200, 400]);
  });

  it('a late write report of an earlier copy does not start the clock of the resend', () => {
    const reports: (() => void)[] = [];
    const h = harness({ window: 1 }, (_wire, written) => { reports.push(written); });
    h.link.send(bytes(1));
    reports[0]!(); // the first copy written at 0
    h.clock.advance(250); // resent at 200 (not reported written)
    reports[0]!(); // the first copy's report again, late
    h.clock.advance(750);
    assert.deepEqual(sends(h, 0), [0, 200], 'the resend is still unwritten: waited for, not resent');
  });

  it('after a RESET the line order starts afresh: the second frame waits for the first', () => {
    const h = harness({ window: 4, maxPayload: 64 });
    h.link.send(new Uint8Array(64 * 2).fill(1));
    h.clock.advance(10);
    h.feed(ackFrame(2, 0));
    h.feed(resetFrame(9));
    h.out.length = 0;
    const t0 = h.clock.now();
    h.link.send(new Uint8Array(64 * 4).fill(2));
    h.clock.advance(1000);
    assert.deepEqual(sends(h, 0, t0), [0, 200, 600]);
    for (const seq of [1, 2, 3]) assert.deepEqual(sends(h, seq, t0), [0, 400, 800], `seq ${seq}`);
  });
});
