import assert from 'node:assert/strict';
import { isFwError, type FwError } from '../../../protocol/errors.ts';
import {
  ArqLink, FrameKind, FrameParser, KEEPALIVE_MAX_MS, KEEPALIVE_MIN_MS, LinkKeepalive, ackFrame, agreedKeepalive, encodeFrame, type Frame,
} from '../../../protocol/link/index.ts';
import { FakeClock } from './helpers.ts';

// docs/protocol.md §4.11.1 on one link and a fake clock: when a keepalive goes out, when silence
// or a peer that acknowledges nothing is declared, at the resolution of the quarter-interval check.

interface Side {
  clock: FakeClock;
  link: ArqLink;
  /** Frames the link sent, with the time. */
  out: { at: number; frame: Frame }[];
  errors: FwError[];
  downAt: number[];
  /** One frame from the peer that changes nothing (an ACK of nothing). */
  hear(): void;
}

function side(): Side {
  const clock = new FakeClock();
  const parser = new FrameParser();
  const out: { at: number; frame: Frame }[] = [];
  const link = new ArqLink({ timers: clock, maxRetransmits: 1000, output: (wire) => { for (const f of parser.push(wire)) out.push({ at: clock.now(), frame: f }); } });
  const errors: FwError[] = [];
  const downAt: number[] = [];
  link.on('error', (e) => errors.push(e));
  link.on('down', () => downAt.push(clock.now()));
  return { clock, link, out, errors, downAt, hear: () => link.receive(encodeFrame(ackFrame(0, 0))) };
}

const keepaliveTimes = (s: Side): number[] => s.out.filter((o) => o.frame.kind === FrameKind.ACK).map((o) => o.at);

describe('link keepalive interval agreement (§4.11.1, §7.2)', () => {
  it('bounds the agreed interval to 100..60000 ms', () => {
    assert.equal(KEEPALIVE_MIN_MS, 100);
    assert.equal(KEEPALIVE_MAX_MS, 60_000);
    assert.equal(agreedKeepalive(50, 60), 100);
    assert.equal(agreedKeepalive(100, 100), 100);
    assert.equal(agreedKeepalive(90_000, 1000), 60_000);
    assert.equal(agreedKeepalive(60_000, 59_999), 60_000);
    assert.equal(agreedKeepalive(undefined, undefined), undefined);
    assert.equal(agreedKeepalive(0, 2000), undefined);
  });
});

describe('link keepalive timing (§4.11.1)', () => {
  it('an idle side sends a keepalive K after its last frame, then every K; the keepalive itself counts as a frame sent', () => {
    const s = side();
    const ka = new LinkKeepalive(s.link, { intervalMs: 1000, silenceMs: 60_000, timers: s.clock });
    for (let t = 0; t < 4000; t += 500) {
      s.clock.advance(500);
      s.hear();
    }
    assert.deepEqual(keepaliveTimes(s), [1000, 2000, 3000, 4000]);
    assert.equal(s.link.stats.keepalivesSent, 4);
    ka.stop();
  });

  it('a frame sent by the link postpones the keepalive: K after the check that saw it', () => {
    const s = side();
    const ka = new LinkKeepalive(s.link, { intervalMs: 1000, silenceMs: 60_000, timers: s.clock });
    s.clock.advance(600);
    s.link.send(Uint8Array.of(1)); // a DATA frame at 600, seen by the check at 750
    s.out.length = 0;
    s.clock.advance(100);
    s.hear();
    s.link.receive(encodeFrame(ackFrame(1, 0)));
    s.out.length = 0;
    s.clock.advance(1500);
    assert.deepEqual(keepaliveTimes(s), [1750]);
    ka.stop();
  });

  it('no frame from the peer for the silence limit: down when a check sees it, E_LINK_TIMEOUT naming the time', () => {
    const s = side();
    const ka = new LinkKeepalive(s.link, { intervalMs: 1000, silenceMs: 3000, timers: s.clock });
    s.clock.advance(2100);
    s.hear(); // seen by the check at 2250
    s.clock.advance(10_000);
    assert.deepEqual(s.downAt, [2250 + 3000]);
    assert.equal(s.link.state, 'down');
    assert.equal(s.errors.length, 1);
    assert.ok(isFwError(s.errors[0], 'E_LINK_TIMEOUT'));
    assert.equal(s.errors[0].message, 'nothing from the link peer for 3000 ms');
    assert.deepEqual(keepaliveTimes(s), [1000, 2000, 3000, 4000, 5000], 'keepalives go on until then, not after');
    assert.equal(s.clock.pending, 0, 'the check stops itself');
    ka.stop();
  });

  it('the check runs every quarter interval, at least every millisecond', () => {
    const s = side();
    const ka = new LinkKeepalive(s.link, { intervalMs: 2, silenceMs: 6, timers: s.clock });
    s.clock.advance(3);
    s.hear(); // after the check at 3: seen by the one at 4
    s.clock.advance(20);
    assert.deepEqual(s.downAt, [4 + 6]);
    assert.deepEqual(keepaliveTimes(s), [2, 4, 6, 8]);
    ka.stop();
  });

  it('DATA waiting while the peer acknowledges nothing: down after the silence limit, though frames keep coming', () => {
    const s = side();
    const ka = new LinkKeepalive(s.link, { intervalMs: 1000, silenceMs: 3000, timers: s.clock });
    s.clock.advance(100);
    s.link.send(Uint8Array.of(1)); // waiting from the check at 250
    for (let t = 100; t < 10_000 && s.downAt.length === 0; t += 100) {
      s.clock.advance(100);
      s.hear();
    }
    assert.deepEqual(s.downAt, [250 + 3000]);
    assert.equal(s.errors[0]!.message, 'no acknowledgement from the link peer for 3000 ms');
    assert.ok(isFwError(s.errors[0], 'E_LINK_TIMEOUT'));
    ka.stop();
  });

  it('an acknowledgement restarts the wait; with nothing outstanding there is none', () => {
    const s = side();
    const ka = new LinkKeepalive(s.link, { intervalMs: 1000, silenceMs: 3000, timers: s.clock });
    s.link.send(Uint8Array.of(1));
    s.link.send(Uint8Array.of(2));
    let t = 0;
    const until = (end: number): void => {
      for (; t < end && s.downAt.length === 0; t += 100) {
        s.clock.advance(100);
        s.hear();
      }
    };
    until(2000);
    s.link.receive(encodeFrame(ackFrame(1, 0))); // seq 0 acknowledged just after the check at 2000; seq 1 still waits
    until(4000);
    assert.deepEqual(s.downAt, [], 'the acknowledgement ended the wait');
    until(10_000);
    // seen by the check at 2250; the next check without one (2500) starts a new wait
    assert.deepEqual(s.downAt, [2500 + 3000]);
    const idle = side();
    const kb = new LinkKeepalive(idle.link, { intervalMs: 1000, silenceMs: 3000, timers: idle.clock });
    for (let i = 0; i < 100; i++) {
      idle.clock.advance(100);
      idle.hear();
    }
    assert.deepEqual(idle.downAt, [], 'nothing outstanding: nothing to wait for');
    kb.stop();
    ka.stop();
  });

  it('stop() cancels the check: no keepalive and no silence after it, and stopping twice is harmless', () => {
    const s = side();
    const ka = new LinkKeepalive(s.link, { intervalMs: 1000, silenceMs: 3000, timers: s.clock });
    s.clock.advance(500);
    ka.stop();
    ka.stop();
    assert.equal(s.clock.pending, 0);
    s.clock.advance(60_000);
    assert.deepEqual(s.out, []);
    assert.deepEqual(s.downAt, []);
  });

  it('a link that is not up is not declared down again, and a closed one sends no keepalive', () => {
    const s = side();
    s.link.peerSilent(10);
    assert.equal(s.link.state, 'down');
    s.link.peerSilent(20);
    assert.deepEqual(s.downAt, [0], 'one down');
    assert.equal(s.errors[0]!.message, 'nothing from the link peer for 10 ms');
    s.link.close();
    s.link.sendKeepalive();
    s.link.peerSilent(30);
    assert.deepEqual(s.out, []);
    assert.equal(s.link.stats.keepalivesSent, 0);
  });
});
