import assert from 'node:assert/strict';
import { ArqLink } from '../../../protocol/link/index.ts';
import { FakeClock } from './helpers.ts';

/**
 * A real serial line (§4.7): the sender's bytes queue in the transport and in the kernel, and
 * leave at the line rate, one frame after another. The kernel takes a write at once while it has
 * room (a pty or a USB-serial driver buffers tens of KiB) and only then reports it written, so a
 * frame reported written may still wait behind a whole window. Its retransmit clock must not run
 * before the frame ahead of it has left the line, or the window is sent again and again.
 */

interface LineOptions {
  /** Bytes the kernel takes before a write blocks; the write is reported when the frame fits. */
  kernelBytes: number;
  /** Whether the transport calls `written` at all (else the clock starts at the hand-off). */
  reportWrites: boolean;
  bytesPerMs?: number;
  latencyMs?: number;
  /** Frames a -> b whose last byte leaves the sender within [from, to) ms are lost. */
  outage?: { from: number; to: number };
  payload?: number;
  window?: number;
  /** The receiver's delayed ACK (§4.4), as the gateway configures it after hello; default: none. */
  ack?: { ackDelayMs: number; ackEvery: number };
}

interface LineResult {
  retransmits: number; efficiency: number; payload: number; doneAtMs: number; lineMs: number; lost: number; rttMs: number | undefined;
  /** The sender's line rate estimate at the end (§4.7), and before it sent any DATA. */
  lineMsPerByte: number | undefined; lineMsPerByteBefore: number | undefined;
  /** ACKs the receiver sent, and DATA frames it received. */
  acks: number; frames: number;
}

function uploadOverLine(o: LineOptions): LineResult {
  const clock = new FakeClock();
  const bytesPerMs = o.bytesPerMs ?? 92.16; // 921600 baud, 10 bits a byte
  const latencyMs = o.latencyMs ?? 2;
  let lineFreeAt = 0;
  let lost = 0;
  let b: ArqLink | undefined;
  const a = new ArqLink({
    timers: clock, window: o.window ?? 16, maxPayload: 4096, rtoInitialMs: 200, nonce: () => 7,
    output: (wire, written) => {
      const start = Math.max(clock.now(), lineFreeAt);
      lineFreeAt = start + wire.length / bytesPerMs;
      if (o.reportWrites) clock.setTimeout(written, Math.max(0, lineFreeAt - o.kernelBytes / bytesPerMs - clock.now()));
      if (o.outage && lineFreeAt >= o.outage.from && lineFreeAt < o.outage.to) {
        lost++;
        return;
      }
      const copy = wire.slice();
      clock.setTimeout(() => b!.receive(copy), lineFreeAt + latencyMs - clock.now());
    },
  });
  // acks b -> a are small: the latency only
  b = new ArqLink({ timers: clock, window: 16, ...o.ack, output: (wire) => { const copy = wire.slice(); clock.setTimeout(() => a.receive(copy), latencyMs); } });
  const payload = o.payload ?? 256 * 1024;
  let received = 0;
  b.on('message', (m) => { received += m.length; });
  void a.open();
  clock.runUntil(() => a.state === 'up', 10_000);
  const message = new Uint8Array(16 * 1024);
  let sent = 0;
  const push = (): void => {
    while (sent < payload && a.send(message)) sent += message.length;
  };
  a.on('drain', push);
  const t0 = clock.now();
  const lineMsPerByteBefore = a.lineMsPerByte;
  push();
  assert.ok(clock.runUntil(() => received >= payload, 600_000), 'the upload completes');
  const s = a.stats;
  return {
    retransmits: s.retransmits, efficiency: s.dataBytesOut / s.wireBytesOut, payload: s.dataBytesOut, doneAtMs: clock.now() - t0,
    lineMs: s.dataBytesOut / bytesPerMs, lost, rttMs: s.rttMs, acks: b.stats.acksSent, frames: b.stats.framesIn,
    lineMsPerByte: a.lineMsPerByte, lineMsPerByteBefore,
  };
}

describe('ARQ line rate estimate (§4.7), which fwpush sizes its upload messages by', () => {
  for (const bytesPerMs of [11.52, 92.16, 10_000]) {
    it(`measures a line of ${bytesPerMs} bytes/ms to within 10 %, and is undefined before any ACK`, () => {
      const r = uploadOverLine({ kernelBytes: 65_536, reportWrites: true, bytesPerMs, latencyMs: 1, payload: 512 * 1024 });
      assert.equal(r.lineMsPerByteBefore, undefined);
      assert.ok(r.lineMsPerByte !== undefined, 'measured');
      const measured = 1 / r.lineMsPerByte;
      assert.ok(Math.abs(measured - bytesPerMs) / bytesPerMs < 0.1, `${measured.toFixed(2)} bytes/ms measured`);
    });
  }
});

describe('ARQ over a slow line with deep buffers (§4.7: a frame is timed from when the frame ahead has left the line)', () => {
  const cases: [string, LineOptions][] = [
    ['writes reported when the frame starts on the line (a buffer of about one frame)', { kernelBytes: 4200, reportWrites: true }],
    ['writes reported when the kernel takes them (a 128 KiB buffer: the whole window looks written at once)', { kernelBytes: 128 * 1024, reportWrites: true }],
    ['a transport that does not report writes (timed from the hand-off)', { kernelBytes: 0, reportWrites: false }],
  ];
  for (const [name, o] of cases) {
    it(`921600 baud, window 16 x 4 KiB, ${name}: nothing is sent twice`, () => {
      const r = uploadOverLine(o);
      assert.equal(r.retransmits, 0, `retransmits: ${r.retransmits}`);
      assert.ok(r.efficiency > 0.99, `efficiency ${r.efficiency}`);
      assert.ok(r.doneAtMs < r.lineMs * 1.05, `done in ${r.doneAtMs} ms, the line needs ${r.lineMs.toFixed(0)} ms`);
      // the RTT estimate is the time a frame takes once it is on the line, not the queue ahead of it
      assert.ok(r.rttMs !== undefined && r.rttMs < 100, `SRTT ${r.rttMs} ms`);
    });
  }

  it('115200 baud (356 ms a frame, a window queues for 5.7 s), 128 KiB kernel buffer: nothing is sent twice', () => {
    const r = uploadOverLine({ kernelBytes: 128 * 1024, reportWrites: true, bytesPerMs: 11.52, payload: 128 * 1024 });
    assert.equal(r.retransmits, 0, `retransmits: ${r.retransmits}`);
    assert.ok(r.doneAtMs < r.lineMs * 1.05, `done in ${r.doneAtMs} ms, the line needs ${r.lineMs.toFixed(0)} ms`);
  });

  it('frames lost in a 300 ms outage with a full queue behind them are resent once each, and the rest is not', () => {
    const r = uploadOverLine({ kernelBytes: 128 * 1024, reportWrites: true, outage: { from: 1000, to: 1300 } });
    assert.ok(r.lost >= 6, `lost ${r.lost}`);
    assert.ok(r.retransmits <= r.lost + 2, `${r.retransmits} retransmits for ${r.lost} lost frames`);
    assert.ok(r.doneAtMs < r.lineMs * 1.05 + 2000, `done in ${r.doneAtMs} ms, the line needs ${r.lineMs.toFixed(0)} ms`);
  });

  it('a single lost frame in a deep queue is resent once (NAK), without a cascade', () => {
    const r = uploadOverLine({ kernelBytes: 128 * 1024, reportWrites: true, outage: { from: 1000, to: 1040 } });
    assert.equal(r.lost, 1);
    assert.equal(r.retransmits, 1);
  });
});

describe('ARQ with a delayed-ACK receiver (§4.4: one ACK for several frames, at most ackDelayMs late)', () => {
  const gateway = { ackDelayMs: 2, ackEvery: 4 }; // gateway/config.ts uplink.ackDelayMs / ackEvery defaults

  it('921600 baud, window 16 x 4 KiB, 128 KiB kernel buffer: frames 45 ms apart are each ACKed at once; nothing is sent twice', () => {
    const r = uploadOverLine({ kernelBytes: 128 * 1024, reportWrites: true, ack: gateway });
    assert.equal(r.retransmits, 0, `retransmits: ${r.retransmits}`);
    assert.ok(r.efficiency > 0.99, `efficiency ${r.efficiency}`);
    assert.ok(r.doneAtMs < r.lineMs * 1.05, `done in ${r.doneAtMs} ms, the line needs ${r.lineMs.toFixed(0)} ms`);
    assert.ok(r.acks >= r.frames - 1, `${r.acks} ACKs for ${r.frames} frames`);
  });

  it('a fast line (30 MB/s, a pty): about one ACK per ackEvery frames, nothing sent twice, the line stays full', () => {
    const fast = { kernelBytes: 64 * 1024, reportWrites: true, bytesPerMs: 30_000, latencyMs: 0.05, payload: 4 * 1024 * 1024 };
    const before = uploadOverLine(fast);
    const r = uploadOverLine({ ...fast, ack: gateway });
    assert.ok(before.acks >= before.frames - 1, `without a delay: ${before.acks} ACKs for ${before.frames} frames`);
    assert.equal(r.retransmits, 0, `retransmits: ${r.retransmits}`);
    assert.ok(r.acks <= r.frames / 3, `${r.acks} ACKs for ${r.frames} frames`);
    assert.ok(r.doneAtMs < r.lineMs * 1.1, `done in ${r.doneAtMs.toFixed(1)} ms, the line needs ${r.lineMs.toFixed(1)} ms`);
  });

  it('frames lost in an outage are still resent once each, and the rest is not', () => {
    const r = uploadOverLine({ kernelBytes: 128 * 1024, reportWrites: true, outage: { from: 1000, to: 1300 }, ack: gateway });
    assert.ok(r.lost >= 6, `lost ${r.lost}`);
    assert.ok(r.retransmits <= r.lost + 2, `${r.retransmits} retransmits for ${r.lost} lost frames`);
    const one = uploadOverLine({ kernelBytes: 128 * 1024, reportWrites: true, outage: { from: 1000, to: 1040 }, ack: gateway });
    assert.equal(one.lost, 1);
    assert.equal(one.retransmits, 1);
  });
});
