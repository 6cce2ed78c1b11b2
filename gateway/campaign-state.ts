/**
 * What `status` replays to a laptop (§7.8.2): `state` and the fleet report, then the replay of the
 * asked campaign — from memory while it is there, else from its journal — or of the sweeping one,
 * else the newest started, else the last one; `state.queued` lists the campaigns waiting to start.
 * Results and completions are replayed only once their journal record is durable.
 */
import type { CompleteMessage, GatewayUplinkMessage, StateMessage } from '../protocol/uplink.ts';
import type { CampaignRecorder } from './campaign-recorder.ts';
import { pausedReplay } from './disk-full.ts';
import type { FleetStore } from './fleet-store.ts';
import type { Campaign } from './rollout/campaign.ts';
import type { WindowGate } from './rollout/gate.ts';
import type { parseJournal } from './rollout/journal.ts';
import { replayFromJournal } from './rollout/replay.ts';

export interface CampaignStateView {
  /** The last few campaigns created, for replays. */
  campaigns: readonly Campaign[];
  live: ReadonlySet<Campaign>;
  queue: readonly { campaign: Campaign }[];
  sweeping: Campaign | undefined;
  /** Campaigns closed at start-up without running. */
  closedAtStart: readonly CompleteMessage[];
  gate: WindowGate;
  fleetStore: FleetStore;
  recorder: CampaignRecorder;
  journalRetryMs: number;
  /** A campaign's journal state by id; throws E_UNKNOWN_CAMPAIGN when there is none. */
  readJournal: (id: string) => ReturnType<typeof parseJournal>['state'];
}

export function campaignState(v: CampaignStateView, id?: string): GatewayUplinkMessage[] {
  const inMemory = [...new Set([...v.campaigns, ...v.live])];
  if (id !== undefined && !inMemory.some((c) => c.id === id)) {
    // a campaign no longer in memory: its journal (E_UNKNOWN_CAMPAIGN when there is none)
    const j = v.readJournal(id);
    const image = j.manifest ?? j.order?.image;
    return [
      { t: 'state', running: false, campaign: j.id, ...(image ? { image: { name: image.name, version: image.version, sha256: image.sha256 } } : {}) },
      v.fleetStore.message(),
      ...replayFromJournal(j),
    ];
  }
  const isQueued = (c: Campaign): boolean => v.queue.some((q) => q.campaign === c);
  const queued: NonNullable<StateMessage['queued']> = v.queue.slice(0, 16).map(({ campaign: q }) => ({
    campaign: q.id, image: { name: q.image.manifest.name, version: q.image.manifest.version, sha256: q.image.manifest.sha256 },
    hw: q.image.manifest.hw.slice(0, 16), ...(v.gate.windowed && v.gate.nextOpenAt() !== undefined ? { nextWindowAt: v.gate.nextOpenAt()! } : {}),
  }));
  const started = [...v.live].filter((c) => !isQueued(c));
  const c = (id !== undefined ? inMemory.find((x) => x.id === id) : undefined)
    ?? v.sweeping ?? started.at(-1) ?? v.campaigns.filter((x) => !isQueued(x)).at(-1);
  const closed = v.closedAtStart.at(-1);
  if (!c && closed) return [{ t: 'state', running: false, campaign: closed.campaign, ...(queued.length ? { queued } : {}) }, v.fleetStore.message(), closed];
  if (!c) return [{ t: 'state', running: false, ...(queued.length ? { queued } : {}) }, v.fleetStore.message()];
  const m = c.image.manifest;
  const snap = c.snapshot();
  return [
    { t: 'state', running: v.live.has(c), campaign: c.id, image: { name: m.name, version: m.version, sha256: m.sha256 }, ...(queued.length ? { queued } : {}) },
    v.fleetStore.message(),
    ...(snap.order ? [snap.order] : []),
    ...snap.progress,
    ...(snap.totals ? [snap.totals] : []),
    ...snap.results.filter((r) => v.recorder.isDurable(r)),
    ...(snap.waiting ? [snap.waiting] : []),
    ...(snap.complete && v.recorder.isDurable(snap.complete) ? [snap.complete] : []),
    ...pausedReplay(v.recorder.steps(c), c.id, v.journalRetryMs),
  ];
}
