import assert from 'node:assert/strict';
import { parseConfig } from '../../../gateway/config.ts';
import type { DeviceEvent } from '../../../gateway/device-channel.ts';
import { silentLogger } from '../../../gateway/log.ts';
import { DeviceSession } from '../../../gateway/rollout/device-session.ts';
import { ImageSource } from '../../../gateway/rollout/image-source.ts';
import { manifestForImage } from '../../../protocol/manifest.ts';
import type { GatewayMessage } from '../../../protocol/ota.ts';
import { drive, FakeTimers, ScriptedChannel } from './fake.ts';

const CHUNK = 1024;
const image = Buffer.alloc(16 * CHUNK, 7);
const manifest = manifestForImage(image, { name: 'fw', version: '1.1.0', hw: ['hw'], chunk: CHUNK });
const rollout = parseConfig({ rollout: { chunkWindow: 4, ackTimeoutMs: 1000, maxAckTimeouts: 3, maxAttempts: 2, retryBackoffMs: 500, rebootTimeoutMs: 20_000 } }).rollout;

/** A well-behaved device, with hooks to misbehave. */
function device(opts: { dropAcksUntil?: number; neverAck?: boolean; reject?: 'busy'; noBoot?: boolean; revert?: string; badOnce?: number; lostActivations?: number } = {}) {
  const held = new Set<number>();
  let acksDropped = 0;
  let badSent = false;
  let activations = 0;
  return (m: GatewayMessage): DeviceEvent[] => {
    switch (m.t) {
      case 'offer':
        if (opts.reject) return [{ t: 'reject', sid: m.sid, code: opts.reject }];
        return [{ t: 'accept', sid: m.sid, next: 0, chunk: CHUNK, window: 8 }];
      case 'chunk': {
        if (m.off === opts.badOnce && !badSent) {
          badSent = true;
          let next = 0;
          while (held.has(next)) next += CHUNK;
          return [{ t: 'ack', sid: m.sid, next, missing: [m.off] }];
        }
        held.add(m.off);
        if (opts.neverAck) return [];
        if (opts.dropAcksUntil !== undefined && acksDropped < opts.dropAcksUntil) {
          acksDropped++;
          held.delete(m.off); // as if the chunk itself was lost
          return [];
        }
        let next = 0;
        while (held.has(next)) next += CHUNK;
        return [{ t: 'ack', sid: m.sid, next: Math.min(next, image.length), missing: [] }];
      }
      case 'verify': return [{ t: 'verified', sid: m.sid, ok: true }];
      case 'activate':
        if (activations++ < (opts.lostActivations ?? 0)) {
          // power lost before the slot switch: back on the old image, nothing reverted
          return [{ t: 'offline' }, { t: 'boot', version: '1.0.0', slot: 'a', trial: false, reverted: false }];
        }
        if (opts.noBoot) return [{ t: 'activated', sid: m.sid, slot: 'b' }, { t: 'offline' }];
        return [{ t: 'activated', sid: m.sid, slot: 'b' }, { t: 'offline' },
          opts.revert
            ? { t: 'boot', version: '1.0.0', slot: 'a', trial: false, reverted: true, reason: opts.revert }
            : { t: 'boot', version: '1.1.0', slot: 'b', sha256: manifest.sha256, trial: true, reverted: false }];
      case 'confirm': return [{ t: 'confirmed', sha256: m.sha256, version: '1.1.0' }];
      default: return [];
    }
  };
}

function session(ch: ScriptedChannel, timers: FakeTimers): DeviceSession {
  return new DeviceSession('dev-1', '1.0.0', {
    channel: ch.asChannel(), config: rollout, image: new ImageSource(manifest, image), timers, log: silentLogger(), rttMs: 5, window: 4, onPhase: () => undefined,
  });
}

describe('device session (fake clock, scripted device)', () => {
  it('updates a well-behaved device with one offer, each chunk once, one activate', async () => {
    const timers = new FakeTimers();
    const ch = new ScriptedChannel(device());
    const r = await drive(timers, session(ch, timers).run(), 60_000);
    assert.deepEqual([r.outcome, r.code, r.retries], ['updated', 'ok', 0]);
    assert.equal(ch.count('chunk'), 16);
    assert.deepEqual(['offer', 'verify', 'activate', 'confirm'].map((t) => ch.count(t as GatewayMessage['t'])), [1, 1, 1, 1]);
  });

  it('never has more than the window of chunks beyond the acked offset', async () => {
    const timers = new FakeTimers();
    let acked = 0;
    let maxAhead = 0;
    const base = device();
    const ch = new ScriptedChannel((m) => {
      if (m.t === 'chunk') maxAhead = Math.max(maxAhead, (m.off - acked) / CHUNK + 1);
      const out = base(m);
      for (const e of out) if (e.t === 'ack') acked = Math.max(acked, e.next);
      return out;
    });
    await drive(timers, session(ch, timers).run(), 60_000);
    assert.ok(maxAhead <= 4, `at most 4 chunks in flight, saw ${maxAhead}`);
  });

  it('resends from the cumulative offset after an ack timeout', async () => {
    const timers = new FakeTimers();
    const ch = new ScriptedChannel(device({ dropAcksUntil: 4 }));
    const r = await drive(timers, session(ch, timers).run(), 60_000);
    assert.equal(r.outcome, 'updated');
    assert.equal(r.retries, 0, 'recovered within the attempt');
    assert.ok(timers.now() >= 1000, 'waited one ack timeout');
    assert.equal(ch.sent.filter((m) => m.t === 'chunk' && m.off === 0).length, 2, 'chunk 0 sent twice');
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

  it('a busy device is skipped without a transfer', async () => {
    const timers = new FakeTimers();
    const ch = new ScriptedChannel(device({ reject: 'busy' }));
    const r = await drive(timers, session(ch, timers).run(), 60_000);
    assert.deepEqual([r.outcome, r.code], ['skipped', 'busy']);
    assert.equal(ch.count('chunk'), 0);
  });

  it('a device that never reports its boot fails with timeout, and is never activated twice', async () => {
    const timers = new FakeTimers();
    const ch = new ScriptedChannel(device({ noBoot: true }));
    const r = await drive(timers, session(ch, timers).run(), 120_000);
    assert.deepEqual([r.outcome, r.code], ['failed', 'timeout']);
    assert.equal(ch.count('activate'), 1);
    assert.ok(timers.now() >= 20_000);
  });

  it('a device that reverts after a failed self-test is reported rolled back, not retried', async () => {
    const timers = new FakeTimers();
    const ch = new ScriptedChannel(device({ revert: 'self-test failed' }));
    const r = await drive(timers, session(ch, timers).run(), 60_000);
    assert.deepEqual([r.outcome, r.code, r.retries], ['rolled-back', 'self-test-failed', 0]);
    assert.equal(ch.count('confirm'), 0);
    assert.equal(ch.count('offer'), 1);
  });

  it('resends a chunk reported bad at once, even the last one (no ack-timeout stall)', async () => {
    const timers = new FakeTimers();
    const last = image.length - CHUNK;
    const ch = new ScriptedChannel(device({ badOnce: last }));
    const r = await drive(timers, session(ch, timers).run(), 60_000);
    assert.equal(r.outcome, 'updated');
    assert.equal(ch.sent.filter((m) => m.t === 'chunk' && m.off === last).length, 2);
    assert.ok(timers.now() < 1000, `no ack timeout was needed (${timers.now()} ms of fake time)`);
  });

  it('a device that reboots on its old image before the activation took effect is offered again', async () => {
    const timers = new FakeTimers();
    const ch = new ScriptedChannel(device({ lostActivations: 1 }));
    const r = await drive(timers, session(ch, timers).run(), 60_000);
    assert.deepEqual([r.outcome, r.code, r.retries], ['updated', 'ok', 1]);
    assert.equal(ch.count('activate'), 2);
    assert.equal(ch.count('offer'), 2);
  });
});
