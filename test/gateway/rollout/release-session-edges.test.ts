import assert from 'node:assert/strict';
import { parseConfig } from '../../../gateway/config.ts';
import type { DeviceEvent } from '../../../gateway/device-channel.ts';
import { silentLogger } from '../../../gateway/log.ts';
import { DeviceSession, type SessionDeps, type SessionPart } from '../../../gateway/rollout/device-session.ts';
import { ImageSource } from '../../../gateway/rollout/image-source.ts';
import { manifestForImage } from '../../../protocol/manifest.ts';
import type { BootComponent, ComponentStatus, GatewayMessage } from '../../../protocol/ota.ts';
import { componentManifest, parseReleaseManifest, releaseIdentity } from '../../../protocol/release.ts';
import { drive, FakeTimers, ScriptedChannel } from './fake.ts';

/**
 * The edges of a release update's session (device-session.ts, docs/protocol.md §6.15): parts the
 * device already runs confirmed, the agent step and what a later attempt does after it, progress
 * over several parts, a boot that runs only part of the set, and a resume past `activate`.
 */

const CHUNK = 256;
const imgs = { app: Buffer.alloc(4 * CHUNK, 1), net: Buffer.alloc(3 * CHUNK, 2), agent: Buffer.alloc(2 * CHUNK, 3) };
type Name = keyof typeof imgs;
const m = (c: Name) => manifestForImage(imgs[c], { name: `fw-${c}`, version: '2.0.0', hw: ['hw'], chunk: CHUNK });
const pick = (x: ReturnType<typeof m>) => ({ name: x.name, version: x.version, size: x.size, crc32: x.crc32, sha256: x.sha256 });
const release = parseReleaseManifest({
  release: 'rel', version: '2.0.0', hw: ['hw'], chunk: CHUNK, seq: 4,
  components: [{ component: 'app', ...pick(m('app')) }, { component: 'net', ...pick(m('net')) }, { component: 'agent', ...pick(m('agent')), agent: true }],
});
const part = (c: Name): SessionPart => {
  const entry = release.components.find((x) => x.component === c)!;
  return { component: c, image: new ImageSource(componentManifest(release, entry), imgs[c]), release, agent: entry.agent === true };
};
const sha = (c: Name): string => m(c).sha256;
const OLD = 'f'.repeat(64);

interface Opts {
  /** The answer to the n-th activate instead of the device's own (staged: the components it names). */
  activate?: (n: number, staged: string[], sid: number) => DeviceEvent[] | undefined;
  /** The n-th offer goes unanswered. */
  silentOffer?: (n: number, component: string) => boolean;
  /** The answer to the n-th confirm instead of the device's own. */
  confirm?: (n: number) => DeviceEvent[] | undefined;
}

/** A device with components app, net, agent (A/B each) following §6.15, as in release-session.test.ts. */
function device(opts: Opts = {}) {
  const running = new Map<string, { version: string; sha256: string; trial: boolean }>(['app', 'net', 'agent'].map((c) => [c, { version: '1.0.0', sha256: OLD, trial: false }]));
  const offers = new Map<number, { component: string; version: string; sha256: string }>();
  let nOffer = 0;
  let nActivate = 0;
  let nConfirm = 0;
  const components = (): BootComponent[] => [...running].map(([name, r]) => ({ name, version: r.version, sha256: r.sha256, slot: 'a', trial: r.trial }));
  const boot = (reverted: boolean, reason?: string): Extract<DeviceEvent, { t: 'boot' }> => {
    const app = running.get('app')!;
    return { t: 'boot', version: app.version, slot: 'a', sha256: app.sha256, trial: app.trial, reverted, ...(reason ? { reason } : {}), components: components() };
  };
  const script = (msg: GatewayMessage): DeviceEvent[] => {
    switch (msg.t) {
      case 'offer':
        offers.set(msg.sid, { component: msg.component ?? 'app', version: msg.version, sha256: msg.sha256 });
        if (opts.silentOffer?.(++nOffer, msg.component ?? 'app')) return [];
        return [{ t: 'accept', sid: msg.sid, next: 0, chunk: CHUNK, window: 8 }];
      case 'chunk': {
        const size = imgs[offers.get(msg.sid)!.component as Name].length;
        return [{ t: 'ack', sid: msg.sid, next: Math.min(size, msg.off + msg.data.length), missing: [] }];
      }
      case 'verify': return [{ t: 'verified', sid: msg.sid, ok: true }];
      case 'activate': {
        const staged = [msg.sid, ...(msg.with ?? [])].map((s) => offers.get(s)!);
        const own = opts.activate?.(++nActivate, staged.map((o) => o.component), msg.sid);
        if (own) return own;
        for (const o of staged) running.set(o.component, { version: o.version, sha256: o.sha256, trial: true });
        return [{ t: 'activated', sid: msg.sid, slot: 'b' }, { t: 'offline' }, boot(false)];
      }
      case 'confirm': {
        const own = opts.confirm?.(++nConfirm);
        if (own) return own;
        for (const r of running.values()) r.trial = false;
        return [{ t: 'confirmed', sha256: msg.sha256, version: '2.0.0' }];
      }
      default: return [];
    }
  };
  return { script, running, boot };
}

function run(parts: SessionPart[], opts: Opts = {}, deps: Partial<SessionDeps> = {}) {
  const d = device(opts);
  const ch = new ScriptedChannel(d.script);
  const timers = new FakeTimers();
  const phases: [string, number][] = [];
  const session = new DeviceSession('dev-1', '1.0.0', {
    channel: ch.asChannel(), config: parseConfig({ rollout: { chunkWindow: 4, maxAttempts: 2, retryBackoffMs: 500, rebootTimeoutMs: 20_000, offerTimeoutMs: 1000 } }).rollout,
    image: new ImageSource(releaseIdentity(release), Buffer.alloc(0)), timers, log: silentLogger(),
    rttMs: 5, window: 4, onPhase: (p, b) => { phases.push([p, b]); }, random: () => 1, parts, ...deps,
  });
  return { ch, d, session, phases, timers, result: drive(timers, session.run(), 600_000) };
}

const kinds = (sent: GatewayMessage[]): string[] => sent.filter((x) => x.t !== 'chunk').map((x) => {
  if (x.t === 'offer') return `offer:${x.component}`;
  if (x.t === 'activate') return `activate:${1 + (x.with?.length ?? 0)}`;
  if (x.t === 'confirm') return `confirm:${1 + (x.with?.length ?? 0)}`;
  return x.t;
});
const comp = (name: Name, sha256: string, trial: boolean): ComponentStatus => ({ name, layout: 'ab', version: '2.0.0', sha256, slot: 'a', slots: { a: { state: 'confirmed' }, b: { state: 'empty' } }, trial });

describe('release session: parts the device already runs (current)', () => {
  it('a part whose component runs its image confirmed is not sent again; in trial, or another image, it is', async () => {
    const { ch, result } = run([part('app'), part('net')], {}, { current: () => ({ components: [comp('app', sha('app'), false), comp('net', sha('net'), true)] }) });
    assert.equal((await result).outcome, 'updated');
    assert.deepEqual(kinds(ch.sent), ['offer:net', 'verify', 'activate:1', 'confirm:1']);
    const other = run([part('app'), part('net')], {}, { current: () => ({ components: [comp('app', sha('net'), false), comp('agent', sha('app'), false)] }) });
    await other.result;
    assert.deepEqual(kinds(other.ch.sent), ['offer:app', 'verify', 'offer:net', 'verify', 'activate:2', 'confirm:2'], 'another image, or the image under another component');
  });

  it('a device record without components, or none at all: every part is sent', async () => {
    for (const current of [() => ({}), () => undefined]) {
      const { ch, result } = run([part('app'), part('net')], {}, { current });
      assert.equal((await result).outcome, 'updated');
      assert.deepEqual(kinds(ch.sent), ['offer:app', 'verify', 'offer:net', 'verify', 'activate:2', 'confirm:2']);
    }
  });

  it('the agent alone left: one step, the transfer slot given back once it is verified', async () => {
    const at: string[] = [];
    const { ch, result } = run([part('agent'), part('app')], {}, {
      current: () => ({ components: [comp('app', sha('app'), false)] }),
      onTransferred: () => { at.push(kinds(ch.sent).join(',')); },
    });
    assert.equal((await result).outcome, 'updated');
    assert.deepEqual(kinds(ch.sent), ['offer:agent', 'verify', 'activate:1', 'confirm:1']);
    assert.deepEqual(at, ['offer:agent,verify']);
  });
});

describe('release session: the agent step (§6.15.4)', () => {
  it('the transfer slot is given back once, after the rest is verified, not after the agent', async () => {
    const at: string[] = [];
    const { ch, result } = run([part('agent'), part('app')], {}, { onTransferred: () => { at.push(kinds(ch.sent).join(',')); } });
    assert.equal((await result).outcome, 'updated');
    assert.deepEqual(at, ['offer:agent,verify,activate:1,confirm:1,offer:app,verify']);
  });

  it('a failure of the rest before its activate is retried, without the agent again', async () => {
    const { ch, result } = run([part('agent'), part('app')], { silentOffer: (n, c) => c === 'app' && n === 2 });
    const r = await result;
    assert.deepEqual([r.outcome, r.retries], ['updated', 1]);
    assert.deepEqual(kinds(ch.sent), ['offer:agent', 'verify', 'activate:1', 'confirm:1', 'offer:app', 'offer:app', 'verify', 'activate:1', 'confirm:1']);
  });

  it('the rest is a new offer: its session id is open again until its activate', async () => {
    const seen: (number | undefined)[] = [];
    const { ch, session, result } = run([part('agent'), part('app')]);
    const send = ch.send.bind(ch);
    ch.send = async (id: string, msg: GatewayMessage) => {
      if (msg.t === 'verify') seen.push(session.openSid);
      return send(id, msg);
    };
    await result;
    const verifies = ch.sent.filter((x) => x.t === 'verify').map((x) => x.sid);
    assert.deepEqual(seen, verifies);
  });
});

describe('release session: progress over several parts', () => {
  it('counts the parts verified before the current one', async () => {
    const { phases, result } = run([part('app'), part('net')]);
    await result;
    const a = imgs.app.length;
    const n = imgs.net.length;
    assert.deepEqual(phases.filter(([p]) => p !== 'transferring'),
      [['offering', 0], ['verifying', a], ['offering', a], ['verifying', a + n], ['activating', a + n], ['rebooting', a + n], ['confirming', a + n]]);
    assert.deepEqual(phases.filter(([p]) => p === 'transferring').at(-1), ['transferring', a + n]);
  });
});

describe('release session: a boot that runs only part of the set (§6.15.3)', () => {
  it('one component on its new image and the other on its old, nothing reverted: rolled back / reverted, not retried', async () => {
    let d: ReturnType<typeof device> | undefined;
    const r0 = run([part('app'), part('net')], {
      activate: (_n, _staged, sid) => {
        d!.running.set('app', { version: '2.0.0', sha256: sha('app'), trial: true });
        return [{ t: 'activated', sid, slot: 'b' }, { t: 'offline' }, d!.boot(false)];
      },
    });
    d = r0.d;
    const r = await r0.result;
    assert.deepEqual([r.outcome, r.code, r.reason, r.retries], ['rolled-back', 'reverted', 'device came back on 2.0.0', 0]);
    assert.equal(r0.ch.count('confirm'), 0);
  });

  it('every image running but one not in trial: failed / unsupported', async () => {
    let d: ReturnType<typeof device> | undefined;
    const r0 = run([part('app'), part('net')], {
      activate: (_n, _staged, sid) => {
        d!.running.set('app', { version: '2.0.0', sha256: sha('app'), trial: true });
        d!.running.set('net', { version: '2.0.0', sha256: sha('net'), trial: false });
        return [{ t: 'activated', sid, slot: 'b' }, { t: 'offline' }, d!.boot(false)];
      },
    });
    d = r0.d;
    const r = await r0.result;
    assert.deepEqual([r.outcome, r.code], ['failed', 'unsupported']);
  });
});

describe('release session: the set after its trial boot', () => {
  /** The device back on app's new image but net's old one, nothing reverted. */
  const halfBack = (d: ReturnType<typeof device>): DeviceEvent => {
    d.running.set('net', { version: '1.0.0', sha256: OLD, trial: false });
    return d.boot(false);
  };

  it('back after dropping off with only part of the set: rolled back / reverted, not retried', async () => {
    let d: ReturnType<typeof device> | undefined;
    const r0 = run([part('app'), part('net')], { confirm: (n) => (n === 1 ? [{ t: 'offline' }, halfBack(d!)] : undefined) });
    d = r0.d;
    const r = await r0.result;
    assert.deepEqual([r.outcome, r.code, r.retries], ['rolled-back', 'reverted', 0]);
    assert.equal(r0.ch.count('confirm'), 1);
  });
  it('after confirmTries unanswered confirms, a boot with only part of the set: rolled back / reverted', async () => {
    let r0: ReturnType<typeof run> | undefined;
    r0 = run([part('app'), part('net')], {
      confirm: (n) => {
        if (n === 3) r0!.timers.setTimeout(() => r0!.ch.emit(halfBack(r0!.d)), 6000);
        return [];
      },
    });
    const r = await r0.result;
    assert.deepEqual([r.outcome, r.code, r.reason], ['rolled-back', 'reverted', 'device never confirmed the new image (3 confirms unanswered) and came back on 2.0.0']);
  });

  it('a reverted boot report that still shows part of the set new: rolled back, not retried', async () => {
    let d: ReturnType<typeof device> | undefined;
    const r0 = run([part('app'), part('net')], {
      activate: (_n, _staged, sid) => {
        d!.running.set('app', { version: '2.0.0', sha256: sha('app'), trial: false });
        return [{ t: 'activated', sid, slot: 'b' }, { t: 'offline' }, d!.boot(true, 'image check failed: net')];
      },
    });
    d = r0.d;
    const r = await r0.result;
    assert.deepEqual([r.outcome, r.code, r.reason, r.retries], ['rolled-back', 'reverted', 'device came back on 2.0.0 (image check failed: net)', 0]);
    assert.equal(r0.ch.count('activate'), 1);
  });
});

describe('release session: resuming past activate', () => {
  const resume = (components: ComponentStatus[]) => () => ({ version: '1.0.0', slot: 'a' as const, trial: false, slots: { a: { state: 'confirmed' as const }, b: { state: 'empty' as const } }, components });

  it('every part confirmed: updated without a message', async () => {
    const { ch, result } = run([part('agent'), part('app')], {}, { resumeAfterActivate: resume([comp('agent', sha('agent'), false), comp('app', sha('app'), false)]) });
    const r = await result;
    assert.deepEqual([r.outcome, r.code, r.retries], ['updated', 'ok', 0]);
    assert.deepEqual(ch.sent, []);
  });

  it('the agent alone pending, then reverted: the retry installs the agent again', async () => {
    const pendingAgent: ComponentStatus = {
      name: 'agent', layout: 'ab', version: '1.0.0', sha256: OLD, slot: 'a', trial: false,
      slots: { a: { state: 'confirmed', sha256: OLD }, b: { state: 'pending', version: '2.0.0', sha256: sha('agent') } },
    };
    const r0 = run([part('agent')], {}, { resumeAfterActivate: resume([pendingAgent, comp('app', sha('app'), false)]) });
    setImmediate(() => r0.ch.emit(r0.d.boot(true, 'trial image not confirmed before reset')));
    const r = await r0.result;
    assert.deepEqual([r.outcome, r.retries], ['updated', 1]);
    assert.deepEqual(kinds(r0.ch.sent), ['offer:agent', 'verify', 'activate:1', 'confirm:1']);
  });

  it('nothing in effect: the normal attempt, with the agent first', async () => {
    const { ch, result } = run([part('agent'), part('app')], {}, { resumeAfterActivate: resume([comp('agent', OLD, false), comp('app', OLD, false)]) });
    const r = await result;
    assert.deepEqual([r.outcome, r.retries], ['updated', 0]);
    assert.deepEqual(kinds(ch.sent), ['offer:agent', 'verify', 'activate:1', 'confirm:1', 'offer:app', 'verify', 'activate:1', 'confirm:1']);
  });

  it('the agent confirmed and the rest pending, then reverted: the retry sends the rest only', async () => {
    const pendingApp: ComponentStatus = {
      name: 'app', layout: 'ab', version: '1.0.0', sha256: OLD, slot: 'a', trial: false,
      slots: { a: { state: 'confirmed', sha256: OLD }, b: { state: 'pending', version: '2.0.0', sha256: sha('app') } },
    };
    let d: ReturnType<typeof device> | undefined;
    const r0 = run([part('agent'), part('app')], {}, { resumeAfterActivate: resume([comp('agent', sha('agent'), false), pendingApp]) });
    d = r0.d;
    d.running.set('agent', { version: '2.0.0', sha256: sha('agent'), trial: false });
    setImmediate(() => r0.ch.emit(d!.boot(true, 'trial image not confirmed before reset')));
    const r = await r0.result;
    assert.deepEqual([r.outcome, r.retries], ['updated', 1]);
    assert.deepEqual(kinds(r0.ch.sent), ['offer:app', 'verify', 'activate:1', 'confirm:1']);
  });
});
