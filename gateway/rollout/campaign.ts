import { EventEmitter, setMaxListeners } from 'node:events';
import { FwError } from '../../protocol/errors.ts';
import type {
  CompleteMessage, DevicePhase, HaltedInfo, OrderEntry, OrderMessage, ProgressMessage, ResultMessage, TotalsMessage, WaitingMessage,
} from '../../protocol/uplink.ts';
import { TokenBucket } from './bandwidth.ts';
import { DeviceSession } from './device-session.ts';
import { ImageSource } from './image-source.ts';
import type { Manifest } from '../../protocol/manifest.ts';
import { ALWAYS_OPEN } from './gate.ts';
import type { JournalState } from './journal.ts';
import { chunkWindowFor, learnDeviceMsPerMiB, linkTimeMs, rankDevices, selectDevices, type WindowBounds } from './planner.ts';
import { measureLinks } from './measure.ts';
import { fitOrder, recentLink, startOrder, type OrderPolicy } from './order.ts';
import { Slots } from './slots.ts';
import { ProgressTracker } from './progress.ts';
import { assignWaves, waveGateStops } from './waves.ts';
import { ReleaseRollout } from './release-rollout.ts';

export { recentLink, type OrderPolicy };

import {
  HALT_STOPS, ROLLBACK_THRESHOLD_MIN, rollbackThresholdPassed,
  type CampaignDeps, type CampaignEvents, type CampaignState, type StopReason, type TurnEnd, type Wait,
} from './campaign-deps.ts';

export {
  rollbackThresholdPassed, ROLLBACK_THRESHOLD_MIN,
  type CampaignDeps, type CampaignEvents, type CampaignState, type CampaignStateEvent,
} from './campaign-deps.ts';

/**
 * One image rolled out to the fleet: select, measure every link (RTT and throughput), rank
 * fastest first, plan the starts under the concurrency limit, announce the order, then run the
 * device sessions. Emits typed events (order, progress, totals, result, complete) and knows
 * nothing of who listens (the uplink, logs, tests).
 */
export class Campaign extends EventEmitter<CampaignEvents> {
  private readonly abort = (() => {
    const c = new AbortController();
    setMaxListeners(0, c.signal); // one listener per device session, however many run at once
    return c;
  })();
  /** Ends the wait for reconnecting devices (a cancel, a shutdown). */
  private readonly graceStop = new AbortController();
  private readonly tracker: ProgressTracker;
  private readonly results: ResultMessage[] = [];
  private order: OrderMessage | undefined;
  private completed: CompleteMessage | undefined;
  private startedAt = 0;
  /** Wall-clock ms when a resumed campaign picked up (0 when not resumed). */
  private resumedAt = 0;
  /** Ranked devices whose update ended updated, failed or rolled back, and those rolled back. */
  private readonly finished = { finished: 0, rolledBack: 0 };
  /** Set once the rollback threshold is passed: no device starts after it (§7.8.1). */
  private halted: HaltedInfo | undefined;
  /** The stop switch of each running device session. */
  private readonly sessions = new Map<string, AbortController>();
  /** Why a session was stopped, when the campaign stopped it. */
  private readonly stopReasons = new Map<string, StopReason>();
  /** Per wave: devices that finished an update (updated, failed, rolled back) and those that failed or rolled back. */
  private readonly waveCounts = new Map<number, { finished: number; failed: number }>();
  /** Devices the window-fit check deferred in the current window. */
  private readonly fitDeferred = new Set<string>();
  /** Set when the campaign's expiry passed: the reason given to devices still waiting. */
  private expired: string | undefined;
  /** Set by cancelByUser(): why (who cancelled). */
  private cancelled: string | undefined;
  /** Devices waiting for their check-in, a window or a busy recheck (not running, no result). */
  private readonly waitingDevices = new Map<string, { entry: OrderEntry; wait: Wait; reason: string; timer?: unknown }>();
  /** The wave whose devices may start (1-based); later waves wait for it. */
  private currentWave = 1;
  private lastWave = 1;
  /** Set while paused between waves: resumeWaves() calls it. */
  private unpause: (() => void) | undefined;
  private lastWaiting: WaitingMessage | undefined;
  /** Earlier turns of a device that ended waiting (busy, offline, a window): their time and attempts count in its result. */
  private readonly earlierTurns = new Map<string, { ms: number; attempts: number }>();
  /** Wakes the dispatch loop (a release, a cancel, a resume). */
  private poke: () => void = () => undefined;
  /** A release campaign's component selection (undefined: one image). */
  readonly release: ReleaseRollout | undefined;

  constructor(readonly id: string, readonly image: ImageSource, private readonly deps: CampaignDeps) {
    super();
    this.release = deps.release ? new ReleaseRollout(deps.release, deps.downgrade ?? false) : undefined;
    this.tracker = new ProgressTracker({
      campaign: id, size: this.size, timers: deps.timers, progressIntervalMs: deps.config.progressIntervalMs, concurrency: deps.config.concurrency,
      rttMs: (dev) => deps.fleet.get(dev)?.link?.rttMs, emitProgress: (m) => this.emit('progress', m), emitTotals: (m) => this.emit('totals', m),
    });
  }

  /** Bytes of the campaign's image; a release's: every component's (a device may get fewer). */
  get size(): number {
    return this.release ? this.image.manifest.size : this.image.size;
  }

  /** Track a device's phase and bytes (throttled `progress` events, ProgressTracker). */
  private progress(id: string, phase: DevicePhase, bytes: number, force = false): void {
    this.tracker.update(id, phase, bytes, force);
  }

  /**
   * A dry run (§7.12.4, `fwpush plan`): select, measure and rank as a campaign of this manifest
   * would, and return the order it would announce. Stores and updates nothing (the measured link
   * figures are kept, as after any probe).
   */
  static async dryRun(manifest: Manifest, deps: CampaignDeps): Promise<OrderMessage> {
    const c = new Campaign('plan', new ImageSource(manifest, Buffer.alloc(0)), deps);
    const { config } = deps;
    await c.announce({ min: config.minChunkWindow, max: config.chunkWindow, rebootMs: config.rebootEstimateMs, deviceMsPerMiB: config.deviceMsPerMiBEstimate });
    return c.order!;
  }

  /** Whether run() has begun (a queued campaign has not). */
  get started(): boolean {
    return this.startedAt > 0;
  }

  get running(): boolean {
    return this.startedAt > 0 && !this.completed;
  }

  async run(): Promise<CompleteMessage> {
    const { config, timers, log } = this.deps;
    this.startedAt = timers.now();
    const bounds = { min: config.minChunkWindow, max: config.chunkWindow, rebootMs: config.rebootEstimateMs, deviceMsPerMiB: config.deviceMsPerMiBEstimate };
    const journal = this.deps.resume;
    const resumed = journal?.order ? { ...journal, order: journal.order } : undefined;
    if (resumed) this.currentWave = Math.max(1, resumed.wave ?? 1); // announced as running in the wave the journal reached
    this.emit('state', { state: 'running', ...(this.deps.waves ? { wave: this.currentWave } : {}) });
    if (!resumed && this.deps.reconnects) await this.deps.reconnects(this.graceStop.signal);
    const { starts, pending } = resumed ? this.resumeFrom(resumed) : await this.announce(bounds);
    for (const r of starts) this.progress(r.id, 'queued', resumed?.held.get(r.id) ?? 0, true);
    for (const r of pending) this.progress(r.id, 'queued', resumed?.held.get(r.id) ?? 0, true);
    this.lastWave = Math.max(1, ...[...starts, ...pending].map((e) => e.wave ?? 1));

    this.tracker.startTotals(() => this.order?.devices ?? []);
    const bandwidth = this.deps.bandwidth ?? (config.siteBps > 0 ? new TokenBucket(config.siteBps, timers) : undefined);
    await this.dispatch(starts, pending, (entry, release) => this.update(entry, bounds, bandwidth, release, resumed?.activating.has(entry.id) ?? false));
    this.tracker.stopTotals(this.order?.devices ?? []);

    const count = (o: ResultMessage['outcome']): number => this.results.filter((r) => r.outcome === o).length;
    const extra = { cancelled: count('cancelled'), superseded: count('superseded'), expired: count('expired') };
    this.completed = {
      t: 'complete', campaign: this.id, devices: this.results.length,
      updated: count('updated'), failed: count('failed'), rolledBack: count('rolled-back'), skipped: count('skipped'),
      // a resumed campaign's duration runs from its first start (the journal's), the restart's downtime included
      durationMs: Math.round(timers.now() - this.startedAt + (resumed ? Math.max(0, this.resumedAt - resumed.startedAt) : 0)),
      ...(this.halted ? { halted: this.halted } : {}),
      ...Object.fromEntries(Object.entries(extra).filter(([, n]) => n > 0)),
      ...(this.release ? this.release.completeFields(this.results) : {}),
    };
    log.info({ ...this.completed, t: undefined }, 'campaign complete');
    const final: CampaignState = this.cancelled ? 'cancelled' : this.halted ? 'halted' : extra.expired > 0 ? 'expired' : 'completed';
    this.emit('state', { state: final, ...(this.cancelled ? { reason: this.cancelled } : this.halted ? { reason: this.halted.reason } : {}) });
    this.emit('complete', this.completed);
    return this.completed;
  }

  /** Stop at once (gateway shutdown): every session ends, nothing is reported as a device's result; the journal resumes it. */
  cancel(): void {
    this.abort.abort();
    this.graceStop.abort();
  }

  /**
   * Cancel the campaign (§7.12.1, `fwpush cancel`, `fwgate campaign cancel`): devices not offered
   * yet end `cancelled`; devices in transfer or verification are told `abort` and keep their old
   * image (`cancelled`); a device between `activate` and `confirm` is never interrupted and reports
   * its own result. False when it has already completed.
   */
  cancelByUser(reason: string): boolean {
    if (this.completed || this.cancelled !== undefined) return false;
    this.cancelled = reason;
    this.graceStop.abort();
    const stopped = this.stopSessions('cancel', (phase) => HALT_STOPS.has(phase));
    this.deps.log.warn({ campaign: this.id, reason, stopped }, 'campaign cancelled');
    this.unpause = undefined;
    this.poke();
    return true;
  }

  /** Whether cancelByUser() was called. */
  get isCancelled(): boolean {
    return this.cancelled !== undefined;
  }

  /** Paused between waves: go on with the next one (§7.12.3). False when not paused. */
  resumeWaves(): boolean {
    if (!this.unpause) return false;
    this.unpause();
    return true;
  }

  get paused(): boolean {
    return this.unpause !== undefined;
  }

  /**
   * A newer campaign takes over this device (§7.12.5): if it waits here for its check-in (not
   * running, no result), its result is `superseded`. True when it was.
   */
  supersedeDevice(id: string, by: string): boolean {
    const w = this.waitingDevices.get(id);
    if (!w || this.completed) return false;
    this.deps.timers.clearTimeout(w.timer);
    this.waitingDevices.delete(id);
    this.progress(id, 'superseded', this.tracker.bytesOf(id), true);
    this.pushResult({
      t: 'result', campaign: this.id, id, outcome: 'superseded', code: 'superseded', reason: `superseded by campaign ${by}`,
      from: w.entry.from, to: this.image.manifest.version, durationMs: 0, retries: 0,
    });
    this.poke();
    return true;
  }

  /** Devices waiting for their check-in (or a window, or a busy recheck) in this campaign. */
  waitingIds(): string[] {
    return [...this.waitingDevices.keys()];
  }

  /** Whether the device is one this campaign updates (in its order). */
  targets(id: string): boolean {
    return this.order?.devices.some((d) => d.id === id) ?? false;
  }

  /** The device's final result in this campaign, once it has one. */
  resultOf(id: string): ResultMessage | undefined {
    return this.results.find((r) => r.id === id);
  }

  /**
   * Select, measure, rank and plan; announce the order; skip the excluded. The targets are the
   * devices fixed at creation (the whole known fleet, online or not, narrowed by --only/--group);
   * eligible ones that are offline are in the order after the ranked ones of their wave, without
   * figures, and wait for their check-in. With waves, each wave is ranked fastest first within
   * itself and its devices carry their wave.
   */
  private async announce(bounds: WindowBounds): Promise<{ starts: OrderEntry[]; pending: OrderEntry[] }> {
    const { fleet, config, log } = this.deps;
    const manifest = this.image.manifest;
    const targets = this.deps.targets;
    const scope = targets ? targets.map((id) => fleet.get(id)).filter((d) => d !== undefined) : fleet.list();
    const plan = this.release ? this.release.select(scope) : selectDevices(manifest, scope, { downgrade: this.deps.downgrade ?? false });
    const offlineEntries = this.deps.checkIn ? plan.excluded.filter((x) => x.code === 'offline') : [];
    const excluded = plan.excluded.filter((x) => !offlineEntries.includes(x));
    const waveOf = this.deps.waves
      ? assignWaves(scope.map((d) => d.id).filter((id) => plan.eligible.some((e) => e.id === id) || offlineEntries.some((x) => x.id === id)), this.deps.waves)
      : undefined;
    const reachable = await this.measure(plan.eligible, excluded);
    // A device holds its transfer slot until its image is verified, not through its reboot.
    const slotMs = (e: OrderEntry): number => Math.max(0, (e.etaMs ?? 0) - (fleet.get(e.id)?.rebootMs ?? config.rebootEstimateMs));
    const starts: OrderEntry[] = [];
    const pending: OrderEntry[] = [];
    const waves = Math.max(1, ...(waveOf ? waveOf.values() : [1]));
    for (let w = 1; w <= waves; w++) {
      const inWave = (id: string): boolean => (waveOf?.get(id) ?? 1) === w;
      const ranked = rankDevices(manifest, reachable.filter((d) => inWave(d.id)), bounds)
        .map((e) => ({ ...e, rank: e.rank + starts.length + pending.length, ...(waveOf ? { wave: w } : {}) }));
      starts.push(...startOrder(ranked, config.concurrency, this.deps.orderPolicy ?? 'ranked', this.deps.seed ?? 1, slotMs));
      for (const x of offlineEntries.filter((o) => inWave(o.id))) {
        pending.push({ id: x.id, rank: starts.length + pending.length + 1, from: x.version ?? '', ...(waveOf ? { wave: w } : {}) });
      }
    }
    const devices = [...starts, ...pending].sort((a, b) => a.rank - b.rank).map((e) => this.release?.entry(e) ?? e);
    this.order = fitOrder({
      t: 'order', campaign: this.id,
      image: { name: manifest.name, version: manifest.version, sha256: manifest.sha256 },
      devices, excluded,
    });
    log.info({ campaign: this.id, devices: devices.length, excluded: excluded.length, waiting: pending.map((p) => p.id), order: devices.map((r) => r.id), starts: starts.map((s) => s.id), waves }, 'rollout order');
    this.tracker.plan(devices);
    this.emit('order', this.order);
    await this.deps.beforeTransfers?.();

    for (const x of excluded) {
      this.pushResult({
        t: 'result', campaign: this.id, id: x.id, outcome: 'skipped', code: x.code, reason: x.reason,
        from: x.version ?? '', to: manifest.version, durationMs: 0, retries: 0,
      });
    }
    return { starts, pending };
  }

  /**
   * Resume from the journal: its order and results stand (not announced again: a laptop that
   * asks gets them in the replay); the devices without a result start again in their planned
   * order (a device that does not come back within rollout.offlineWaitMs then waits for its
   * check-in). Journaled rollbacks
   * count towards the threshold again; the wave the journal reached is the current one.
   */
  private resumeFrom(journal: JournalState & { order: OrderMessage }): { starts: OrderEntry[]; pending: OrderEntry[] } {
    this.resumedAt = Date.now();
    this.order = journal.order;
    this.currentWave = Math.max(1, journal.wave ?? 1);
    this.tracker.plan(journal.order.devices);
    for (const r of journal.results.values()) {
      this.results.push(r);
      this.progress(r.id, r.outcome === 'updated' ? 'done' : r.outcome, r.outcome === 'updated' ? this.size : journal.held.get(r.id) ?? 0, true);
      if (journal.order.devices.some((d) => d.id === r.id)) this.countFinished(r.id, r.outcome);
    }
    const left = journal.order.devices
      .filter((d) => !journal.results.has(d.id))
      .sort((a, b) => (a.wave ?? 1) - (b.wave ?? 1) || (a.startMs ?? Infinity) - (b.startMs ?? Infinity) || a.rank - b.rank);
    // Right after a restart no device has reconnected yet: each starts its turn, which waits up to
    // rollout.offlineWaitMs for it (§8.1.2), and only then waits for its check-in.
    this.deps.log.info({ campaign: this.id, results: journal.results.size, remaining: left.map((d) => d.id), pastActivate: [...journal.activating].filter((id) => !journal.results.has(id)) }, 'campaign resumed from its journal');
    return { starts: left, pending: [] };
  }

  /** Everything a laptop that connects late needs to catch up: order, latest progress, totals, results, completion. */
  snapshot(): { order?: OrderMessage; progress: ProgressMessage[]; totals?: TotalsMessage; results: ResultMessage[]; waiting?: WaitingMessage; complete?: CompleteMessage } {
    return {
      ...(this.order ? { order: this.order } : {}),
      ...this.tracker.snapshot(),
      results: [...this.results],
      ...(this.lastWaiting && !this.completed ? { waiting: this.lastWaiting } : {}),
      ...(this.completed ? { complete: this.completed } : {}),
    };
  }

  // ---- measurement ----

  /** RTT then throughput for each eligible device (measure.ts); cancelled before it ran: nobody is probed, everyone ends cancelled. */
  private async measure(eligible: ReturnType<typeof selectDevices>['eligible'], excluded: OrderMessage['excluded']): Promise<typeof eligible> {
    if (this.cancelled !== undefined) return [...eligible];
    const { fleet, channel, config, timers, log } = this.deps;
    return measureLinks(eligible, excluded, { fleet, channel, config, timers, log, onPhase: (id, phase) => this.progress(id, phase, 0, true) });
  }

  // ---- one device ----

  /**
   * The device turns of the campaign (docs/operations.md "Maintenance windows", "Waves"). Devices
   * in `ready` start in order, at most `rollout.concurrency` transferring at once across every
   * campaign (a device gives its slot back once its image is verified, or when its turn ends), only
   * while the gate is open (with `downloadEarly`, transfers also outside it), and only once their
   * wave has begun. A turn that ends waiting goes to `waiting`: for the next window (back to
   * `ready` when the gate opens), for its check-in (a `status` from the device), or, busy, for its
   * check-in as idle or a recheck after `rollout.busyRecheckMs`. When a wave has no device ready
   * or running, its failure share is checked against the wave gate before the next one begins (or
   * the campaign pauses until resumeWaves()). Ends when no device is ready, running or waiting;
   * waiting ones end at the campaign's expiry, a cancel or a halt.
   */
  private async dispatch(starts: readonly OrderEntry[], pending: readonly OrderEntry[], turn: (entry: OrderEntry, release: () => void) => Promise<TurnEnd>): Promise<void> {
    const { config, timers, fleet } = this.deps;
    const gate = this.deps.gate ?? ALWAYS_OPEN;
    const slots = this.deps.slots ?? new Slots(config.concurrency);
    const ready: OrderEntry[] = [...starts];
    const waiting = this.waitingDevices;
    for (const e of pending) waiting.set(e.id, { entry: e, wait: 'check-in', reason: 'offline: waits for its check-in' });
    const running = new Map<Promise<void>, number>();
    const wake = (): void => this.poke();
    const release = (id: string): void => {
      const w = waiting.get(id);
      if (!w) return;
      timers.clearTimeout(w.timer);
      waiting.delete(id);
      ready.push(w.entry);
      wake();
    };
    const stops: (() => void)[] = [];
    stops.push(gate.onChange((open) => {
      if (open) {
        for (const [id, w] of [...waiting]) if (w.wait === 'window') release(id);
      } else {
        // at the close: sessions not yet activating stop and wait for the next window
        this.stopSessions('window', (phase) => HALT_STOPS.has(phase) && !this.deps.downloadEarly);
      }
      wake();
    }));
    const onStatus = (d: { id: string; busy: boolean }): void => {
      const w = waiting.get(d.id);
      if (!w || w.wait === 'window') return;
      if (w.wait === 'check-in' || !d.busy || this.deps.checkIn?.force) release(d.id);
    };
    fleet.on('status', onStatus);
    stops.push(() => fleet.off('status', onStatus));
    const expiresAt = this.deps.checkIn?.expiresAt;
    if (expiresAt !== undefined) {
      stops.push(gate.at(expiresAt, () => {
        this.expired = `campaign expired at ${new Date(expiresAt).toISOString()} before this device could be updated`;
        this.stopSessions('expired', (phase) => HALT_STOPS.has(phase));
        wake();
      }));
    }
    const onAbort = (): void => wake();
    this.abort.signal.addEventListener('abort', onAbort);
    stops.push(() => this.abort.signal.removeEventListener('abort', onAbort));
    const isEnding = (): boolean => this.abort.signal.aborted || this.halted !== undefined || this.expired !== undefined || this.cancelled !== undefined;
    const startable = (e: OrderEntry): boolean => isEnding() || (e.wave ?? 1) <= this.currentWave;
    let swept = false;
    try {
      for (;;) {
        const ending = isEnding();
        if (ending) for (const id of [...waiting.keys()]) release(id); // each gets its final result below
        const woken = new Promise<void>((resolve) => { this.poke = resolve; });
        const waveBusy = ready.some((e) => (e.wave ?? 1) <= this.currentWave) || [...running.values()].some((w) => w <= this.currentWave);
        if (!ending && !waveBusy && this.currentWave < this.lastWave && !this.unpause) {
          this.nextWave();
          if (!this.unpause) continue;
        }
        if (ready.filter(startable).length === 0 && running.size === 0 && !swept) {
          swept = true;
          this.emit('swept');
        }
        if (ready.filter(startable).length === 0 && running.size === 0 && !this.unpause && waiting.size > 0 && !ending) this.announceWaiting();
        if (ready.length === 0 && running.size === 0 && waiting.size === 0) break;
        const i = ready.findIndex(startable);
        if (i >= 0 && (ending || gate.isOpen() || this.deps.downloadEarly)) {
          await slots.acquire();
          const stillEnding = isEnding();
          const k = ready.findIndex(startable);
          const entry = k >= 0 && (stillEnding || gate.isOpen() || this.deps.downloadEarly) ? ready.splice(k, 1)[0] : undefined;
          if (!entry) {
            slots.release(); // the window closed while this waited for a slot
            continue;
          }
          swept = false;
          let released = false;
          const free = (): void => {
            if (released) return;
            released = true;
            slots.release();
          };
          const p: Promise<void> = turn(entry, free)
            .then((end) => {
              if (end.final) return;
              const w = { entry, wait: end.wait, reason: end.reason, timer: undefined as unknown };
              if (end.wait === 'busy') w.timer = timers.setTimeout(() => release(entry.id), config.busyRecheckMs);
              waiting.set(entry.id, w);
              this.progress(entry.id, 'queued', this.tracker.bytesOf(entry.id), true);
              this.deps.log.info({ campaign: this.id, device: entry.id, wait: end.wait, reason: end.reason }, 'device waits');
              if (end.wait === 'window' && gate.isOpen() && !this.windowDeferred(entry.id)) release(entry.id);
            })
            .finally(() => {
              free();
              running.delete(p);
              wake();
            });
          running.set(p, entry.wave ?? 1);
          continue;
        }
        await woken;
      }
    } finally {
      for (const w of waiting.values()) timers.clearTimeout(w.timer);
      waiting.clear();
      for (const stop of stops) stop();
    }
  }

  /**
   * The current wave has no device ready or running: check its failure share against the wave
   * gate (halt: later waves end `skipped` / `campaign-halted`), pause when asked to (until
   * resumeWaves(); devices of earlier waves that check in meanwhile are still updated), else let
   * the next wave begin.
   */
  private nextWave(): void {
    const w = this.currentWave;
    const counts = this.waveCounts.get(w) ?? { finished: 0, failed: 0 };
    const gatePct = this.deps.waveGatePct ?? this.deps.config.rollbackThreshold;
    if (waveGateStops(counts, gatePct)) {
      this.halted = {
        code: 'wave-gate', reason: `wave ${w}: ${counts.failed} of ${counts.finished} finished devices failed or rolled back, wave gate ${gatePct} %`,
        rolledBack: counts.failed, finished: counts.finished, thresholdPct: Math.max(1, Math.min(100, gatePct)),
      };
      this.deps.log.warn({ campaign: this.id, wave: w, ...counts, gatePct }, 'wave gate: later waves not started');
      return;
    }
    const advance = (): void => {
      this.unpause = undefined;
      this.currentWave = w + 1;
      this.emit('state', { state: 'running', wave: this.currentWave });
      this.deps.log.info({ campaign: this.id, wave: this.currentWave }, 'next wave');
      this.poke();
    };
    if (!this.deps.wavePause) return advance();
    this.unpause = advance;
    this.emit('state', { state: 'paused', wave: w + 1 });
    this.announceWaiting(w + 1);
    this.emit('swept');
    this.deps.log.info({ campaign: this.id, wave: w, next: w + 1 }, 'paused between waves: waits for resume');
  }

  /** Tell listeners which devices wait for their check-in (or that the campaign is paused before a wave). */
  private announceWaiting(pausedBeforeWave?: number): void {
    const devices = [...this.waitingDevices.values()].map((w) => ({ id: w.entry.id, reason: w.reason }));
    const msg: WaitingMessage = {
      t: 'waiting', campaign: this.id, pending: devices.length, devices: devices.slice(0, 256),
      ...(this.deps.checkIn ? { expiresAt: Math.round(this.deps.checkIn.expiresAt) } : {}),
      ...(pausedBeforeWave !== undefined ? { pausedBeforeWave } : {}),
    };
    if (this.lastWaiting && JSON.stringify(this.lastWaiting) === JSON.stringify(msg)) return;
    this.lastWaiting = msg;
    if (pausedBeforeWave === undefined) this.emit('state', { state: 'waiting' });
    this.emit('waiting', msg);
  }

  /** Stop the running sessions whose phase matches, remembering why (their turn then waits or ends). */
  private stopSessions(why: StopReason, phaseMatches: (phase: DevicePhase) => boolean): string[] {
    const ids = [...this.sessions.keys()].filter((id) => phaseMatches(this.tracker.phaseOf(id) ?? 'queued'));
    for (const id of ids) {
      this.stopReasons.set(id, why);
      this.sessions.get(id)?.abort();
    }
    return ids;
  }

  /** True when the device was deferred by the window-fit check in this window (not retried until the next). */
  private windowDeferred(id: string): boolean {
    return this.fitDeferred.has(id);
  }

  /** Why a device must not be activated now (outside a window, or its reboot would not fit), if so. */
  private activationRefusal(id: string): string | undefined {
    const gate = this.deps.gate ?? ALWAYS_OPEN;
    if (!gate.windowed) return undefined;
    if (!gate.isOpen()) return 'outside a maintenance window: activation waits for the next one';
    const endsAt = gate.endsAt();
    if (endsAt === undefined) return undefined;
    const device = this.deps.fleet.get(id);
    const needMs = (device?.rebootMs ?? this.deps.config.rebootEstimateMs) + this.deps.config.confirmTimeoutMs;
    const leftMs = endsAt - gate.now();
    if (leftMs >= needMs) return undefined;
    this.fitDeferred.add(id);
    return `reboot and confirmation (about ${needMs} ms) would not finish before the window closes in ${Math.max(0, leftMs)} ms`;
  }

  private async update(entry: OrderEntry, bounds: WindowBounds, bandwidth: TokenBucket | undefined, onTransferred: () => void, pastActivate: boolean): Promise<TurnEnd> {
    const { fleet, channel, config, timers, log } = this.deps;
    const manifest = this.image.manifest;
    const earlier = this.earlierTurns.get(entry.id) ?? { ms: 0, attempts: 0 };
    const notStarted = (outcome: ResultMessage['outcome'], code: ResultMessage['code'], reason: string): TurnEnd => {
      this.progress(entry.id, outcome === 'updated' ? 'done' : outcome, this.tracker.bytesOf(entry.id), true);
      this.pushResult({ t: 'result', campaign: this.id, id: entry.id, outcome, code, reason, from: entry.from, to: manifest.version, durationMs: Math.round(earlier.ms), retries: earlier.attempts });
      return { final: true };
    };
    /** The turn ends waiting: its time and attempts are kept for the device's result. */
    const waits = (end: TurnEnd & { final: false }, ran: { durationMs: number; retries: number }): TurnEnd => {
      this.earlierTurns.set(entry.id, { ms: earlier.ms + ran.durationMs, attempts: earlier.attempts + ran.retries + 1 });
      return end;
    };
    // every targeted device gets exactly one final result, also when it never started
    if (this.abort.signal.aborted) return notStarted('failed', 'cancelled', 'campaign cancelled before this device started');
    const haltedBefore = this.halted; // a local: this.halted changes while the session runs
    // not started: never offered the image (§7.8.1)
    if (this.cancelled !== undefined) return notStarted('cancelled', 'cancelled', `campaign cancelled before this device started (${this.cancelled})`);
    if (haltedBefore) return notStarted('skipped', 'campaign-halted', `rollout stopped before this device started (${haltedBefore.reason})`);
    if (this.expired) return notStarted('expired', 'expired', this.expired);
    this.fitDeferred.delete(entry.id);
    const device = fleet.get(entry.id);
    // a release: the components this device lacks now (it may have changed since the order)
    const planned = this.release && device ? await this.release.partsFor(device) : undefined;
    if (planned && 'excluded' in planned) return notStarted('skipped', planned.excluded.code, planned.excluded.reason);
    const chunk = Math.min(manifest.chunk, device?.maxChunk ?? manifest.chunk);
    // The slot time (offer to verified) of a whole transfer, to learn the device's own time from.
    const linkMs = device ? linkTimeMs(manifest, device, bounds) : undefined;
    const slot = { from: timers.now(), ms: undefined as number | undefined, wholeImage: false };
    // One stop switch per session: a cancel stops every session; a halt, a window's close or the
    // expiry only those not activating yet.
    const stop = new AbortController();
    const cancel = (): void => stop.abort();
    this.abort.signal.addEventListener('abort', cancel, { once: true });
    this.sessions.set(entry.id, stop);
    this.stopReasons.delete(entry.id);
    const session = new DeviceSession(entry.id, entry.from, {
      channel, config, image: this.image, timers, log, signal: stop.signal,
      window: chunkWindowFor(device?.link, chunk, bounds),
      ...(device?.link ? { rttMs: device.link.rttMs } : {}),
      ...(bandwidth ? { bandwidth } : {}),
      onPhase: (phase, bytes) => {
        // A stopped session may still be between a wait that just ended and its next step: it must
        // not begin an offer or an activation (each phase is reported before its message is sent).
        if (stop.signal.aborted && (phase === 'offering' || phase === 'activating')) throw new FwError('E_CANCELLED', `session of ${entry.id} stopped before ${phase}`);
        if (phase === 'offering') slot.from = timers.now();
        if (phase === 'transferring' && slot.ms === undefined && !slot.wholeImage) slot.wholeImage = bytes === 0;
        this.progress(entry.id, phase, bytes);
      },
      onTransferred: () => {
        slot.ms ??= timers.now() - slot.from;
        onTransferred();
      },
      mayActivate: () => this.activationRefusal(entry.id),
      ...(this.deps.durable ? { beforeActivate: this.deps.durable } : {}),
      downgrade: this.deps.downgrade ?? false,
      force: this.deps.checkIn?.force ?? this.deps.force ?? false,
      ...(pastActivate ? { resumeAfterActivate: () => fleet.get(entry.id) } : {}),
      ...(planned ? { parts: planned.parts, current: () => fleet.get(entry.id) } : {}),
    });
    let ran: Awaited<ReturnType<DeviceSession['run']>>;
    try {
      ran = await session.run();
    } finally {
      this.sessions.delete(entry.id);
      this.abort.signal.removeEventListener('abort', cancel);
    }
    const { transferBps, rebootMs, ...rest } = ran;
    if (planned && planned.kept.length > 0) rest.kept = planned.kept;
    if (transferBps !== undefined) fleet.updateLink(entry.id, { bps: transferBps, bpsSource: 'transfer', bpsMeasuredAt: Date.now() });
    // stopped by a halt, a window's close or the expiry (not by a cancel): not activated, so it
    // still runs its old image
    const stoppedBy = stop.signal.aborted && !this.abort.signal.aborted && rest.code === 'cancelled' ? this.stopReasons.get(entry.id) : undefined;
    if (stoppedBy === 'window') return waits({ final: false, wait: 'window', reason: 'the maintenance window closed' }, rest);
    if (rest.code === 'deferred' && !this.expired) return waits({ final: false, wait: 'window', reason: rest.reason ?? 'waits for a window' }, rest);
    if (stoppedBy === 'cancel') this.abortOnDevice(entry.id, session.openSid, stoppedBy);
    if (this.deps.checkIn && !this.expired && !this.halted && this.cancelled === undefined) {
      if (rest.code === 'offline') return waits({ final: false, wait: 'check-in', reason: rest.reason ?? 'offline' }, rest);
      if (rest.code === 'busy' && !this.deps.checkIn.force) return waits({ final: false, wait: 'busy', reason: rest.reason ?? 'busy' }, rest);
    }
    // earlier turns (deferred, busy, offline) count in the device's time and attempts
    let r: typeof rest = { ...rest, durationMs: rest.durationMs + Math.round(earlier.ms), retries: rest.retries + earlier.attempts };
    if (stoppedBy === 'cancel') {
      r = { ...rest, outcome: 'cancelled', code: 'cancelled', reason: `campaign cancelled (${this.cancelled ?? 'cancelled'}) before this device was activated: it keeps its old image` };
    } else if (stoppedBy === 'halt' && this.halted) {
      r = { ...rest, outcome: 'skipped', code: 'campaign-halted', reason: `rollout stopped before this device was activated (${this.halted.reason})` };
    } else if (stoppedBy === 'expired' || (rest.code === 'deferred' && this.expired)) {
      r = { ...rest, outcome: 'expired', code: 'expired', reason: this.expired ?? 'campaign expired' };
    }
    if (rebootMs !== undefined && r.outcome === 'updated') fleet.setRebootMs(entry.id, rebootMs);
    if (!this.release && r.outcome === 'updated' && r.retries === 0 && slot.wholeImage && slot.ms !== undefined && linkMs !== undefined) {
      fleet.setDeviceMsPerMiB(entry.id, learnDeviceMsPerMiB(device?.deviceMsPerMiB, slot.ms, linkMs, manifest.size));
    }
    const final: DevicePhase = r.outcome === 'updated' ? 'done' : r.outcome;
    this.progress(entry.id, final, r.outcome === 'updated' ? this.size : this.tracker.bytesOf(entry.id), true);
    log.info({ campaign: this.id, device: entry.id, outcome: r.outcome, code: r.code, reason: r.reason, ms: r.durationMs, retries: r.retries, transferBps }, 'device result');
    this.pushResult({ t: 'result', campaign: this.id, id: entry.id, ...r });
    this.countFinished(entry.id, r.outcome);
    return { final: true };
  }

  /** A stopped session's device holds part of the image under `sid`: tell it to drop it (§6.11), best effort. */
  private abortOnDevice(id: string, sid: number | undefined, why: StopReason): void {
    if (sid === undefined) return;
    const reason = why === 'cancel' ? `campaign ${this.id} cancelled` : `campaign ${this.id} halted`;
    this.deps.channel.send(id, { t: 'abort', sid, reason }).catch((err: unknown) => this.deps.log.debug({ device: id, err: (err as Error).message }, 'abort not sent'));
  }

  /**
   * Count a ranked device's finished update (updated, failed, rolled back), overall and in its
   * wave; the first time the rollback threshold is passed, halt: no device starts from now on, and
   * sessions whose image is not verified yet are stopped. A device the gateway holds suspect
   * (`isSuspect`: it failed its previous update too) is left out of the threshold (§7.8.1).
   */
  private countFinished(id: string, outcome: ResultMessage['outcome']): void {
    if (outcome !== 'updated' && outcome !== 'failed' && outcome !== 'rolled-back') return;
    const wave = this.order?.devices.find((d) => d.id === id)?.wave ?? 1;
    const wc = this.waveCounts.get(wave) ?? { finished: 0, failed: 0 };
    wc.finished++;
    if (outcome !== 'updated') wc.failed++;
    this.waveCounts.set(wave, wc);
    if (outcome === 'rolled-back' && this.deps.isSuspect?.(id)) {
      this.deps.log.warn({ campaign: this.id, device: id }, 'rolled back again: a suspect device, left out of the rollback threshold');
      return;
    }
    this.finished.finished++;
    if (outcome === 'rolled-back') this.finished.rolledBack++;
    const pct = this.deps.config.rollbackThreshold;
    const targets = this.order?.devices.length ?? 0;
    const minSample = Math.ceil((this.deps.config.rollbackMinSamplePct * targets) / 100);
    if (this.halted || !rollbackThresholdPassed(this.finished, pct, ROLLBACK_THRESHOLD_MIN, minSample)) return;
    const { finished, rolledBack: back } = this.finished;
    this.halted = {
      code: 'rollback-threshold',
      reason: `${back} of ${finished} finished devices rolled back${minSample > finished ? ` (counted as ${minSample}: ${this.deps.config.rollbackMinSamplePct} % of the ${targets} targets)` : ''}, threshold ${pct} %`,
      rolledBack: back, finished, thresholdPct: pct,
    };
    const stopped = this.stopSessions('halt', (phase) => HALT_STOPS.has(phase));
    this.deps.log.warn({ campaign: this.id, ...this.halted, stopped }, 'rollback threshold passed: campaign halted');
  }

  private pushResult(r: ResultMessage): void {
    this.results.push(r);
    this.emit('result', r);
  }
}
