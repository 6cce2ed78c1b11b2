import type { DevicePhase, OrderEntry, ProgressMessage, TotalsMessage } from '../../protocol/uplink.ts';
import type { Timers } from '../waiter.ts';

/** Per-device progress as a campaign tracks it (for rates, ETAs, totals and replays). */
interface Track {
  phase: DevicePhase;
  bytes: number;
  /** When the last progress event for this device went out. */
  sentAt: number;
  sentBytes: number;
  /** Smoothed transfer rate, bytes/s. */
  bps: number;
  rateAt: number;
  rateBytes: number;
  etaMs?: number;
  final: boolean;
}

/** Phases after which a device's progress no longer changes (one final state per device). */
export const FINAL_PHASES: ReadonlySet<DevicePhase> = new Set(['done', 'failed', 'rolled-back', 'skipped', 'cancelled', 'superseded', 'expired']);

export interface ProgressDeps {
  campaign: string;
  /** The image's size: what `bytes` counts up to. */
  size: number;
  timers: Timers;
  /** Least time between two byte-progress events of one device (phase changes always go out). */
  progressIntervalMs: number;
  /** Devices updated at once: the totals' ETA divides the remaining device time by it. */
  concurrency: number;
  /** A device's measured round trip, ms (ETAs of the short phases). */
  rttMs: (id: string) => number | undefined;
  emitProgress: (m: ProgressMessage) => void;
  emitTotals: (m: TotalsMessage) => void;
}

/**
 * A campaign's per-device progress and its totals (docs/protocol.md §7.6): phase, bytes held,
 * smoothed rate, ETA; events throttled per device; totals every progress interval; the latest of
 * each kept for replays (§7.11). Knows nothing of sessions or the laptop.
 */
export class ProgressTracker {
  private readonly tracks = new Map<string, Track>();
  /** Planned update time per ranked device (from the order), for ETAs before its transfer. */
  private readonly plannedEta = new Map<string, number>();
  private lastTotals: TotalsMessage | undefined;
  private totalsTimer: unknown;

  constructor(private readonly deps: ProgressDeps) {}

  /** The order's planned times: a device's ETA until its transfer gives a rate. */
  plan(devices: readonly OrderEntry[]): void {
    for (const d of devices) if (d.etaMs !== undefined) this.plannedEta.set(d.id, d.etaMs);
  }

  phaseOf(id: string): DevicePhase | undefined {
    return this.tracks.get(id)?.phase;
  }

  /** Bytes of the image the device is known to hold (0 when unknown). */
  bytesOf(id: string): number {
    return this.tracks.get(id)?.bytes ?? 0;
  }

  /**
   * Track a device's phase and bytes. Phase changes always go out; byte progress within a phase
   * at most every progressIntervalMs. Bytes never go backwards within a phase; the rate is a
   * smoothed bytes/s over the transfer, and the ETA comes from it.
   */
  update(id: string, phase: DevicePhase, bytes: number, force = false): void {
    const now = this.deps.timers.now();
    let tr = this.tracks.get(id);
    const phaseChanged = !tr || tr.phase !== phase;
    if (!tr) {
      tr = { phase, bytes, sentAt: -Infinity, sentBytes: -1, bps: 0, rateAt: now, rateBytes: bytes, final: false };
      this.tracks.set(id, tr);
    }
    if (tr.final) return; // one final state per device
    if (phaseChanged) {
      tr.phase = phase;
      tr.bytes = bytes;
      if (phase === 'transferring') {
        tr.rateAt = now;
        tr.rateBytes = bytes;
      }
    } else {
      tr.bytes = Math.max(tr.bytes, bytes);
    }
    if (phase === 'transferring' && now - tr.rateAt >= 100) {
      const inst = ((tr.bytes - tr.rateBytes) * 1000) / (now - tr.rateAt);
      tr.bps = tr.bps > 0 ? 0.7 * tr.bps + 0.3 * inst : inst;
      tr.rateAt = now;
      tr.rateBytes = tr.bytes;
    }
    tr.final = FINAL_PHASES.has(phase);
    tr.etaMs = this.etaFor(id, tr);
    const due = force || phaseChanged || tr.final || now - tr.sentAt >= this.deps.progressIntervalMs || tr.bytes === this.deps.size;
    if (!due || (!phaseChanged && tr.bytes === tr.sentBytes)) return;
    tr.sentAt = now;
    tr.sentBytes = tr.bytes;
    this.deps.emitProgress(this.message(id, tr));
  }

  /** Every device's latest progress, and the latest totals (for a replay). */
  snapshot(): { progress: ProgressMessage[]; totals?: TotalsMessage } {
    return { progress: [...this.tracks].map(([id, tr]) => this.message(id, tr)), ...(this.lastTotals ? { totals: this.lastTotals } : {}) };
  }

  /** Totals now and every progress interval until stopTotals(). */
  startTotals(targeted: () => readonly OrderEntry[]): void {
    const tick = (): void => {
      this.emitTotals(targeted());
      this.totalsTimer = this.deps.timers.setTimeout(tick, Math.max(this.deps.progressIntervalMs, 100));
    };
    tick();
  }

  /** Stop the totals timer and send the last totals. */
  stopTotals(targeted: readonly OrderEntry[]): void {
    this.deps.timers.clearTimeout(this.totalsTimer);
    this.emitTotals(targeted);
  }

  private etaFor(id: string, tr: Track): number | undefined {
    if (tr.final) return 0;
    const rtt = this.deps.rttMs(id) ?? 0;
    if (tr.phase === 'transferring' && tr.bps > 0) return Math.round(((this.deps.size - tr.bytes) * 1000) / tr.bps + 3 * rtt);
    if (['verifying', 'activating', 'rebooting', 'confirming'].includes(tr.phase)) return Math.round(3 * rtt);
    return this.plannedEta.get(id);
  }

  private message(id: string, tr: Track): ProgressMessage {
    return {
      t: 'progress', campaign: this.deps.campaign, id, phase: tr.phase, bytes: tr.bytes, total: this.deps.size,
      ...(tr.phase === 'transferring' && tr.bps > 0 ? { bps: Math.round(tr.bps) } : {}),
      ...(tr.etaMs !== undefined ? { etaMs: tr.etaMs } : {}),
    };
  }

  private emitTotals(targeted: readonly OrderEntry[]): void {
    let bytes = 0;
    let bps = 0;
    let done = 0;
    let remainingMs = 0;
    for (const d of targeted) {
      const tr = this.tracks.get(d.id);
      if (!tr) continue;
      bytes += tr.final && tr.phase === 'done' ? this.deps.size : tr.bytes;
      if (tr.final) done++;
      if (tr.phase === 'transferring') bps += tr.bps;
      remainingMs += tr.etaMs ?? 0;
    }
    const slots = Math.max(1, Math.min(this.deps.concurrency, targeted.length - done));
    this.lastTotals = {
      t: 'totals', campaign: this.deps.campaign, devices: targeted.length, done,
      kib: Math.floor(bytes / 1024), totalKib: Math.floor((targeted.length * this.deps.size) / 1024),
      bps: Math.round(bps),
      ...(targeted.length > 0 ? { etaMs: Math.round(remainingMs / slots) } : {}),
    };
    this.deps.emitTotals(this.lastTotals);
  }
}
