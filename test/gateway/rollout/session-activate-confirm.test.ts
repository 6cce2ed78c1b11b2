import assert from 'node:assert/strict';
import type { DeviceEvent } from '../../../gateway/device-channel.ts';
import { FwError } from '../../../protocol/errors.ts';
import type { GatewayMessage } from '../../../protocol/ota.ts';
import { FakeTimers } from './fake.ts';
import { commands, harness, manifest, oldBoot, scriptedDevice, status, trialBoot, UNCONFIRMED, type DeviceScript } from './session-harness.ts';

/**
 * A device session from `activate` on (device-session.ts, docs/protocol.md §6.8–§6.10): what counts
 * as the device acting on `activate`, the boot report and what each kind of boot means, and the
 * confirmation with the device dropping off, reconnecting, rebooting or confirming late.
 */

const activated = (sid: number): DeviceEvent[] => [{ t: 'activated', sid, slot: 'b' }, { t: 'offline' }];
/** The device reboots into the trial and then answers each confirm with `answer(n)`. */
const confirming = (answer: (n: number) => DeviceEvent[], more: DeviceScript = {}) => scriptedDevice({ confirm: (_m, n) => answer(n), ...more });
const confirmed: DeviceEvent = { t: 'confirmed', sha256: manifest.sha256, version: '1.1.0' };

describe('device session: acting on activate (§6.8)', () => {
  it('the device dropping off to reboot counts as acting on it, without `activated`', async () => {
    const h = harness(scriptedDevice({ activate: () => [{ t: 'offline' }, trialBoot] }));
    const r = await h.run();
    assert.deepEqual([r.outcome, r.code, r.retries], ['updated', 'ok', 0]);
    assert.equal(h.ch.count('activate'), 1);
  });

  it('`activated` of another session is not this one\'s: a device that does not act in activateTimeoutMs is offered again', async () => {
    const h = harness(scriptedDevice({ activate: (m, n) => (n === 1 ? [{ t: 'activated', sid: m.sid + 1, slot: 'b' }] : [...activated(m.sid), trialBoot]) }));
    const r = await h.run();
    assert.deepEqual([r.outcome, r.retries], ['updated', 1]);
    assert.deepEqual(commands(h.ch), ['offer', 'verify', 'activate', 'offer', 'verify', 'activate', 'confirm']);
    assert.equal(h.timers.now(), 10_000 + 500, 'activateTimeoutMs, then the backoff');

    const once = await harness(scriptedDevice({ activate: () => [] }), { maxAttempts: 1 }).run();
    assert.deepEqual([once.outcome, once.code], ['failed', 'retries-exhausted']);
    assert.equal(once.reason, 'timed out after 10000 ms waiting for activation from dev-1 (after 1 attempts)');
  });

  it('a late duplicate of another message of the session (an ack) is not acting on activate', async () => {
    const h = harness(scriptedDevice({
      activate: (m, n) => (n === 1 ? [{ t: 'ack', sid: m.sid, next: 8192, missing: [] }] : [...activated(m.sid), trialBoot]),
    }));
    const r = await h.run();
    assert.deepEqual([r.outcome, r.retries, h.ch.count('activate')], ['updated', 1, 2]);
  });

  it('a campaign cancelled while the activating record is made durable never sends activate', async () => {
    const ac = new AbortController();
    const h = harness(scriptedDevice(), {}, {
      signal: ac.signal,
      beforeActivate: async () => { ac.abort(); },
    });
    const r = await h.run();
    assert.deepEqual([r.outcome, r.code, r.reason], ['failed', 'cancelled', 'campaign cancelled before activate was sent']);
    assert.deepEqual(commands(h.ch), ['offer', 'verify']);
  });

  it('a send of activate that fails leaves the device unactivated: retried', async () => {
    const h = harness(scriptedDevice());
    const send = h.ch.send.bind(h.ch);
    let failed = false;
    h.ch.send = async (id: string, m: GatewayMessage) => {
      if (m.t === 'activate' && !failed) {
        failed = true;
        throw new FwError('E_DEVICE_OFFLINE', 'dev-1 is offline');
      }
      return send(id, m);
    };
    const r = await h.run();
    assert.deepEqual([r.outcome, r.retries], ['updated', 1]);
  });
});

describe('device session: the boot report (§6.9.4)', () => {
  it('rebootMs: from activate sent to the boot report', async () => {
    const timers = new FakeTimers();
    const h = harness(scriptedDevice({
      verify: (m) => {
        timers.setTimeout(() => h.ch.emit({ t: 'verified', sid: m.sid, ok: true }), 3000);
        return [];
      },
      activate: (m) => {
        timers.setTimeout(() => h.ch.emit(trialBoot), 7000);
        return activated(m.sid);
      },
    }), {}, {}, timers);
    const r = await h.run();
    assert.equal(r.outcome, 'updated');
    assert.equal(r.rebootMs, 7000);
    assert.equal(r.durationMs, 10_000);
    assert.deepEqual(h.phases.slice(-3).map(([p]) => p), ['activating', 'rebooting', 'confirming']);
  });

  it('no rebootMs in a result that never got to a boot report', async () => {
    const r = await harness(scriptedDevice({ verify: (m) => [{ t: 'verified', sid: m.sid, ok: false, code: 'signature' }] })).run();
    assert.equal('rebootMs' in r, false);
  });

  it('no boot report within rebootTimeoutMs: failed / timeout, with the time', async () => {
    const h = harness(scriptedDevice({ activate: (m) => activated(m.sid) }));
    const r = await h.run();
    assert.deepEqual([r.outcome, r.code, r.reason], ['failed', 'timeout', 'device did not report a boot within 20000 ms of activation']);
    assert.equal(h.ch.count('activate'), 1);
  });

  it('back on the old image with nothing reverted: the activation never took effect (connection-lost, retried)', async () => {
    const h = harness(scriptedDevice({ activate: () => [{ t: 'offline' }, oldBoot()] }), { maxAttempts: 1 });
    const r = await h.run();
    assert.deepEqual([r.outcome, r.code], ['failed', 'connection-lost']);
    assert.equal(r.reason, 'device rebooted on 1.0.0 before the activation took effect (after 1 attempts)');
  });

  it('a trial reverted before its boot report: rolled back, retried, and the reason says when', async () => {
    const h = harness(scriptedDevice({ activate: (m) => [...activated(m.sid), oldBoot({ reverted: true, reason: UNCONFIRMED })] }), { maxAttempts: 1 });
    const r = await h.run();
    assert.deepEqual([r.outcome, r.code], ['rolled-back', 'reverted']);
    assert.equal(r.reason, 'device came back on 1.0.0 (trial image not confirmed before reset): the trial ended before its trial was reported, unconfirmed (after 1 attempts)');
    const bare = await harness(scriptedDevice({ activate: (m) => [...activated(m.sid), oldBoot({ reverted: true })] }), { maxAttempts: 1 }).run();
    assert.equal(bare.reason, 'device came back on 1.0.0: the trial ended before its trial was reported, unconfirmed (after 1 attempts)');
  });

  it('the new image booted without a trial state: failed / unsupported, never confirmed', async () => {
    const h = harness(scriptedDevice({ activate: (m) => [...activated(m.sid), { ...trialBoot, trial: false }] }));
    const r = await h.run();
    assert.deepEqual([r.outcome, r.code, r.reason], ['failed', 'unsupported', 'device booted the new image without a trial state; it cannot be confirmed']);
    assert.equal(h.ch.count('confirm'), 0);
  });
});

describe('device session: confirming (§6.10)', () => {
  it('a `confirmed` naming another image is not the confirmation', async () => {
    const h = harness(confirming((n) => (n === 1 ? [{ ...confirmed, sha256: 'a'.repeat(64) }] : [confirmed])));
    const r = await h.run();
    assert.deepEqual([r.outcome, h.ch.count('confirm')], ['updated', 2]);
    assert.equal(h.timers.now(), 5000, 'the first confirm went unanswered for confirmTimeoutMs');
  });

  it('a repeated boot report (QoS 1 duplicate) is not the confirmation', async () => {
    const h = harness(confirming((n) => (n === 1 ? [trialBoot] : [confirmed])));
    const r = await h.run();
    assert.deepEqual([r.outcome, h.ch.count('confirm')], ['updated', 2]);
  });

  it('no confirm is sent once trialTimeoutMs + rebootTimeoutMs since the boot report have passed', async () => {
    // the second wait is cut at 50 s after the boot report; no third confirm at that instant
    const h = harness(confirming(() => []), { confirmTimeoutMs: 30_000, confirmTries: 3, trialTimeoutMs: 30_000 });
    const r = await h.run();
    assert.deepEqual([r.outcome, r.code], ['failed', 'timeout']);
    assert.equal(r.reason, 'device neither confirmed (2 unanswered confirms) nor reported a revert within 50000 ms of its boot report');
    assert.equal(h.ch.count('confirm'), 2);
    assert.equal(h.timers.now(), 50_000);
  });

  it('the device dropping off and reconnecting (status) is sent confirm again', async () => {
    const h = harness(confirming((n) => (n === 1 ? [{ t: 'offline' }, { t: 'offline' }, status({ version: '1.1.0', slot: 'b', trial: true })] : [confirmed])));
    const r = await h.run();
    assert.deepEqual([r.outcome, r.retries, h.ch.count('confirm')], ['updated', 0, 2]);
    assert.equal(h.timers.now(), 0, 'no confirm timeout waited for');
  });

  it('after dropping off, only its status or boot means it is back: confirm again then, not at a stray event', async () => {
    const timers = new FakeTimers();
    const at: number[] = [];
    const h = harness(confirming((n) => {
      at.push(timers.now());
      if (n === 1) {
        timers.setTimeout(() => h.ch.emit(status({ version: '1.1.0', slot: 'b', trial: true })), 3000);
        return [{ t: 'offline' }, { t: 'ack', sid: 1, next: 0, missing: [] }];
      }
      return [confirmed];
    }), {}, {}, timers);
    const r = await h.run();
    assert.equal(r.outcome, 'updated');
    assert.deepEqual(at, [0, 3000]);
  });

  it('back with a status on the old image (its boot report lost): no revert can be read from it, confirms go on until the step\'s bound (§6.9.1)', async () => {
    const h = harness(confirming((n) => (n === 1 ? [{ t: 'offline' }, status()] : [])), { confirmTimeoutMs: 5000, confirmTries: 3, trialTimeoutMs: 30_000 });
    const r = await h.run();
    assert.deepEqual([r.outcome, r.code], ['failed', 'timeout']);
    assert.equal(r.reason, 'device neither confirmed (3 unanswered confirms) nor reported a revert within 50000 ms of its boot report');
    assert.equal(h.ch.count('confirm'), 4, 'the one before it dropped off, then confirmTries');
    assert.equal(h.timers.now(), 50_000);
  });

  it('the device dropping off and not coming back within offlineWaitMs: failed / timeout', async () => {
    const h = harness(confirming(() => [{ t: 'offline' }]), { offlineWaitMs: 7000 });
    const r = await h.run();
    assert.deepEqual([r.outcome, r.code], ['failed', 'timeout']);
    assert.equal(r.reason, 'device went offline before confirming and did not come back in time (offlineWaitMs 7000 ms)');
    assert.equal(h.timers.now(), 7000);
  });

  it('back after a reboot still on the new image, nothing reverted: confirm again', async () => {
    const h = harness(confirming((n) => (n === 1 ? [{ t: 'offline' }, trialBoot] : [confirmed])));
    const r = await h.run();
    assert.deepEqual([r.outcome, r.retries, h.ch.count('confirm')], ['updated', 0, 2]);
  });

  it('back on the old image without a revert: rolled back / reverted, not retried', async () => {
    const h = harness(confirming(() => [{ t: 'offline' }, oldBoot()]));
    const r = await h.run();
    assert.deepEqual([r.outcome, r.code, r.reason, r.retries], ['rolled-back', 'reverted', 'device came back on 1.0.0', 0]);
    assert.deepEqual([h.ch.count('offer'), h.ch.count('activate')], [1, 1]);
  });

  it('back reverted (unconfirmed trial cut short): retried, and the reason says when', async () => {
    const h = harness(confirming(() => [{ t: 'offline' }, oldBoot({ reverted: true, reason: UNCONFIRMED })]), { maxAttempts: 1 });
    const r = await h.run();
    assert.deepEqual([r.outcome, r.code], ['rolled-back', 'reverted']);
    assert.equal(r.reason, 'device came back on 1.0.0 (trial image not confirmed before reset): the trial ended after it went offline before confirming, unconfirmed (after 1 attempts)');
  });

  it('back reverted by a failed self-test: self-test-failed, not retried', async () => {
    const h = harness(confirming(() => [{ t: 'offline' }, oldBoot({ reverted: true, reason: 'Self-Test failed: sensor' })]));
    const r = await h.run();
    assert.deepEqual([r.outcome, r.code, r.reason, r.retries], ['rolled-back', 'self-test-failed', 'device came back on 1.0.0 (Self-Test failed: sensor)', 0]);
  });

  it('a send of confirm that fails after the activation: ended, never a second activation', async () => {
    const h = harness(scriptedDevice());
    const send = h.ch.send.bind(h.ch);
    h.ch.send = async (id: string, m: GatewayMessage) => {
      if (m.t === 'confirm') throw new FwError('E_DEVICE_OFFLINE', 'dev-1 is offline');
      return send(id, m);
    };
    const r = await h.run();
    assert.deepEqual([r.outcome, r.code, r.reason, r.retries], ['failed', 'connection-lost', 'dev-1 is offline', 0]);
    assert.deepEqual([h.ch.count('offer'), h.ch.count('activate')], [1, 1]);
  });

  it('a campaign cancelled while waiting for the confirmation ends it at once', async () => {
    const ac = new AbortController();
    const h = harness(confirming(() => {
      setImmediate(() => ac.abort());
      return [];
    }), {}, { signal: ac.signal });
    const r = await h.run();
    assert.deepEqual([r.outcome, r.code, r.reason], ['failed', 'cancelled', 'campaign cancelled']);
    assert.equal(h.ch.count('confirm'), 1);
  });
});

describe('device session: after confirmTries unanswered confirms (§6.10.2)', () => {
  const tries = { confirmTimeoutMs: 5000, confirmTries: 3, trialTimeoutMs: 30_000 };

  it('a late `confirmed` still counts', async () => {
    const timers = new FakeTimers();
    const h = harness(confirming((n) => {
      if (n === 3) timers.setTimeout(() => h.ch.emit(confirmed), 6000);
      return [];
    }), tries, {}, timers);
    const r = await h.run();
    assert.deepEqual([r.outcome, r.code, h.ch.count('confirm')], ['updated', 'ok', 3]);
    assert.equal(h.timers.now(), 16_000);
  });

  it('a reboot back on the new image without a revert: confirmed meanwhile, confirm once more', async () => {
    const timers = new FakeTimers();
    const h = harness(confirming((n) => {
      if (n === 3) timers.setTimeout(() => h.ch.emit({ ...trialBoot, trial: false }), 6000);
      return n === 4 ? [confirmed] : [];
    }), tries, {}, timers);
    const r = await h.run();
    assert.deepEqual([r.outcome, h.ch.count('confirm')], ['updated', 4]);
  });

  it('a revert: rolled back with what the device said; self-test-failed when it names the self-test', async () => {
    const late = (boot: DeviceEvent) => {
      const timers = new FakeTimers();
      const h = harness(confirming((n) => {
        if (n === 3) timers.setTimeout(() => h.ch.emit(boot), 6000);
        return [];
      }), tries, {}, timers);
      return h.run();
    };
    const selfTest = await late(oldBoot({ reverted: true, reason: 'self-test failed' }));
    assert.deepEqual([selfTest.outcome, selfTest.code], ['rolled-back', 'self-test-failed']);
    assert.equal(selfTest.reason, 'device never confirmed the new image (3 confirms unanswered) and came back on 1.0.0 (self-test failed)');
    const bare = await late(oldBoot({ reverted: true }));
    assert.deepEqual([bare.outcome, bare.code, bare.reason], ['rolled-back', 'reverted', 'device never confirmed the new image (3 confirms unanswered) and came back on 1.0.0']);
    const old = await late(oldBoot());
    assert.deepEqual([old.outcome, old.code, old.retries], ['rolled-back', 'reverted', 0], 'the old image without a revert flag: it did not keep the new one');
  });
});
