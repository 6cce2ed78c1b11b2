import { parseConfig } from '../../../gateway/config.ts';
import type { DeviceEvent } from '../../../gateway/device-channel.ts';
import { silentLogger } from '../../../gateway/log.ts';
import { DeviceSession, type SessionDeps, type SessionResult } from '../../../gateway/rollout/device-session.ts';
import { ImageSource } from '../../../gateway/rollout/image-source.ts';
import { manifestForImage } from '../../../protocol/manifest.ts';
import type { GatewayMessage } from '../../../protocol/ota.ts';
import { drive, FakeTimers, ScriptedChannel } from './fake.ts';

/**
 * One device's update session on a fake clock against a scripted single-image device that follows
 * docs/protocol.md §6 by default (accept at 0, one cumulative ack per chunk, verified, activated
 * then a trial boot, confirmed); a test replaces the device's answer to any command (`on`).
 */

export const CHUNK = 1024;
export const image = Buffer.alloc(8 * CHUNK, 3);
export const manifest = manifestForImage(image, { name: 'fw', version: '1.1.0', hw: ['hw'], chunk: CHUNK });
export const base = { chunkWindow: 4, ackTimeoutMs: 1000, maxAckTimeouts: 3, maxAttempts: 2, retryBackoffMs: 500, rebootTimeoutMs: 20_000 };

export type Ev<T extends DeviceEvent['t']> = Extract<DeviceEvent, { t: T }>;
type Msg<T extends GatewayMessage['t']> = Extract<GatewayMessage, { t: T }>;

export const trialBoot: Ev<'boot'> = { t: 'boot', version: '1.1.0', slot: 'b', sha256: manifest.sha256, trial: true, reverted: false };
export const oldBoot = (over: Partial<Ev<'boot'>> = {}): Ev<'boot'> => ({ t: 'boot', version: '1.0.0', slot: 'a', trial: false, reverted: false, ...over });
export const UNCONFIRMED = 'trial image not confirmed before reset';
export const status = (over: Partial<Ev<'status'>> = {}): Ev<'status'> => ({
  t: 'status', hw: 'hw', version: '1.0.0', slot: 'a', maxChunk: CHUNK, busy: false, trial: false,
  slots: { a: { state: 'confirmed', version: '1.0.0' }, b: { state: 'empty' } }, ...over,
});

/** What the device answers; `n` counts the commands of that kind so far (1-based). */
export interface DeviceScript {
  offer?: (m: Msg<'offer'>, n: number) => DeviceEvent[];
  chunk?: (m: Msg<'chunk'>, n: number) => DeviceEvent[];
  verify?: (m: Msg<'verify'>, n: number) => DeviceEvent[];
  activate?: (m: Msg<'activate'>, n: number) => DeviceEvent[];
  confirm?: (m: Msg<'confirm'>, n: number) => DeviceEvent[];
}

export function scriptedDevice(on: DeviceScript = {}): (m: GatewayMessage) => DeviceEvent[] {
  const held = new Set<number>();
  const n = new Map<string, number>();
  return (m) => {
    const k = (n.get(m.t) ?? 0) + 1;
    n.set(m.t, k);
    switch (m.t) {
      case 'offer': {
        held.clear();
        const out: DeviceEvent[] = on.offer ? on.offer(m, k) : [{ t: 'accept', sid: m.sid, next: 0, chunk: CHUNK, window: 8 }];
        // the device holds what its accept says
        for (const e of out) if (e.t === 'accept' && e.sid === m.sid) for (let o = 0; o < e.next; o += CHUNK) held.add(o);
        return out;
      }
      case 'chunk': {
        if (on.chunk) return on.chunk(m, k);
        held.add(m.off);
        let next = 0;
        while (held.has(next)) next += CHUNK;
        return [{ t: 'ack', sid: m.sid, next: Math.min(next, image.length), missing: [] }];
      }
      case 'verify': return on.verify ? on.verify(m, k) : [{ t: 'verified', sid: m.sid, ok: true }];
      case 'activate': return on.activate ? on.activate(m, k) : [{ t: 'activated', sid: m.sid, slot: 'b' }, { t: 'offline' }, trialBoot];
      case 'confirm': return on.confirm ? on.confirm(m, k) : [{ t: 'confirmed', sha256: m.sha256, version: '1.1.0' }];
      default: return [];
    }
  };
}

export interface Harness {
  timers: FakeTimers;
  ch: ScriptedChannel;
  session: DeviceSession;
  /** Every phase reported, with its bytes. */
  phases: [string, number][];
  run(limitMs?: number): Promise<SessionResult>;
}

export function harness(device: (m: GatewayMessage) => DeviceEvent[], over: Record<string, unknown> = {}, deps: Partial<SessionDeps> = {}, timers = new FakeTimers()): Harness {
  const ch = new ScriptedChannel(device);
  const phases: [string, number][] = [];
  const session = new DeviceSession('dev-1', '1.0.0', {
    channel: ch.asChannel(), config: parseConfig({ rollout: { ...base, ...over } }).rollout, image: new ImageSource(manifest, image), timers, log: silentLogger(),
    rttMs: 5, window: 4, onPhase: (p, bytes) => { phases.push([p, bytes]); }, random: () => 1, ...deps,
  });
  return { timers, ch, session, phases, run: (limitMs = 600_000) => drive(timers, session.run(), limitMs) };
}

/** The non-chunk commands sent, in order. */
export const commands = (ch: ScriptedChannel): string[] => ch.sent.filter((m) => m.t !== 'chunk').map((m) => m.t);
