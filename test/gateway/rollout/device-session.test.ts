import assert from 'node:assert/strict';
import { parseConfig } from '../../../gateway/config.ts';
import type { DeviceEvent } from '../../../gateway/device-channel.ts';
import { silentLogger } from '../../../gateway/log.ts';
import { DeviceSession, type SessionDeps } from '../../../gateway/rollout/device-session.ts';
import { ImageSource } from '../../../gateway/rollout/image-source.ts';
import { manifestForImage } from '../../../protocol/manifest.ts';
import type { GatewayMessage } from '../../../protocol/ota.ts';
import { drive, FakeTimers, ScriptedChannel, settle } from './fake.ts';

const CHUNK = 1024;
const image = Buffer.alloc(16 * CHUNK, 7);
const manifest = manifestForImage(image, { name: 'fw', version: '1.1.0', hw: ['hw'], chunk: CHUNK });
const base = { chunkWindow: 4, ackTimeoutMs: 1000, maxAckTimeouts: 3, maxAttempts: 2, retryBackoffMs: 500, rebootTimeoutMs: 20_000 };
const rollout = parseConfig({ rollout: base }).rollout;

const trialBoot: DeviceEvent = { t: 'boot', version: '1.1.0', slot: 'b', sha256: manifest.sha256, trial: true, reverted: false };
const revertedBoot = (reason: string): DeviceEvent => ({ t: 'boot', version: '1.0.0', slot: 'a', trial: false, reverted: true, reason });
const UNCONFIRMED = 'trial image not confirmed before reset';

interface DeviceOpts {
  reject?: 'busy';
  silentOffers?: boolean;
  neverAck?: boolean;
  /** The nth send (1-based) of the chunk at `off` is lost on the way: not held, no ack. */
  lose?: (off: number, nth: number) => boolean;
  /** The chunk is held but the ack for this send of it is lost. */
  dropAck?: (off: number, nth: number) => boolean;
  badOnce?: number;
  noBoot?: boolean;
  /** The boot report is lost with the connection; the status after the reconnect shows the trial (§6.9.1). */
  lostBoot?: boolean;
  /** Every activation comes back reverted with this reason. */
  revert?: string;
  /** The first n activations: power lost during the first boot of the new slot, so it comes back reverted (§6.9.2 rule 1). */
  cutFirstBoots?: number;
  lostActivations?: number;
  /** Answer `confirm` only from this try on (1-based); Infinity = never. */
  confirmFrom?: number;
  /** The first n `confirm`s: power lost before confirming, the device comes back reverted. */
  cutBeforeConfirm?: number;
}

/** A device that follows §6 (acks with `next` and `missing` as §6.6.4 says), with hooks to misbehave. */
function device(opts: DeviceOpts = {}) {
  const held = new Set<number>();
  const sends = new Map<number, number>();
  let badSent = false;
  let activations = 0;
  let confirms = 0;
  let trialCuts = 0;
  const ack = (sid: number, extra: number[] = []): DeviceEvent => {
    let next = 0;
    while (held.has(next)) next += CHUNK;
    const top = Math.max(-1, ...held);
    const missing: number[] = [];
    for (let o = next; o < top; o += CHUNK) if (!held.has(o)) missing.push(o);
    for (const o of extra) if (!held.has(o) && !missing.includes(o)) missing.push(o);
    return { t: 'ack', sid, next: Math.min(next, image.length), missing: missing.sort((a, b) => a - b) };
  };
  return (m: GatewayMessage): DeviceEvent[] => {
    switch (m.t) {
      case 'offer':
        if (opts.reject) return [{ t: 'reject', sid: m.sid, code: opts.reject }];
        if (opts.silentOffers) return [];
        held.clear(); // like the reference device after a revert: the slot is bad, start at 0
        return [{ t: 'accept', sid: m.sid, next: 0, chunk: CHUNK, window: 8 }];
      case 'chunk': {
        const nth = (sends.get(m.off) ?? 0) + 1;
        sends.set(m.off, nth);
        if (m.off === opts.badOnce && !badSent) {
          badSent = true;
          return [ack(m.sid, [m.off])];
        }
        if (opts.lose?.(m.off, nth)) return [];
        held.add(m.off);
        if (opts.neverAck || opts.dropAck?.(m.off, nth)) return [];
        return [ack(m.sid)];
      }
      case 'verify': return [{ t: 'verified', sid: m.sid, ok: true }];
      case 'activate':
        if (activations++ < (opts.lostActivations ?? 0)) {
          // power lost before the slot switch: back on the old image, nothing reverted
          return [{ t: 'offline' }, { t: 'boot', version: '1.0.0', slot: 'a', trial: false, reverted: false }];
        }
        if (opts.noBoot) return [{ t: 'activated', sid: m.sid, slot: 'b' }, { t: 'offline' }];
        if (opts.lostBoot) {
          return [{ t: 'activated', sid: m.sid, slot: 'b' }, { t: 'offline' }, {
            t: 'status', hw: 'hw', version: '1.1.0', slot: 'b', maxChunk: CHUNK, busy: false, trial: true,
            slots: { a: { state: 'confirmed', version: '1.0.0', sha256: 'a'.repeat(64) }, b: { state: 'trial', version: '1.1.0', sha256: manifest.sha256 } },
          }];
        }
        if (opts.revert) return [{ t: 'activated', sid: m.sid, slot: 'b' }, { t: 'offline' }, revertedBoot(opts.revert)];
        if (trialCuts++ < (opts.cutFirstBoots ?? 0)) return [{ t: 'activated', sid: m.sid, slot: 'b' }, { t: 'offline' }, revertedBoot(UNCONFIRMED)];
        return [{ t: 'activated', sid: m.sid, slot: 'b' }, { t: 'offline' }, trialBoot, { t: 'status' } as DeviceEvent];
      case 'confirm':
        confirms++;
        if (confirms <= (opts.cutBeforeConfirm ?? 0)) return [{ t: 'offline' }, revertedBoot(UNCONFIRMED)];
        if (confirms - (opts.cutBeforeConfirm ?? 0) < (opts.confirmFrom ?? 1)) return [];
        return [{ t: 'confirmed', sha256: m.sha256, version: '1.1.0' }];
      default: return [];
    }
  };
}

function session(ch: ScriptedChannel, timers: FakeTimers, over: Record<string, unknown> = {}, deps: Partial<SessionDeps> = {}): DeviceSession {
  const config = Object.keys(over).length > 0 ? parseConfig({ rollout: { ...base, ...over } }).rollout : rollout;
  return new DeviceSession('dev-1', '1.0.0', {
    channel: ch.asChannel(), config, image: new ImageSource(manifest, image), timers, log: silentLogger(), rttMs: 5, window: 4, onPhase: () => undefined,
    random: () => 1, ...deps,
  });
}

const sendsOf = (ch: ScriptedChannel, off: number): number => ch.sent.filter((m) => m.t === 'chunk' && m.off === off).length;

describe('device session (fake clock, scripted device)', () => {
  it('updates a well-behaved device with one offer, each chunk once, one activate', async () => {
    const timers = new FakeTimers();
    const ch = new ScriptedChannel(device());
    const r = await drive(timers, session(ch, timers).run(), 60_000);
    assert.deepEqual([r.outcome, r.code, r.retries], ['updated', 'ok', 0]);
    assert.equal(ch.count('chunk'), 16);
    assert.deepEqual(['offer', 'verify', 'activate', 'confirm'].map((t) => ch.count(t as GatewayMessage['t'])), [1, 1, 1, 1]);
  });

  it('sends activate only once what the activating phase recorded is durable (beforeActivate resolved)', async () => {
    const timers = new FakeTimers();
    const ch = new ScriptedChannel(device());
    let makeDurable: () => void = () => assert.fail('beforeActivate not called');
    const phases: string[] = [];
    const run = session(ch, timers, {}, {
      onPhase: (p) => { phases.push(p); },
      beforeActivate: () => new Promise<void>((resolve) => { makeDurable = resolve; }),
    }).run();
    // drive until the session reported activating and waits on the journal
    for (let i = 0; i < 200 && !phases.includes('activating'); i++) await settle();
    for (let i = 0; i < 20; i++) await settle();
    assert.ok(phases.includes('activating'));
    assert.equal(ch.count('activate'), 0, 'no activate while the record is not durable');
    makeDurable();
    const r = await drive(timers, run, 60_000);
    assert.deepEqual([r.outcome, ch.count('activate')], ['updated', 1]);
  });

  it('never has more than the window of chunks beyond the acked offset', async () => {
    const timers = new FakeTimers();
    let acked = 0;
    let maxAhead = 0;
    const dev = device();
    const ch = new ScriptedChannel((m) => {
      if (m.t === 'chunk') maxAhead = Math.max(maxAhead, (m.off - acked) / CHUNK + 1);
      const out = dev(m);
      for (const e of out) if (e.t === 'ack') acked = Math.max(acked, e.next);
      return out;
    });
    await drive(timers, session(ch, timers).run(), 60_000);
    assert.ok(maxAhead <= 4, `at most 4 chunks in flight, saw ${maxAhead}`);
  });

  describe('window for a device that acks in batches (§6.6.2)', () => {
    /**
     * Like the reference device: chunks that arrive together are written and acked together,
     * one cumulative ack per at most `batch` chunks, once no further chunk is waiting (here:
     * at the end of the turn in which the gateway handed them over).
     */
    function batchingDevice(batch: number, acceptWindow: number) {
      const held = new Set<number>();
      let pending: number[] = [];
      let sid = 0;
      let ch: ScriptedChannel | undefined;
      const ackNow = (): DeviceEvent => {
        let next = 0;
        while (held.has(next)) next += CHUNK;
        return { t: 'ack', sid, next: Math.min(next, image.length), missing: [] };
      };
      const script = (m: GatewayMessage): DeviceEvent[] => {
        if (m.t === 'chunk') {
          sid = m.sid;
          if (pending.length === 0) {
            setImmediate(() => {
              const got = pending;
              pending = [];
              for (let i = 0; i < got.length; i += batch) {
                for (const off of got.slice(i, i + batch)) held.add(off);
                ch!.emit(ackNow());
              }
            });
          }
          pending.push(m.off);
          return [];
        }
        if (m.t === 'offer') return [{ t: 'accept', sid: m.sid, next: 0, chunk: CHUNK, window: acceptWindow }];
        return device()(m);
      };
      return { bind: (c: ScriptedChannel): void => { ch = c; }, script };
    }

    async function maxInFlight(batch: number, acceptWindow: number): Promise<{ max: number; chunks: number; outcome: string }> {
      const timers = new FakeTimers();
      let acked = 0;
      let max = 0;
      const dev = batchingDevice(batch, acceptWindow);
      const ch: ScriptedChannel = new ScriptedChannel((m) => {
        if (m.t === 'chunk') max = Math.max(max, (m.off - acked) / CHUNK + 1);
        return dev.script(m);
      });
      ch.listen('dev-1', (e) => {
        if (e.t === 'ack') acked = Math.max(acked, e.next);
      });
      dev.bind(ch);
      // starting window 2 (a bandwidth-delay window from a ping's RTT); chunkWindow 32
      const r = await drive(timers, session(ch, timers, { chunkWindow: 32 }, { window: 2 }).run(), 60_000);
      return { max, chunks: ch.count('chunk'), outcome: r.outcome };
    }

    it('rises to two ack batches in flight, each chunk sent once', async () => {
      const r = await maxInFlight(4, 16);
      assert.equal(r.outcome, 'updated');
      assert.equal(r.chunks, 16, 'no chunk sent twice');
      assert.equal(r.max, 8, 'window 2 -> 2 x the largest ack batch (4) = 8, not the device\'s 16');
    });

    it('never above accept.window', async () => {
      const r = await maxInFlight(4, 6);
      assert.equal(r.outcome, 'updated');
      assert.equal(r.max, 6);
    });
  });

  describe('ack timeout (§6.6.5)', () => {
    it('waits at least ackTimeoutRtts round trips on a slow link before resending', async () => {
      for (const [rttMs, expected] of [[5, 1000], [1000, 4000]] as const) {
        const timers = new FakeTimers();
        const dev = device({ neverAck: true });
        const resends: number[] = [];
        const seen = new Set<number>();
        const ch = new ScriptedChannel((m) => {
          if (m.t === 'chunk') {
            if (seen.has(m.off)) resends.push(timers.now());
            seen.add(m.off);
          }
          return dev(m);
        });
        const r = await drive(timers, session(ch, timers, {}, { rttMs }).run(), 600_000);
        assert.equal(r.outcome, 'failed');
        assert.equal(resends[0], expected, `RTT ${rttMs} ms: first resend after ${expected} ms`);
      }
    });

    it('resends only the last chunk sent, then exactly the chunks its ack lists missing, not the ones the device holds', async () => {
      const timers = new FakeTimers();
      // window 0..3: chunk 1 lost; chunks 0, 2 and 3 arrive but their acks are lost
      const ch = new ScriptedChannel(device({ lose: (off, n) => off === CHUNK && n === 1, dropAck: (off, n) => off !== CHUNK && off < 4 * CHUNK && n === 1 }));
      const r = await drive(timers, session(ch, timers).run(), 60_000);
      assert.deepEqual([r.outcome, r.retries], ['updated', 0]);
      assert.ok(timers.now() >= 1000, 'waited one ack timeout');
      assert.deepEqual([0, 1, 2, 3].map((k) => sendsOf(ch, k * CHUNK)), [1, 2, 1, 2], 'held chunks 0 and 2 not resent');
      assert.equal(ch.count('chunk'), 18);
    });

    it('recovers a whole lost window within the attempt after one ack timeout', async () => {
      const timers = new FakeTimers();
      const ch = new ScriptedChannel(device({ lose: (off, n) => off < 4 * CHUNK && n === 1 }));
      const r = await drive(timers, session(ch, timers).run(), 60_000);
      assert.deepEqual([r.outcome, r.retries], ['updated', 0]);
      assert.deepEqual([0, 1, 2, 3].map((k) => sendsOf(ch, k * CHUNK)), [2, 2, 2, 2]);
      assert.ok(timers.now() >= 1000 && timers.now() < 2000, `one ack timeout (${timers.now()} ms)`);
    });

    it('a device that never acks fails after maxAckTimeouts per attempt and maxAttempts, with the reason', async () => {
      const timers = new FakeTimers();
      const ch = new ScriptedChannel(device({ neverAck: true }));
      const r = await drive(timers, session(ch, timers).run(), 60_000);
      assert.deepEqual([r.outcome, r.code, r.retries], ['failed', 'connection-lost', 1]);
      assert.match(r.reason ?? '', /no chunk ack in 3 x 1000 ms.*after 2 attempts/);
      assert.equal(ch.count('offer'), 2);
      assert.equal(ch.count('activate'), 0);
      // 2 attempts x 3 ack timeouts + one backoff
      assert.equal(timers.now(), 2 * 3 * 1000 + 500);
    });

    it('takes the resend guard from the config (resendGuardMinMs)', async () => {
      // chunk 1 lost on its first two sends: its first listing resends it at once (lost again);
      // later acks list it again within the same instant of fake time
      const lose = (off: number, n: number): boolean => off === CHUNK && n <= 2;
      const run = async (over: Record<string, unknown>): Promise<[number, number]> => {
        const timers = new FakeTimers();
        const ch = new ScriptedChannel(device({ lose }));
        const r = await drive(timers, session(ch, timers, over, { rttMs: undefined }).run(), 60_000);
        assert.equal(r.outcome, 'updated');
        return [timers.now(), sendsOf(ch, CHUNK)];
      };
      const [guarded] = await run({});
      assert.ok(guarded >= 1000, 'default guard: the second resend waits for the ack timeout');
      const [unguarded, sends] = await run({ resendGuardMinMs: 0, resendGuardRtts: 1 });
      assert.ok(unguarded < 1000, `no guard: resent on the next ack that lists it (${unguarded} ms)`);
      assert.ok(sends >= 3, `resent on each listing (${sends} sends)`);
    });
  });

  describe('retry bounds (§8.1.1)', () => {
    it('backs off exponentially with jitter, capped at retryBackoffMaxMs', async () => {
      const timers = new FakeTimers();
      const offersAt: number[] = [];
      const dev = device({ silentOffers: true });
      const ch = new ScriptedChannel((m) => {
        if (m.t === 'offer') offersAt.push(timers.now());
        return dev(m);
      });
      const over = { maxAttempts: 5, offerTimeoutMs: 5000, retryBackoffMs: 1000, retryBackoffMaxMs: 3000 };
      const r = await drive(timers, session(ch, timers, over, { random: () => 0 }).run(), 120_000);
      assert.deepEqual([r.outcome, r.code, r.retries], ['failed', 'retries-exhausted', 4]);
      // backoffs 1000, 2000, 4000 -> 3000, 3000, each jittered to its lower bound (half)
      assert.deepEqual(offersAt.slice(1).map((t, i) => t - offersAt[i]! - 5000), [500, 1000, 1500, 1500]);

      const timers2 = new FakeTimers();
      const at2: number[] = [];
      const ch2 = new ScriptedChannel((m) => {
        if (m.t === 'offer') at2.push(timers2.now());
        return dev(m);
      });
      await drive(timers2, session(ch2, timers2, { ...over, maxAttempts: 3 }, { random: () => 0.5 }).run(), 120_000);
      assert.deepEqual(at2.slice(1).map((t, i) => t - at2[i]! - 5000), [750, 1500]);
    });

    it('ends failed / timeout when the device deadline passes, whatever attempts are left', async () => {
      const timers = new FakeTimers();
      const ch = new ScriptedChannel(device({ neverAck: true }));
      const r = await drive(timers, session(ch, timers, { maxAttempts: 100, deviceDeadlineMs: 10_000 }).run(), 600_000);
      assert.deepEqual([r.outcome, r.code], ['failed', 'timeout']);
      assert.match(r.reason ?? '', /device deadline of 10000 ms passed in attempt 3 while waiting for chunk ack/);
      // attempts at 0, 3500 (after 500), 7500 (after 1000); the third is cut at the deadline
      assert.equal(timers.now(), 10_000);
      assert.deepEqual([r.retries, ch.count('offer')], [2, 3]);
    });

    it('does not start an attempt whose backoff would end past the deadline', async () => {
      const timers = new FakeTimers();
      const ch = new ScriptedChannel(device({ neverAck: true }));
      const r = await drive(timers, session(ch, timers, { maxAttempts: 100, deviceDeadlineMs: 3200 }).run(), 600_000);
      assert.deepEqual([r.outcome, r.code, ch.count('offer')], ['failed', 'timeout', 1]);
      assert.match(r.reason ?? '', /device deadline of 3200 ms passed after 1 attempts; last failure: no chunk ack/);
      assert.equal(timers.now(), 3000);
    });

    it('never cuts an activated device short: the reboot and confirmation are waited for past the deadline', async () => {
      const timers = new FakeTimers();
      const dev = device();
      const ch = new ScriptedChannel((m) => {
        if (m.t !== 'activate') return dev(m);
        timers.setTimeout(() => {
          ch.emit(trialBoot);
          ch.emit({ t: 'status' } as DeviceEvent);
        }, 8000);
        return [{ t: 'activated', sid: m.sid, slot: 'b' }, { t: 'offline' }];
      });
      const r = await drive(timers, session(ch, timers, { deviceDeadlineMs: 5000 }).run(), 60_000);
      assert.deepEqual([r.outcome, r.code], ['updated', 'ok']);
      assert.ok(timers.now() >= 8000);
    });
  });

  it('a busy device is skipped without a transfer', async () => {
    const timers = new FakeTimers();
    const ch = new ScriptedChannel(device({ reject: 'busy' }));
    const r = await drive(timers, session(ch, timers).run(), 60_000);
    assert.deepEqual([r.outcome, r.code], ['skipped', 'busy']);
    assert.equal(ch.count('chunk'), 0);
  });

  it('resends a chunk reported bad at once, even the last one (no ack-timeout stall)', async () => {
    const timers = new FakeTimers();
    const last = image.length - CHUNK;
    const ch = new ScriptedChannel(device({ badOnce: last }));
    const r = await drive(timers, session(ch, timers).run(), 60_000);
    assert.equal(r.outcome, 'updated');
    assert.equal(sendsOf(ch, last), 2);
    assert.ok(timers.now() < 1000, `no ack timeout was needed (${timers.now()} ms of fake time)`);
  });

  describe('reboot and trial (§6.9.4, §6.10.2)', () => {
    it('a device that never reports its boot fails with timeout, and is never activated twice', async () => {
      const timers = new FakeTimers();
      const ch = new ScriptedChannel(device({ noBoot: true }));
      const r = await drive(timers, session(ch, timers).run(), 120_000);
      assert.deepEqual([r.outcome, r.code], ['failed', 'timeout']);
      assert.equal(ch.count('activate'), 1);
      assert.ok(timers.now() >= 20_000);
    });

    it('a lost boot report is recovered from the status in trial that follows the reconnect (§6.9.1): confirmed at once, no reboot timeout', async () => {
      const timers = new FakeTimers();
      const ch = new ScriptedChannel(device({ lostBoot: true }));
      const r = await drive(timers, session(ch, timers).run(), 120_000);
      assert.deepEqual([r.outcome, r.code, r.retries], ['updated', 'ok', 0]);
      assert.equal(ch.count('activate'), 1);
      assert.ok(timers.now() < 20_000, `waited ${timers.now()} ms: not the reboot timeout`);
    });

    it('a device that reverts after a failed self-test is reported rolled back, not retried', async () => {
      const timers = new FakeTimers();
      const ch = new ScriptedChannel(device({ revert: 'self-test failed' }));
      const r = await drive(timers, session(ch, timers).run(), 60_000);
      assert.deepEqual([r.outcome, r.code, r.retries], ['rolled-back', 'self-test-failed', 0]);
      assert.equal(ch.count('confirm'), 0);
      assert.equal(ch.count('offer'), 1);
    });

    it('a device that reboots on its old image before the activation took effect is offered again', async () => {
      const timers = new FakeTimers();
      const ch = new ScriptedChannel(device({ lostActivations: 1 }));
      const r = await drive(timers, session(ch, timers).run(), 60_000);
      assert.deepEqual([r.outcome, r.code, r.retries], ['updated', 'ok', 1]);
      assert.equal(ch.count('activate'), 2);
      assert.equal(ch.count('offer'), 2);
    });

    it('a trial reverted by a power cut during its first boot is offered, transferred and activated again', async () => {
      const timers = new FakeTimers();
      const ch = new ScriptedChannel(device({ cutFirstBoots: 1 }));
      const r = await drive(timers, session(ch, timers).run(), 60_000);
      assert.deepEqual([r.outcome, r.code, r.retries], ['updated', 'ok', 1]);
      assert.deepEqual([ch.count('offer'), ch.count('activate'), ch.count('confirm')], [2, 2, 1]);
      assert.equal(ch.count('chunk'), 32, 'the reverted slot is bad: the image is sent again from 0');
    });

    it('a power cut before confirming: the device comes back reverted and the update is retried', async () => {
      const timers = new FakeTimers();
      const ch = new ScriptedChannel(device({ cutBeforeConfirm: 1 }));
      const r = await drive(timers, session(ch, timers).run(), 60_000);
      assert.deepEqual([r.outcome, r.code, r.retries], ['updated', 'ok', 1]);
      assert.deepEqual([ch.count('offer'), ch.count('activate'), ch.count('confirm')], [2, 2, 2]);
    });

    it('a trial reverted on every attempt ends rolled back with the reason when the attempts run out', async () => {
      const timers = new FakeTimers();
      const ch = new ScriptedChannel(device({ cutFirstBoots: 99 }));
      const r = await drive(timers, session(ch, timers).run(), 60_000);
      assert.deepEqual([r.outcome, r.code, r.retries], ['rolled-back', 'reverted', 1]);
      assert.match(r.reason ?? '', /came back on 1\.0\.0 \(trial image not confirmed before reset\).*after 2 attempts/);
      assert.equal(ch.count('activate'), 2, 'one activation per attempt, no more');
    });

    it('sends confirm confirmTries times', async () => {
      const timers = new FakeTimers();
      const ch = new ScriptedChannel(device({ confirmFrom: 5 }));
      const r = await drive(timers, session(ch, timers, { confirmTries: 5, confirmTimeoutMs: 1000 }).run(), 60_000);
      assert.deepEqual([r.outcome, r.code], ['updated', 'ok']);
      assert.equal(ch.count('confirm'), 5);
    });

    it('a device online that never confirms is waited for until its trial deadline reverts it, then rolled back, not retried', async () => {
      const timers = new FakeTimers();
      const dev = device({ confirmFrom: Infinity });
      const ch = new ScriptedChannel((m) => {
        if (m.t === 'activate') {
          // the device's own trial timeout: 28 s after its trial boot it reboots and reverts
          timers.setTimeout(() => {
            ch.emit({ t: 'offline' });
            ch.emit(revertedBoot('trial not confirmed within 28000 ms'));
          }, 28_000);
        }
        return dev(m);
      });
      const r = await drive(timers, session(ch, timers, { confirmTimeoutMs: 5000, confirmTries: 3, trialTimeoutMs: 30_000 }).run(), 120_000);
      assert.deepEqual([r.outcome, r.code, r.retries], ['rolled-back', 'reverted', 0]);
      assert.match(r.reason ?? '', /never confirmed the new image \(3 confirms unanswered\) and came back on 1\.0\.0 \(trial not confirmed within 28000 ms\)/);
      assert.deepEqual([ch.count('confirm'), ch.count('activate'), ch.count('offer')], [3, 1, 1]);
      assert.equal(timers.now(), 28_000);
    });

    it('a device that neither confirms nor reverts ends failed / timeout trialTimeoutMs + rebootTimeoutMs after its boot report', async () => {
      const timers = new FakeTimers();
      const ch = new ScriptedChannel(device({ confirmFrom: Infinity }));
      const r = await drive(timers, session(ch, timers, { trialTimeoutMs: 30_000 }).run(), 200_000);
      assert.deepEqual([r.outcome, r.code], ['failed', 'timeout']);
      assert.match(r.reason ?? '', /neither confirmed \(3 unanswered confirms\) nor reported a revert within 50000 ms/);
      assert.equal(timers.now(), 50_000);
      assert.equal(ch.count('activate'), 1);
    });
  });
});

describe('device session after a gateway restart past activate (journal)', () => {
  type View = ReturnType<NonNullable<SessionDeps['resumeAfterActivate']>>;
  const slot = (state: string, version?: string, sha256?: string) => ({ state, ...(version ? { version } : {}), ...(sha256 ? { sha256 } : {}) }) as NonNullable<View>['slots']['a'];
  const inTrial: View = { version: '1.1.0', slot: 'b', trial: true, slots: { a: slot('confirmed', '1.0.0'), b: slot('trial', '1.1.0', manifest.sha256) } };
  const confirmed: View = { version: '1.1.0', slot: 'b', trial: false, slots: { a: slot('confirmed', '1.0.0'), b: slot('confirmed', '1.1.0', manifest.sha256) } };
  const pending: View = { version: '1.0.0', slot: 'a', trial: false, slots: { a: slot('confirmed', '1.0.0'), b: slot('pending', '1.1.0', manifest.sha256) } };
  const ready: View = { version: '1.0.0', slot: 'a', trial: false, slots: { a: slot('confirmed', '1.0.0'), b: slot('ready', '1.1.0', manifest.sha256) } };
  const reverted: View = { version: '1.0.0', slot: 'a', trial: false, slots: { a: slot('confirmed', '1.0.0'), b: slot('bad', '1.1.0', manifest.sha256) } };

  it('a device running the image in trial is confirmed, not offered or activated again', async () => {
    const timers = new FakeTimers();
    const ch = new ScriptedChannel(device());
    const r = await drive(timers, session(ch, timers, {}, { resumeAfterActivate: () => inTrial }).run(), 60_000);
    assert.deepEqual([r.outcome, r.code], ['updated', 'ok']);
    assert.deepEqual(['offer', 'chunk', 'activate', 'confirm'].map((t) => ch.count(t as GatewayMessage['t'])), [0, 0, 0, 1]);
  });

  it('a device that confirmed before the restart is updated without a message', async () => {
    const timers = new FakeTimers();
    const ch = new ScriptedChannel(device());
    const r = await drive(timers, session(ch, timers, {}, { resumeAfterActivate: () => confirmed }).run(), 60_000);
    assert.deepEqual([r.outcome, r.code], ['updated', 'ok']);
    assert.equal(ch.sent.length, 0);
  });

  it('a device with the image pending is waited for to reboot, then confirmed; never activated again', async () => {
    const timers = new FakeTimers();
    const ch = new ScriptedChannel(device());
    const run = session(ch, timers, {}, { resumeAfterActivate: () => pending }).run();
    setImmediate(() => ch.emit(trialBoot));
    const r = await drive(timers, run, 60_000);
    assert.deepEqual([r.outcome, r.code], ['updated', 'ok']);
    assert.deepEqual(['offer', 'activate', 'confirm'].map((t) => ch.count(t as GatewayMessage['t'])), [0, 0, 1]);
  });

  it('a device whose activation never took effect (image still ready) gets the normal update, one activation', async () => {
    const timers = new FakeTimers();
    const ch = new ScriptedChannel(device());
    const r = await drive(timers, session(ch, timers, {}, { resumeAfterActivate: () => ready }).run(), 60_000);
    assert.deepEqual([r.outcome, r.code], ['updated', 'ok']);
    assert.deepEqual(['offer', 'activate', 'confirm'].map((t) => ch.count(t as GatewayMessage['t'])), [1, 1, 1]);
    assert.equal(r.retries, 0, 'not a second activation: the first never took effect');
    assert.equal(r.reason, undefined);
  });

  it('a device that reverted while the gateway was down is offered again within the bounds (its slot is marked bad)', async () => {
    const timers = new FakeTimers();
    const ch = new ScriptedChannel(device());
    const r = await drive(timers, session(ch, timers, {}, { resumeAfterActivate: () => reverted }).run(), 60_000);
    assert.deepEqual([r.outcome, r.code], ['updated', 'ok']);
    assert.equal(ch.count('offer'), 1);
    assert.equal(ch.count('activate'), 1);
    // issue 17.5: the result says honestly that this was the image's second activation on the device
    assert.equal(r.retries, 1);
    assert.match(r.reason ?? '', /first activation was reverted .* activated a second time/);
  });
});

describe('device session: a device refusing the image below its security floor (§6.5.6)', () => {
  it('ends skipped / below-floor with the device\'s reason, after one offer, not retried', async () => {
    const timers = new FakeTimers();
    const ch = new ScriptedChannel((m) => (m.t === 'offer' ? [{ t: 'reject', sid: m.sid, code: 'below-floor', reason: 'offered 1.1.0 is below the security floor 1.2.0' }] : []));
    const r = await drive(timers, session(ch, timers).run(), 60_000);
    assert.deepEqual([r.outcome, r.code, r.retries], ['skipped', 'below-floor', 0]);
    assert.match(r.reason ?? '', /security floor.*1\.2\.0/);
    assert.deepEqual(ch.sent.map((m) => m.t), ['offer']);
  });
});
