import type {
  CompleteMessage, HaltedInfo, OrderMessage, PreflightInfo, QueuedInfo, ResultMessage, WaitingMessage,
} from '../protocol/uplink.ts';
import { fmtIso } from './queued.ts';

/** The outcome of a campaign as fwpush reports it (pure): the summary, the exit code, and the one-line texts. */

/** Exit codes (docs/operations.md): stable, for scripts. */
export const EXIT = { ok: 0, devicesFailed: 1, usage: 2, nothingToUpdate: 3, refused: 4, link: 5, halted: 6, pending: 7, cancelled: 8 } as const;

export interface Summary {
  event: 'summary';
  ok: boolean;
  campaign: string | null;
  image: { name: string; version: string; sha256: string };
  devices: number;
  targeted: number;
  updated: number;
  failed: number;
  rolledBack: number;
  skipped: number;
  /** Devices still waiting for their check-in when fwpush stopped following (the campaign goes on). */
  pending: number;
  cancelled: number;
  superseded: number;
  expired: number;
  order: string[];
  durationMs: number;
  message: string;
  /** Present when the gateway halted the campaign (docs/protocol.md §7.8.1), as its `complete` said. */
  halted?: HaltedInfo;
  /** Present when the gateway closed the campaign without running it (§7.8.2: its image was no longer usable). */
  closed?: NonNullable<CompleteMessage['closed']>;
  /** A release campaign (docs/protocol.md §7.8.3): components sent to the updated devices, and those they already ran. */
  componentsSent?: number;
  componentsSkipped?: number;
  /**
   * Present when the campaign waits for a maintenance window (§7.4.5): the image is accepted and
   * stored, no device has been touched, fwpush did not follow it; `ok` is true, exit code 0.
   */
  queued?: true;
}

/** What a campaign's outcome is made of; the same for a push and for `status`. */
export interface CampaignRecord {
  campaign: string | null;
  image: Summary['image'];
  order: OrderMessage | undefined;
  results: Iterable<ResultMessage>;
  durationMs: number;
  /** The campaign's `complete`, when it came (it says whether the campaign was halted). */
  complete?: CompleteMessage;
  /** `committed.queued`: the campaign waits for a maintenance window and was not followed. */
  queued?: QueuedInfo;
  /** The campaign's `waiting`, when fwpush stopped at it: the devices that wait for their check-in. */
  waiting?: WaitingMessage;
}

/** The summary of a campaign (pure). */
export function summarise(c: CampaignRecord): Summary {
  if (c.queued) {
    const at = c.queued.nextWindowAt;
    return {
      event: 'summary', ok: true, campaign: c.campaign, image: c.image,
      devices: 0, targeted: 0, updated: 0, failed: 0, rolledBack: 0, skipped: 0, pending: 0, cancelled: 0, superseded: 0, expired: 0, order: [], durationMs: c.durationMs,
      message: `campaign ${c.campaign ?? '-'} is queued ${at !== undefined ? `for the maintenance window opening ${fmtIso(at)}` : `(${c.queued.reason})`}; no device updated yet`,
      queued: true,
    };
  }
  const all = [...c.results];
  const count = (x: ResultMessage['outcome']): number => all.filter((r) => r.outcome === x).length;
  const targeted = c.order?.devices.length ?? 0;
  const updated = count('updated');
  const ok = targeted > 0 && updated === targeted;
  const halted = c.complete?.halted;
  const pending = c.complete ? 0 : c.waiting?.pending ?? 0;
  const closed = c.complete?.closed;
  const message = closed
    ? `campaign ${c.campaign ?? '-'} was closed by the gateway without running (${closed.code}): ${closed.reason}`
    : ok
    ? `all ${targeted} targeted devices run ${c.image.version}`
    : targeted === 0
      ? `no device needed ${c.image.name} ${c.image.version}: ${all.length} skipped (${[...new Set(all.map((x) => x.code))].join(', ') || 'no devices known'})`
      : pending > 0 && updated + pending === targeted
        ? `done with the devices that were online: ${updated} updated; ${pending} pending at their check-in${c.waiting?.expiresAt !== undefined ? ` until ${fmtIso(c.waiting.expiresAt)}` : ''} (the gateway carries on: fwpush status --campaign ${c.campaign ?? '-'})`
        : `${targeted - updated} of ${targeted} targeted devices were not updated${pending > 0 ? ` (${pending} pending at their check-in)` : ''}${halted ? `; ${haltText(halted)}` : ''}`;
  return {
    event: 'summary', ok, campaign: c.campaign, image: c.image,
    devices: all.length, targeted, updated, failed: count('failed'), rolledBack: count('rolled-back'), skipped: count('skipped'),
    pending, cancelled: count('cancelled'), superseded: count('superseded'), expired: count('expired'),
    order: c.order?.devices.map((d) => d.id) ?? [], durationMs: c.durationMs, message,
    ...(halted ? { halted } : {}),
    ...(closed ? { closed } : {}),
    ...componentCounts(c, all),
  };
}

/**
 * A release campaign's component counts (§7.8.3): from its `complete`; before it (fwpush stopped at
 * `waiting`), the components the updated devices were sent, from their results.
 */
function componentCounts(c: CampaignRecord, results: readonly ResultMessage[]): Pick<Summary, 'componentsSent' | 'componentsSkipped'> {
  const done = c.complete;
  if (done?.componentsSent !== undefined) {
    return { componentsSent: done.componentsSent, ...(done.componentsSkipped !== undefined ? { componentsSkipped: done.componentsSkipped } : {}) };
  }
  const updated = results.filter((r) => r.outcome === 'updated' && r.components);
  if (updated.length === 0) return {};
  return { componentsSent: updated.reduce((n, r) => n + r.components!.length, 0) };
}

/**
 * fwpush's exit code for a finished campaign (pure): 0 all targeted updated or the campaign queued
 * for a maintenance window, 3 none targeted, 6 halted by the gateway's rollback threshold or closed
 * by it without running (§7.8.2), else 1.
 */
export function exitCodeFor(s: Summary): number {
  if (s.queued || s.ok) return EXIT.ok;
  if (s.cancelled > 0 && s.failed === 0 && s.rolledBack === 0) return EXIT.cancelled;
  if (s.halted || s.closed) return EXIT.halted;
  if (s.targeted === 0) return EXIT.nothingToUpdate;
  if (s.failed > 0 || s.rolledBack > 0) return EXIT.devicesFailed;
  if (s.pending > 0) return EXIT.pending;
  // the rest were superseded by a newer campaign (nothing to do here), or skipped or expired
  return s.skipped === 0 && s.expired === 0 ? EXIT.ok : EXIT.devicesFailed;
}

/** The pre-flight counts (§7.3.7) as one line for people. */
export function preflightText(p: PreflightInfo): string {
  return [
    `${p.eligibleOnline} eligible online${p.busy > 0 ? ` (${p.busy} busy)` : ''}`,
    `${p.eligibleOffline} eligible offline (pending until they check in)`,
    ...(p.notNewer > 0 ? [`${p.notNewer} not older than the image`] : []),
    ...(p.otherHw > 0 ? [`${p.otherHw} other hardware`] : []),
    ...(p.belowFloor > 0 ? [`${p.belowFloor} below their security floor`] : []),
    ...(p.unmetDependency ? [`${p.unmetDependency} refused: a component they would run lacks what it requires (unmet-dependency)`] : []),
    ...(p.notTargeted > 0 ? [`${p.notTargeted} not targeted`] : []),
  ].join(', ');
}

/** Why the gateway stopped a rollout, in one line (docs/protocol.md §7.8.1). */
export function haltText(h: HaltedInfo): string {
  switch (h.code) {
    case 'rollback-threshold':
      return `rollout stopped: ${h.rolledBack} of ${h.finished} finished devices rolled back, threshold ${h.thresholdPct} %`;
    case 'wave-gate':
      return `later waves not started: ${h.reason}`;
    default: {
      const never: never = h.code;
      return `rollout stopped (${String(never)}): ${h.reason}`;
    }
  }
}

/** What fwpush shows: a person's view on a terminal, or JSON lines for machines. */
/** A release campaign's order entry (§7.5.9): "  gets app 1.1.0, net 1.5.0 (via net-fix@1.6.0); saves 128.0 KiB". */
export function componentsText(d: OrderMessage['devices'][number]): string {
  if (!d.components) return '';
  const gets = d.components.map((c) => `${c.name} ${c.version}${c.via ? ` (via ${c.via})` : ''}`).join(', ');
  return `  gets ${gets}${d.savedBytes ? `; saves ${(d.savedBytes / 1024).toFixed(1)} KiB` : ''}`;
}
