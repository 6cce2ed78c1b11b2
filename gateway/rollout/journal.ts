import { closeSync, copyFileSync, fdatasync, fdatasyncSync, fsyncSync, ftruncateSync, openSync, readdirSync, readFileSync, renameSync, truncateSync, writeSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { crc32 } from '../../protocol/crc.ts';
import { describeError, FwError } from '../../protocol/errors.ts';
import { completeMsg, orderMsg, resultMsg, waveSize, type CompleteMessage, type OrderMessage, type ResultMessage, type WaveSize } from '../../protocol/uplink.ts';
import { manifestSchema, type Manifest } from '../../protocol/manifest.ts';
import { releaseManifestSchema, type ReleaseManifest } from '../../protocol/release.ts';
import { z } from 'zod';

/**
 * The campaign journal (docs/reliability.md "Campaign journal"): one append-only file per
 * campaign, `<dataDir>/journal/<campaign>.jsonl`, one record per line, each line written and
 * fdatasync'ed before the step it records goes on (`held` hints excepted, see append()): at once
 * (append), or group-committed by an fdatasync in libuv's thread pool that the step awaits
 * (record + durable). A line is `<crc32 as 8 hex digits> <JSON>`. Only the LAST line can be
 * torn by a crash mid-append (appends are sequential): a bad last line is cut off before
 * anything is appended again. A bad line with verified lines after it is corruption (bit rot, an
 * editor): the lines that verify are kept, the original file is copied aside (`*.corrupt-<ms>`)
 * and the journal rewritten with the verified lines only (parseJournal, repairJournal).
 *
 * What is recorded, and why it is enough to resume after `kill -9`:
 * - `campaign`: id and image digest (the image itself is in the store, verified at start-up);
 * - `order`: the order as announced — a resumed campaign keeps it (no new measurement);
 * - `activating`: written before `activate` is sent to a device, so a restarted gateway knows
 *   the device may be rebooting into the image and never activates it a second time blindly;
 * - `held`: how much of the image a device held (throttled), so progress resumes where it was;
 * - `result` / `complete`: final outcomes, never redone;
 * - `state`: the campaign entered a state (queued, running, waiting, ...); the latest one counts.
 */
/** States of a campaign, as its `state` records name them. Ended: halted, cancelled, completed, expired. */
export const CampaignStates = ['queued', 'running', 'waiting', 'paused', 'halted', 'cancelled', 'completed', 'expired'] as const;
export type CampaignState = (typeof CampaignStates)[number];

const line = z.discriminatedUnion('r', [
  z.object({
    r: z.literal('campaign'), id: z.string().min(1), sha256: z.string().regex(/^[0-9a-f]{64}$/), at: z.number(),
    /** How the campaign runs (absent in journals of `now` campaigns written before policies existed). */
    policy: z.object({ mode: z.enum(['now', 'window']), force: z.boolean(), downgrade: z.boolean(), expiresAt: z.number() }).optional(),
    /** The signed manifest the campaign installs (its digest names the release, docs/operations.md "Releases"). */
    manifest: manifestSchema.optional(),
    /** A release campaign (§6.15): the signed release manifest; `manifest` is then its identity (releaseIdentity). */
    release: releaseManifestSchema.optional(),
    /** The devices it may update, fixed at creation (the known fleet narrowed by --only/--group), in target order. */
    targets: z.array(z.string().min(1)).optional(),
    /** Waves and their gate (§7.3.6). */
    waves: z.array(waveSize).optional(),
    waveGate: z.number().int().min(1).max(100).optional(),
    wavePause: z.boolean().optional(),
    /** The campaign a retry was made from (§7.12.2). */
    retryOf: z.string().min(1).optional(),
  }),
  /** Where the campaign is in its life (docs/operations.md "Campaign states"); the latest one holds. */
  z.object({
    r: z.literal('state'),
    state: z.enum(CampaignStates),
    at: z.number(), wave: z.number().int().min(1).optional(), reason: z.string().optional(),
  }),
  z.object({ r: z.literal('order'), order: orderMsg }),
  z.object({ r: z.literal('activating'), id: z.string().min(1) }),
  z.object({ r: z.literal('held'), id: z.string().min(1), bytes: z.number().int().min(0) }),
  z.object({ r: z.literal('result'), result: resultMsg }),
  z.object({ r: z.literal('complete'), complete: completeMsg }),
]);
export type JournalRecord = z.infer<typeof line>;
export type CampaignPolicyRecord = NonNullable<Extract<JournalRecord, { r: 'campaign' }>['policy']>;
export type CampaignRecord = Extract<JournalRecord, { r: 'campaign' }>;
export type StateRecord = Extract<JournalRecord, { r: 'state' }>;

/** What a journal says about its campaign. */
export interface JournalState {
  id: string;
  sha256: string;
  startedAt: number;
  policy?: CampaignPolicyRecord;
  /** The campaign record's manifest, targets, waves (absent in journals written before them). */
  manifest?: Manifest;
  release?: ReleaseManifest;
  targets?: string[];
  waves?: WaveSize[];
  waveGate?: number;
  wavePause?: boolean;
  retryOf?: string;
  /** The latest `state` record (the campaign's state since `at`; journals written before states existed have none), and the highest wave a `state` record named. */
  lastState?: Omit<StateRecord, 'r'>;
  wave?: number;
  order?: OrderMessage;
  /** Devices for which `activate` may have been sent. */
  activating: Set<string>;
  /** Bytes of the image each device held at its last record. */
  held: Map<string, number>;
  results: Map<string, ResultMessage>;
  complete?: CompleteMessage;
  /** Records read; a torn tail is not counted. */
  records: number;
  /** Bytes cut off the end (a torn last line). */
  tornBytes: number;
  /** Bad lines with verified lines after them (corruption, not a torn append), 1-based line numbers. */
  corruptLines: number[];
}

export function encodeRecord(rec: JournalRecord): string {
  const json = JSON.stringify(rec);
  return `${crc32(Buffer.from(json, 'utf8')).toString(16).padStart(8, '0')} ${json}\n`;
}

/**
 * Parse a journal's text. Every line that verifies (its newline, CRC and a valid record) counts.
 * A bad LAST line (no newline, a wrong CRC, not a record) is a torn append: `validBytes` ends
 * before it. A bad line followed by a line that verifies is corruption: it is skipped, listed in
 * `corruptLines`, and the file must be rewritten before appending (repairJournal): `validBytes`
 * then ends after the last verified line. The first record must be `campaign`.
 */
export function parseJournal(text: string, file = 'journal'): { state: JournalState; validBytes: number } {
  let pos = 0;
  let state: JournalState | undefined;
  let records = 0;
  let validEnd = 0;
  let lineNo = 0;
  let lastGood = 0;
  const bad: number[] = [];
  while (pos < text.length) {
    const nl = text.indexOf('\n', pos);
    if (nl < 0) break;
    lineNo++;
    const rec = decodeLine(text.slice(pos, nl));
    pos = nl + 1;
    if (!rec) {
      bad.push(lineNo);
      continue;
    }
    if (!state) {
      if (rec.r !== 'campaign') throw new FwError('E_JOURNAL', `${file}: first record is "${rec.r}", expected "campaign"`);
      const { r: _r, id, sha256, at, ...rest } = rec;
      state = {
        id, sha256, startedAt: at, ...rest,
        activating: new Set(), held: new Map(), results: new Map(), records: 0, tornBytes: 0, corruptLines: [],
      };
    } else {
      apply(state, rec);
    }
    records++;
    validEnd = pos;
    lastGood = lineNo;
  }
  if (!state) throw new FwError('E_JOURNAL', `${file}: no campaign record`);
  const validBytes = Buffer.byteLength(text.slice(0, validEnd), 'utf8');
  state.records = records;
  state.tornBytes = Buffer.byteLength(text, 'utf8') - validBytes;
  // bad lines before the last verified one are corruption; those after it are the torn tail
  state.corruptLines = bad.filter((n) => n < lastGood);
  return { state, validBytes };
}

/**
 * A journal with corrupt lines in its middle: copy the original aside (`<path>.corrupt-<ms>`,
 * never deleted) and rewrite the journal with only the lines that verify (temp file, fsync,
 * rename, folder fsync). Returns the copy's path and the new valid length.
 */
export function repairJournal(path: string, text: string): { copy: string; validBytes: number } {
  const copy = `${path}.corrupt-${Date.now()}`;
  copyFileSync(path, copy);
  const kept = text.split('\n').filter((l) => decodeLine(l) !== undefined).map((l) => `${l}\n`).join('');
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w', 0o644);
  try {
    writeSync(fd, kept);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  syncDir(dirname(path));
  return { copy, validBytes: Buffer.byteLength(kept, 'utf8') };
}

function decodeLine(l: string): JournalRecord | undefined {
  const m = /^([0-9a-f]{8}) (.*)$/.exec(l);
  if (!m) return undefined;
  if (crc32(Buffer.from(m[2]!, 'utf8')) !== parseInt(m[1]!, 16)) return undefined;
  try {
    const r = line.safeParse(JSON.parse(m[2]!));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}

function apply(s: JournalState, rec: JournalRecord): void {
  switch (rec.r) {
    case 'campaign': throw new FwError('E_JOURNAL', `journal of ${s.id}: a second campaign record`);
    case 'order': s.order = rec.order; break;
    case 'state': {
      const { r: _r, ...st } = rec;
      s.lastState = st;
      if (rec.wave !== undefined) s.wave = Math.max(s.wave ?? 1, rec.wave);
      break;
    }
    case 'activating': s.activating.add(rec.id); break;
    case 'held': s.held.set(rec.id, rec.bytes); break;
    case 'result': s.results.set(rec.result.id, rec.result); break;
    case 'complete': s.complete = rec.complete; break;
    default: {
      const never: never = rec;
      throw new FwError('E_JOURNAL', `unknown journal record ${JSON.stringify(never)}`);
    }
  }
}

/**
 * An open journal. Two ways to append, both writing the line at once (so records keep the order
 * of the calls):
 * - `append`: synchronous and durable when it returns (write + fdatasync on the calling thread);
 *   for the rare records (creation, closing a campaign that will not resume);
 * - `record`: the line is written, and made durable by a **group commit**: one `fdatasync` in
 *   libuv's thread pool covers every line written before it started, so the event loop never
 *   blocks on the disk and records written while one runs share the next. The returned promise
 *   (and `durable()`) resolves once the record is durable; the step that depends on it awaits it.
 */
export class CampaignJournal {
  private fd: number | undefined;
  /** Lines written, lines covered by a completed fdatasync, lines the running one covers. */
  private written = 0;
  private synced = 0;
  private syncing: number | undefined;
  private readonly waiters: { upTo: number; resolve: () => void; reject: (err: Error) => void }[] = [];
  private closing = false;
  /** Length of the file: every line in it is whole (a failed write is cut back to it). */
  private size: number;
  /**
   * Records whose write failed (ENOSPC, EIO), in order, and every record after them: written
   * before anything else once the disk takes them again (durable() retries), never out of order.
   */
  private readonly pending: Buffer[] = [];
  /** fdatasyncs issued by `record`/`durable` (group commits), for tests and figures. */
  groupCommits = 0;

  private constructor(readonly path: string, fd: number, size = 0) {
    this.fd = fd;
    this.size = size;
  }

  /** Create the journal of a new campaign and write its first record. */
  static create(dir: string, id: string, sha256: string, at = Date.now(), policy?: CampaignPolicyRecord, extra: Omit<CampaignRecord, 'r' | 'id' | 'sha256' | 'at' | 'policy'> = {}): CampaignJournal {
    const path = join(dir, `${id}.jsonl`);
    const fd = openSync(path, 'wx');
    const j = new CampaignJournal(path, fd);
    j.append({ r: 'campaign', id, sha256, at, ...(policy ? { policy } : {}), ...extra });
    syncDir(dir);
    return j;
  }

  /** Reopen an existing journal for appending, cutting off a torn tail first. */
  static reopen(path: string, validBytes: number): CampaignJournal {
    truncateSync(path, validBytes);
    return new CampaignJournal(path, openSync(path, 'a'), validBytes);
  }

  /**
   * Append a record. `durable` (the default): fdatasync before returning, which also makes every
   * earlier record durable. Records that are only hints (`held`: the device is the authority on
   * what it holds) are appended without it; a crash may lose the last few of them, never a
   * durable record after them.
   */
  append(rec: JournalRecord, durable = true): void {
    const fd = this.write(rec);
    if (this.pending.length > 0) throw this.writeError('append', this.lastWriteError);
    if (durable) {
      fdatasyncSync(fd);
      this.settle(this.written); // every line written so far is durable
    }
  }

  /**
   * Append a record without blocking on the disk: written now, durable when the promise resolves
   * (group commit, see the class). `durable` false (hints): resolves at once, made durable by the
   * next commit. Rejects when the fdatasync fails.
   */
  record(rec: JournalRecord, durable = true): Promise<void> {
    this.write(rec);
    return durable ? this.durable() : Promise.resolve();
  }

  /** Records not written yet because the disk refused them (docs/reliability.md "Disk full"). */
  get unwritten(): number {
    return this.pending.length;
  }

  /**
   * Resolves once every record so far is written and durable (at once when it already is).
   * Records the disk refused are written first; when it still refuses, rejects with
   * `E_JOURNAL` whose cause is the system error (ENOSPC: no space left on device).
   */
  durable(): Promise<void> {
    if (this.pending.length > 0 && !this.writePending()) return Promise.reject(this.writeError('write', this.lastWriteError));
    const upTo = this.written;
    if (upTo <= this.synced) return Promise.resolve();
    // closed with hints written but never committed (close() does not commit them): nothing can make them durable now
    if (this.fd === undefined) return Promise.reject(new FwError('E_JOURNAL', `journal ${this.path} is closed: ${upTo - this.synced} record(s) not durable`));
    return new Promise<void>((resolve, reject) => {
      this.waiters.push({ upTo, resolve, reject });
      this.commit();
    });
  }

  /**
   * Close the file. With a group commit running or records waiting for one, the file is closed
   * once they are durable (their promises settle first); `record` is refused from now on.
   */
  close(): void {
    if (this.fd === undefined || this.closing) return;
    this.closing = true;
    if (this.syncing === undefined && this.waiters.length === 0) this.closeNow();
  }

  private lastWriteError: unknown;

  /**
   * Write one line at the end, or queue it behind records the disk refused. A write that fails
   * part-way is cut back (ftruncate) so the file never holds a partial line followed by whole
   * ones — which a reader would take for corruption, not a torn tail.
   */
  private write(rec: JournalRecord): number {
    if (this.fd === undefined || this.closing) throw new FwError('E_JOURNAL', `journal ${this.path} is closed`);
    const buf = Buffer.from(encodeRecord(rec), 'utf8');
    if (this.pending.length > 0 || !this.writeLine(buf)) this.pending.push(buf);
    return this.fd;
  }

  private writeLine(buf: Buffer): boolean {
    const fd = this.fd!;
    let off = 0;
    try {
      while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off, this.size + off);
    } catch (err) {
      this.lastWriteError = err;
      try {
        if (off > 0) ftruncateSync(fd, this.size);
      } catch { /* the next write starts at this.size anyway (positional) and the line is rewritten whole */ }
      return false;
    }
    this.size += buf.length;
    this.written++;
    return true;
  }

  /** Write the queued records in order; false (the rest still queued) at the first that fails. */
  private writePending(): boolean {
    while (this.pending.length > 0) {
      if (this.fd === undefined || !this.writeLine(this.pending[0]!)) return false;
      this.pending.shift();
    }
    return true;
  }

  private writeError(what: string, cause: unknown): FwError {
    const why = (cause as NodeJS.ErrnoException | undefined)?.code === 'ENOSPC' ? 'no space left on device' : describeError(cause);
    return new FwError('E_JOURNAL', `journal ${this.path}: ${what} failed: ${why} (${this.pending.length} record(s) not written yet)`, { cause });
  }

  /** Start an fdatasync for every line written so far, unless one is running (it restarts after). */
  private commit(): void {
    if (this.syncing !== undefined) return;
    const upTo = this.written;
    this.syncing = upTo;
    this.groupCommits++;
    fdatasync(this.fd!, (err) => {
      this.syncing = undefined;
      if (err) {
        const e = new FwError('E_JOURNAL', `journal ${this.path}: fdatasync failed`, { cause: err });
        const failed = this.waiters.filter((w) => w.upTo <= upTo);
        this.waiters.splice(0, this.waiters.length, ...this.waiters.filter((w) => w.upTo > upTo));
        for (const w of failed) w.reject(e);
      } else {
        this.settle(upTo);
      }
      if (this.waiters.length > 0) this.commit();
      else if (this.closing) this.closeNow();
    });
  }

  /** Lines up to `upTo` are durable: resolve their waiters. */
  private settle(upTo: number): void {
    if (upTo > this.synced) this.synced = upTo;
    if (this.waiters.length === 0) return;
    const done = this.waiters.filter((w) => w.upTo <= this.synced);
    this.waiters.splice(0, this.waiters.length, ...this.waiters.filter((w) => w.upTo > this.synced));
    for (const w of done) w.resolve();
  }

  private closeNow(): void {
    if (this.fd === undefined) return;
    closeSync(this.fd);
    this.fd = undefined;
  }
}

/** Where the journals live; created if missing. */
export async function journalDir(dataDir: string): Promise<string> {
  const dir = join(dataDir, 'journal');
  await mkdir(dir, { recursive: true });
  return dir;
}

export interface UnfinishedCampaign { path: string; state: JournalState; validBytes: number }

/**
 * The journals of campaigns that did not complete, oldest first. A journal that cannot be read
 * at all (no campaign record) is renamed `*.corrupt` and reported through `warn`, never
 * deleted; a torn tail is reported and cut off when the journal is reopened.
 */
export function findUnfinished(dir: string, warn: (msg: string) => void): UnfinishedCampaign[] {
  const out: UnfinishedCampaign[] = [];
  for (const name of readdirSync(dir).filter((n) => n.endsWith('.jsonl')).sort()) {
    const path = join(dir, name);
    try {
      const text = readFileSync(path, 'utf8');
      const parsed = parseJournal(text, path);
      const { state } = parsed;
      let { validBytes } = parsed;
      if (state.corruptLines.length > 0) {
        // not a crash: bit rot or an edit. Keep what verifies, set the original aside.
        const repaired = repairJournal(path, text);
        validBytes = repaired.validBytes;
        warn(`${path}: CORRUPT journal: line(s) ${state.corruptLines.join(', ')} fail their CRC with verified records after them; `
          + `kept the ${state.records} records that verify (${state.complete ? 'the campaign completed: not run again' : 'the campaign resumes from them'}), original copied to ${repaired.copy}`);
      } else if (state.tornBytes > 0) {
        warn(`${path}: ${state.tornBytes} bytes of a torn record at the end (a crash mid-append); ignored`);
      }
      if (!state.complete) out.push({ path, state, validBytes });
    } catch (err) {
      warn(`${path}: unreadable journal (${describeError(err)}); renamed to ${name}.corrupt`);
      renameSync(path, `${path}.corrupt`);
    }
  }
  return out.sort((a, b) => a.state.startedAt - b.state.startedAt);
}

function syncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
