import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { ReconnectGrace } from '../../gateway/reconnect-grace.ts';
import { FakeTimers } from './rollout/fake.ts';

/** A registry with presence only: tests set who is online and emit what the Fleet emits. */
class Presence extends EventEmitter<{ online: [{ id: string }]; status: [{ id: string }] }> {
  readonly online = new Set<string>();
  get(id: string): { online: boolean } | undefined {
    return { online: this.online.has(id) };
  }
  back(id: string, how: 'online' | 'status' = 'status'): void {
    this.online.add(id);
    this.emit(how, { id });
  }
}

describe('reconnect grace (a campaign right after a restart waits for the devices connected before it)', () => {
  let timers: FakeTimers;
  let presence: Presence;
  beforeEach(() => {
    timers = new FakeTimers(5000);
    presence = new Presence();
  });

  /** Starts a wait and records when it ended, on the fake clock. */
  function waitOn(grace: ReconnectGrace, signal?: AbortSignal): { endedAt: () => number | undefined } {
    let endedAt: number | undefined;
    void grace.wait(signal).then(() => {
      endedAt = timers.now();
    });
    return { endedAt: () => endedAt };
  }

  it('ends when the last expected device is back (by status or by connection), before the grace runs out', async () => {
    const grace = new ReconnectGrace(['dev-1', 'dev-2', 'dev-3'], presence, timers, 15_000);
    const w = waitOn(grace);
    presence.back('dev-2');
    timers.setTimeout(() => presence.back('dev-1', 'online'), 700);
    timers.setTimeout(() => presence.back('dev-3'), 1200);
    assert.equal(await timers.step(Infinity), true); // t = 5700: dev-1
    assert.equal(w.endedAt(), undefined, 'dev-3 is not back yet');
    assert.deepEqual(grace.waitingFor, ['dev-3']);
    await timers.step(Infinity); // t = 6200: dev-3
    assert.equal(w.endedAt(), 6200);
    assert.deepEqual(grace.waitingFor, []);
    assert.equal(await timers.step(Infinity), false, 'its grace timer was cleared');
    assert.equal(presence.listenerCount('status') + presence.listenerCount('online'), 0, 'it stopped listening');
  });

  it('ends when the grace runs out, counted from the gateway start, however many devices are still away', async () => {
    const grace = new ReconnectGrace(['dev-1', 'dev-2'], presence, timers, 15_000);
    timers.setTimeout(() => presence.back('dev-1'), 3000);
    await timers.step(Infinity); // t = 8000
    const w = waitOn(grace); // a campaign that starts 3 s after the gateway
    await timers.step(Infinity);
    assert.equal(w.endedAt(), 20_000, 'at start + 15 s, not at the campaign start + 15 s');
    assert.deepEqual(grace.waitingFor, []);
    const later = waitOn(grace);
    await timers.step(Infinity);
    assert.equal(later.endedAt(), 20_000, 'a campaign after the grace does not wait');
  });

  it('does not wait when every expected device is already back, when none was expected, or with a grace of 0', async () => {
    presence.back('dev-1');
    for (const grace of [
      new ReconnectGrace(['dev-1'], presence, timers, 15_000),
      new ReconnectGrace([], presence, timers, 15_000),
      new ReconnectGrace(['dev-9'], presence, timers, 0),
    ]) {
      const w = waitOn(grace);
      await timers.step(0);
      assert.equal(w.endedAt(), 5000);
    }
    assert.equal(await timers.step(Infinity), false, 'no timer left');
  });

  it('a device that is not expected coming back ends nothing; an abort (cancel, shutdown) ends one wait; close() ends all', async () => {
    const grace = new ReconnectGrace(['dev-1'], presence, timers, 15_000);
    const stop = new AbortController();
    const a = waitOn(grace, stop.signal);
    const b = waitOn(grace);
    const c = waitOn(grace);
    presence.back('dev-7');
    await timers.step(0);
    assert.deepEqual([a.endedAt(), b.endedAt(), c.endedAt()], [undefined, undefined, undefined]);
    stop.abort();
    await timers.step(0);
    assert.deepEqual([a.endedAt(), b.endedAt(), c.endedAt()], [5000, undefined, undefined]);
    grace.close();
    await timers.step(0);
    assert.deepEqual([b.endedAt(), c.endedAt()], [5000, 5000]);
    assert.equal(await timers.step(Infinity), false);
  });
});
