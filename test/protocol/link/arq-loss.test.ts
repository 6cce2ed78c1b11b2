import assert from 'node:assert/strict';
import { FrameKind, ackFrame } from '../../../protocol/link/index.ts';
import { harness, type Harness } from './helpers.ts';

// docs/protocol.md §4.7 "Loss of everything outstanding", frame by frame: when a frame whose
// clock started because the one ahead was resent times out with nothing acknowledged since, every
// waiting frame starts its clock — together before the line rate is known, else one after the
// other at that rate — and frames handed over before the next ACK continue the forecast.

const sends = (h: Harness, seq: number, from = 0): number[] =>
  h.out.filter((o) => o.frame.kind === FrameKind.DATA && o.frame.seq === seq).map((o) => o.at - from);

/** Three 64-byte frames (74 bytes on the wire) acknowledged 10 ms apart: a line rate of 10/74 ms a byte; RTO 39.84375. */
function measured(): Harness {
  const h = harness({ window: 8, maxPayload: 64 });
  h.link.send(new Uint8Array(64 * 3).fill(1));
  for (let seq = 1; seq <= 3; seq++) {
    h.clock.advance(10);
    h.feed(ackFrame(seq, 0));
  }
  assert.equal(h.link.lineMsPerByte, 10 / 74);
  assert.equal(h.link.stats.rtoMs, 39.84375);
  h.out.length = 0;
  return h;
}

describe('link ARQ loss of everything outstanding (§4.7)', () => {
  it('before the line rate is known, every waiting frame is due at once: all go again together', () => {
    const h = harness({ window: 4, maxPayload: 64 });
    h.link.send(new Uint8Array(64 * 4).fill(1));
    h.clock.advance(1000);
    assert.deepEqual(sends(h, 0), [0, 200, 600]);
    // seq 1's clock started at 200 (seq 0 resent); it times out at 400 with nothing acknowledged:
    // seqs 2 and 3, timed from their own writes, are overdue and go with it
    for (const seq of [1, 2, 3]) assert.deepEqual(sends(h, seq), [0, 400, 800], `seq ${seq}`);
  });

  it('with a line rate, the waiting frames start one after the other, one frame time (74 bytes x 10/74 ms) apart', () => {
    const h = measured();
    const t0 = h.clock.now();
    h.link.send(new Uint8Array(64 * 4).fill(2)); // seqs 3..6 at t0
    h.clock.advance(200);
    // seq 3 times out at 39.84 (resent, behind seq 6); seq 4's clock starts then and it times out at
    // 79.69 with nothing acknowledged: seqs 5, 6 and the copy of 3 start at 79.69, 89.69, 99.69,
    // and the copy of 4 resent then at 109.69; each times out a floor (79.69) or 2 x RTO later
    assert.deepEqual(sends(h, 3, t0), [0, 39.84375, 99.6875 + 79.6875]);
    assert.deepEqual(sends(h, 4, t0), [0, 79.6875, 109.6875 + 79.6875]);
    assert.deepEqual(sends(h, 5, t0), [0, 79.6875 + 79.6875]);
    assert.deepEqual(sends(h, 6, t0), [0, 89.6875 + 79.6875]);
  });

  it('a frame handed over before the next ACK continues the forecast', () => {
    const h = measured();
    const t0 = h.clock.now();
    h.link.send(new Uint8Array(64 * 4).fill(2));
    h.clock.advance(80); // past 79.69: the forecast places frames up to 119.69
    h.link.send(new Uint8Array(64).fill(3)); // seq 7 at 80: its clock starts at 119.69
    h.clock.advance(300);
    assert.deepEqual(sends(h, 7, t0), [80, 119.6875 + 159.375], 'timed out after the floor, 2 x 79.69');
  });

  it('an ACK ends the forecast: a frame handed over after it starts its clock when written', () => {
    const h = measured();
    const t0 = h.clock.now();
    h.link.send(new Uint8Array(64 * 4).fill(2));
    h.clock.advance(80);
    h.feed(ackFrame(3, 0b1)); // seq 4 acknowledged (sent twice: no sample, the floor 159.375 stays)
    h.link.send(new Uint8Array(64).fill(3)); // seq 7 at 80, behind the acknowledged copy of seq 4
    h.clock.advance(1000);
    assert.deepEqual(sends(h, 7, t0).slice(0, 2), [80, 80 + 159.375]);
  });
});
