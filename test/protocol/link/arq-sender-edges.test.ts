import assert from 'node:assert/strict';
import { isFwError, type FwError } from '../../../protocol/errors.ts';
import { FrameKind, ackFrame, dataFrame, nakFrame, resetAckFrame, resetFrame } from '../../../protocol/link/index.ts';
import { harness } from './helpers.ts';

// docs/protocol.md §4.6, §4.8, §4.9: the sending direction at its edges — which ACKs and NAKs
// count, the events the application sees, and the handshake's limit.

const bytes = (...b: number[]): Uint8Array => Uint8Array.from(b);

describe('link ARQ sender: ACK and NAK edges (§4.6)', () => {
  it('an ACK of exactly sndNext acknowledges everything; one past it is stale', () => {
    const h = harness({ window: 4, maxPayload: 64 });
    h.link.send(new Uint8Array(64 * 3).fill(1));
    h.feed(ackFrame(4, 0));
    assert.equal(h.link.unacked, 3);
    assert.equal(h.link.stats.ignored, 1);
    h.feed(ackFrame(3, 0));
    assert.equal(h.link.unacked, 0);
    assert.equal(h.link.stats.framesAcked, 3);
    assert.equal(h.link.stats.ignored, 1);
  });

  it('SACK bits acknowledge only frames in flight; the cumulative part of a stale ACK is ignored but its bits count', () => {
    const h = harness({ window: 8, maxPayload: 64 });
    h.link.send(new Uint8Array(64 * 4).fill(1)); // seqs 0..3
    h.feed(ackFrame(1, 0b1111_1111)); // 0 by cum; 2, 3 by bits; bits for 4..9 name nothing in flight
    assert.equal(h.link.unacked, 1);
    assert.equal(h.link.stats.framesAcked, 3);
    h.feed(ackFrame(0, 0b1)); // stale cum 0 (< sndBase 1); its bit 0 names seq 1
    assert.equal(h.link.stats.ignored, 1);
    assert.equal(h.link.unacked, 0);
    assert.equal(h.link.stats.framesAcked, 4);
  });

  it('the window slides over frames acknowledged by bits once the base is acknowledged', () => {
    const h = harness({ window: 2, maxPayload: 64 });
    h.link.send(new Uint8Array(64 * 5).fill(1));
    assert.deepEqual(h.take(FrameKind.DATA).map((f) => f.seq), [0, 1]);
    h.feed(ackFrame(0, 0b1)); // seq 1 by its bit
    assert.deepEqual(h.take(FrameKind.DATA), [], 'seq 0 still holds the window');
    h.feed(ackFrame(1, 0));
    assert.deepEqual(h.take(FrameKind.DATA).map((f) => f.seq), [2, 3], 'the base moved past 1 too');
  });

  it('a NAK for a seq not in flight, or already acknowledged, resends nothing', () => {
    const h = harness({ window: 4, maxPayload: 64 });
    h.link.send(new Uint8Array(64 * 2).fill(1)); // seqs 0, 1
    h.feed(ackFrame(0, 0b1)); // seq 1 acknowledged by its bit
    h.take();
    h.feed(nakFrame([1, 2, 0xffff]));
    assert.deepEqual(h.take(FrameKind.DATA), []);
    assert.equal(h.link.stats.retransmits, 0);
    h.feed(nakFrame([0]));
    assert.deepEqual(h.take(FrameKind.DATA).map((f) => f.seq), [0]);
    assert.equal(h.link.stats.naksReceived, 2);
  });

  it('ACKs and NAKs are ignored while opening and once the sending direction is down', async () => {
    const h = harness({ window: 1, maxRetransmits: 0, nonce: () => 1 });
    h.link.send(bytes(1));
    h.clock.advance(200); // timeout with maxRetransmits 0: down
    assert.equal(h.link.state, 'down');
    h.take();
    h.feed(ackFrame(1, 0), nakFrame([0]));
    assert.equal(h.link.unacked, 1, 'the ACK of a dead direction changes nothing');
    assert.deepEqual(h.take(), []);
    assert.equal(h.link.stats.ignored, 2);
    assert.equal(h.link.stats.naksReceived, 1);
    const opened = h.link.open();
    h.feed(ackFrame(0, 0), nakFrame([0]));
    assert.equal(h.link.stats.ignored, 4);
    h.feed(resetAckFrame(1));
    await opened;
    assert.equal(h.link.unacked, 0, 'open() dropped the old data');
  });

  it('counts what it sends', () => {
    const h = harness({ window: 8, maxPayload: 64 });
    h.link.send(new Uint8Array(100).fill(1));
    h.link.send(bytes(2));
    const s = h.link.stats;
    assert.equal(s.messagesOut, 2);
    assert.equal(s.dataBytesOut, 101);
    assert.equal(s.framesOut, 3);
    assert.equal(s.wireBytesOut, h.out.reduce((n, o) => n + o.frame.payload.length + 4 + 4 + 2, 0), 'COBS adds one byte below 254, the delimiter one');
  });
});

describe('link ARQ sender: events (§4.9)', () => {
  it('idle once everything is acknowledged, once per busy period', () => {
    const h = harness({ window: 2, maxPayload: 64 });
    let idle = 0;
    h.link.on('idle', () => idle++);
    h.link.send(new Uint8Array(64 * 3).fill(1));
    h.feed(ackFrame(2, 0));
    assert.equal(idle, 0, 'one frame left to send');
    h.feed(ackFrame(3, 0));
    assert.equal(idle, 1);
    h.feed(ackFrame(3, 0));
    assert.equal(idle, 1, 'a duplicate ACK is no new idle');
    h.link.send(bytes(1));
    h.feed(ackFrame(4, 0));
    assert.equal(idle, 2);
  });

  it('a writer waiting for drain gets it when a peer RESET drops the queue, after the reset event', () => {
    const h = harness({ window: 1, maxPayload: 64, highWaterBytes: 100 });
    const events: string[] = [];
    h.link.on('reset', () => events.push('reset'));
    h.link.on('drain', () => events.push('drain'));
    assert.equal(h.link.send(new Uint8Array(300)), false);
    h.feed(resetFrame(5));
    assert.deepEqual(events, ['reset', 'drain']);
    assert.equal(h.link.queuedBytes, 0);
    h.feed(resetFrame(6));
    assert.deepEqual(events, ['reset', 'drain', 'reset'], 'no writer waits: no drain');
  });

  it('open() with a writer waiting for drain gives it drain', () => {
    const h = harness({ window: 1, maxPayload: 64, highWaterBytes: 100 });
    let drains = 0;
    h.link.on('drain', () => drains++);
    h.link.send(new Uint8Array(300));
    void h.link.open();
    assert.equal(drains, 1);
    assert.equal(h.link.queuedBytes, 0);
  });

  it('drain comes once the queue is below half the high-water mark, not at it', () => {
    const h = harness({ window: 1, maxPayload: 64, highWaterBytes: 256 });
    let drains = 0;
    h.link.on('drain', () => drains++);
    assert.equal(h.link.send(new Uint8Array(64 + 256 + 64)), false); // 320 queued
    h.feed(ackFrame(1, 0)); // 256 queued
    h.feed(ackFrame(2, 0)); // 192
    h.feed(ackFrame(3, 0)); // 128: half, not below
    assert.equal(drains, 0);
    h.feed(ackFrame(4, 0)); // 64
    assert.equal(drains, 1);
  });

  it('without an error listener the link still goes down', () => {
    const h = harness({ window: 1, maxRetransmits: 1 });
    let down = 0;
    h.link.on('down', () => down++);
    h.link.send(bytes(1));
    h.clock.advance(10_000);
    assert.equal(down, 1);
    assert.equal(h.link.state, 'down');
  });

  it('a message queued while down is not sent, and a RESET drops it with the old session', () => {
    const h = harness({ window: 1, maxRetransmits: 0 });
    h.link.send(bytes(1));
    h.clock.advance(200);
    assert.equal(h.link.state, 'down');
    h.take();
    h.link.send(bytes(2));
    assert.deepEqual(h.take(), [], 'nothing is sent while down');
    assert.equal(h.link.queuedBytes, 1);
    h.feed(resetFrame(3));
    assert.equal(h.link.state, 'up');
    assert.equal(h.link.queuedBytes, 0, 'a RESET drops it with the old session');
    h.link.send(bytes(4));
    assert.deepEqual(h.take(FrameKind.DATA).map((f) => [f.seq, f.payload[0]]), [[0, 4]]);
  });
});

describe('link ARQ handshake limit (§4.1)', () => {
  it('maxRetransmits 0: one RESET, the open fails after rtoInitial, naming the attempts', async () => {
    const h = harness({ maxRetransmits: 0, rtoInitialMs: 300, nonce: () => 8 });
    let down = 0;
    h.link.on('down', () => down++);
    const outcome = h.link.open().then(() => undefined, (e: unknown) => e as FwError);
    h.clock.advance(299);
    assert.equal(h.link.state, 'opening');
    h.clock.advance(1);
    const err = await outcome;
    assert.ok(isFwError(err, 'E_LINK_TIMEOUT'));
    assert.equal(err.message, 'no RESET_ACK from the link peer');
    assert.deepEqual(err.details, { attempts: 1 });
    assert.deepEqual(h.out.map((o) => [o.at, o.frame.kind]), [[0, FrameKind.RESET]]);
    assert.equal(down, 1);
    assert.equal(h.link.state, 'down');
    assert.equal(h.clock.pending, 0);
  });

  it('RESET retransmissions back off from rtoInitial up to rtoMax', () => {
    const h = harness({ maxRetransmits: 5, rtoInitialMs: 100, rtoMaxMs: 500 });
    void h.link.open().catch(() => undefined);
    h.clock.advance(10_000);
    assert.deepEqual(h.out.map((o) => o.at), [0, 100, 300, 700, 1200, 1700]);
  });

  it('a RESET from the peer while opening resets the receive side but keeps waiting for our RESET_ACK', async () => {
    const h = harness({ nonce: () => 4 });
    const resets: number[] = [];
    h.link.on('reset', (n) => resets.push(n));
    const opened = h.link.open();
    h.take();
    h.feed(resetFrame(77));
    assert.deepEqual(h.take().map((f) => f.kind), [FrameKind.RESET_ACK]);
    assert.deepEqual(resets, [77]);
    assert.equal(h.link.state, 'opening');
    h.clock.advance(200);
    assert.deepEqual(h.take().map((f) => f.kind), [FrameKind.RESET], 'still retransmitting its RESET');
    h.feed(resetAckFrame(4));
    await opened;
    assert.equal(h.link.state, 'up');
    h.feed(dataFrame(0, bytes(1), false));
    assert.equal(h.messages.length, 1);
  });

  it('a peer RESET revives a direction that was down', () => {
    const h = harness({ window: 1, maxRetransmits: 0 });
    h.link.send(bytes(1));
    h.clock.advance(200);
    assert.equal(h.link.state, 'down');
    h.feed(resetFrame(1));
    assert.equal(h.link.state, 'up');
    assert.equal(h.link.unacked, 0);
    assert.equal(h.clock.pending, 0);
  });
});
