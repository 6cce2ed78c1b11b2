import { EventEmitter } from 'node:events';
import type {
  CompleteMessage, DevicePhase, OrderMessage, ProgressMessage, ResultMessage,
} from '../../protocol/uplink.ts';
import { encodeCbor } from '../../protocol/cbor.ts';
import { MAX_ORDER_ENTRIES, MAX_UPLINK_MESSAGE } from '../../protocol/limits.ts';
import type { GatewayConfig } from '../config.ts';
import type { DeviceChannel } from '../device-channel.ts';
import type { Fleet } from '../fleet.ts';
import type { Logger } from '../log.ts';
import type { Timers } from '../waiter.ts';
import { DeviceSession } from './device-session.ts';
import type { ImageSource } from './image-source.ts';
import { rankDevices, selectDevices } from './planner.ts';
import { measureRtt } from './probe.ts';

export interface CampaignDeps {
  channel: DeviceChannel;
  fleet: Fleet;
  config: GatewayConfig['rollout'];
  timers: Timers;
  log: Logger;
}

export type CampaignEvents = {
  order: [OrderMessage];
  progress: [ProgressMessage];
  result: [ResultMessage];
  complete: [CompleteMessage];
};

const PROBE_PARALLELISM = 32;

/**
 * One image rolled out to the fleet: select, measure, rank, announce the order, then run device
 * sessions in ranked order under the concurrency limit. Emits typed events (order, progress,
 * result, complete) and knows nothing of who listens (the uplink, logs, tests).
 */
export class Campaign extends EventEmitter<CampaignEvents> {
  private readonly abort = new AbortController();
  private readonly lastProgress = new Map<string, { phase: DevicePhase; at: number; bytes: number }>();
  private readonly results: ResultMessage[] = [];
  private order: OrderMessage | undefined;
  private completed: CompleteMessage | undefined;

  constructor(readonly id: string, readonly image: ImageSource, private readonly deps: CampaignDeps) {
    super();
  }

  async run(): Promise<CompleteMessage> {
    const { fleet, channel, config, timers, log } = this.deps;
    const started = timers.now();
    const manifest = this.image.manifest;
    const plan = selectDevices(manifest, fleet.list());

    // Measure each eligible device's link before ranking; one that does not answer is excluded.
    const reachable: typeof plan.eligible = [];
    await forEachLimited(plan.eligible, PROBE_PARALLELISM, async (d) => {
      this.emitProgress(d.id, 'probing', 0, true);
      try {
        const link = await measureRtt(channel, d.id, config.probePings, config.pingTimeoutMs, timers);
        fleet.setLink(d.id, { ...link, measuredAt: Date.now() });
        reachable.push(d);
      } catch (err) {
        plan.excluded.push({ id: d.id, code: 'offline', reason: `no answer to ping: ${(err as Error).message}`, version: d.version });
      }
    });

    const ranked = rankDevices(manifest, reachable, config.chunkWindow);
    this.order = fitOrder({
      t: 'order', campaign: this.id,
      image: { name: manifest.name, version: manifest.version, sha256: manifest.sha256 },
      devices: ranked, excluded: plan.excluded,
    });
    log.info({ campaign: this.id, devices: ranked.length, excluded: plan.excluded.length, order: ranked.map((r) => r.id) }, 'rollout order');
    this.emit('order', this.order);

    for (const x of plan.excluded) {
      this.pushResult({
        t: 'result', campaign: this.id, id: x.id, outcome: 'skipped', code: x.code, reason: x.reason,
        from: x.version ?? '', to: manifest.version, durationMs: 0, retries: 0,
      });
    }
    for (const r of ranked) this.emitProgress(r.id, 'queued', 0, true);

    await forEachLimited(ranked, config.concurrency, async (entry) => {
      if (this.abort.signal.aborted) {
        // every targeted device gets exactly one final result, also when it never started
        this.emitProgress(entry.id, 'failed', 0, true);
        this.pushResult({
          t: 'result', campaign: this.id, id: entry.id, outcome: 'failed', code: 'cancelled', reason: 'campaign cancelled before this device started',
          from: entry.from, to: manifest.version, durationMs: 0, retries: 0,
        });
        return;
      }
      const rtt = fleet.get(entry.id)?.link?.rttMs;
      const session = new DeviceSession(entry.id, entry.from, {
        channel, config, image: this.image, timers, log, signal: this.abort.signal,
        ...(rtt !== undefined ? { rttMs: rtt } : {}),
        onPhase: (phase, bytes) => this.emitProgress(entry.id, phase, bytes),
      });
      const r = await session.run();
      const final: DevicePhase = r.outcome === 'updated' ? 'done' : r.outcome;
      this.emitProgress(entry.id, final, r.outcome === 'updated' ? this.image.size : this.lastProgress.get(entry.id)?.bytes ?? 0, true);
      log.info({ campaign: this.id, device: entry.id, outcome: r.outcome, code: r.code, reason: r.reason, ms: r.durationMs, retries: r.retries }, 'device result');
      this.pushResult({ t: 'result', campaign: this.id, id: entry.id, ...r });
    });

    const count = (o: ResultMessage['outcome']): number => this.results.filter((r) => r.outcome === o).length;
    this.completed = {
      t: 'complete', campaign: this.id, devices: this.results.length,
      updated: count('updated'), failed: count('failed'), rolledBack: count('rolled-back'), skipped: count('skipped'),
      durationMs: Math.round(timers.now() - started),
    };
    log.info({ ...this.completed, t: undefined }, 'campaign complete');
    this.emit('complete', this.completed);
    return this.completed;
  }

  cancel(): void {
    this.abort.abort();
  }

  /** Everything a laptop that connects late needs to catch up (order, results so far, completion). */
  snapshot(): { order?: OrderMessage; results: ResultMessage[]; progress: ProgressMessage[]; complete?: CompleteMessage } {
    const progress = [...this.lastProgress].map(([id, p]): ProgressMessage => ({
      t: 'progress', campaign: this.id, id, phase: p.phase, bytes: p.bytes, total: this.image.size,
    }));
    return {
      ...(this.order ? { order: this.order } : {}),
      results: [...this.results], progress,
      ...(this.completed ? { complete: this.completed } : {}),
    };
  }

  private pushResult(r: ResultMessage): void {
    this.results.push(r);
    this.emit('result', r);
  }

  /** Phase changes always go out; byte progress within a phase at most every progressIntervalMs. */
  private emitProgress(id: string, phase: DevicePhase, bytes: number, force = false): void {
    const now = this.deps.timers.now();
    const last = this.lastProgress.get(id);
    const due = force || !last || last.phase !== phase || now - last.at >= this.deps.config.progressIntervalMs || bytes === this.image.size;
    if (last && last.phase === phase && last.bytes === bytes && !force) return;
    if (!due) {
      last!.bytes = Math.max(last!.bytes, bytes);
      return;
    }
    const monotonic = last ? Math.max(bytes, phase === last.phase ? last.bytes : 0) : bytes;
    this.lastProgress.set(id, { phase, at: now, bytes: monotonic });
    this.emit('progress', { t: 'progress', campaign: this.id, id, phase, bytes: monotonic, total: this.image.size });
  }
}

/**
 * Keep an order message within the uplink limits (docs/protocol.md §7.5): excluded entries beyond
 * what fits are left out and counted in `excludedMore`; each of those devices still gets its result.
 */
export function fitOrder(order: OrderMessage): OrderMessage {
  const budget = Math.floor(MAX_UPLINK_MESSAGE * 0.9);
  let keep = Math.min(order.excluded.length, Math.max(0, MAX_ORDER_ENTRIES - order.devices.length));
  const build = (n: number): OrderMessage => ({
    ...order, excluded: order.excluded.slice(0, n), ...(n < order.excluded.length ? { excludedMore: order.excluded.length - n } : {}),
  });
  let fitted = build(keep);
  while (keep > 0 && encodeCbor(fitted).length > budget) {
    keep = Math.floor(keep / 2);
    fitted = build(keep);
  }
  return fitted;
}

/** Run `fn` over items in order with at most `limit` running at once. */
export async function forEachLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++]!;
      await fn(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
