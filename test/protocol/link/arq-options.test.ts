import assert from 'node:assert/strict';
import { isFwError, type FwError } from '../../../protocol/errors.ts';
import { ArqLink, FrameKind, FrameParser, ackFrame, encodeFrame, frameNonce, resetAckFrame, type Frame } from '../../../protocol/link/index.ts';
import { FakeClock, type LinkSettings } from './helpers.ts';

// docs/protocol.md §4.10: every ArqLink option at its bounds, the defaults, and the nonce rule of §4.1.

function make(settings: LinkSettings = {}): { clock: FakeClock; link: ArqLink; out: { at: number; frame: Frame }[] } {
  const clock = new FakeClock();
  const parser = new FrameParser();
  const out: { at: number; frame: Frame }[] = [];
  const link = new ArqLink({ ...settings, timers: clock, output: (wire) => { for (const f of parser.push(wire)) out.push({ at: clock.now(), frame: f }); } });
  return { clock, link, out };
}

/** The E_CONFIG message for an option out of its bounds. */
function refusal(settings: LinkSettings): string {
  try {
    make(settings);
  } catch (e) {
    assert.ok(isFwError(e, 'E_CONFIG'), String(e));
    return e.message;
  }
  return 'accepted';
}

describe('link ARQ option bounds (§4.10)', () => {
  const bounds: [keyof LinkSettings, number, number][] = [
    ['window', 1, 64],
    ['maxPayload', 64, 16_384],
    ['acceptPayload', 64, 16_384],
    ['maxMessage', 1, 0xffff_ffff],
    ['rtoMinMs', 1, 200],
    ['maxRetransmits', 0, 1000],
    ['highWaterBytes', 1, 0xffff_ffff],
    ['ackDelayMs', 0, 100],
    ['ackEvery', 1, 64],
  ];
  for (const [name, min, max] of bounds) {
    it(`${name}: ${min} and ${max} are accepted; below, above and fractions are refused naming the option`, () => {
      assert.equal(refusal({ [name]: min }), 'accepted');
      assert.equal(refusal({ [name]: max }), 'accepted');
      const upper = name === 'rtoMinMs' ? 600_000 : max;
      const message = `${name} must be an integer in ${min}..${upper}`;
      assert.equal(refusal({ [name]: min - 1 }), message);
      if (name !== 'rtoMinMs') assert.equal(refusal({ [name]: max + 1 }), message);
      assert.equal(refusal({ [name]: min + 0.5 }), message);
    });
  }

  it('rtoMinMs <= rtoInitialMs <= rtoMaxMs <= 600000', () => {
    assert.equal(refusal({ rtoMinMs: 600_000, rtoInitialMs: 600_000, rtoMaxMs: 600_000 }), 'accepted');
    assert.equal(refusal({ rtoMinMs: 600_001 }), 'rtoMinMs must be an integer in 1..600000');
    assert.equal(refusal({ rtoMaxMs: 600_001 }), 'rtoMaxMs must be an integer in 20..600000');
    assert.equal(refusal({ rtoMinMs: 50, rtoMaxMs: 49 }), 'rtoMaxMs must be an integer in 50..600000');
    assert.equal(refusal({ rtoMinMs: 50, rtoMaxMs: 50, rtoInitialMs: 50 }), 'accepted');
    assert.equal(refusal({ rtoMinMs: 50, rtoInitialMs: 49 }), 'rtoInitialMs must be an integer in 50..3000');
    assert.equal(refusal({ rtoMaxMs: 500, rtoInitialMs: 501 }), 'rtoInitialMs must be an integer in 20..500');
    assert.equal(refusal({ rtoMaxMs: 500 }), 'accepted', 'the default rtoInitial 200 fits');
    assert.equal(refusal({ rtoMaxMs: 199 }), 'rtoInitialMs must be an integer in 20..199', 'the default rtoInitial 200 does not');
  });

  it('configure() checks the same bounds, keeps what it is not given, and refuses a closed link', () => {
    const { link } = make({ window: 4 });
    const refused = (p: Parameters<ArqLink['configure']>[0]): string => {
      try {
        link.configure(p);
      } catch (e) {
        return (e as FwError).message;
      }
      return 'accepted';
    };
    assert.equal(refused({ window: 65 }), 'window must be an integer in 1..64');
    assert.equal(refused({ maxPayload: 63 }), 'maxPayload must be an integer in 64..16384');
    assert.equal(refused({ ackDelayMs: -1 }), 'ackDelayMs must be an integer in 0..100');
    assert.equal(refused({ ackEvery: 65 }), 'ackEvery must be an integer in 1..64');
    assert.equal(refused({ window: 64, maxPayload: 16_384, ackDelayMs: 100, ackEvery: 64 }), 'accepted');
    link.close();
    assert.throws(() => link.configure({}), (e: FwError) => isFwError(e, 'E_LINK_CLOSED'));
  });

  it('a refused configure() changes nothing, not even the options that were valid', () => {
    const { link, out } = make({ window: 2, maxPayload: 64 });
    assert.throws(() => link.configure({ window: 8, maxPayload: 10 }), (e: FwError) => isFwError(e, 'E_CONFIG'));
    link.send(new Uint8Array(64 * 8).fill(1));
    assert.deepEqual(out.map((o) => o.frame.payload.length), [64, 64], 'window 2 of 64-byte frames');
  });
});

describe('link ARQ defaults (§4.9, §4.10)', () => {
  it('window 8 of 256-byte payloads', () => {
    const { link, out } = make();
    link.send(new Uint8Array(256 * 10).fill(1));
    assert.deepEqual(out.map((o) => [o.frame.seq, o.frame.payload.length]), Array.from({ length: 8 }, (_, i) => [i, 256]));
    assert.equal(link.unacked, 8);
    assert.equal(link.queuedBytes, 512);
  });

  it('send() says false once more than 64 KiB are queued unsent, and drain comes below 32 KiB', () => {
    const { link } = make({ window: 1, maxPayload: 1024 });
    let drains = 0;
    link.on('drain', () => drains++);
    assert.equal(link.send(new Uint8Array(1024 + 65_536)), true, 'one frame in flight, 64 KiB queued');
    assert.equal(link.queuedBytes, 65_536);
    assert.equal(link.send(Uint8Array.of(1)), false);
    let seq = 0;
    while (link.queuedBytes >= 32 * 1024) {
      assert.equal(drains, 0, `${link.queuedBytes} queued`);
      link.receive(encodeFrame(ackFrame(++seq, 0)));
    }
    assert.equal(link.queuedBytes, 32 * 1024 - 1023);
    assert.equal(drains, 1);
  });

  it('rto 200 ms before any sample, and 12 timeout retransmissions before the link goes down', () => {
    const { clock, link, out } = make();
    assert.equal(link.stats.rtoMs, 200);
    assert.equal(link.stats.rttMs, undefined);
    let downAt = -1;
    link.on('down', () => { downAt = clock.now(); });
    link.send(Uint8Array.of(1));
    clock.advance(600_000);
    const sends = out.filter((o) => o.frame.kind === FrameKind.DATA).map((o) => o.at);
    // 200 doubled per timeout (200, 400, 800, 1600), then rtoMax 3000
    assert.deepEqual(sends, [0, 200, 600, 1400, 3000, 6000, 9000, 12_000, 15_000, 18_000, 21_000, 24_000, 27_000]);
    assert.equal(downAt, 30_000);
  });
});

describe('link ARQ RESET nonces (§4.1, §4.11.2)', () => {
  it('a new nonce differs from the one used last: a repeat draw is bumped by one, modulo 2^32', async () => {
    const draws = [5, 5, 0xffff_ffff, 0xffff_ffff, 7];
    const { clock, link, out } = make({ nonce: () => draws.shift()! });
    const resets = (): number[] => out.filter((o) => o.frame.kind === FrameKind.RESET).map((o) => frameNonce(o.frame));
    const opened = link.open();
    assert.equal(link.open(), opened, 'open() while opening: the same promise');
    link.receive(encodeFrame(resetAckFrame(5)));
    await opened;
    const again = link.open();
    link.receive(encodeFrame(resetAckFrame(5)));
    assert.equal(link.state, 'opening', 'the RESET_ACK of the old nonce does not open the new handshake');
    link.receive(encodeFrame(resetAckFrame(6)));
    await again;
    link.announceReset();
    link.announceReset();
    link.announceReset();
    assert.deepEqual(resets(), [5, 6, 0xffff_ffff, 0, 7]);
    assert.equal(link.state, 'up', 'an announcement changes nothing on this side');
    assert.equal(clock.pending, 0, 'and waits for nothing');
  });

  it('a closed link neither opens nor announces', async () => {
    const { link, out } = make({ nonce: () => 1 });
    link.close();
    link.announceReset();
    await assert.rejects(link.open(), (e: FwError) => isFwError(e, 'E_LINK_CLOSED'));
    assert.deepEqual(out, []);
    link.close();
    assert.equal(link.state, 'closed');
  });
});
