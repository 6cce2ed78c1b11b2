import { readdirSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { describeError, FwError } from '../protocol/errors.ts';
import { syncDir } from './durable.ts';
import { FLEET_FILE, readFleetFile, type StoredDevice } from './fleet-store.ts';
import { deriveState, hasEnded, journalDirOf, journalFiles, readJournal, readStoredManifest, type ReadJournal } from './history.ts';
import type { CampaignState } from './rollout/journal.ts';
import { imagesNamedByReleases } from './releases.ts';
import { pruneJournals, type KeepCampaigns, type RemovedJournal } from './retention.ts';

/**
 * `fwgate images` and `fwgate images prune` (docs/operations.md "Campaign history and
 * housekeeping"): the images of `<dataDir>/store/images`, who uses them, and the removal of those
 * nobody does. Listing only reads; pruning is for a data directory no gateway runs on (the caller
 * holds its pid file, gateway/pid-file.ts).
 */

/** One stored image and its users. */
export interface ImageInfo {
  sha256: string;
  /** From `<sha256>.json`; "?" (and hw []) when it cannot be read. */
  name: string;
  version: string;
  hw: string[];
  /** Bytes of `<sha256>.bin`. */
  size: number;
  /** ISO 8601: the .bin's modification time (set when it was committed). */
  storedAt: string;
  /**
   * Every version these bytes were released as (a new signed manifest for the same bytes): the
   * stored manifest's, those of any other `<sha256>.*.json` manifest beside it, and those of
   * campaigns whose journal names the image.
   */
  versions: string[];
  /** Devices of the fleet file whose hardware is in `hw` and that run one of `versions`, sorted. */
  devices: string[];
  /** Campaigns whose journal names the image, oldest first, with their state. */
  campaigns: { id: string; state: CampaignState; ended: boolean }[];
  /** Files of the image in the images directory (`.bin`, `.json`, and any other `<sha256>.*`). */
  files: string[];
}

export interface ImagesReport {
  dir: string;
  images: ImageInfo[];
  /** The fleet file read, or null when there is none (no device known). */
  fleetFile: string | null;
}

/** What prune does with one image. */
export interface PruneEntry {
  sha256: string;
  name: string;
  version: string;
  size: number;
  /** True: removed (or, in a dry run, would be). */
  remove: boolean;
  /** Why it is kept (empty when removed): `device dev-1 runs it`, `campaign c-1 (waiting) needs it`, ... */
  keptBecause: string[];
}

export interface PruneReport {
  dryRun: boolean;
  /** Journals removed (or that would be) by retention before images were looked at. */
  journals: RemovedJournal[];
  images: PruneEntry[];
  /** Bytes freed (or that would be). */
  freedBytes: number;
}

/**
 * The stored images, oldest first, with the devices that run them (from `<dataDir>/fleet.json`)
 * and the campaigns that name them (journals). A journal that cannot be read is reported through
 * `warn` and counted by nobody; E_STORE_IO when the fleet file or the images directory cannot be read.
 */
export function listImages(
  dataDir: string, devices: StoredDevice[], warn: (msg: string) => void = () => undefined, journals = readJournals(dataDir, warn),
  /** Journals whose versions count (prune: also those retention has just removed). */
  versionJournals = journals,
): ImageInfo[] {
  const dir = imagesDirOf(dataDir);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new FwError('E_STORE_IO', `image directory ${dir} cannot be read: ${(err as Error).message}`, { cause: err });
  }
  const out: ImageInfo[] = [];
  for (const bin of names.filter((n) => /^[0-9a-f]{64}\.bin$/.test(n))) {
    const sha256 = bin.slice(0, 64);
    const manifest = readStoredManifest(join(dir, `${sha256}.json`));
    let size = 0;
    let storedAt = '';
    try {
      const st = statSync(join(dir, bin));
      size = st.size;
      storedAt = st.mtime.toISOString();
    } catch (err) {
      warn(`image ${join(dir, bin)}: ${(err as Error).message}`);
    }
    const mine = journals.filter((j) => j.state.sha256 === sha256);
    const versions = new Set<string>(manifest ? [manifest.version] : []);
    for (const other of names.filter((n) => n.startsWith(`${sha256}.`) && n.endsWith('.json') && n !== `${sha256}.json`)) {
      const m = readStoredManifest(join(dir, other)); // further signed manifests of the same bytes
      if (m?.sha256 === sha256) versions.add(m.version);
    }
    for (const j of versionJournals.filter((x) => x.state.sha256 === sha256)) {
      const v = j.state.manifest?.version ?? j.state.order?.image.version;
      if (v) versions.add(v);
    }
    const hw = manifest?.hw ?? [];
    out.push({
      sha256, name: manifest?.name ?? '?', version: manifest?.version ?? '?', hw, size, storedAt,
      versions: [...versions].sort(),
      devices: devices.filter((d) => hw.includes(d.hw) && versions.has(d.version)).map((d) => d.id).sort(),
      campaigns: mine.map((j) => ({ id: j.state.id, state: deriveState(j.state), ended: hasEnded(j.state) })),
      files: names.filter((n) => n.startsWith(`${sha256}.`) && n !== `${sha256}.bin`).sort().concat(bin).map((n) => join(dir, n)),
    });
  }
  return out.sort((a, b) => a.storedAt.localeCompare(b.storedAt) || a.sha256.localeCompare(b.sha256));
}

/** The fleet file's devices ([] when there is none); E_STORE_IO when it cannot be read. */
export async function fleetDevices(dataDir: string): Promise<{ file: string | null; devices: StoredDevice[] }> {
  const path = join(dataDir, FLEET_FILE);
  const file = await readFleetFile(path);
  return file ? { file: path, devices: file.devices } : { file: null, devices: [] };
}

/**
 * Remove the images nobody needs: no device of the fleet file runs them, no campaign that has not
 * ended names them, and no kept journal names them. Journal retention (`keep`) is applied first
 * (in a dry run: computed, not applied), so the journals it removes keep no image. An image whose
 * manifest cannot be read is never removed. Each image's files are unlinked (`.bin` first, then
 * its manifest and any other `<sha256>.*` file) and the directory is fsync'ed once.
 */
export async function pruneImages(dataDir: string, keep: KeepCampaigns, opts: { dryRun: boolean; now?: number; warn?: (msg: string) => void }): Promise<PruneReport> {
  const warn = opts.warn ?? (() => undefined);
  const now = opts.now ?? Date.now();
  const { devices } = await fleetDevices(dataDir);
  const unreadable: string[] = [];
  const all = readJournals(dataDir, (msg) => {
    unreadable.push(msg);
    warn(msg);
  });
  const removedJournals = pruneJournals(journalDirOf(dataDir), keep, now, { dryRun: opts.dryRun });
  const gone = new Set(removedJournals.map((r) => r.file));
  // a removed journal keeps no image, but the version it released the bytes as still tells which devices run them
  const images = listImages(dataDir, devices, warn, all.filter((j) => !gone.has(j.file)), all);
  const releases = imagesNamedByReleases(join(dataDir, 'releases')); // a stored release's component images stay (docs/operations.md "Releases")
  const entries: PruneEntry[] = images.map((img) => {
    const keptBecause: string[] = [];
    if (img.name === '?') keptBecause.push('its manifest cannot be read');
    for (const d of img.devices) keptBecause.push(`device ${d} runs it`);
    for (const c of img.campaigns) keptBecause.push(c.ended ? `kept journal of campaign ${c.id} (${c.state}) names it` : `campaign ${c.id} (${c.state}) needs it`);
    if (unreadable.length > 0) keptBecause.push('a journal cannot be read (it might name it)');
    for (const r of releases.named.get(img.sha256) ?? []) keptBecause.push(`release ${r} names it`);
    if (releases.unreadable.length > 0) keptBecause.push('a release record cannot be read (it might name it)');
    return { sha256: img.sha256, name: img.name, version: img.version, size: img.size, remove: keptBecause.length === 0, keptBecause };
  });
  const dir = imagesDirOf(dataDir);
  if (!opts.dryRun && entries.some((e) => e.remove)) {
    for (const e of entries.filter((x) => x.remove)) {
      const files = images.find((i) => i.sha256 === e.sha256)!.files;
      try {
        for (const f of [files.at(-1)!, ...files.slice(0, -1)]) unlinkSync(f);
      } catch (err) {
        e.remove = false;
        e.keptBecause.push(`cannot remove it: ${describeError(err)}`);
      }
    }
    await syncDir(dir);
  }
  return { dryRun: opts.dryRun, journals: removedJournals, images: entries, freedBytes: entries.filter((e) => e.remove).reduce((n, e) => n + e.size, 0) };
}

export function imagesDirOf(dataDir: string): string {
  return join(dataDir, 'store', 'images');
}

/** Every readable journal; those that cannot be read are reported through `warn`. */
function readJournals(dataDir: string, warn: (msg: string) => void): ReadJournal[] {
  const out: ReadJournal[] = [];
  for (const file of journalFiles(journalDirOf(dataDir))) {
    try {
      out.push(readJournal(file));
    } catch (err) {
      warn(describeError(err));
    }
  }
  return out;
}
