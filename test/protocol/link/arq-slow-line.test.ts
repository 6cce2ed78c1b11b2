import assert from 'node:assert/strict';
import { ArqLink } from '../../../protocol/link/index.ts';
import { FakeClock } from './helpers.ts';

/**
 * A real UART: the sender's bytes queue in the transport and leave at the line rate. A frame's
 * retransmit clock must start when it leaves (the transport's `written`, §4.7), not when it was
 * queued, or a window that takes longer than the RTO to drain is sent again and again.
 */
function uploadOverSlowLine(reportWrites: boolean): { retransmits: number; efficiency: number; payload: number; doneAtMs: number } {
  const clock = new FakeClock();
  const bytesPerMs = 92.16; // 921600 baud, 10 bits a byte
  const latencyMs = 2;
  let lineFreeAt = 0;
  // a -> b over the slow line; acks b -> a are small and fast
  let b: ArqLink | undefined;
  const a = new ArqLink({
    timers: clock, window: 16, maxPayload: 4096, rtoInitialMs: 200, nonce: () => 7,
    output: (wire, written) => {
      const start = Math.max(clock.now(), lineFreeAt);
      lineFreeAt = start + wire.length / bytesPerMs;
      // handed to the OS when it starts on the line (a kernel buffer of about one frame)
      if (reportWrites) clock.setTimeout(written, start - clock.now());
      const copy = wire.slice();
      clock.setTimeout(() => b!.receive(copy), lineFreeAt + latencyMs - clock.now());
    },
  });
  b = new ArqLink({ timers: clock, window: 16, output: (wire) => { const copy = wire.slice(); clock.setTimeout(() => a.receive(copy), latencyMs); } });
  const payload = 256 * 1024;
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
  push();
  assert.ok(clock.runUntil(() => received >= payload, 600_000), 'the upload completes');
  return { retransmits: a.stats.retransmits, efficiency: a.stats.dataBytesOut / a.stats.wireBytesOut, payload: a.stats.dataBytesOut, doneAtMs: clock.now() };
}

describe('ARQ over a slow line (§4.7: the retransmit clock starts when the frame is written)', () => {
  it('a window that drains slower than the RTO is not retransmitted when the transport reports writes (after the first backoffs)', () => {
    const withWrites = uploadOverSlowLine(true);
    const without = uploadOverSlowLine(false);
    const lineMs = withWrites.payload / 92.16;
    // the RTO measured on the small RESET frames is too short for a 4 KiB frame at this rate: the
    // first timeouts back it off (RFC 6298 5.5), then nothing is sent twice
    assert.ok(withWrites.retransmits <= 3, `retransmits with write reports: ${withWrites.retransmits}`);
    assert.ok(withWrites.efficiency > 0.96, `efficiency ${withWrites.efficiency}`);
    assert.ok(withWrites.doneAtMs < lineMs * 1.1, `done in ${withWrites.doneAtMs} ms, the line needs ${lineMs.toFixed(0)} ms`);
    // the transport that cannot tell (clock from the hand-off) retransmits what is still queued
    assert.ok(without.retransmits > 10 && without.efficiency < 0.8, `without write reports: ${without.retransmits} retransmits, efficiency ${without.efficiency}`);
  });
});
