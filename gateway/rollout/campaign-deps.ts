import type {
  CompleteMessage, DevicePhase, OrderMessage, ProgressMessage, ResultMessage, TotalsMessage, WaitingMessage, WaveSize,
} from '../../protocol/uplink.ts';
import type { GatewayConfig } from '../config.ts';
import type { DeviceChannel } from '../device-channel.ts';
import type { Fleet } from '../fleet.ts';
import type { Logger } from '../log.ts';
import type { Timers } from '../waiter.ts';
import type { TokenBucket } from './bandwidth.ts';
import type { WindowGate } from './gate.ts';
import type { JournalState } from './journal.ts';
import type { OrderPolicy } from './order.ts';
import type { ReleaseDeps } from './release-rollout.ts';
import type { Slots } from './slots.ts';

// The campaign's dependencies, events, stop and wait reasons, and the rollback-threshold rule (campaign.ts).

export interface CampaignDeps {
  /**
   * The journal of this campaign when it is resumed after a gateway restart (docs/reliability.md):
   * with its order, the campaign keeps that order (no new measurement), keeps the results it
   * has, and updates the other devices — those past `activate` by asking them first.
   */
  resume?: JournalState;
  /**
   * A release campaign (§6.15): `image` is then the release's identity (releaseIdentity, no bytes)
   * and each device gets the components it lacks.
   */
  release?: ReleaseDeps;
  channel: DeviceChannel;
  fleet: Fleet;
  config: GatewayConfig['rollout'];
  timers: Timers;
  log: Logger;
  /**
   * Awaited after the order is announced and before the first device transfer starts, so
   * listeners can deliver the order first (the gateway waits, bounded, for the laptop's link).
   */
  beforeTransfers?: () => Promise<void>;
  /**
   * Awaited before a new (not resumed) campaign selects its devices: right after a gateway
   * restart, the wait for the devices connected before it (reconnect-grace.ts). Resolves early
   * when the signal aborts (a cancel, a shutdown).
   */
  reconnects?: (signal: AbortSignal) => Promise<void>;
  /**
   * Resolves once everything the listeners of this campaign's events recorded so far is durable
   * (the gateway's campaign journal, group-committed off the event loop; docs/reliability.md). A
   * device session awaits it between reporting `activating` and sending `activate`.
   */
  durable?: () => Promise<void>;
  /**
   * Start order: `ranked` (fastest first with tail protection, the default and what operators
   * get), or `random` / `slowest-first` — baselines for bench/rollout only.
   */
  orderPolicy?: OrderPolicy;
  /** Seed for the `random` policy. */
  seed?: number;
  /**
   * When device transfers and activations may run (maintenance windows). Default: always. Outside
   * the window no transfer or activation starts; at its close, sessions not yet activating stop
   * and their devices wait for the next window; a device is not activated unless its reboot and
   * confirmation fit before the window closes.
   */
  gate?: WindowGate;
  /** Transfers may run outside the windows; only activations wait for one. */
  downloadEarly?: boolean;
  /**
   * Window campaigns (the technician has left): a device that is offline or busy is not skipped
   * but waits for its check-in (a `status` from it, busy ones also rechecked every
   * `rollout.busyRecheckMs`) until `expiresAt` (wall-clock ms); then its result is `skipped` /
   * `deferred`. Without it (a `now` campaign) such devices are skipped at once, as the technician
   * is waiting for the end.
   */
  checkIn?: { expiresAt: number; force?: boolean };
  /** Downgrades allowed: devices running a newer version are eligible too (§7.5.1). */
  downgrade?: boolean;
  /** Busy devices are updated anyway: offers carry `force` (§6.5.3). */
  force?: boolean;
  /**
   * The devices this campaign may update, fixed when it was created and journaled (the known
   * fleet, online or not, narrowed by `--only` / `--group`), in target order (waves follow it).
   * Undefined: every device the registry knows when the campaign runs.
   */
  targets?: readonly string[];
  /** The gateway's one concurrency limit across every campaign (default: one of its own). */
  slots?: Slots;
  /** The gateway's one site bandwidth cap across every campaign (default: one of its own when `siteBps` is set). */
  bandwidth?: TokenBucket;
  /** Staged waves (§7.3.6): cumulative sizes; absent = one wave. */
  waves?: readonly WaveSize[];
  /** Failure share, percent, that stops the campaign after a wave (default `rollout.rollbackThreshold`). */
  waveGatePct?: number;
  /** Pause after each wave until resumeWaves(). */
  wavePause?: boolean;
  /** Devices the gateway holds suspect (they failed their previous update too): left out of the rollback threshold. */
  isSuspect?: (id: string) => boolean;
}

/** Where a campaign is in its life (docs/operations.md "Campaign states"). */
export type CampaignState = 'queued' | 'running' | 'waiting' | 'paused' | 'halted' | 'cancelled' | 'completed' | 'expired';
export interface CampaignStateEvent { state: CampaignState; wave?: number; reason?: string }

/** Why the campaign stopped a device's session. */
export type StopReason = 'window' | 'expired' | 'halt' | 'cancel';
/** Why a device is not updated yet but may still be, in this campaign. */
export type Wait = 'window' | 'check-in' | 'busy';
/** How one device's turn ended: with its final result, or waiting. */
export type TurnEnd = { final: true } | { final: false; wait: Wait; reason: string };


export type CampaignEvents = {
  /** Only devices waiting for a check-in or a window are left (the next campaign may start). */
  swept: [];
  order: [OrderMessage];
  progress: [ProgressMessage];
  totals: [TotalsMessage];
  result: [ResultMessage];
  complete: [CompleteMessage];
  /** Updated what it could now; the rest wait for their check-in (or for `resume`, between waves). */
  waiting: [WaitingMessage];
  state: [CampaignStateEvent];
};


/**
 * Phases in which a halt stops a device's session (§7.8.1): its image is not verified yet, so the
 * device still runs its old image and has not been told to activate. From `activating` on, the
 * update runs to its end.
 */
export const HALT_STOPS: ReadonlySet<DevicePhase> = new Set(['queued', 'offering', 'transferring', 'verifying']);

/** Least rolled-back devices before the rollback threshold can stop a campaign (§7.8.1). */
export const ROLLBACK_THRESHOLD_MIN = 2;

/**
 * Whether the rollback threshold is passed (pure, §7.8.1): at least `min` devices rolled back,
 * and they are at least `thresholdPct` % of the finished ones (updated, failed or rolled back) —
 * counted as at least `minSample` finished, so that the first few devices (the fastest, who may
 * be a few lying devices) cannot stop the rollout of a whole fleet alone. A threshold of 0 never
 * stops a campaign.
 */
export function rollbackThresholdPassed(
  counts: { rolledBack: number; finished: number }, thresholdPct: number, min = ROLLBACK_THRESHOLD_MIN, minSample = 0,
): boolean {
  if (thresholdPct <= 0) return false;
  return counts.rolledBack >= Math.max(1, min) && counts.rolledBack * 100 >= thresholdPct * Math.max(counts.finished, minSample);
}

