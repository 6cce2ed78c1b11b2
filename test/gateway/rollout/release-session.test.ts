import assert from 'node:assert/strict';
import { parseConfig } from '../../../gateway/config.ts';
import type { DeviceEvent } from '../../../gateway/device-channel.ts';
import { silentLogger } from '../../../gateway/log.ts';
import { DeviceSession, type SessionPart } from '../../../gateway/rollout/device-session.ts';
import { ImageSource } from '../../../gateway/rollout/image-source.ts';
import { manifestForImage } from '../../../protocol/manifest.ts';
import type { BootComponent, GatewayMessage } from '../../../protocol/ota.ts';
import { componentManifest, parseReleaseManifest, releaseIdentity } from '../../../protocol/release.ts';
import { drive, FakeTimers, ScriptedChannel } from './fake.ts';

/**
 * The gateway's side of a release update (§6.15) against a scripted multi-component device:
 * each part offered with its component and the release, transferred and verified in turn, one
 * `activate` naming every part, the boot judged by `boot.components`, one `confirm` naming every
 * image; the agent alone first.
 */
const CHUNK = 256;
const bytes = (fill: number, n = 4 * CHUNK): Buffer => Buffer.alloc(n, fill);
const imgs = { app: bytes(1), net: bytes(2, 3 * CHUNK), agent: bytes(3, 2 * CHUNK) };
const m = (c: keyof typeof imgs, v: string) => manifestForImage(imgs[c], { name: `fw-${c}`, version: v, hw: ['hw'], chunk: CHUNK });
const release = parseReleaseManifest({
  release: 'rel', version: '2.0.0', hw: ['hw'], chunk: CHUNK, seq: 4,
  components: [
    { component: 'app', ...pick(m('app', '2.0.0')), requires: { net: '>=2.0.0' } },
    { component: 'net', ...pick(m('net', '2.0.0')) },
    { component: 'agent', ...pick(m('agent', '2.0.0')), agent: true },
  ],
});
function pick(x: ReturnType<typeof m>) {
  return { name: x.name, version: x.version, size: x.size, crc32: x.crc32, sha256: x.sha256 };
}
const part = (c: keyof typeof imgs): SessionPart => {
  const entry = release.components.find((x) => x.component === c)!;
  return { component: c, image: new ImageSource(componentManifest(release, entry), imgs[c]), release, agent: entry.agent === true };
};
const OLD = 'f'.repeat(64);
const rollout = parseConfig({ rollout: { chunkWindow: 4, maxAttempts: 2, retryBackoffMs: 500, rebootTimeoutMs: 20_000 } }).rollout;

interface Opts {
  /** This component fails its self-test at the first boot: the whole set reverts. */
  failSelfTest?: string;
  /** The first activation: power lost before the switch (old set, nothing reverted). */
  loseFirstActivation?: boolean;
}

/** A device with components app, net, agent (A/B each) following §6.15. */
function device(opts: Opts = {}) {
  const running = new Map<string, { version: string; sha256: string; trial: boolean }>(
    ['app', 'net', 'agent'].map((c) => [c, { version: '1.0.0', sha256: OLD, trial: false }]));
  const offers = new Map<number, { component: string; version: string; sha256: string }>();
  const ready = new Set<number>();
  let activations = 0;
  const bootComponents = (): BootComponent[] => [...running].map(([name, r]) => ({ name, version: r.version, sha256: r.sha256, slot: 'a', trial: r.trial }));
  const boot = (reverted: boolean, reason?: string): DeviceEvent => {
    const app = running.get('app')!;
    return { t: 'boot', version: app.version, slot: 'a', sha256: app.sha256, trial: app.trial, reverted, ...(reason ? { reason } : {}), components: bootComponents() };
  };
  const script = (msg: GatewayMessage): DeviceEvent[] => {
    switch (msg.t) {
      case 'offer':
        offers.set(msg.sid, { component: msg.component ?? 'app', version: msg.version, sha256: msg.sha256 });
        return [{ t: 'accept', sid: msg.sid, next: 0, chunk: CHUNK, window: 8 }];
      case 'chunk': {
        const o = offers.get(msg.sid)!;
        const size = imgs[o.component as keyof typeof imgs].length;
        const next = Math.min(size, msg.off + msg.data.length);
        return [{ t: 'ack', sid: msg.sid, next, missing: [] }];
      }
      case 'verify':
        ready.add(msg.sid);
        return [{ t: 'verified', sid: msg.sid, ok: true }];
      case 'activate': {
        const sids = [msg.sid, ...(msg.with ?? [])];
        if (!sids.every((s) => ready.has(s))) return [];
        if (activations++ === 0 && opts.loseFirstActivation) return [{ t: 'offline' }, boot(false)];
        const staged = sids.map((s) => offers.get(s)!);
        if (staged.some((o) => o.component === opts.failSelfTest)) {
          return [{ t: 'activated', sid: msg.sid, slot: 'b' }, { t: 'offline' }, boot(true, 'self-test failed')];
        }
        for (const o of staged) running.set(o.component, { version: o.version, sha256: o.sha256, trial: true });
        for (const s of sids) ready.delete(s);
        return [{ t: 'activated', sid: msg.sid, slot: 'b' }, { t: 'offline' }, boot(false)];
      }
      case 'confirm': {
        const listed = [msg.sha256, ...(msg.with ?? [])];
        const trial = [...running.values()].filter((r) => r.trial);
        if (!trial.every((r) => listed.includes(r.sha256))) return [];
        for (const r of trial) r.trial = false;
        return [{ t: 'confirmed', sha256: msg.sha256, version: '2.0.0' }];
      }
      default: return [];
    }
  };
  return { script, running };
}

function run(parts: SessionPart[], opts: Opts = {}) {
  const d = device(opts);
  const ch = new ScriptedChannel(d.script);
  const timers = new FakeTimers();
  const s = new DeviceSession('dev-1', '1.0.0', {
    channel: ch.asChannel(), config: rollout, image: new ImageSource(releaseIdentity(release), Buffer.alloc(0)), timers, log: silentLogger(),
    rttMs: 5, window: 4, onPhase: () => undefined, random: () => 1, parts,
  });
  return { ch, d, result: drive(timers, s.run(), 600_000) };
}

const kinds = (sent: GatewayMessage[]): string[] => sent.filter((x) => x.t !== 'chunk').map((x) => {
  if (x.t === 'offer') return `offer:${x.component}`;
  if (x.t === 'activate') return `activate:${1 + (x.with?.length ?? 0)}`;
  if (x.t === 'confirm') return `confirm:${1 + (x.with?.length ?? 0)}`;
  return x.t;
});

describe('device session for a release (§6.15, scripted multi-component device)', () => {
  it('offers each part with its component and the signed release, then one activate and one confirm for all of them', async () => {
    const { ch, d, result } = run([part('app'), part('net')]);
    const r = await result;
    assert.equal(r.outcome, 'updated', r.reason);
    assert.deepEqual(r.components, ['app', 'net']);
    assert.equal(r.to, '2.0.0');
    assert.deepEqual(kinds(ch.sent), ['offer:app', 'verify', 'offer:net', 'verify', 'activate:2', 'confirm:2']);
    const offers = ch.sent.filter((x) => x.t === 'offer');
    assert.ok(offers.every((o) => o.release === release && o.seq === 4 && o.keyId === undefined));
    const act = ch.sent.find((x) => x.t === 'activate')!;
    assert.deepEqual([act.sid, ...(act.with ?? [])], offers.map((o) => o.sid), 'activate names every verified part');
    const conf = ch.sent.find((x) => x.t === 'confirm')!;
    assert.deepEqual([conf.sha256, ...(conf.with ?? [])], [imgs.app, imgs.net].map((b) => manifestForImage(b, { name: 'x', version: '1.0.0', hw: ['hw'] }).sha256));
    // every byte of both images sent, and only those
    const chunkBytes = ch.sent.filter((x) => x.t === 'chunk').reduce((n, x) => n + x.data.length, 0);
    assert.equal(chunkBytes, imgs.app.length + imgs.net.length);
    assert.equal(d.running.get('net')!.version, '2.0.0');
    assert.equal(d.running.get('agent')!.version, '1.0.0', 'a component not in the parts is left alone');
  });

  it('installs the agent alone first (its own activate and confirm), then the rest together', async () => {
    const { ch, result } = run([part('agent'), part('app'), part('net')]);
    const r = await result;
    assert.equal(r.outcome, 'updated', r.reason);
    assert.deepEqual(kinds(ch.sent), ['offer:agent', 'verify', 'activate:1', 'confirm:1', 'offer:app', 'verify', 'offer:net', 'verify', 'activate:2', 'confirm:2']);
  });

  it('a self-test failure of one component reverts the set: rolled back, self-test-failed, not retried', async () => {
    const { ch, d, result } = run([part('app'), part('net')], { failSelfTest: 'net' });
    const r = await result;
    assert.equal(r.outcome, 'rolled-back');
    assert.equal(r.code, 'self-test-failed');
    assert.equal(ch.sent.filter((x) => x.t === 'activate').length, 1);
    assert.equal(d.running.get('app')!.version, '1.0.0');
  });

  it('a failed agent step leaves the rest unsent', async () => {
    const { ch, result } = run([part('agent'), part('app')], { failSelfTest: 'agent' });
    const r = await result;
    assert.equal(r.outcome, 'rolled-back');
    assert.deepEqual(kinds(ch.sent), ['offer:agent', 'verify', 'activate:1']);
  });

  it('a reboot on the old set with nothing reverted (power lost before the switch) is offered again and activated once more', async () => {
    const { ch, result } = run([part('app'), part('net')], { loseFirstActivation: true });
    const r = await result;
    assert.equal(r.outcome, 'updated', r.reason);
    assert.equal(ch.sent.filter((x) => x.t === 'activate').length, 2);
    assert.equal(r.retries, 1);
  });
});
