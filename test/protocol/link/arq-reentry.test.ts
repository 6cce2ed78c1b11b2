import assert from 'node:assert/strict';
import { ArqLink } from '../../../protocol/link/index.ts';
import { FakeClock, hex } from './helpers.ts';

// docs/protocol.md §4 with the output delivered inside the call (a zero-latency line): listeners
// that send, receive or open from within an event see a consistent link (ArqLink flush()).

function wired(): { clock: FakeClock; a: ArqLink; b: ArqLink; atA: string[]; atB: string[] } {
  const clock = new FakeClock();
  let a!: ArqLink;
  let b!: ArqLink;
  let n = 0;
  a = new ArqLink({ timers: clock, window: 2, maxPayload: 64, nonce: () => ++n, output: (w) => b.receive(w.slice()) });
  b = new ArqLink({ timers: clock, window: 2, maxPayload: 64, nonce: () => 100 + ++n, output: (w) => a.receive(w.slice()) });
  const atA: string[] = [];
  const atB: string[] = [];
  a.on('message', (m) => atA.push(hex(m)));
  b.on('message', (m) => atB.push(hex(m)));
  return { clock, a, b, atA, atB };
}

describe('link ARQ with synchronous delivery (re-entrant listeners)', () => {
  it('a reply sent from the message listener is delivered, in order, and everything is acknowledged', () => {
    const { a, b, atA, atB } = wired();
    b.on('message', (m) => { b.send(m.subarray(0, 1)); });
    const msgs = [new Uint8Array(150).fill(1), Uint8Array.of(2), new Uint8Array(70).fill(3)];
    for (const m of msgs) a.send(m);
    assert.deepEqual(atB, msgs.map(hex));
    assert.deepEqual(atA, ['01', '02', '03']);
    assert.equal(a.unacked + b.unacked + a.queuedBytes + b.queuedBytes, 0);
  });

  it('both sides opening at once converge, and traffic flows both ways', async () => {
    const { a, b, atA, atB } = wired();
    await Promise.all([a.open(), b.open()]);
    assert.deepEqual([a.state, b.state], ['up', 'up']);
    a.send(Uint8Array.of(1));
    b.send(Uint8Array.of(2));
    assert.deepEqual([atA, atB], [['02'], ['01']]);
  });

  it('an idle listener may send again', () => {
    const { a, atB } = wired();
    let idles = 0;
    a.on('idle', () => {
      if (++idles < 3) a.send(Uint8Array.of(idles));
    });
    a.send(Uint8Array.of(0));
    assert.deepEqual(atB, ['00', '01', '02']);
    assert.equal(idles, 3);
  });
});
