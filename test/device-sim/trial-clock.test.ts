import assert from 'node:assert/strict';
import { TrialClock } from '../../device-sim/trial-clock.ts';
import { FakeClock } from '../protocol/link/helpers.ts';

/** docs/protocol.md §6.9.3: the trial time runs only while the gateway's broker is reachable, within a bound from the trial boot (issue 17.5). */
describe('device trial clock (§6.9.3)', () => {
  function trial(connected: boolean): { clock: FakeClock; t: TrialClock; expired: string[] } {
    const clock = new FakeClock();
    const expired: string[] = [];
    const t = new TrialClock({ timeoutMs: 30_000, maxMs: 600_000, timers: clock, now: () => clock.now(), onExpire: (why) => expired.push(`${clock.now()} ${why}`) }, connected);
    return { clock, t, expired };
  }

  it('connected throughout: reverts at the trial timeout', () => {
    const { clock, expired } = trial(true);
    clock.advance(29_999);
    assert.deepEqual(expired, []);
    clock.advance(1);
    assert.deepEqual(expired, ['30000 trial not confirmed within 30000 ms']);
  });

  it('the gateway down for longer than the timeout mid-trial: the trial waits, and the time left runs once it is back', () => {
    const { clock, t, expired } = trial(true);
    clock.advance(10_000);
    t.disconnected();
    clock.advance(43_000); // the outage of issue 17.5
    assert.deepEqual(expired, []);
    t.connected();
    clock.advance(19_999);
    assert.deepEqual(expired, []);
    clock.advance(1);
    assert.equal(expired.length, 1);
    assert.match(expired[0]!, /^73000 /);
  });

  it('confirmed in time after the outage: no revert', () => {
    const { clock, t, expired } = trial(true);
    t.disconnected();
    clock.advance(100_000);
    t.connected();
    clock.advance(1000);
    t.stop();
    clock.advance(1_000_000);
    assert.deepEqual(expired, []);
  });

  it('never reaches the gateway: reverted at the bound from the trial boot', () => {
    const { clock, expired } = trial(false);
    clock.advance(600_000);
    assert.equal(expired.length, 1);
    assert.match(expired[0]!, /^600000 trial not confirmed within 600000 ms of the trial boot/);
  });

  it('the bound holds across reconnects too', () => {
    const { clock, t, expired } = trial(true);
    for (let i = 0; i < 100 && expired.length === 0; i++) {
      clock.advance(4000); // 8 of these would make the 30 s, but the bound comes first
      t.disconnected();
      clock.advance(100_000);
      t.connected();
    }
    assert.equal(expired.length, 1);
    assert.match(expired[0]!, /^600000 /);
  });
});
