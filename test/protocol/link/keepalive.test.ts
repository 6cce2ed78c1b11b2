import assert from 'node:assert/strict';
import { ArqLink, FrameKind, LinkKeepalive, agreedKeepalive, decodeFrame } from '../../../protocol/link/index.ts';
import { linkPair, openPair, type Pair } from './helpers.ts';

/** Frames seen on a channel, by kind name, from now on. */
function tapKinds(p: Pair, dir: 'ab' | 'ba'): FrameKind[] {
  const kinds: FrameKind[] = [];
  p[dir].tap = (wire) => kinds.push(decodeFrame(wire).kind);
  return kinds;
}

describe('link liveness (docs/protocol.md §4.11)', () => {
  it('agreement: both must offer; the longer offer wins, within bounds', () => {
    assert.equal(agreedKeepalive(undefined, 2000), undefined);
    assert.equal(agreedKeepalive(2000, 0), undefined);
    assert.equal(agreedKeepalive(1000, 2000), 2000);
    assert.equal(agreedKeepalive(5000, 2000), 5000);
  });

  it('§4.11.1: an idle side sends an ACK as keepalive every interval, and the peer takes it as nothing new', async () => {
    const p = linkPair({ ab: { latencyMs: 5 } });
    await openPair(p);
    const fromA = tapKinds(p, 'ab');
    const ka = new LinkKeepalive(p.a, { intervalMs: 1000, silenceMs: 10_000, timers: p.clock });
    const kb = new LinkKeepalive(p.b, { intervalMs: 1000, silenceMs: 10_000, timers: p.clock });
    p.clock.advance(5100);
    assert.ok(fromA.length >= 4 && fromA.length <= 6, `about one keepalive per second (${fromA.length})`);
    assert.ok(fromA.every((k) => k === FrameKind.ACK), 'keepalives are ACKs');
    assert.equal(p.a.state, 'up');
    assert.equal(p.b.state, 'up');
    assert.equal(p.a.stats.retransmits + p.b.stats.retransmits, 0);
    // a message still flows after keepalives
    p.a.send(new Uint8Array([1, 2, 3]));
    p.clock.advance(100);
    assert.equal(p.atB.length, 1);
    ka.stop();
    kb.stop();
  });

  it('§4.11.1: a side that sends does not add keepalives', async () => {
    const p = linkPair({ ab: { latencyMs: 5 } });
    await openPair(p);
    const ka = new LinkKeepalive(p.a, { intervalMs: 1000, silenceMs: 10_000, timers: p.clock });
    for (let i = 0; i < 20; i++) {
      p.a.send(new Uint8Array([i]));
      p.clock.advance(250);
    }
    assert.equal(p.a.stats.keepalivesSent, 0);
    ka.stop();
  });

  it('§4.11.1: no frame from the peer for the silence limit: the link is down (E_LINK_TIMEOUT), without any DATA outstanding', async () => {
    const p = linkPair({ ab: { latencyMs: 5 } });
    await openPair(p);
    let down = 0;
    p.a.on('down', () => down++);
    const errors: string[] = [];
    p.a.on('error', (e) => errors.push(e.message));
    const ka = new LinkKeepalive(p.a, { intervalMs: 1000, silenceMs: 4000, timers: p.clock });
    const kb = new LinkKeepalive(p.b, { intervalMs: 1000, silenceMs: 4000, timers: p.clock });
    p.clock.advance(10_000);
    assert.equal(down, 0, 'keepalives from b hold the link');
    kb.stop(); // b dies: nothing more comes from it
    p.ba.cut = true;
    const cutAt = p.clock.now();
    p.clock.runUntil(() => down > 0, cutAt + 60_000);
    assert.equal(down, 1);
    assert.equal(p.a.state, 'down');
    assert.match(errors.join(), /nothing from the link peer for \d+ ms/);
    const after = p.clock.now() - cutAt;
    assert.ok(after >= 4000 && after <= 4000 + 1000, `seen within a quarter interval of the limit (${after} ms)`);
    ka.stop();
  });

  it('§4.11.1: frames keep coming but none acknowledges the DATA outstanding (a restarted peer that lost its RESET): down after the silence limit', async () => {
    const p = linkPair({ ab: { latencyMs: 5 } });
    await openPair(p);
    for (let i = 0; i < 100; i++) { // the old session is well under way: its sequence numbers are past a fresh receiver's window
      p.a.send(new Uint8Array([i]));
      p.clock.advance(20);
    }
    let down = 0;
    p.a.on('down', () => down++);
    const errors: string[] = [];
    p.a.on('error', (e) => errors.push(e.message));
    const ka = new LinkKeepalive(p.a, { intervalMs: 1000, silenceMs: 8000, timers: p.clock });
    // the peer restarts without announcing: a fresh link that answers the old session's DATA with ACKs of its own
    const b2 = new ArqLink({ timers: p.clock, output: p.ba.send });
    p.ab.deliver = (bytes) => b2.receive(bytes);
    const from = p.clock.now();
    p.a.send(new Uint8Array(300).fill(2));
    p.clock.runUntil(() => down > 0, from + 60_000);
    assert.equal(down, 1);
    assert.match(errors.join(), /no acknowledgement from the link peer for \d+ ms/);
    assert.ok(p.clock.now() - from <= 8000 + 1000, `within the silence limit, not the retransmit limit (${p.clock.now() - from} ms)`);
    assert.ok(b2.stats.framesOut > 0, 'the fresh peer did answer (so silence alone would not have told)');
    ka.stop();
  });

  it('the silence limit is at least 3 intervals', async () => {
    const p = linkPair({ ab: { latencyMs: 5 } });
    await openPair(p);
    const ka = new LinkKeepalive(p.a, { intervalMs: 1000, silenceMs: 100, timers: p.clock });
    assert.equal(ka.silenceMs, 3000);
    ka.stop();
  });

  it('§4.11.2: a restarted passive side announces itself with one RESET; the peer drops its session, both carry on from 0', async () => {
    const p = linkPair({ ab: { latencyMs: 5 } });
    await openPair(p);
    p.a.send(new Uint8Array([7]));
    p.clock.advance(100);
    assert.deepEqual(p.atB.map((m) => m[0]), [7]);
    let resets = 0;
    p.a.on('reset', () => resets++);
    // the gateway process restarts: a fresh passive link on the same line
    const b2 = new ArqLink({ timers: p.clock, output: p.ba.send });
    const atB2: number[] = [];
    b2.on('message', (m) => atB2.push(m[0]!));
    p.ab.deliver = (bytes) => b2.receive(bytes);
    const fromB = tapKinds(p, 'ba');
    b2.announceReset();
    p.clock.advance(100);
    assert.deepEqual(fromB, [FrameKind.RESET], 'one RESET, no retransmission (the RESET_ACK is not awaited)');
    assert.equal(resets, 1, 'the peer learns its session is gone');
    assert.equal(b2.state, 'up', 'the announcing side stays usable');
    p.a.send(new Uint8Array([8]));
    b2.send(new Uint8Array([9]));
    p.clock.advance(200);
    assert.deepEqual(atB2, [8]);
    assert.deepEqual(p.atA.map((m) => m[0]), [9]);
  });

  it('§4.11.2: without the announcement the peer notices nothing (what the test above guards)', async () => {
    const p = linkPair({ ab: { latencyMs: 5 } });
    await openPair(p);
    let resets = 0;
    p.a.on('reset', () => resets++);
    const b2 = new ArqLink({ timers: p.clock, output: p.ba.send });
    p.ab.deliver = (bytes) => b2.receive(bytes);
    p.clock.advance(1000);
    assert.equal(resets, 0);
  });
});
