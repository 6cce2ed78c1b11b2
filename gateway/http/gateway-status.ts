import { EventEmitter } from 'node:events';
import { access, constants, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { CompleteMessage } from '../../protocol/uplink.ts';
import type { Gateway } from '../gateway.ts';
import type { DeviceRecord } from '../fleet.ts';
import type { StoredDevice } from '../fleet-store.ts';
import type { Campaign } from '../rollout/campaign.ts';
import type { JournalState } from '../rollout/journal.ts';
import { JournalHistory } from './journal-history.ts';
import type { GatewayCounters } from './metrics.ts';
import type { CampaignDetail, CampaignState, CampaignSummary, FleetRow, HealthReport, StatusEvents, StatusSource } from './status-source.ts';

/**
 * The StatusSource of a running gateway: the fleet report (FleetStore) with the live registry's
 * slots and link figures, the campaigns in memory (Gateway.campaigns, Campaign.snapshot()) and
 * the history in the journals; events from the gateway's typed events. Also the counters the
 * metrics read. `close()` unsubscribes.
 */
export function gatewayStatus(gw: Gateway): { source: StatusSource; counters: () => GatewayCounters; close(): void } {
  const events = new EventEmitter<StatusEvents>();
  const history = new JournalHistory(gw.journalPath);
  const offs: (() => void)[] = [];
  const on = <T extends EventEmitter, A extends unknown[]>(em: T, name: string, fn: (...a: A) => void): void => {
    (em as EventEmitter).on(name, fn as (...a: unknown[]) => void);
    offs.push(() => (em as EventEmitter).off(name, fn as (...a: unknown[]) => void));
  };
  const row = (id: string): FleetRow | undefined => {
    const d = gw.fleetStore.get(id);
    return d && fleetRow(gw, d);
  };
  const device = (d: DeviceRecord): void => {
    const r = row(d.id);
    if (r) events.emit('device', r);
  };
  on(gw.fleet, 'status', device);
  on(gw.fleet, 'online', device);
  on(gw.fleet, 'offline', (d: DeviceRecord) => {
    const r = row(d.id);
    events.emit('device', { ...(r ?? { id: d.id, hw: d.hw, version: d.version, lastCheckIn: d.lastSeen }), online: false });
  });
  const watch = (c: Campaign): void => {
    const forward = <K extends keyof StatusEvents>(name: K) => (...args: StatusEvents[K]): void => {
      (events as EventEmitter).emit(name, ...args);
    };
    on(c, 'order', forward('order'));
    on(c, 'progress', forward('progress'));
    on(c, 'totals', forward('totals'));
    on(c, 'result', forward('result'));
    on(c, 'complete', (m: CompleteMessage) => {
      events.emit('complete', m);
      events.emit('campaign', summaryOf(c));
    });
    events.emit('campaign', summaryOf(c));
  };
  for (const c of gw.campaigns) watch(c);
  on(gw.events, 'campaign', watch);

  const source: StatusSource = {
    events,
    fleet: () => fleetRows(gw),
    async campaigns() {
      const journals = await history.list();
      const startedAt = new Map(journals.map((j) => [j.id, j.startedAt]));
      const live = [...gw.campaigns].reverse().map((c) => ({ ...summaryOf(c), ...(startedAt.has(c.id) ? { startedAt: startedAt.get(c.id)! } : {}) }));
      const ids = new Set(live.map((c) => c.id));
      return [...live, ...journals.filter((s) => !ids.has(s.id)).map(journalSummary)];
    },
    async campaign(id) {
      const c = gw.campaigns.find((x) => x.id === id);
      if (c) {
        const snap = c.snapshot();
        const j = await history.get(id);
        return { ...summaryOf(c), ...(j ? { startedAt: j.startedAt } : {}), ...snap } satisfies CampaignDetail;
      }
      const j = await history.get(id);
      if (!j) return undefined;
      const results = [...j.results.values()];
      return {
        ...journalSummary(j), ...(j.order ? { order: j.order } : {}), results, ...(j.complete ? { complete: j.complete } : {}),
        progress: results.map((r) => ({ t: 'progress' as const, campaign: j.id, id: r.id, phase: r.outcome === 'updated' ? 'done' as const : r.outcome, bytes: 0, total: 0 })),
      };
    },
    health: () => health(gw),
  };
  const counters = (): GatewayCounters => {
    const link = gw.uplinkLink;
    const parser = link?.arq.stats.parser;
    return {
      devicesKnown: gw.fleetStore.list().length,
      devicesOnline: gw.fleet.online().length,
      broker: gw.broker.stats,
      devices: { ...gw.channel.stats },
      ...(link && parser ? {
        uplink: {
          framesIn: link.arq.stats.framesIn, framesOut: link.arq.stats.framesOut, retransmits: link.arq.stats.retransmits,
          frameErrors: parser.cobs + parser.short + parser.tooLong + parser.crc, invalidMessages: link.stats.invalid + link.stats.unknownType,
          authFailures: gw.uplink?.authFailures ?? 0,
        },
      } : {}),
    };
  };
  return { source, counters, close: () => offs.forEach((off) => off()) };
}

function fleetRows(gw: Gateway): FleetRow[] {
  return gw.fleetStore.list().map((d) => fleetRow(gw, d));
}

/** One device: its fleet-report entry with the live registry's figures. */
function fleetRow(gw: Gateway, d: StoredDevice): FleetRow {
  const live = gw.fleet.get(d.id);
  return {
    id: d.id, hw: d.hw, version: d.version, online: live?.online ?? d.online, lastCheckIn: Math.max(d.lastCheckIn, live?.lastSeen ?? 0),
    ...(live ? { slot: live.slot, slots: live.slots, trial: live.trial } : {}),
    ...(live?.link ? { link: { rttMs: live.link.rttMs, ...(live.link.bps !== undefined ? { bps: live.link.bps } : {}), measuredAt: live.link.measuredAt } } : {}),
    ...(d.lastResult ? { lastResult: { campaign: d.lastResult.campaign, outcome: d.lastResult.outcome, code: d.lastResult.code, version: d.lastResult.version, at: d.lastResult.at } } : {}),
  };
}

function counts(complete: CompleteMessage | undefined, results: { outcome: string }[]): Pick<CampaignSummary, 'devices' | 'updated' | 'failed' | 'rolledBack' | 'skipped'> {
  if (complete) return { devices: complete.devices, updated: complete.updated, failed: complete.failed, rolledBack: complete.rolledBack, skipped: complete.skipped };
  const n = (o: string): number => results.filter((r) => r.outcome === o).length;
  return { devices: results.length, updated: n('updated'), failed: n('failed'), rolledBack: n('rolled-back'), skipped: n('skipped') };
}

function summaryOf(c: Campaign): CampaignSummary {
  const snap = c.snapshot();
  const m = c.image.manifest;
  const state: CampaignState = snap.complete ? (snap.complete.halted ? 'halted' : 'completed') : c.running ? 'running' : c.started ? 'waiting' : 'queued';
  const base = counts(snap.complete, snap.results);
  return {
    id: c.id, image: { name: m.name, version: m.version, sha256: m.sha256 }, state, live: true,
    ...base, devices: Math.max(base.devices, (snap.order?.devices.length ?? 0) + (snap.order?.excluded.length ?? 0)),
    ...(snap.complete ? { durationMs: snap.complete.durationMs } : {}),
  };
}

function journalSummary(j: JournalState): CampaignSummary {
  const results = [...j.results.values()];
  return {
    id: j.id, ...(j.order ? { image: j.order.image } : {}), state: j.complete ? (j.complete.halted ? 'halted' : 'completed') : 'unfinished', live: false,
    startedAt: j.startedAt, ...counts(j.complete, results), ...(j.complete ? { durationMs: j.complete.durationMs } : {}),
  };
}

/** /healthz: the broker listens, the image store can be read, a file can be written in the journal directory. */
async function health(gw: Gateway): Promise<HealthReport> {
  const check = async (fn: () => Promise<unknown>): Promise<{ ok: boolean; detail?: string }> => {
    try {
      await fn();
      return { ok: true };
    } catch (err) {
      return { ok: false, detail: (err as Error).message };
    }
  };
  const checks = {
    broker: gw.broker.listening ? { ok: true } : { ok: false, detail: 'the MQTT listener is not listening' },
    store: await check(() => readdir(join(gw.config.dataDir, 'store'))),
    journal: await check(async () => {
      const probe = join(gw.journalPath, `.healthz-${process.pid}`);
      await access(gw.journalPath, constants.W_OK);
      await writeFile(probe, 'ok');
      await rm(probe, { force: true });
    }),
  };
  return { ok: Object.values(checks).every((c) => c.ok), checks };
}
