import assert from 'node:assert/strict';
import { isFwError, type FwError } from '../../../protocol/errors.ts';
import { FrameKind, FrameParser } from '../../../protocol/link/index.ts';
import { type ChannelOptions, Rng, hex, linkPair, openPair, randomMessages, sendAll } from './helpers.ts';

// docs/protocol.md §4, end to end: two ArqLinks over simulated lines on a fake clock.

const MINUTE = 60_000;

function assertSameMessages(got: readonly Uint8Array[], sent: readonly Uint8Array[], what: string): void {
  assert.equal(got.length, sent.length, `${what}: message count`);
  for (let i = 0; i < sent.length; i++) {
    assert.ok(got[i]!.length === sent[i]!.length && hex(got[i]!) === hex(sent[i]!), `${what}: message ${i} differs`);
  }
}

interface Scenario { name: string; channel: ChannelOptions; seed: number }

const scenarios: Scenario[] = [
  { name: '0% loss', channel: { latencyMs: 5 }, seed: 1 },
  { name: '5% loss, split reads', channel: { latencyMs: 5, loss: 0.05, split: true }, seed: 2 },
  { name: '20% loss', channel: { latencyMs: 5, loss: 0.2 }, seed: 3 },
  { name: '5% loss, 5% bit corruption, 5% duplication, reordering', channel: { latencyMs: 5, jitterMs: 8, loss: 0.05, corrupt: 0.05, duplicate: 0.05, split: true }, seed: 4 },
  { name: '20% loss, 10% corruption, 10% duplication, reordering', channel: { latencyMs: 3, jitterMs: 10, loss: 0.2, corrupt: 0.1, duplicate: 0.1 }, seed: 5 },
];

describe('link ARQ over a simulated line (§4)', () => {
  for (const s of scenarios) {
    it(`${s.name}: 200 messages of 1..20000 bytes a->b (and 40 b->a) arrive once, in order, intact`, async () => {
      const p = linkPair({ ab: s.channel, seed: s.seed, a: { window: 16, maxPayload: 1024 }, b: { window: 16, maxPayload: 1024 } });
      const errors: FwError[] = [];
      let downs = 0;
      for (const l of [p.a, p.b]) {
        l.on('error', (e) => errors.push(e));
        l.on('down', () => downs++);
      }
      await openPair(p);
      const rng = new Rng(s.seed);
      const toB = randomMessages(rng, 200, 1, 20_000);
      const toA = randomMessages(rng, 40, 1, 20_000);
      const allToB = sendAll(p.a, toB);
      const allToA = sendAll(p.b, toA);
      const done = p.clock.runUntil(() => p.atB.length >= toB.length && p.atA.length >= toA.length, p.clock.now() + 30 * MINUTE);
      assert.ok(done, `not delivered: ${p.atB.length}/200 a->b, ${p.atA.length}/40 b->a; a=${JSON.stringify(p.a.stats)}`);
      // Let straggling duplicates and retransmissions land: nothing more may be delivered.
      p.clock.advance(10_000);
      assert.ok(allToB.done() && allToA.done());
      assertSameMessages(p.atB, toB, 'a->b');
      assertSameMessages(p.atA, toA, 'b->a');
      assert.deepEqual(errors, []);
      assert.equal(downs, 0);
      assert.equal(p.a.unacked + p.b.unacked + p.a.queuedBytes + p.b.queuedBytes, 0);
      const lossy = (s.channel.loss ?? 0) > 0;
      if (lossy) assert.ok(p.a.stats.retransmits > 0, 'a lossy line must cause retransmissions');
      else assert.equal(p.a.stats.retransmits, 0);
      if ((s.channel.corrupt ?? 0) > 0) assert.ok(p.b.stats.parser.crc + p.b.stats.parser.cobs + p.b.stats.parser.short > 0);
      if ((s.channel.duplicate ?? 0) > 0) assert.ok(p.b.stats.duplicates > 0);
    });
  }

  it('with window 8, 10 ms one way and no loss, 64 frames take about 8 round trips, not 64 (not stop-and-wait)', async () => {
    const p = linkPair({ ab: { latencyMs: 10 }, a: { window: 8 } });
    await openPair(p);
    let maxInFlight = 0;
    p.ab.tap = () => { maxInFlight = Math.max(maxInFlight, p.a.unacked); };
    const start = p.clock.now();
    p.a.send(new Uint8Array(64 * 256).fill(0xa5)); // 64 DATA frames at the default 256-byte payload
    let idleAt = -1;
    p.a.once('idle', () => { idleAt = p.clock.now(); });
    assert.ok(p.clock.runUntil(() => idleAt >= 0, start + MINUTE));
    const rtt = 20;
    const elapsed = idleAt - start;
    assert.equal(p.atB.length, 1);
    assert.equal(p.a.stats.retransmits, 0);
    assert.ok(elapsed < (64 / 8) * 2 * rtt, `took ${elapsed} ms`);
    assert.ok(elapsed >= (64 / 8) * rtt, `took ${elapsed} ms: the window was not respected`);
    assert.equal(maxInFlight, 8);
  });

  it('a RESET mid-stream by the active side resets the passive side, and new traffic flows both ways', async () => {
    // FIFO line (no reordering): the handshake relies on it (§4.1).
    const p = linkPair({ ab: { latencyMs: 5, loss: 0.05, corrupt: 0.02, duplicate: 0.05 }, seed: 7 });
    const resets: number[] = [];
    p.b.on('reset', (n) => resets.push(n));
    await openPair(p);
    assert.equal(resets.length, 1);
    const rng = new Rng(70);
    const before = randomMessages(rng, 50, 1, 3000);
    const backBefore = randomMessages(rng, 50, 1, 3000);
    const sendingBefore = [sendAll(p.a, before), sendAll(p.b, backBefore)];
    assert.ok(p.clock.runUntil(() => p.atB.length >= 10, p.clock.now() + MINUTE));
    assert.ok(p.a.unacked > 0 || p.a.queuedBytes > 0, 'the reset must happen mid-stream');
    const atBBefore = p.atB.length;
    const atABefore = p.atA.length;
    // The applications abandon their old-session messages: a when it decides to reset, b on 'reset'
    // (which comes before the 'drain' that the dropped queue causes).
    sendingBefore[0]!.stop();
    p.b.once('reset', () => sendingBefore[1]!.stop());
    await openPair(p);
    assert.equal(resets.length, 2);
    assert.equal(p.b.unacked + p.b.queuedBytes, 0, 'the passive side dropped its unsent data');
    // What arrived before the reset is an in-order prefix of what was sent.
    const bPrefix = p.atB.splice(0);
    const aPrefix = p.atA.splice(0);
    assert.ok(bPrefix.length >= atBBefore && bPrefix.length < before.length);
    assertSameMessages(bPrefix, before.slice(0, bPrefix.length), 'a->b before reset');
    assert.ok(aPrefix.length >= atABefore);
    assertSameMessages(aPrefix, backBefore.slice(0, aPrefix.length), 'b->a before reset');
    const after = randomMessages(rng, 40, 1, 5000);
    const backAfter = randomMessages(rng, 40, 1, 5000);
    sendAll(p.a, after);
    sendAll(p.b, backAfter);
    assert.ok(p.clock.runUntil(() => p.atB.length >= after.length && p.atA.length >= backAfter.length, p.clock.now() + 10 * MINUTE));
    p.clock.advance(5000);
    assertSameMessages(p.atB, after, 'a->b after reset');
    assertSameMessages(p.atA, backAfter, 'b->a after reset');
  });

  it('open() rejects with E_LINK_TIMEOUT within bounded time when no peer answers', async () => {
    const p = linkPair({ ab: { latencyMs: 5 } });
    p.ab.cut = true;
    let resets = 0;
    p.ab.tap = () => resets++;
    let down = 0;
    p.a.on('down', () => down++);
    const outcome = p.a.open().then(() => undefined, (e: unknown) => e);
    p.clock.runUntil(() => p.a.state !== 'opening', 10 * MINUTE);
    const err = await outcome;
    assert.ok(isFwError(err, 'E_LINK_TIMEOUT'), String(err));
    assert.equal(resets, 13, 'one RESET and maxRetransmits (12) retransmissions');
    // 200 + 400 + 800 + 1600 + 9 * 3000 ms of backoff
    assert.equal(p.clock.now(), 30_000);
    assert.equal(down, 1);
    assert.equal(p.a.state, 'down');
    assert.equal(p.clock.pending, 0, 'no timer left behind');
  });

  it('a sender whose peer disappears goes down after maxRetransmits, bounded in time; a new open() recovers', async () => {
    const p = linkPair({ ab: { latencyMs: 5 } }); // default maxRetransmits 12
    await openPair(p);
    const errors: FwError[] = [];
    let downAt = -1;
    p.a.on('error', (e) => errors.push(e));
    p.a.on('down', () => { downAt = p.clock.now(); });
    p.ab.cut = true;
    p.ba.cut = true;
    const start = p.clock.now();
    p.a.send(new Uint8Array(1000).fill(1));
    assert.ok(p.clock.runUntil(() => downAt >= 0, start + 10 * MINUTE));
    assert.equal(errors.length, 1);
    assert.ok(isFwError(errors[0], 'E_LINK_TIMEOUT'));
    // At most 13 timeouts of at most rtoMax (3000 ms) each.
    assert.ok(downAt - start <= 13 * 3000, `down after ${downAt - start} ms`);
    assert.equal(p.a.state, 'down');
    assert.equal(p.a.unacked, 4, 'unacked data stays until a RESET');
    assert.equal(p.a.stats.retransmits, 4 * 12);
    const sentBeforeQuiet = p.ab.counts.sent;
    p.clock.advance(MINUTE);
    assert.equal(p.ab.counts.sent, sentBeforeQuiet, 'a dead link stops sending');
    p.ab.cut = false;
    p.ba.cut = false;
    await openPair(p);
    p.a.send(Uint8Array.of(1, 2, 3));
    assert.ok(p.clock.runUntil(() => p.atB.length === 1, p.clock.now() + MINUTE));
    assert.equal(hex(p.atB[0]!), '010203');
  });

  it('simultaneous open from both sides converges: both open at seq 0 and traffic flows', async () => {
    const p = linkPair({ ab: { latencyMs: 5 } });
    const both = Promise.all([p.a.open(), p.b.open()]);
    const outcome = both.then(() => undefined, (e: unknown) => e);
    assert.ok(p.clock.runUntil(() => p.a.state === 'up' && p.b.state === 'up', 10_000));
    assert.equal(await outcome, undefined);
    p.a.send(Uint8Array.of(1));
    p.b.send(Uint8Array.of(2));
    assert.ok(p.clock.runUntil(() => p.atA.length === 1 && p.atB.length === 1, p.clock.now() + 10_000));
    assert.deepEqual([hex(p.atB[0]!), hex(p.atA[0]!)], ['01', '02']);
  });

  it('drops an oversize reassembled message with E_MESSAGE_TOO_LONG and delivers the later ones', async () => {
    const p = linkPair({ ab: { latencyMs: 5, loss: 0.05 }, b: { maxMessage: 1000 } });
    const errors: FwError[] = [];
    p.b.on('error', (e) => errors.push(e));
    await openPair(p);
    const rng = new Rng(9);
    const sizes = [500, 5000, 600, 1000, 1001, 1];
    const msgs = sizes.map((n) => rng.bytes(n));
    sendAll(p.a, msgs);
    assert.ok(p.clock.runUntil(() => p.atB.length >= 4 && p.a.unacked === 0, p.clock.now() + MINUTE));
    assertSameMessages(p.atB, [msgs[0]!, msgs[2]!, msgs[3]!, msgs[5]!], 'a->b');
    assert.equal(errors.length, 2);
    assert.ok(errors.every((e) => isFwError(e, 'E_MESSAGE_TOO_LONG')));
    assert.equal(p.b.stats.oversize, 2);
  });

  it('configure() changes payload size and window mid-stream; everything still arrives', async () => {
    const p = linkPair({ ab: { latencyMs: 5, loss: 0.05, jitterMs: 4 }, seed: 11 });
    await openPair(p);
    const sizes: number[] = [];
    const tapParser = new FrameParser();
    p.ab.tap = (wire) => {
      for (const f of tapParser.push(wire)) if (f.kind === FrameKind.DATA) sizes.push(f.payload.length);
    };
    const msgs = randomMessages(new Rng(11), 30, 4000, 6000);
    sendAll(p.a, msgs);
    assert.ok(p.clock.runUntil(() => p.atB.length >= 5, p.clock.now() + MINUTE));
    const framesBefore = sizes.length;
    p.a.configure({ maxPayload: 2048, window: 16 });
    assert.ok(p.clock.runUntil(() => p.atB.length >= msgs.length, p.clock.now() + 10 * MINUTE));
    assertSameMessages(p.atB, msgs, 'a->b');
    assert.ok(sizes.slice(0, framesBefore).every((n) => n <= 256));
    const later = sizes.slice(framesBefore);
    assert.ok(later.some((n) => n > 256) && later.every((n) => n <= 2048));
  });

  it('works with zero latency and synchronous re-entrant delivery (output calls the peer directly)', async () => {
    const p = linkPair({ ab: { latencyMs: 0 } });
    await openPair(p);
    // Bypass the clock: each output() is delivered inside the call.
    const a = p.a;
    const b = p.b;
    p.ab.deliver = () => undefined;
    p.ba.deliver = () => undefined;
    p.ab.tap = (w) => b.receive(w);
    p.ba.tap = (w) => a.receive(w);
    const msgs = randomMessages(new Rng(12), 20, 1, 5000);
    const replies: Uint8Array[] = [];
    b.on('message', (m) => { b.send(m.subarray(0, 1)); });
    a.on('message', (m) => replies.push(m));
    sendAll(a, msgs);
    assertSameMessages(p.atB, msgs, 'a->b');
    assertSameMessages(replies, msgs.map((m) => m.subarray(0, 1)), 'b->a');
    assert.equal(a.unacked + b.unacked, 0);
  });
});
