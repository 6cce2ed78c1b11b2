import type { EventEmitter } from 'node:events';
import type { CompleteMessage, OrderMessage, ProgressMessage, ResultMessage, TotalsMessage } from '../../protocol/uplink.ts';

/**
 * What the HTTP layer (status page, JSON API, metrics) reads and listens to. The gateway core
 * knows nothing of HTTP: an adapter (gateway-status.ts) backs this with the gateway's stores and
 * typed events, and tests can back it with anything.
 */
export interface StatusSource {
  /** Every device known (the fleet report), with live figures for the connected ones. */
  fleet(): FleetRow[];
  /** Live campaigns first (newest first), then the history from the journals (newest first). */
  campaigns(): Promise<CampaignSummary[]>;
  campaign(id: string): Promise<CampaignDetail | undefined>;
  /** Broker listening, store readable, journal writable. */
  health(): Promise<HealthReport>;
  /** Live changes for the page's event stream and the metrics. */
  readonly events: EventEmitter<StatusEvents>;
}

export interface FleetRow {
  id: string;
  hw: string;
  version: string;
  online: boolean;
  /** Wall-clock ms of its last status or connection. */
  lastCheckIn: number;
  /** Running slot and the slots' states, from its last status this run (absent when it has not reported since the gateway started). */
  slot?: string;
  slots?: unknown;
  trial?: boolean;
  link?: { rttMs?: number; bps?: number; measuredAt?: number };
  group?: string;
  lastResult?: { campaign: string; outcome: string; code: string; version: string; at: number };
}

export type CampaignState = 'queued' | 'running' | 'waiting' | 'completed' | 'halted' | 'cancelled' | 'unfinished';

export interface CampaignSummary {
  id: string;
  image?: { name: string; version: string; sha256: string };
  state: CampaignState;
  /** In this gateway's memory (live or recent), not only in a journal. */
  live: boolean;
  startedAt?: number;
  devices: number;
  updated: number;
  failed: number;
  rolledBack: number;
  skipped: number;
  durationMs?: number;
}

export interface CampaignDetail extends CampaignSummary {
  order?: OrderMessage;
  progress: ProgressMessage[];
  totals?: TotalsMessage;
  results: ResultMessage[];
  complete?: CompleteMessage;
}

export interface HealthReport {
  ok: boolean;
  checks: Record<string, { ok: boolean; detail?: string }>;
}

/** Events: a campaign created, its order, progress, results and completion, a device's presence or status. */
export type StatusEvents = {
  campaign: [CampaignSummary];
  order: [OrderMessage];
  progress: [ProgressMessage];
  totals: [TotalsMessage];
  result: [ResultMessage];
  complete: [CompleteMessage];
  device: [FleetRow];
};
