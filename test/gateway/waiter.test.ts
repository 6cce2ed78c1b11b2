import assert from 'node:assert/strict';
import { Inbox, waitForValue } from '../../gateway/waiter.ts';
import { isFwError } from '../../protocol/errors.ts';
import { FakeTimers } from './rollout/fake.ts';

describe('waiter and inbox', () => {
  it('an inbox keeps values that arrive between two awaits, in order, bounded', async () => {
    const timers = new FakeTimers();
    const inbox = new Inbox<number>(timers, 3);
    inbox.push(1);
    inbox.push(2);
    inbox.push(3);
    inbox.push(4); // over capacity: the oldest goes
    assert.equal(inbox.dropped, 1);
    const got = [];
    for (let i = 0; i < 3; i++) got.push(await inbox.next(10, 'E_DEVICE_TIMEOUT', 'x'));
    assert.deepEqual(got, [2, 3, 4]);
    const pending = inbox.next(100, 'E_DEVICE_TIMEOUT', 'the fifth');
    inbox.push(5);
    assert.equal(await pending, 5);
  });

  it('an inbox wait times out with the code and names what it waited for', async () => {
    const timers = new FakeTimers();
    const inbox = new Inbox<number>(timers);
    const p = inbox.next(250, 'E_DEVICE_TIMEOUT', 'chunk ack from dev-1');
    const check = assert.rejects(p, (err: unknown) => isFwError(err, 'E_DEVICE_TIMEOUT') && /250 ms.*chunk ack from dev-1/.test((err as Error).message));
    assert.ok(await timers.step(1000));
    await check;
  });

  it('a closed inbox fails the current and every later wait at once', async () => {
    const timers = new FakeTimers();
    const inbox = new Inbox<number>(timers);
    const p = inbox.next(1000, 'E_DEVICE_TIMEOUT', 'x');
    inbox.close(new Error('cancelled'));
    await assert.rejects(p, /cancelled/);
    inbox.push(1);
    await assert.rejects(inbox.next(1000, 'E_DEVICE_TIMEOUT', 'x'), /cancelled/);
  });

  it('waitForValue resolves on the first match and unregisters; times out otherwise', async () => {
    const timers = new FakeTimers();
    const listeners = new Set<(v: number) => void>();
    const listen = (fn: (v: number) => void): (() => void) => {
      listeners.add(fn);
      return () => listeners.delete(fn);
    };
    const even = (v: number): v is number => v % 2 === 0;
    const p = waitForValue(listen, even, 100, timers, 'E_DEVICE_TIMEOUT', 'an even number');
    for (const fn of [...listeners]) fn(3);
    for (const fn of [...listeners]) fn(4);
    assert.equal(await p, 4);
    assert.equal(listeners.size, 0);
    const q = waitForValue(listen, even, 100, timers, 'E_DEVICE_TIMEOUT', 'an even number');
    const check = assert.rejects(q, /an even number/);
    await timers.step(1000);
    await check;
    assert.equal(listeners.size, 0);
  });
});
