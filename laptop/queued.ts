import type { CommittedMessage, QueuedCampaign, QueuedInfo } from '../protocol/uplink.ts';

/**
 * What fwpush says about campaigns that wait for a maintenance window (docs/protocol.md §7.4.5,
 * §7.11): the line after a queued commit, its JSON event, and the `status` table. Times come
 * from the gateway as epoch ms; they are shown in the laptop's time zone (with its offset) and
 * as ISO 8601 UTC, and relative to the laptop's clock.
 */

/** How to show a moment: the laptop's clock and, for tests, a time zone (default: the system's). */
export interface WhenOptions {
  now: number;
  timeZone?: string;
}

/** ISO 8601 in UTC, whole seconds: `2026-11-22T02:00:00Z`. */
export function fmtIso(at: number): string {
  return new Date(at).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** Local time with the zone's offset: `Sun 22 Nov 03:00 +01:00`. */
export function fmtLocal(at: number, timeZone?: string): string {
  const parts = new Intl.DateTimeFormat('en-GB', {
    timeZone, weekday: 'short', day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit', hourCycle: 'h23', timeZoneName: 'longOffset',
  }).formatToParts(at);
  const part = (type: Intl.DateTimeFormatPartTypes): string => parts.find((p) => p.type === type)?.value ?? '';
  const offset = /^(?:GMT|UTC)([+-]\d{2}:\d{2})?$/.exec(part('timeZoneName'))?.[1] ?? '+00:00';
  return `${part('weekday')} ${part('day')} ${part('month')} ${part('hour')}:${part('minute')} ${offset}`;
}

/** How long until a moment, coarse: `in 1 h 58 min`, `in 3 d 4 h`; `now` once it has passed. */
export function fmtUntil(ms: number): string {
  if (ms <= 0) return 'now';
  const mins = Math.floor(ms / 60_000);
  if (mins < 1) return 'in less than a minute';
  if (mins < 60) return `in ${mins} min`;
  const hours = Math.floor(mins / 60);
  if (hours < 24) return `in ${hours} h ${String(mins % 60).padStart(2, '0')} min`;
  return `in ${Math.floor(hours / 24)} d ${hours % 24} h`;
}

/** A moment three ways: `Sun 22 Nov 03:00 +01:00 (2026-11-22T02:00:00Z, in 1 h 58 min)`. */
export function fmtWhen(at: number, w: WhenOptions): string {
  return `${fmtLocal(at, w.timeZone)} (${fmtIso(at)}, ${fmtUntil(at - w.now)})`;
}

/**
 * The lines a queued commit and a superseded campaign get (human output). With a window opening,
 * the window says it all; without one (queued behind a running campaign), the gateway's reason.
 */
export function committedLines(c: CommittedMessage, w: WhenOptions): string[] {
  const lines: string[] = [];
  const id = c.campaign ?? '?';
  if (c.queued) {
    const q = c.queued;
    lines.push(q.nextWindowAt !== undefined
      ? `queued: campaign ${id} waits for the next maintenance window, opening ${fmtWhen(q.nextWindowAt, w)}`
      : `queued: campaign ${id} does not start yet: ${q.reason}`);
    if (q.expiresAt !== undefined) {
      lines.push(`queued: campaign ${id} expires ${fmtLocal(q.expiresAt, w.timeZone)} (${fmtIso(q.expiresAt)}): a device it has not updated by then is left out`);
    }
  }
  if (c.supersedes) lines.push(`supersedes: campaign ${c.supersedes} (pending, not started, same hardware models) is replaced by ${id} and will not run`);
  return lines;
}

/** The JSON event of a queued commit: the gateway's fields, and the times also as ISO 8601 UTC. */
export function queuedEvent(c: CommittedMessage & { queued: QueuedInfo }): Record<string, unknown> {
  const q = c.queued;
  return {
    event: 'queued', campaign: c.campaign ?? null, sha256: c.sha256, reason: q.reason,
    ...(q.nextWindowAt !== undefined ? { nextWindowAt: q.nextWindowAt, nextWindow: fmtIso(q.nextWindowAt) } : {}),
    ...(q.expiresAt !== undefined ? { expiresAt: q.expiresAt, expires: fmtIso(q.expiresAt) } : {}),
    ...(c.supersedes ? { supersedes: c.supersedes } : {}),
  };
}

/** `fwpush status`: the campaigns waiting for a window, as a small table (none: no lines). */
export function queuedTable(entries: readonly QueuedCampaign[], w: WhenOptions): string[] {
  if (entries.length === 0) return [];
  const head = ['campaign', 'image', 'hw', 'next window'];
  const rows = entries.map((q) => [
    q.campaign, `${q.image.name} ${q.image.version}`, q.hw.join(', ') || '-', q.nextWindowAt !== undefined ? fmtWhen(q.nextWindowAt, w) : '-',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => `  ${cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')}`.trimEnd();
  return [`Queued for a maintenance window (${entries.length}):`, line(head), ...rows.map(line)];
}
