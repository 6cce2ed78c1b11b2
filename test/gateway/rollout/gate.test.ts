import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { ALWAYS_OPEN, windowGate, type WindowSource } from '../../../gateway/rollout/gate.ts';
import { FakeWindows } from './campaign-rig.ts';
import { FakeTimers } from './fake.ts';

/**
 * The window gate (gateway/rollout/gate.ts): a campaign asks it whether transfers and
 * activations may run (docs/operations.md "Maintenance windows") and runs its expiry on its clock.
 */
const MAX_TIMER = 2 ** 31 - 1;

describe('the window gate of a campaign (gate.ts)', () => {
  it('without configured windows the gate is the always-open one', () => {
    const none = Object.assign(new EventEmitter(), { configured: false, state: () => ({ open: false }) }) as unknown as WindowSource;
    assert.equal(windowGate(none, new FakeTimers()), ALWAYS_OPEN);
    assert.equal(ALWAYS_OPEN.windowed, false);
    assert.equal(ALWAYS_OPEN.isOpen(), true);
    assert.equal(ALWAYS_OPEN.endsAt(), undefined);
    assert.equal(ALWAYS_OPEN.nextOpenAt(), undefined);
    const before = Date.now();
    const now = ALWAYS_OPEN.now();
    assert.ok(now >= before && now <= Date.now(), 'the wall clock');
    let changes = 0;
    const off = ALWAYS_OPEN.onChange(() => changes++);
    off();
    assert.equal(changes, 0);
    let ran = 0;
    ALWAYS_OPEN.at(Date.now() - 1, () => ran++);
    assert.equal(ran, 1, 'an instant already passed runs at once');
    const cancel = ALWAYS_OPEN.at(Date.now() + 3_600_000, () => ran++);
    cancel();
    assert.equal(ran, 1);
  });

  it('over windows: open or not on the windows\' clock, the close of the open window, the next opening', async () => {
    const timers = new FakeTimers(1000);
    const windows = new FakeWindows(timers, [{ from: 2000, to: 5000 }, { from: 9000, to: 9500 }]);
    const gate = windowGate(windows, timers);
    assert.equal(gate.windowed, true);
    assert.equal(gate.now(), 1000);
    assert.deepEqual([gate.isOpen(), gate.endsAt(), gate.nextOpenAt()], [false, undefined, 2000]);
    const seen: [number, boolean][] = [];
    const off = gate.onChange((open) => seen.push([timers.now(), open]));
    await timers.step(2000);
    assert.equal(gate.now(), 2000);
    assert.deepEqual([gate.isOpen(), gate.endsAt(), gate.nextOpenAt()], [true, 5000, 9000]);
    await timers.step(5000);
    assert.deepEqual([gate.isOpen(), gate.endsAt(), gate.nextOpenAt()], [false, undefined, 9000]);
    assert.deepEqual(seen, [[2000, true], [5000, false]]);
    off();
    assert.equal(windows.listenerCount('open') + windows.listenerCount('close'), 0, 'unsubscribed from both');
    await timers.step(10_000);
    await timers.step(10_000);
    assert.deepEqual(seen, [[2000, true], [5000, false]], 'no call after unsubscribing');
  });

  it('runs a function at an instant on its clock, past the longest timer (2^31 - 1 ms), and cancels it', async () => {
    const timers = new FakeTimers(0);
    const gate = windowGate(new FakeWindows(timers, [{ from: 0, to: Number.MAX_SAFE_INTEGER }]), timers);
    const ran: number[] = [];
    const at = MAX_TIMER + 5000;
    gate.at(at, () => ran.push(timers.now()));
    assert.equal(await timers.step(at), true);
    assert.equal(timers.now(), MAX_TIMER, 'one longest timer first');
    assert.equal(ran.length, 0);
    assert.equal(await timers.step(at), true);
    assert.deepEqual(ran, [at], 'then the rest of the way');

    gate.at(timers.now(), () => ran.push(-1));
    assert.deepEqual(ran, [at, -1], 'now: at once');

    const cancel = gate.at(timers.now() + MAX_TIMER + 10, () => ran.push(-2));
    await timers.step(timers.now() + MAX_TIMER);
    cancel(); // cancels the re-armed timer
    assert.equal(await timers.step(Number.MAX_SAFE_INTEGER), false, 'nothing left to run');
    assert.deepEqual(ran, [at, -1]);

    const early = gate.at(timers.now() + 10, () => ran.push(-3));
    early();
    assert.equal(await timers.step(Number.MAX_SAFE_INTEGER), false);
    assert.deepEqual(ran, [at, -1]);
  });
});
