import assert from 'node:assert/strict';
import { isFwError, type FwError } from '../../../protocol/errors.ts';
import { FrameKind, ackFrame, dataFrame, encodeFrame, nakFrame, resetAckFrame, resetFrame } from '../../../protocol/link/index.ts';
import { harness, type Harness } from './helpers.ts';

// docs/protocol.md §4.7, §4.8 frame by frame on a fake clock: when each frame's retransmit clock
// starts (line order, the transport's write report, the least RTT), the size scale, the line
// rate, and the limit for frames the transport never writes.

/** When each copy of DATA seq went out. */
const sends = (h: Harness, seq: number): number[] => h.out.filter((o) => o.frame.kind === FrameKind.DATA && o.frame.seq === seq).map((o) => o.at);

/** The wire size of a DATA frame of n payload bytes (n + 8 < 254: one COBS code byte, and the delimiter). */
const wireOf = (n: number): number => encodeFrame(dataFrame(0, new Uint8Array(n).fill(1), false)).length;

describe('link ARQ retransmit clock (§4.7)', () => {
  it('a frame queued behind another starts its clock when the ACK of the one ahead comes, less the least RTT', () => {
    const h = harness({ window: 2, maxPayload: 64 });
    h.link.send(new Uint8Array(128).fill(1)); // seqs 0 and 1 at 0
    h.clock.advance(50);
    h.feed(ackFrame(1, 0)); // sample 50: SRTT 50, RTTVAR 25, least RTT 50
    assert.equal(h.link.stats.rttMs, 50);
    assert.equal(h.link.stats.rtoMs, 50 + 4 * 25);
    h.clock.advance(1000);
    // seq 1 left the sender by 50 - 50 = 0; then 150, the floor 300, 600
    assert.deepEqual(sends(h, 1), [0, 150, 450, 1050]);
  });

  it('an ACK of a frame sent twice releases only the frame sent right after its latest copy', () => {
    const h = harness({ window: 3, maxPayload: 64 });
    h.link.send(new Uint8Array(192).fill(1)); // seqs 0, 1, 2 at 0
    h.clock.advance(250); // seq 0 timed out at 200, which started seq 1's clock
    h.feed(ackFrame(1, 0)); // acknowledges seq 0, sent twice: no sample, and seq 2 still waits behind seq 1
    assert.equal(h.link.stats.rttMs, undefined, 'Karn');
    h.clock.advance(3000);
    assert.deepEqual(sends(h, 0), [0, 200]);
    assert.deepEqual(sends(h, 1), [0, 400, 800, 1600, 3200]);
    assert.deepEqual(sends(h, 2), [0, 800, 1600, 3200], 'its clock started when seq 1 was resent at 400');
  });

  it('that ACK starts the clock of the frame handed over right after the acknowledged copy', () => {
    const h = harness({ window: 4, maxPayload: 64 });
    h.link.send(new Uint8Array(192).fill(1)); // seqs 0, 1, 2 at 0
    h.clock.advance(210); // seq 0 resent at 200, behind seq 2
    h.link.send(new Uint8Array(10).fill(2)); // seq 3 at 210, behind that copy
    h.clock.advance(40);
    h.feed(ackFrame(1, 0)); // the copy of seq 0 has left the line: seq 3's clock starts at 250
    h.clock.advance(500);
    assert.deepEqual(sends(h, 3), [210, 250 + 400], 'timed out after the backed-off floor (2 x 200) from 250');
  });

  it('with write reports, the clock starts when the transport has written the frame', () => {
    let h!: Harness;
    h = harness({ window: 1, maxPayload: 64 }, (_wire, written) => { h.clock.setTimeout(written, 100); });
    h.link.send(new Uint8Array(10).fill(1));
    h.clock.advance(2000);
    // written at 100: timeout at 300; the copy written at 400 times out 2 x 200 later; then 4 x 200
    assert.deepEqual(sends(h, 0), [0, 300, 800, 1700]);
  });

  it('a frame queued behind another starts at the later of its write report and the ACK of the one ahead less the least RTT', () => {
    for (const [writeAt, timeoutAt] of [[130, 130 + 150], [30, 100 + 150]]) {
      const delays = [100, writeAt];
      let h!: Harness;
      h = harness({ window: 2, maxPayload: 64 }, (_wire, written) => { h.clock.setTimeout(written, delays.shift() ?? 100); });
      h.link.send(new Uint8Array(128).fill(1)); // seq 0 written at 100, seq 1 at writeAt
      h.clock.advance(150);
      h.feed(ackFrame(1, 0)); // sample 150 - 100: RTO 150, least RTT 50: seq 0 left by 100
      assert.equal(h.link.stats.rtoMs, 150);
      h.clock.advance(1000);
      assert.deepEqual(sends(h, 1).slice(0, 2), [0, timeoutAt], `written at ${writeAt}`);
    }
  });

  it('a write report does not start the clock of a frame whose predecessor is still on the line', () => {
    const delays = [100, 30];
    let h!: Harness;
    h = harness({ window: 2, maxPayload: 64 }, (_wire, written) => { h.clock.setTimeout(written, delays.shift() ?? 100); });
    h.link.send(new Uint8Array(128).fill(1)); // seq 0 written at 100 (timed out at 300), seq 1 at 30
    h.clock.advance(290);
    assert.deepEqual(sends(h, 1), [0], 'not timed from its write at 30');
  });

  it('a late write report of an acknowledged, resent or dead frame changes nothing', () => {
    const reports: (() => void)[] = [];
    const h = harness({ window: 2, maxPayload: 64, maxRetransmits: 1 }, (_wire, written) => { reports.push(written); });
    h.link.send(new Uint8Array(128).fill(1));
    reports[0]!(); // seq 0 written at 0
    h.clock.advance(10);
    h.feed(ackFrame(1, 0));
    reports[0]!(); // again, after its ACK
    assert.equal(h.clock.pending, 1, 'only seq 1 has a clock');
    h.clock.advance(5000);
    assert.equal(h.link.state, 'down', 'seq 1, never reported written, went down after its waits');
    const before = h.clock.pending;
    reports[1]!();
    assert.equal(h.clock.pending, before, 'a report after the link went down starts no clock');
  });

  it('a frame the transport never writes is not resent; it ends the link after maxRetransmits + 1 waits of rtoMax', () => {
    let n = 0;
    const h = harness({ window: 2, maxPayload: 64, maxRetransmits: 2 }, (_wire, written) => { if (n++ === 0) written(); });
    const errors: FwError[] = [];
    h.link.on('error', (e) => errors.push(e));
    let downAt = -1;
    h.link.on('down', () => { downAt = h.clock.now(); });
    h.link.send(new Uint8Array(128).fill(1));
    h.clock.advance(50);
    h.feed(ackFrame(1, 0)); // RTO 150; seq 1's clock from 0
    h.clock.advance(20_000);
    assert.deepEqual(sends(h, 1), [0], 'never resent');
    assert.equal(downAt, 150 + 2 * 3000, 'its deadline (150) and two waits of rtoMax counted; down at the third');
    assert.equal(errors.length, 1);
    assert.ok(isFwError(errors[0], 'E_LINK_TIMEOUT'));
    assert.equal(errors[0].message, 'frame not written by the transport');
    assert.deepEqual(errors[0].details, { seq: 1 });
  });

  it('a frame larger than any sampled one has its timeout scaled by its wire size (§4.7 S)', async () => {
    const h = harness({ window: 1, maxPayload: 1024, nonce: () => 3 });
    const opened = h.link.open();
    h.clock.advance(10);
    h.feed(resetAckFrame(3)); // sample 10 ms from a 14-byte RESET_ACK: RTO 10 + max(1, 20, 10)
    await opened;
    assert.equal(h.link.stats.rtoMs, 30);
    h.out.length = 0;
    h.link.send(new Uint8Array(1000).fill(1));
    const wire = h.link.stats.wireBytesOut - 14; // the RESET before it
    assert.equal(wire, 1013);
    h.clock.advance(5000);
    assert.deepEqual(sends(h, 0), [10, 10 + (30 * 1013) / 14]);
  });

  it('a frame no larger than the sampled ones is not scaled', async () => {
    const h = harness({ window: 1, maxPayload: 64, nonce: () => 3 });
    const opened = h.link.open();
    h.clock.advance(10);
    h.feed(resetAckFrame(3));
    await opened;
    h.link.send(Uint8Array.of(1)); // 11 bytes on the wire
    h.clock.advance(100);
    assert.deepEqual(sends(h, 0), [10, 40, 100]);
  });
});

describe('link ARQ RTO (§4.7)', () => {
  it('the variance term is at least the least RTT: equal samples do not shrink the RTO towards SRTT', () => {
    const h = harness({ window: 1 });
    for (let seq = 1; seq <= 4; seq++) {
      h.link.send(Uint8Array.of(seq));
      h.clock.advance(100);
      h.feed(ackFrame(seq, 0));
    }
    // RTTVAR 50 x (3/4)^3 = 21.1: 4 x RTTVAR = 84.4 is below the least RTT, 100
    assert.equal(h.link.stats.rttMs, 100);
    assert.equal(h.link.stats.rtoMs, 200);
  });

  it('a valid sample clears the backed-off floor', () => {
    const h = harness({ window: 1 });
    h.link.send(Uint8Array.of(1));
    h.clock.advance(250); // timed out at 200: floor 400
    h.feed(ackFrame(1, 0)); // a frame sent twice: no sample, the floor stays
    h.link.send(Uint8Array.of(2));
    h.clock.advance(50);
    h.feed(ackFrame(2, 0)); // sample 50: RTO 150, floor 0
    assert.equal(h.link.stats.rtoMs, 150);
    h.link.send(Uint8Array.of(3));
    h.clock.advance(1000);
    assert.deepEqual(sends(h, 0).slice(0, 2), [0, 200]);
    assert.deepEqual(sends(h, 2).slice(0, 2), [300, 450], 'its timeout is the RTO again, not the floor of 400');
  });
});

describe('link ARQ NAK of a resend still queued (§4.6)', () => {
  it('a NAK does not resend a copy whose clock has not started (queued behind other frames); a frame sent once goes at once', () => {
    const h = harness({ window: 3, maxPayload: 64 });
    h.link.send(new Uint8Array(192).fill(1)); // seqs 0, 1, 2 at 0
    h.clock.advance(210); // seq 0 resent at 200, behind seqs 1 and 2 on the line
    h.feed(nakFrame([0, 1]));
    assert.deepEqual(sends(h, 0), [0, 200], 'the resend may yet arrive: the NAK was sent before it could');
    assert.deepEqual(sends(h, 1), [0, 210]);
    assert.equal(h.link.stats.retransmits, 2);
  });
});

describe('link ARQ line rate estimate (§4.7)', () => {
  it('undefined until an ACK acknowledges frames that waited on the line; then the time between ACKs per wire byte, decayed by 1/8', () => {
    const h = harness({ window: 3, maxPayload: 64 });
    h.link.send(new Uint8Array(192).fill(1));
    assert.equal(h.link.lineMsPerByte, undefined);
    h.clock.advance(10);
    h.feed(ackFrame(1, 0));
    assert.equal(h.link.lineMsPerByte, undefined, 'the first ACK has no previous one to count from');
    h.clock.advance(10);
    h.feed(ackFrame(2, 0));
    const w = wireOf(64);
    assert.equal(w, 74);
    assert.equal(h.link.lineMsPerByte, 10 / w);
    h.clock.advance(20);
    h.feed(ackFrame(3, 0));
    const ms = 10 * 0.125 * 0.875 + 20 * 0.125;
    const bytes = w * 0.125 * 0.875 + w * 0.125;
    assert.equal(h.link.lineMsPerByte, ms / bytes);
  });

  it('a second ACK at the same instant gives no rate sample', () => {
    const h = harness({ window: 3, maxPayload: 64 });
    h.link.send(new Uint8Array(192).fill(1));
    h.clock.advance(10);
    h.feed(ackFrame(1, 0));
    h.clock.advance(10);
    h.feed(ackFrame(2, 0), ackFrame(3, 0)); // one chunk: both at 20
    assert.equal(h.link.lineMsPerByte, 10 / wireOf(64));
  });

  it('a frame sent after the previous ACK gives no rate sample (the line was idle before it)', () => {
    const h = harness({ window: 1, maxPayload: 64 });
    h.link.send(new Uint8Array(192).fill(1));
    for (let seq = 1; seq <= 3; seq++) {
      h.clock.advance(10);
      h.feed(ackFrame(seq, 0));
    }
    assert.equal(h.link.lineMsPerByte, undefined);
  });

  it('a RESET clears the estimate, the RTT and the least RTT', () => {
    const h = harness({ window: 3, maxPayload: 64 });
    h.link.send(new Uint8Array(192).fill(1));
    for (let seq = 1; seq <= 3; seq++) {
      h.clock.advance(10);
      h.feed(ackFrame(seq, 0));
    }
    assert.ok(h.link.lineMsPerByte !== undefined);
    h.feed(resetFrame(0));
    assert.equal(h.link.lineMsPerByte, undefined);
    assert.equal(h.link.stats.rttMs, undefined);
    assert.equal(h.link.stats.rtoMs, 200);
  });
});
