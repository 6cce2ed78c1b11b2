import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { Writable } from 'node:stream';
import pino from 'pino';
import type { SessionDeps } from '../../../gateway/rollout/device-session.ts';
import type { GatewayMessage } from '../../../protocol/ota.ts';
import { FakeTimers } from './fake.ts';
import { commands, harness, image, manifest, oldBoot, scriptedDevice, status, trialBoot, UNCONFIRMED } from './session-harness.ts';

/**
 * A device session as a whole (device-session.ts, docs/protocol.md §8.1): the session id an abort
 * names, waiting for an offline device, the retry bounds at their edges, what a session leaves
 * behind, the progress it reports, the hooks a campaign gives it (mayActivate, onTransferred) and
 * resuming past `activate` after a gateway restart.
 */

type View = ReturnType<NonNullable<SessionDeps['resumeAfterActivate']>>;
const slot = (state: string, version?: string, sha256?: string) => ({ state, ...(version ? { version } : {}), ...(sha256 ? { sha256 } : {}) }) as NonNullable<View>['slots']['a'];
const inTrial: View = { version: '1.1.0', slot: 'b', trial: true, slots: { a: slot('confirmed', '1.0.0'), b: slot('trial', '1.1.0', manifest.sha256) } };
const pending: View = { version: '1.0.0', slot: 'a', trial: false, slots: { a: slot('confirmed', '1.0.0'), b: slot('pending', '1.1.0', manifest.sha256) } };

describe('device session: the session id an abort names (openSid, §6.11)', () => {
  it('none before the offer; the offer\'s sid until activate is sent; none from then on', async () => {
    const seen: [string, number | undefined][] = [];
    const h = harness(scriptedDevice());
    assert.equal(h.session.openSid, undefined);
    const send = h.ch.send.bind(h.ch);
    h.ch.send = async (id: string, m: GatewayMessage) => {
      if (m.t !== 'chunk' || m.off === 0) seen.push([m.t, h.session.openSid]);
      return send(id, m);
    };
    const r = await h.run();
    assert.equal(r.outcome, 'updated');
    const sid = (h.ch.sent[0] as Extract<GatewayMessage, { t: 'offer' }>).sid;
    assert.deepEqual(seen, [['offer', sid], ['chunk', sid], ['verify', sid], ['activate', undefined], ['confirm', undefined]]);
    assert.equal(h.session.openSid, undefined);
  });

  it('none for a session resumed past activate', async () => {
    const h = harness(scriptedDevice(), {}, { resumeAfterActivate: () => inTrial });
    let during: number | undefined = -1;
    const send = h.ch.send.bind(h.ch);
    h.ch.send = async (id: string, m: GatewayMessage) => {
      during = h.session.openSid;
      return send(id, m);
    };
    await h.run();
    assert.equal(during, undefined);
  });
});

describe('device session: a device offline at the start (§8.1)', () => {
  it('waits (queued) for its status, then updates it', async () => {
    const timers = new FakeTimers();
    const h = harness(scriptedDevice(), {}, {}, timers);
    h.ch.online = false;
    timers.setTimeout(() => h.ch.emit(status()), 4000);
    const r = await h.run();
    assert.deepEqual([r.outcome, r.code], ['updated', 'ok']);
    assert.deepEqual(h.phases[0], ['queued', 0]);
    assert.equal(h.timers.now(), 4000);
  });

  it('only its status means it is back: not another event, nor its going offline again', async () => {
    const timers = new FakeTimers();
    let offerAt = -1;
    const h = harness(scriptedDevice({ offer: (m) => { offerAt = timers.now(); return [{ t: 'accept', sid: m.sid, next: 0, chunk: 1024, window: 8 }]; } }), {}, {}, timers);
    h.ch.online = false;
    timers.setTimeout(() => h.ch.emit({ t: 'offline' }), 1000);
    timers.setTimeout(() => h.ch.emit({ t: 'confirmed', sha256: manifest.sha256, version: '1.0.0' }), 2000);
    timers.setTimeout(() => h.ch.emit(status()), 4000);
    const r = await h.run();
    assert.deepEqual([r.outcome, r.retries, offerAt], ['updated', 0, 4000]);
  });

  it('the device deadline cuts the wait short, naming it', async () => {
    const h = harness(scriptedDevice(), { offlineWaitMs: 9000, deviceDeadlineMs: 5000 });
    h.ch.online = false;
    const r = await h.run();
    assert.deepEqual([r.outcome, r.code, r.reason], ['failed', 'timeout', 'device deadline of 5000 ms passed in attempt 1 while waiting for the device to come back online']);
  });

  it('ends failed / offline when it stays away offlineWaitMs, not retried', async () => {
    const h = harness(scriptedDevice(), { offlineWaitMs: 9000, maxAttempts: 3 });
    h.ch.online = false;
    const r = await h.run();
    assert.deepEqual([r.outcome, r.code, r.reason, r.retries], ['failed', 'offline', 'device stayed offline for 9000 ms', 0]);
    assert.deepEqual(h.ch.sent, []);
    assert.equal(h.timers.now(), 9000);
  });
});

describe('device session: retry bounds at their edges (§8.1.1)', () => {
  it('a backoff that would end exactly at the device deadline is not started', async () => {
    // 3 ack timeouts of 1000 ms, then a backoff of 500 ms: 3000 + 500 = the 3500 ms deadline
    const h = harness(scriptedDevice({ chunk: () => [] }), { maxAttempts: 5, deviceDeadlineMs: 3500 });
    const r = await h.run();
    assert.deepEqual([r.outcome, r.code, h.ch.count('offer')], ['failed', 'timeout', 1]);
    assert.equal(r.reason, 'device deadline of 3500 ms passed after 1 attempts; last failure: no chunk ack in 3 x 1000 ms');
    assert.equal(h.timers.now(), 3000);
  });

  it('a wait that would end exactly at the deadline is the step\'s own timeout, not the deadline\'s', async () => {
    const h = harness(scriptedDevice({ offer: () => [] }), { offerTimeoutMs: 5000, deviceDeadlineMs: 5000, maxAttempts: 3 });
    const r = await h.run();
    assert.deepEqual([r.outcome, r.code], ['failed', 'timeout']);
    assert.equal(r.reason, 'device deadline of 5000 ms passed after 1 attempts; last failure: timed out after 5000 ms waiting for accept or reject from dev-1');
  });

  it('a wait the deadline cuts short ends the session (not retried), naming the attempt and the wait', async () => {
    const h = harness(scriptedDevice({ offer: () => [] }), { offerTimeoutMs: 5000, deviceDeadlineMs: 4999, maxAttempts: 3 });
    const r = await h.run();
    assert.deepEqual([r.outcome, r.code, r.retries], ['failed', 'timeout', 0]);
    assert.equal(r.reason, 'device deadline of 4999 ms passed in attempt 1 while waiting for accept or reject');
    assert.equal(h.timers.now(), 4999);
  });

  it('a trial reverted when the deadline leaves no time for another attempt: rolled back, with why it was not retried', async () => {
    const h = harness(scriptedDevice({ activate: (m) => [{ t: 'activated', sid: m.sid, slot: 'b' }, oldBoot({ reverted: true, reason: UNCONFIRMED })] }),
      { deviceDeadlineMs: 400, maxAttempts: 3 });
    const r = await h.run();
    assert.deepEqual([r.outcome, r.code, r.retries], ['rolled-back', 'reverted', 0]);
    assert.equal(r.reason, 'device came back on 1.0.0 (trial image not confirmed before reset): the trial ended before its trial was reported, unconfirmed; '
      + 'not retried: device deadline of 400 ms passed after 1 attempts');
  });

  it('each retry is logged with the device, the attempt, the reason and the backoff', async () => {
    const lines: Record<string, unknown>[] = [];
    const log = pino({ level: 'info' }, new Writable({ write: (c: Buffer, _e, cb) => { lines.push(JSON.parse(c.toString())); cb(); } }));
    const h = harness(scriptedDevice({ offer: (m, n) => (n === 1 ? [] : [{ t: 'accept', sid: m.sid, next: 0, chunk: 1024, window: 8 }]) }), { offerTimeoutMs: 1000 }, { log });
    await h.run();
    const retry = lines.find((l) => l.msg === 'update attempt failed, retrying');
    assert.ok(retry, JSON.stringify(lines));
    assert.deepEqual([retry.device, retry.attempt, retry.reason, retry.backoffMs], ['dev-1', 1, 'timed out after 1000 ms waiting for accept or reject from dev-1', 500]);
  });
});

describe('device session: what it leaves behind', () => {
  it('stops listening to the device and to the campaign\'s signal, also after a retry\'s backoff', async () => {
    const ac = new AbortController();
    const h = harness(scriptedDevice({ offer: (m, n) => (n === 1 ? [] : [{ t: 'accept', sid: m.sid, next: 0, chunk: 1024, window: 8 }]) }), {}, { signal: ac.signal });
    const r = await h.run();
    assert.deepEqual([r.outcome, r.retries], ['updated', 1]);
    assert.equal(getEventListeners(ac.signal, 'abort').length, 0);
    let heard = false;
    h.ch.listen('dev-1', () => { heard = true; });
    h.ch.emit({ t: 'offline' });
    assert.ok(heard);
    assert.equal((h.ch as unknown as { fns: Set<unknown> }).fns.size, 1, 'only the test\'s own listener is left');
  });

  it('a campaign cancelled during a backoff ends the session at once', async () => {
    const ac = new AbortController();
    const timers = new FakeTimers();
    const h = harness(scriptedDevice({ offer: () => [] }), { offerTimeoutMs: 1000, retryBackoffMs: 60_000, retryBackoffMaxMs: 60_000, maxAttempts: 3 }, { signal: ac.signal }, timers);
    timers.setTimeout(() => ac.abort(), 2000);
    const r = await h.run();
    assert.deepEqual([r.outcome, r.code, r.reason], ['failed', 'cancelled', 'campaign cancelled']);
    assert.equal(h.timers.now(), 2000, 'not after the 30-60 s backoff');
    // no attempt after the cancel: the only offer is the first attempt's, sent at 0
    assert.equal(h.ch.sent.filter((m) => m.t === 'offer').length, 1, 'no offer after the cancel');
    assert.equal(r.retries, 1);
  });

  it('a campaign cancelled mid-transfer: failed / cancelled, not retried', async () => {
    const ac = new AbortController();
    const h = harness(scriptedDevice({ chunk: (m, n) => { if (n === 3) ac.abort(); return [{ t: 'ack', sid: m.sid, next: m.off + 1024, missing: [] }]; } }), {}, { signal: ac.signal });
    const r = await h.run();
    assert.deepEqual([r.outcome, r.code, r.reason, r.retries], ['failed', 'cancelled', 'campaign cancelled', 0]);
    assert.equal(h.ch.count('activate'), 0);
  });

  it('durationMs counts from the start of the session', async () => {
    const timers = new FakeTimers();
    timers.setTimeout(() => undefined, 1500);
    await timers.step(1500);
    const h = harness(scriptedDevice({ offer: (m, n) => (n === 1 ? [] : [{ t: 'accept', sid: m.sid, next: 0, chunk: 1024, window: 8 }]) }), { offerTimeoutMs: 1000 }, {}, timers);
    const r = await h.run();
    assert.equal(r.durationMs, 1500);
  });
});

describe('device session: progress and the campaign\'s hooks', () => {
  it('reports each phase with the bytes the device holds', async () => {
    const h = harness(scriptedDevice());
    await h.run();
    const n = image.length;
    assert.deepEqual(h.phases.filter(([p]) => p !== 'transferring'), [['offering', 0], ['verifying', n], ['activating', n], ['rebooting', n], ['confirming', n]]);
    assert.deepEqual(h.phases.filter(([p]) => p === 'transferring').map(([, b]) => b), [0, 1, 2, 3, 4, 5, 6, 7, 8].map((k) => k * 1024));
  });

  it('onTransferred once, after the image is verified and before activate', async () => {
    const h = harness(scriptedDevice(), {}, { onTransferred: () => { at.push(commands(h.ch).join(',')); } });
    const at: string[] = [];
    await h.run();
    assert.deepEqual(at, ['offer,verify']);
  });

  it('mayActivate\'s reason not to activate now: skipped / deferred with it, the image left verified, nothing activated', async () => {
    const h = harness(scriptedDevice(), {}, { mayActivate: () => 'outside the maintenance window (next opens 02:00)' });
    const r = await h.run();
    assert.deepEqual([r.outcome, r.code, r.reason, r.retries], ['skipped', 'deferred', 'outside the maintenance window (next opens 02:00)', 0]);
    assert.deepEqual(commands(h.ch), ['offer', 'verify']);
    const ok = harness(scriptedDevice(), {}, { mayActivate: () => undefined });
    assert.equal((await ok.run()).outcome, 'updated');
  });
});

describe('device session: resuming past activate after a gateway restart (docs/reliability.md)', () => {
  it('no status from before the restart: the normal attempt', async () => {
    const h = harness(scriptedDevice(), {}, { resumeAfterActivate: () => undefined });
    const r = await h.run();
    assert.deepEqual([r.outcome, r.retries], ['updated', 0]);
    assert.deepEqual(commands(h.ch), ['offer', 'verify', 'activate', 'confirm']);
  });

  it('the status from before the restart is read once, not again by a later attempt', async () => {
    let reads = 0;
    const h = harness(scriptedDevice({ offer: (m, n) => (n === 1 ? [] : [{ t: 'accept', sid: m.sid, next: 0, chunk: 1024, window: 8 }]) }), { offerTimeoutMs: 1000 }, {
      resumeAfterActivate: () => {
        reads++;
        return reads === 1 ? undefined : inTrial;
      },
    });
    const r = await h.run();
    assert.deepEqual([r.outcome, r.retries, reads], ['updated', 1, 1]);
    assert.equal(h.ch.count('activate'), 1);
  });

  it('in trial: confirming, with the whole image held', async () => {
    const h = harness(scriptedDevice(), {}, { resumeAfterActivate: () => inTrial });
    await h.run();
    assert.deepEqual(h.phases, [['confirming', image.length]]);
  });

  it('pending: the confirm waits for the boot report, however long past the device deadline', async () => {
    const timers = new FakeTimers();
    const h = harness(scriptedDevice(), { deviceDeadlineMs: 1000 }, { resumeAfterActivate: () => pending }, timers);
    timers.setTimeout(() => h.ch.emit(trialBoot), 6000);
    const r = await h.run();
    assert.deepEqual([r.outcome, r.code], ['updated', 'ok']);
    assert.deepEqual(commands(h.ch), ['confirm']);
    assert.equal(h.timers.now(), 6000);
    assert.equal(r.rebootMs, 6000);
  });

  it('in trial, the confirm unsendable: ended, never offered or activated again', async () => {
    const h = harness(scriptedDevice(), {}, { resumeAfterActivate: () => inTrial });
    const send = h.ch.send.bind(h.ch);
    h.ch.send = async (id: string, m: GatewayMessage) => {
      if (m.t === 'confirm') throw new Error('broker gone');
      return send(id, m);
    };
    const r = await h.run();
    assert.deepEqual([r.outcome, r.code, r.reason, r.retries], ['failed', 'connection-lost', 'broker gone', 0]);
    assert.deepEqual(h.ch.sent, []);
  });

  it('logs where the device stood', async () => {
    const lines: Record<string, unknown>[] = [];
    const log = pino({ level: 'info' }, new Writable({ write: (c: Buffer, _e, cb) => { lines.push(JSON.parse(c.toString())); cb(); } }));
    await harness(scriptedDevice(), {}, { resumeAfterActivate: () => inTrial, log }).run();
    const l = lines.find((x) => x.msg === 'resuming an update that was past activate');
    assert.ok(l, JSON.stringify(lines));
    assert.deepEqual([l.device, l.version, l.trial, l.resume], ['dev-1', '1.1.0', true, 'confirm']);
  });
});
