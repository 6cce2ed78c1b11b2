import assert from 'node:assert/strict';
import { FailureBackoff, ScryptLimiter } from '../../gateway/auth-guard.ts';
import { isFwError } from '../../protocol/errors.ts';

/** Issue 18 item 6 in isolation, on a fake clock: the failure backoff and the scrypt limiter. */
describe('gateway/auth-guard', () => {
  describe('FailureBackoff', () => {
    const clock = { now: 0 };
    const make = (o: Partial<ConstructorParameters<typeof FailureBackoff>[0]> = {}): FailureBackoff => new FailureBackoff({ baseMs: 1000, maxMs: 8000, ...o }, () => clock.now);
    beforeEach(() => {
      clock.now = 10_000;
    });

    it('nothing to wait for before any failure', () => {
      assert.equal(make().refusal('10.0.0.1', 'dev-a'), undefined);
    });

    it('doubles per failure in a row up to the cap, per address and per id, and says which and for how long', () => {
      const b = make();
      const waits: number[] = [];
      for (let i = 0; i < 6; i++) {
        b.failed('10.0.0.1', 'dev-a');
        const r = b.refusal('10.0.0.1', 'dev-a');
        waits.push(Number(/retry in (\d+) ms/.exec(r ?? '')?.[1]));
        clock.now += waits.at(-1)!; // wait it out exactly
      }
      assert.deepEqual(waits, [1000, 2000, 4000, 8000, 8000, 8000]);
      b.failed('10.0.0.2', 'dev-b');
      assert.match(b.refusal('10.0.0.2', 'other')!, /^too many failed logins from 10\.0\.0\.2: retry in 1000 ms$/);
      assert.match(b.refusal('10.0.0.3', 'dev-b')!, /^too many failed logins for dev-b: retry in 1000 ms$/);
      assert.equal(b.refusal('10.0.0.3', 'dev-c'), undefined);
    });

    it('the wait counts from the last failure; at its end checks run again', () => {
      const b = make();
      b.failed('a', 'x');
      clock.now += 999;
      assert.match(b.refusal('a', 'y')!, /retry in 1 ms/);
      clock.now += 1;
      assert.equal(b.refusal('a', 'y'), undefined);
    });

    it('a success clears the address and the id', () => {
      const b = make();
      b.failed('a', 'x');
      b.succeeded('a', 'x');
      assert.equal(b.refusal('a', 'x'), undefined);
      b.failed('a', 'x');
      assert.match(b.refusal('a', 'x')!, /retry in 1000 ms/, 'a new series starts at the base');
    });

    it('a failure long after the last one (over twice the cap) starts a new series', () => {
      const b = make();
      for (let i = 0; i < 3; i++) b.failed('a', 'x');
      clock.now += 16_000;
      b.failed('a', 'x');
      assert.match(b.refusal('a', 'x')!, /retry in 8000 ms/, 'within twice the cap: the series goes on');
      clock.now += 16_001;
      b.failed('a', 'x');
      assert.match(b.refusal('a', 'x')!, /retry in 1000 ms/);
    });

    it('baseMs 0: off', () => {
      const b = make({ baseMs: 0 });
      b.failed('a', 'x');
      assert.equal(b.refusal('a', 'x'), undefined);
    });

    it('tracks at most maxTracked addresses and ids, forgetting the oldest', () => {
      const b = make({ maxTracked: 2 });
      b.failed('a1', 'i1');
      b.failed('a2', 'i2');
      b.failed('a1', 'i1'); // refreshed: now the newest
      b.failed('a3', 'i3');
      assert.equal(b.refusal('a2', 'other'), undefined, 'a2 was the oldest');
      assert.ok(b.refusal('a1', 'other'));
      assert.ok(b.refusal('other', 'i3'));
    });
  });

  describe('ScryptLimiter', () => {
    const gate = (): { p: Promise<number>; open: (v: number) => void } => {
      let open!: (v: number) => void;
      return { p: new Promise<number>((r) => { open = r; }), open };
    };

    it('runs at most maxConcurrent at once, in order, and hands each freed slot to the next waiting', async () => {
      const l = new ScryptLimiter(2, 10);
      const gates = Array.from({ length: 5 }, gate);
      const started: number[] = [];
      const runs = gates.map((g, i) => l.run(() => { started.push(i); return g.p; }));
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(started, [0, 1]);
      assert.deepEqual([l.running, l.queued], [2, 3]);
      gates[1]!.open(1);
      await runs[1];
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(started, [0, 1, 2]);
      // a new caller arriving now must queue behind the waiting ones, not jump in
      const late = gate();
      const lateRun = l.run(() => { started.push(9); return late.p; });
      await new Promise((r) => setImmediate(r));
      assert.equal(l.running, 2);
      for (const g of gates) g.open(0);
      late.open(9);
      assert.deepEqual(await Promise.all([...runs, lateRun]), [0, 1, 0, 0, 0, 9]);
      assert.deepEqual(started, [0, 1, 2, 3, 4, 9]);
      assert.equal(l.peak, 2);
      assert.equal(l.runs, 6);
      assert.deepEqual([l.running, l.queued], [0, 0]);
    });

    it('refuses at once (E_BROKER_LIMIT) when maxQueued are waiting; a failing derivation frees its slot', async () => {
      const l = new ScryptLimiter(1, 1);
      const g = gate();
      const first = l.run(() => g.p);
      const second = l.run(async () => 2);
      await assert.rejects(l.run(async () => 3), (e: unknown) => isFwError(e, 'E_BROKER_LIMIT') && /1 password checks already waiting/.test(e.message));
      assert.equal(l.refused, 1);
      g.open(1);
      assert.deepEqual(await Promise.all([first, second]), [1, 2]);
      await assert.rejects(l.run(async () => { throw new Error('boom'); }), /boom/);
      assert.equal(await l.run(async () => 4), 4);
      assert.equal(l.running, 0);
    });

    it('maxConcurrent must be a whole number of 1 or more', () => {
      for (const n of [0, 1.5, -1]) assert.throws(() => new ScryptLimiter(n, 1), (e: unknown) => isFwError(e, 'E_CONFIG'));
      assert.equal(new ScryptLimiter(1, 0).maxConcurrent, 1);
    });
  });
});
