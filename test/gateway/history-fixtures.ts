import { mkdirSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CampaignJournal, encodeRecord, type CampaignPolicyRecord, type CampaignState, type JournalRecord } from '../../gateway/rollout/journal.ts';
import type { Manifest } from '../../protocol/manifest.ts';
import type { OrderMessage, ResultMessage } from '../../protocol/uplink.ts';

/** Journals and store files for the history tests, written with the real CampaignJournal. */

export const SHA_A = 'aa'.repeat(32);
export const SHA_B = 'bb'.repeat(32);
export const SHA_C = 'cc'.repeat(32);
export const SHA_D = 'dd'.repeat(32);

export const T0 = Date.UTC(2026, 10, 22, 1, 0, 0);

export function manifestOf(sha256: string, name: string, version: string, hw = ['sensor-v1']): Manifest {
  return { name, version, hw, size: 16, crc32: 0, sha256, chunk: 1024 };
}

export function order(campaign: string, sha256: string, version: string, ranked: string[], excluded: { id: string; code: ResultMessage['code']; version?: string }[] = []): OrderMessage {
  return {
    t: 'order', campaign, image: { name: 'sensor-fw', version, sha256 },
    devices: ranked.map((id, i) => ({ id, rank: i + 1, from: '1.0.0' })),
    excluded: excluded.map((e) => ({ id: e.id, code: e.code, reason: `${e.id} ${e.code}`, ...(e.version ? { version: e.version } : {}) })),
  };
}

export function result(campaign: string, id: string, outcome: ResultMessage['outcome'], code: ResultMessage['code'], extra: Partial<ResultMessage> = {}): ResultMessage {
  return { t: 'result', campaign, id, outcome, code, from: '1.0.0', to: '1.1.0', durationMs: outcome === 'skipped' ? 0 : 4000, retries: 0, ...extra };
}

export function complete(campaign: string, halted = false): JournalRecord {
  return {
    r: 'complete',
    complete: {
      t: 'complete', campaign, devices: 0, updated: 0, failed: 0, rolledBack: 0, skipped: 0, durationMs: 1000,
      ...(halted ? { halted: { code: 'rollback-threshold' as const, reason: '2 of 3 finished devices rolled back', rolledBack: 2, finished: 3, thresholdPct: 20 } } : {}),
    },
  };
}

export function stateRec(state: CampaignState, at: number, reason?: string): JournalRecord {
  return { r: 'state', state, at, ...(reason !== undefined ? { reason } : {}) };
}

export interface JournalSpec {
  id: string;
  sha256: string;
  at: number;
  policy?: CampaignPolicyRecord;
  /** Written on the campaign record as the lead's format does (parseJournal keeps neither today). */
  manifest?: Manifest;
  targets?: string[];
  records?: JournalRecord[];
  /** Modification time of the journal file (the end of a campaign without an ended state record). */
  mtime?: number;
}

/** Write a journal into <dataDir>/journal with CampaignJournal (create + append). */
export function writeJournal(dataDir: string, spec: JournalSpec): string {
  const dir = join(dataDir, 'journal');
  mkdirSync(dir, { recursive: true });
  let path: string;
  if (spec.manifest || spec.targets) {
    // the campaign record with the fields the lead's format adds; then appended like any journal
    path = join(dir, `${spec.id}.jsonl`);
    const first = { r: 'campaign', id: spec.id, sha256: spec.sha256, at: spec.at, ...(spec.policy ? { policy: spec.policy } : {}), ...(spec.manifest ? { manifest: spec.manifest } : {}), ...(spec.targets ? { targets: spec.targets } : {}) };
    writeFileSync(path, encodeRecord(first as JournalRecord));
    const j = CampaignJournal.reopen(path, Buffer.byteLength(encodeRecord(first as JournalRecord)));
    for (const r of spec.records ?? []) j.append(r);
    j.close();
  } else {
    const j = CampaignJournal.create(dir, spec.id, spec.sha256, spec.at, spec.policy);
    for (const r of spec.records ?? []) j.append(r);
    j.close();
    path = j.path;
  }
  if (spec.mtime !== undefined) utimesSync(path, spec.mtime / 1000, spec.mtime / 1000);
  return path;
}

/** An image in <dataDir>/store/images: the .bin (size bytes) and its manifest. */
export function storeImage(dataDir: string, m: Manifest): void {
  const dir = join(dataDir, 'store', 'images');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, `${m.sha256}.bin`), Buffer.alloc(m.size, 7));
  writeFileSync(join(dir, `${m.sha256}.json`), JSON.stringify(m));
}

/** <dataDir>/fleet.json with these devices (hw, version). */
export function writeFleet(dataDir: string, devices: { id: string; hw: string; version: string }[]): void {
  mkdirSync(dataDir, { recursive: true });
  writeFileSync(join(dataDir, 'fleet.json'), JSON.stringify({ format: 1, savedAt: T0, devices: devices.map((d) => ({ ...d, lastCheckIn: T0, online: false })) }));
}
