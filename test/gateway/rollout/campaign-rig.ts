import { EventEmitter } from 'node:events';
import { parseConfig } from '../../../gateway/config.ts';
import { Fleet } from '../../../gateway/fleet.ts';
import { silentLogger } from '../../../gateway/log.ts';
import { Campaign, type CampaignDeps, type CampaignStateEvent } from '../../../gateway/rollout/campaign.ts';
import { windowGate, type WindowGate, type WindowSource } from '../../../gateway/rollout/gate.ts';
import { ImageSource } from '../../../gateway/rollout/image-source.ts';
import { manifestForImage } from '../../../protocol/manifest.ts';
import type { GatewayMessage } from '../../../protocol/ota.ts';
import type { CompleteMessage, OrderMessage, ProgressMessage, ResultMessage, WaitingMessage } from '../../../protocol/uplink.ts';
import { drive, FakeSite, FakeTimers, settle } from './fake.ts';

/**
 * A whole campaign against scripted devices on a fake clock (campaign.ts): what each device does
 * is its role, which a test may change while the campaign runs; every message sent, every event
 * the campaign emits and its final results are recorded for the test to judge.
 */

/** The fake clock's start: wall-clock ms as the campaign, its gate and its expiry see it. */
export const T0 = 1_000_000;
export const CHUNK = 1024;
export const image = Buffer.alloc(4 * CHUNK, 5);
export const manifest = manifestForImage(image, { name: 'fw', version: '1.1.0', hw: ['hw'], chunk: CHUNK });

/**
 * - `ok`: takes the image, boots it in trial 10 ms after `activate`, confirms;
 * - `slow`: the same, but boots 5000 ms after `activate`;
 * - `hold`: accepts the offer and never acknowledges a chunk (a transfer in progress);
 * - `busy`: rejects the offer as busy;
 * - `revert`: takes the image and comes back on its old one (self-test failed);
 * - `silent`: answers nothing at all (not even the measurement);
 * - `mute`: answers the measurement, never an offer;
 * - `no-space`: rejects the offer for lack of space (the update fails).
 */
export type Role = 'ok' | 'slow' | 'hold' | 'busy' | 'revert' | 'silent' | 'mute' | 'no-space';

export class CampaignSite extends FakeSite {
  readonly sent: { id: string; msg: GatewayMessage; at: number }[] = [];
  readonly offline = new Set<string>();
  readonly roles = new Map<string, Role>();
  /** Fake ms before each chunk's ack arrives (0: at once). */
  ackDelayMs = 0;
  /** Fake ms before a pong arrives: the round trip the measurement sees. */
  pongDelayMs = 0;
  /** Bytes a device already holds of the image when offered it (its accept's `next`). */
  readonly holds = new Map<string, number>();
  private readonly held = new Map<string, Set<number>>();

  override isOnline(id?: string): boolean {
    return id === undefined || !this.offline.has(id);
  }

  /** The device drops off the broker. */
  goOffline(id: string): void {
    this.offline.add(id);
    this.deliver(id, [{ t: 'offline' }], 0, true);
  }

  /** The device (re)connects and reports its status (its check-in). */
  checkIn(id: string, busy = false, version = '1.0.0'): void {
    this.offline.delete(id);
    this.deliver(id, [{
      t: 'status', hw: 'hw', version, slot: 'a', slots: { a: { state: 'confirmed', version }, b: { state: 'empty' } },
      maxChunk: 4096, busy, trial: false,
    }], 0, true);
  }

  override hello(id: string): void {
    this.checkIn(id);
  }

  count(id: string, t: GatewayMessage['t']): number {
    return this.sent.filter((s) => s.id === id && s.msg.t === t).length;
  }

  /** Devices sent an offer, in the order of their first offer. */
  offered(): string[] {
    return [...new Set(this.sent.filter((s) => s.msg.t === 'offer').map((s) => s.id))];
  }

  override async send(id: string, msg: GatewayMessage): Promise<void> {
    this.sent.push({ id, msg, at: this.timers.now() });
    const role = this.roles.get(id) ?? 'ok';
    if (this.offline.has(id) || role === 'silent') return;
    switch (msg.t) {
      case 'ping': return this.deliver(id, [{ t: 'pong', n: msg.n }], this.pongDelayMs);
      case 'probe': return this.deliver(id, [{ t: 'probed', n: msg.n, size: msg.data.length }]);
      case 'offer': {
        if (role === 'mute') return;
        if (role === 'no-space') return this.deliver(id, [{ t: 'reject', sid: msg.sid, code: 'no-space' }]);
        if (role === 'busy') return this.deliver(id, [{ t: 'reject', sid: msg.sid, code: 'busy', reason: 'metering' }]);
        const from = this.holds.get(id) ?? 0;
        this.held.set(id, new Set(Array.from({ length: from / CHUNK }, (_, i) => i * CHUNK)));
        return this.deliver(id, [{ t: 'accept', sid: msg.sid, next: from, chunk: CHUNK, window: 8 }]);
      }
      case 'chunk': {
        if (role === 'hold') return;
        const held = this.held.get(id) ?? new Set<number>();
        this.held.set(id, held.add(msg.off));
        let next = 0;
        while (held.has(next)) next += CHUNK;
        return this.deliver(id, [{ t: 'ack', sid: msg.sid, next: Math.min(next, image.length), missing: [] }], this.ackDelayMs);
      }
      case 'verify': return this.deliver(id, [{ t: 'verified', sid: msg.sid, ok: true }]);
      case 'activate': {
        this.deliver(id, [{ t: 'activated', sid: msg.sid, slot: 'b' }]);
        if (role === 'revert') return this.deliver(id, [{ t: 'boot', version: '1.0.0', slot: 'a', trial: false, reverted: true, reason: 'self-test failed' }], 10);
        return this.deliver(id, [{ t: 'boot', version: '1.1.0', slot: 'b', sha256: manifest.sha256, trial: true, reverted: false }], role === 'slow' ? 5000 : 10);
      }
      case 'confirm': return this.deliver(id, [{ t: 'confirmed', sha256: msg.sha256, version: '1.1.0' }]);
      default: return;
    }
  }
}

/** A gate always open, on the fake clock (its `at` runs the campaign's expiry). */
export function openGate(timers: FakeTimers): WindowGate {
  return windowGate(new FakeWindows(timers, [{ from: 0, to: Number.MAX_SAFE_INTEGER }]), timers);
}

/**
 * Maintenance windows on the fake clock, as gateway/windows.ts provides them to windowGate():
 * each span [from, to) is a window; `open` and `close` are emitted at its bounds.
 */
export class FakeWindows extends EventEmitter<{ open: [unknown]; close: [unknown] }> implements WindowSource {
  readonly configured = true;
  constructor(timers: FakeTimers, private readonly spans: readonly { from: number; to: number }[]) {
    super();
    for (const s of spans) {
      if (s.from > timers.now()) timers.setTimeout(() => this.emit('open', s), s.from - timers.now());
      if (s.to < Number.MAX_SAFE_INTEGER) timers.setTimeout(() => this.emit('close', s), s.to - timers.now());
    }
  }
  state(at = 0): { open: boolean; endsAt?: number; nextOpenAt?: number } {
    const now = this.spans.find((s) => s.from <= at && at < s.to);
    const next = this.spans.filter((s) => s.from > at).sort((a, b) => a.from - b.from)[0];
    return { open: now !== undefined, ...(now ? { endsAt: now.to } : {}), ...(next ? { nextOpenAt: next.from } : {}) };
  }
}

export interface CampaignRig {
  timers: FakeTimers;
  site: CampaignSite;
  fleet: Fleet;
  campaign: Campaign;
  config: CampaignDeps['config'];
  ids: string[];
  results: ResultMessage[];
  states: CampaignStateEvent[];
  waiting: WaitingMessage[];
  orders: OrderMessage[];
  progress: ProgressMessage[];
  /** Every event's name, in order. */
  events: string[];
  /** The device's one result (throws when it has none or more than one). */
  result(id: string): ResultMessage;
  /** Start run() (once); the promise of its completion. */
  start(): Promise<CompleteMessage>;
  /** Advance fake time (after start()) until `cond` holds. */
  until(cond: () => boolean, limitMs?: number): Promise<void>;
  /** Run (or go on running) to completion. */
  finish(limitMs?: number): Promise<CompleteMessage>;
}

export interface RigOptions {
  /** Device ids (default d1..d4), all known to the fleet and online unless listed in `offline`. */
  ids?: string[];
  roles?: Record<string, Role>;
  /** Known to the fleet but offline when the campaign starts. */
  offline?: string[];
  rollout?: Record<string, unknown>;
  /** More campaign dependencies, given the fleet and clock. */
  deps?: (r: { timers: FakeTimers; site: CampaignSite; fleet: Fleet }) => Partial<CampaignDeps>;
  id?: string;
}

export function campaignRig(opts: RigOptions = {}): CampaignRig {
  const timers = new FakeTimers(T0);
  const site = new CampaignSite(timers);
  const fleet = new Fleet(site.asChannel(), () => timers.now());
  const ids = opts.ids ?? ['d1', 'd2', 'd3', 'd4'];
  for (const id of ids) site.hello(id);
  for (const id of opts.offline ?? []) site.goOffline(id);
  for (const [id, role] of Object.entries(opts.roles ?? {})) site.roles.set(id, role);
  const config = parseConfig({
    rollout: { concurrency: 1, progressIntervalMs: 60_000, probePings: 1, probeBursts: 1, maxAttempts: 1, ackTimeoutMs: 60_000, rebootTimeoutMs: 20_000, ...opts.rollout },
  }).rollout;
  const campaign = new Campaign(opts.id ?? 'c-1', new ImageSource(manifest, image), {
    channel: site.asChannel(), fleet, config, timers, log: silentLogger(), ...opts.deps?.({ timers, site, fleet }),
  });
  const rig: CampaignRig = {
    timers, site, fleet, campaign, config, ids, results: [], states: [], waiting: [], orders: [], progress: [], events: [],
    result: (id) => {
      const rs = rig.results.filter((r) => r.id === id);
      if (rs.length !== 1) throw new Error(`${id}: ${rs.length} results`);
      return rs[0]!;
    },
    start: () => (running ??= campaign.run()),
    until: async (cond, limitMs = T0 + 100 * 3_600_000) => {
      rig.start().catch(() => undefined); // finish() reports a failure
      await settle();
      while (!cond()) {
        if (!(await timers.step(limitMs))) throw new Error(`condition not met before ${limitMs} ms of fake time`);
      }
    },
    finish: (limitMs = T0 + 100 * 3_600_000) => drive(timers, rig.start(), limitMs),
  };
  let running: Promise<CompleteMessage> | undefined;
  campaign.on('result', (r) => { rig.results.push(r); rig.events.push('result'); });
  campaign.on('state', (s) => { rig.states.push(s); rig.events.push(`state:${s.state}`); });
  campaign.on('waiting', (w) => { rig.waiting.push(w); rig.events.push('waiting'); });
  campaign.on('order', (o) => { rig.orders.push(o); rig.events.push('order'); });
  campaign.on('progress', (p) => rig.progress.push(p));
  campaign.on('swept', () => rig.events.push('swept'));
  campaign.on('complete', () => rig.events.push('complete'));
  return rig;
}
