import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describeError, FwError } from '../protocol/errors.ts';
import { manifestSchema, type Manifest } from '../protocol/manifest.ts';
import type { HaltedInfo } from '../protocol/uplink.ts';
import { parseJournal, type CampaignState, type JournalState } from './rollout/journal.ts';

/**
 * Campaign history (docs/operations.md "Campaign history and housekeeping"): what the journals in
 * `<dataDir>/journal/*.jsonl` say about every campaign, for `fwgate campaigns` and `fwgate
 * campaign show`. Reads only, never writes, so it is safe while a gateway runs: a record the
 * gateway is writing reads as a torn tail and is left out until it is whole.
 *
 * Read defensively: journals written before campaign states existed have no `state` record (the
 * state is derived, see deriveState), no `manifest` and no `targets` on the campaign record.
 */

/** Every final result a device can have in a campaign, and `pending` (no result yet). */
export type HistoryOutcome = 'updated' | 'failed' | 'rolled-back' | 'skipped' | 'cancelled' | 'superseded' | 'expired';

/** A campaign's states that are final: its journal can be removed by retention, its image is no longer needed by it. */
export const ENDED_STATES: ReadonlySet<CampaignState> = new Set<CampaignState>(['halted', 'cancelled', 'completed', 'expired']);

/** Devices per result; `pending`: targets without a result yet. */
export interface CampaignCounts {
  updated: number;
  failed: number;
  rolledBack: number;
  skipped: number;
  pending: number;
  cancelled: number;
  superseded: number;
  expired: number;
}

export interface CampaignSummary {
  id: string;
  /** Name and version from the campaign's manifest (else its order, else the stored image's manifest; "?" when none says). */
  image: { name: string; version: string; sha256: string };
  /** `now` for journals written before policies existed. */
  policy: 'now' | 'window';
  state: CampaignState;
  /** Why it entered that state, when its `state` record says (halted, cancelled, expired); else null. */
  stateReason: string | null;
  /** Ms since the epoch: the campaign record. */
  created: number;
  /** Ms since the epoch when it ended (an ended state's record, else the journal's last write); null while it has not. */
  ended: number | null;
  /** When its pending devices stop being waited for (the policy's expiresAt); null when the journal does not say. */
  expiresAt: number | null;
  counts: CampaignCounts;
  /** The journal file. */
  file: string;
}

/** One device of a campaign. */
export interface CampaignDeviceRow {
  id: string;
  outcome: HistoryOutcome | 'pending';
  /** Result code (ok, offline, busy, ...) and reason; null while pending. */
  code: string | null;
  reason: string | null;
  /** Version before and the campaign's version; null while pending (from: the order's, when it ranked the device). */
  from: string | null;
  to: string | null;
  /**
   * Offers made to the device: retries + 1 once it was offered, 0 when it never was (excluded,
   * skipped before an offer, cancelled before its turn). For a pending device: 1 when the journal
   * shows it started a transfer or activation, else 0.
   */
  attempts: number;
  /** From its session's start to its result; null while pending. */
  durationMs: number | null;
  /** Its place in the order (1 = first); null when the order did not rank it. */
  rank: number | null;
  /** The order excluded it (its code and reason say why). */
  excluded: boolean;
  /** `activate` may have been sent and no result is recorded yet (it may be rebooting into the image). */
  activating: boolean;
}

export interface CampaignDetail extends CampaignSummary {
  force: boolean;
  downgrade: boolean;
  /** Why the campaign stopped starting devices, when it did (rollback threshold). */
  halted: HaltedInfo | null;
  /** The order as announced: devices ranked, excluded (listed) and excluded beyond the list; null before the order. */
  order: { ranked: number; excluded: number; excludedMore: number } | null;
  /** Target devices fixed at creation, when the journal records them. */
  targets: string[] | null;
  /** Ranked devices by rank, then the others by id. */
  devices: CampaignDeviceRow[];
  /** Records read, and bytes at the end not read (a record being written, or one this version does not know). */
  records: number;
  tornBytes: number;
}

/** What the journal may hold beyond what parseJournal reads today (manifest and targets of the campaign record). */
export type JournalStateExt = JournalState & {
  manifest?: Manifest;
  targets?: string[];
  lastState?: { state: CampaignState; at: number; reason?: string };
};

/** `<dataDir>/journal`. */
export function journalDirOf(dataDir: string): string {
  return join(dataDir, 'journal');
}

/**
 * Every campaign with a journal, oldest first. A journal that cannot be read is left out and
 * reported through `warn` (naming the file), an empty one (being created) silently; none at all
 * (no journal directory) is an empty list.
 */
export function listCampaigns(dataDir: string, warn: (msg: string) => void = () => undefined): CampaignSummary[] {
  const images = new ImageNames(dataDir);
  const out: CampaignSummary[] = [];
  for (const file of journalFiles(journalDirOf(dataDir))) {
    try {
      if (statSync(file).size === 0) continue; // being created: its first record is not written yet
      out.push(summaryOf(detailOf(readJournal(file), images)));
    } catch (err) {
      warn(describeError(err));
    }
  }
  return out.sort((a, b) => a.created - b.created || a.id.localeCompare(b.id));
}

/**
 * One campaign with a row per device. E_USAGE when there is no journal of that id (the message
 * names the id and the journal directory); E_JOURNAL naming the file when it cannot be read.
 */
export function showCampaign(dataDir: string, id: string): CampaignDetail {
  const dir = journalDirOf(dataDir);
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(id)) throw new FwError('E_USAGE', `"${id}" is not a campaign id (ids look like c-0a1b2c3d; \`fwgate campaigns\` lists them)`);
  const file = join(dir, `${id}.jsonl`);
  if (!journalFiles(dir).includes(file)) {
    throw new FwError('E_USAGE', `no campaign ${id}: no journal ${id}.jsonl in ${dir} (\`fwgate campaigns --data ${dataDir}\` lists the campaigns there)`);
  }
  return detailOf(readJournal(file), new ImageNames(dataDir));
}

/** A journal read and parsed, with what parseJournal does not (yet) keep of the campaign record. */
export interface ReadJournal { file: string; state: JournalStateExt; mtimeMs: number }

/** Read one journal (E_JOURNAL naming the file when it cannot be read or has no campaign record). */
export function readJournal(file: string): ReadJournal {
  let text: string;
  let mtimeMs: number;
  try {
    text = readFileSync(file, 'utf8');
    mtimeMs = statSync(file).mtimeMs;
  } catch (cause) {
    throw new FwError('E_JOURNAL', `journal ${file} cannot be read: ${(cause as Error).message}`, { cause });
  }
  const { state } = parseJournal(text, file);
  return { file, state: withCampaignExtras(state, text), mtimeMs: Math.round(mtimeMs) };
}

/** The `.jsonl` files of a journal directory, sorted; none when it does not exist. */
export function journalFiles(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new FwError('E_JOURNAL', `journal directory ${dir} cannot be read: ${(err as Error).message}`, { cause: err });
  }
  return names.filter((n) => n.endsWith('.jsonl')).sort().map((n) => join(dir, n));
}

/**
 * The campaign's state: its latest `state` record; else (journals written before states) a
 * completion means `halted` (it says so) or `completed`, an order `running`, nothing `queued`.
 */
export function deriveState(s: JournalStateExt): CampaignState {
  if (s.lastState) return s.lastState.state;
  if (s.complete) return s.complete.halted ? 'halted' : 'completed';
  return s.order ? 'running' : 'queued';
}

/** Whether a journal's campaign has ended (never resumed, nothing pending): its state is an ended one. */
export function hasEnded(s: JournalStateExt): boolean {
  return ENDED_STATES.has(deriveState(s));
}

/** When it ended: its ended state's record, else the journal's last write (the completion); null while it runs. */
export function endedAt(j: ReadJournal): number | null {
  const s = j.state;
  if (!hasEnded(s)) return null;
  return s.lastState && ENDED_STATES.has(s.lastState.state) ? s.lastState.at : j.mtimeMs;
}

/** The build of a CampaignDetail from a read journal. */
export function detailOf(j: ReadJournal, images: ImageNames): CampaignDetail {
  const s = j.state;
  const order = s.order;
  const ranked = new Map((order?.devices ?? []).map((e) => [e.id, e]));
  const excluded = new Map((order?.excluded ?? []).map((e) => [e.id, e]));
  const ids = new Set<string>([...(s.targets ?? []), ...ranked.keys(), ...excluded.keys(), ...s.results.keys()]);
  const rows = [...ids].map((id): CampaignDeviceRow => {
    const r = s.results.get(id);
    const entry = ranked.get(id);
    const ex = excluded.get(id);
    const activating = !r && s.activating.has(id);
    if (!r) {
      return {
        id, outcome: 'pending', code: null, reason: null, from: entry?.from ?? ex?.version ?? null, to: null,
        attempts: activating || (s.held.get(id) ?? 0) > 0 ? 1 : 0, durationMs: null, rank: entry?.rank ?? null, excluded: ex !== undefined, activating,
      };
    }
    const outcome = r.outcome as HistoryOutcome;
    const offered = entry !== undefined && (['updated', 'failed', 'rolled-back'].includes(outcome) || r.retries > 0 || r.durationMs > 0);
    return {
      id, outcome, code: r.code, reason: r.reason ?? null, from: r.from, to: r.to,
      attempts: offered ? r.retries + 1 : 0, durationMs: r.durationMs, rank: entry?.rank ?? null, excluded: ex !== undefined, activating,
    };
  }).sort((a, b) => (a.rank ?? Infinity) - (b.rank ?? Infinity) || a.id.localeCompare(b.id));

  const counts: CampaignCounts = { updated: 0, failed: 0, rolledBack: 0, skipped: 0, pending: 0, cancelled: 0, superseded: 0, expired: 0 };
  for (const row of rows) counts[COUNT_KEY[row.outcome]]++;

  const state = deriveState(s);
  const named = (s.manifest?.sha256 === s.sha256 ? s.manifest : undefined) ?? order?.image ?? images.get(s.sha256);
  const reason = s.lastState?.state === state ? s.lastState.reason : undefined;
  return {
    id: s.id,
    image: { name: named?.name ?? '?', version: named?.version ?? '?', sha256: s.sha256 },
    policy: s.policy?.mode ?? 'now',
    state,
    stateReason: reason ?? (state === 'halted' ? s.complete?.halted?.reason ?? null : null),
    created: s.startedAt,
    ended: endedAt(j),
    expiresAt: s.policy?.expiresAt ?? null,
    counts,
    file: j.file,
    force: s.policy?.force ?? false,
    downgrade: s.policy?.downgrade ?? false,
    halted: s.complete?.halted ?? null,
    order: order ? { ranked: order.devices.length, excluded: order.excluded.length, excludedMore: order.excludedMore ?? 0 } : null,
    targets: s.targets ?? null,
    devices: rows,
    records: s.records,
    tornBytes: s.tornBytes,
  };
}

const COUNT_KEY: Record<HistoryOutcome | 'pending', keyof CampaignCounts> = {
  'updated': 'updated', 'failed': 'failed', 'rolled-back': 'rolledBack', 'skipped': 'skipped', 'pending': 'pending',
  'cancelled': 'cancelled', 'superseded': 'superseded', 'expired': 'expired',
};

/** The summary fields of a detail, in the documented key order. */
export function summaryOf(d: CampaignDetail): CampaignSummary {
  const { id, image, policy, state, stateReason, created, ended, expiresAt, counts, file } = d;
  return { id, image, policy, state, stateReason, created, ended, expiresAt, counts, file };
}

/**
 * Fill in what the campaign record carries beyond what parseJournal keeps (its `manifest` and
 * `targets`, once the gateway writes them): read from the first line, which parseJournal has
 * already checked (CRC, shape). Values that do not validate are ignored.
 */
function withCampaignExtras(state: JournalState, text: string): JournalStateExt {
  const s = state as JournalStateExt;
  if (s.manifest !== undefined && s.targets !== undefined) return s;
  const nl = text.indexOf('\n');
  let raw: { manifest?: unknown; targets?: unknown };
  try {
    raw = JSON.parse(text.slice(9, nl)) as typeof raw;
  } catch {
    return s;
  }
  const out: JournalStateExt = { ...s };
  if (out.manifest === undefined) {
    const m = manifestSchema.safeParse(raw.manifest);
    if (m.success && m.data.sha256 === s.sha256) out.manifest = m.data;
  }
  if (out.targets === undefined && Array.isArray(raw.targets) && raw.targets.every((t) => typeof t === 'string' && t.length > 0)) {
    out.targets = raw.targets as string[];
  }
  return out;
}

/** Name and version of stored images (`<dataDir>/store/images/<sha256>.json`), read once each. */
export class ImageNames {
  private readonly cache = new Map<string, Manifest | undefined>();
  constructor(private readonly dataDir: string) {}

  get(sha256: string): Manifest | undefined {
    if (!this.cache.has(sha256)) this.cache.set(sha256, readStoredManifest(join(this.dataDir, 'store', 'images', `${sha256}.json`)));
    return this.cache.get(sha256);
  }
}

/** A stored manifest, or undefined when missing or not valid. */
export function readStoredManifest(path: string): Manifest | undefined {
  try {
    const m = manifestSchema.safeParse(JSON.parse(readFileSync(path, 'utf8')));
    return m.success ? m.data : undefined;
  } catch {
    return undefined;
  }
}
