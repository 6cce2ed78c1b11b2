import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { describeError, FwError } from '../protocol/errors.ts';
import type { Manifest } from '../protocol/manifest.ts';
import { checkReleaseSignature, parseReleaseManifest, releaseDigest, type ReleaseManifest } from '../protocol/release.ts';
import type { KeyRing } from '../protocol/signature.ts';
import { compareVersions } from '../protocol/version.ts';
import { TMP_MARK, writeFileDurably } from './durable.ts';

/**
 * The release registry (docs/operations.md "Releases", docs/protocol.md §7.3.9): every release the
 * gateway stores, one durable record per release under `<dir>` (normally `<dataDir>/releases/`),
 * named by the release's digest (§5.5.4): `<digest>.json`. Its component images live in the image
 * store by SHA-256. A record is written atomically (gateway/durable.ts) and verified whenever it is
 * read back: its schema, that the release's digest is the file's name, and its signature against the
 * trusted keys (unless unsigned releases are allowed). A record that does not verify is reported
 * (`problems`, the log) and left out; it never stops the gateway.
 */

export const ReleaseStates = ['deferred', 'live', 'superseded'] as const;
/** `deferred`: stored, no campaign yet; `live`: its campaign was started; `superseded`: a newer live release of the same name replaced it. */
export type ReleaseState = (typeof ReleaseStates)[number];

export interface StoredRelease {
  manifest: ReleaseManifest;
  /** The release's digest (§5.5.4), also its record's name. */
  digest: string;
  state: ReleaseState;
  /** When the gateway stored it, ms since the epoch. */
  storedAt: number;
  /** When it last went live. */
  liveAt?: number;
  /** The campaign its last going live created. */
  campaign?: string;
}

/** A record that did not verify: which file and why. */
export interface RottenRecord {
  file: string;
  reason: string;
}

const recordSchema = z.strictObject({
  manifest: z.unknown(),
  state: z.enum(ReleaseStates),
  storedAt: z.number().int().min(0),
  liveAt: z.number().int().min(0).optional(),
  campaign: z.string().min(1).max(64).optional(),
});

const recordName = /^[0-9a-f]{64}\.json$/;

export interface ReleaseRegistryOptions {
  /** The registry's directory (`<dataDir>/releases`). */
  dir: string;
  /** Trusted release-signing keys (security.trustedKeys), as for manifests (§5.5.3). */
  keyRing: KeyRing;
  /** security.allowUnsigned: an unsigned release is kept (a signed one must still verify). */
  allowUnsigned: boolean;
  /** Told of each rotten record when it is found (the gateway's log). */
  report?: (r: RottenRecord) => void;
  /** Clock of storedAt/liveAt; injected by tests. */
  now?: () => number;
}

export class ReleaseRegistry {
  readonly #opts: ReleaseRegistryOptions;
  readonly #now: () => number;
  /** The verified records as last read, by digest. */
  #cache = new Map<string, StoredRelease>();
  /** Rotten records found by the last read. */
  #problems: RottenRecord[] = [];
  /** Writes one after the other (a read-modify-write never interleaves with another). */
  #tail: Promise<unknown> = Promise.resolve();

  private constructor(opts: ReleaseRegistryOptions) {
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
  }

  /** Create the directory if needed and read (verify) every record. */
  static async open(opts: ReleaseRegistryOptions): Promise<ReleaseRegistry> {
    const r = new ReleaseRegistry(opts);
    await mkdir(opts.dir, { recursive: true });
    await r.list();
    return r;
  }

  /** Records that did not verify at the last read. */
  get problems(): readonly RottenRecord[] {
    return this.#problems;
  }

  /** Every stored release that verifies, oldest first; rotten records are reported and skipped. */
  async list(): Promise<StoredRelease[]> {
    let names: string[];
    try {
      names = (await readdir(this.#opts.dir)).filter((n) => !n.includes(TMP_MARK) && n.endsWith('.json')).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') names = [];
      else throw new FwError('E_STORE_IO', `cannot read the release registry ${this.#opts.dir}: ${(err as Error).message}`, { cause: err });
    }
    const found = new Map<string, StoredRelease>();
    const problems: RottenRecord[] = [];
    for (const name of names) {
      const file = join(this.#opts.dir, name);
      try {
        const rec = await this.#read(file, name);
        found.set(rec.digest, rec);
      } catch (err) {
        const rotten = { file, reason: describeError(err) };
        problems.push(rotten);
        if (!this.#problems.some((p) => p.file === rotten.file && p.reason === rotten.reason)) this.#opts.report?.(rotten);
      }
    }
    this.#cache = found;
    this.#problems = problems;
    return [...found.values()].sort((a, b) => a.storedAt - b.storedAt || a.digest.localeCompare(b.digest));
  }

  /** The verified record of this release name and version, if stored. */
  async get(name: string, version: string): Promise<StoredRelease | undefined> {
    return (await this.list()).find((r) => r.manifest.release === name && r.manifest.version === version);
  }

  /** The verified record of this digest, if stored. */
  async byDigest(digest: string): Promise<StoredRelease | undefined> {
    return (await this.list()).find((r) => r.digest === digest);
  }

  /**
   * Whether a verified release (as last read) lists a component image with exactly this
   * manifest's name, version, size, CRC-32 and SHA-256: such a component image needs no signature
   * of its own, the release's covers it (§5.5.5).
   */
  covers(m: Manifest): boolean {
    for (const r of this.#cache.values()) {
      if (r.manifest.components.some((c) => c.sha256 === m.sha256 && c.size === m.size && c.crc32 === m.crc32 && c.name === m.name && c.version === m.version)) return true;
    }
    return false;
  }

  /**
   * Store a release in this state (durably, before anything acts on it). A release already stored
   * (same digest) keeps its `storedAt`, campaign and time live; its state becomes `state`.
   */
  async put(manifest: ReleaseManifest, state: ReleaseState): Promise<StoredRelease> {
    return this.#serial(async () => {
      const release = parseReleaseManifest(manifest);
      const digest = releaseDigest(release);
      const old = (await this.list()).find((r) => r.digest === digest);
      const rec: StoredRelease = old ? { ...old, manifest: release, state } : { manifest: release, digest, state, storedAt: this.#now() };
      await this.#write(rec);
      return rec;
    });
  }

  /** Change a stored release's state (and, going live, its campaign and time live). E_UNKNOWN_RELEASE when not stored. */
  async setState(digest: string, state: ReleaseState, campaign?: string): Promise<StoredRelease> {
    return this.#serial(async () => {
      const old = (await this.list()).find((r) => r.digest === digest);
      if (!old) throw new FwError('E_UNKNOWN_RELEASE', `no stored release with digest ${digest}`);
      const rec: StoredRelease = {
        ...old, state,
        ...(state === 'live' ? { liveAt: this.#now() } : {}),
        ...(campaign !== undefined ? { campaign } : {}),
      };
      await this.#write(rec);
      return rec;
    });
  }

  /**
   * `release` went live: every other live release of the same name with a lower version becomes
   * `superseded`. Returns those it superseded.
   */
  async supersedeOlder(release: ReleaseManifest): Promise<StoredRelease[]> {
    const older = (await this.list()).filter((r) => r.state === 'live' && r.manifest.release === release.release
      && compareVersions(r.manifest.version, release.version) < 0);
    const out: StoredRelease[] = [];
    for (const r of older) out.push(await this.setState(r.digest, 'superseded'));
    return out;
  }

  async #read(file: string, name: string): Promise<StoredRelease> {
    if (!recordName.test(name)) throw new FwError('E_RELEASE_RECORD', `${name} is not a release record name (<sha256>.json)`);
    let raw: unknown;
    try {
      raw = JSON.parse(await readFile(file, 'utf8'));
    } catch (err) {
      throw new FwError('E_RELEASE_RECORD', `unreadable: ${(err as Error).message}`, { cause: err });
    }
    const parsed = recordSchema.safeParse(raw);
    if (!parsed.success) throw new FwError('E_RELEASE_RECORD', `not a release record: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(record)'}: ${i.message}`).join('; ')}`);
    let manifest: ReleaseManifest;
    try {
      manifest = parseReleaseManifest(parsed.data.manifest);
    } catch (err) {
      throw new FwError('E_RELEASE_RECORD', `its release manifest is invalid (${describeError(err)})`, { cause: err });
    }
    const digest = releaseDigest(manifest);
    if (`${digest}.json` !== name) throw new FwError('E_RELEASE_RECORD', `its release's digest is ${digest}, not the record's name (altered on disk?)`);
    const sig = checkReleaseSignature(this.#opts.keyRing, manifest);
    if (!sig.ok && !(sig.failure === 'unsigned' && this.#opts.allowUnsigned)) throw new FwError('E_RELEASE_RECORD', `its signature does not verify: ${sig.reason}`);
    const { state, storedAt, liveAt, campaign } = parsed.data;
    return { manifest, digest, state, storedAt, ...(liveAt !== undefined ? { liveAt } : {}), ...(campaign !== undefined ? { campaign } : {}) };
  }

  async #write(rec: StoredRelease): Promise<void> {
    const { digest: _d, ...body } = rec;
    try {
      await writeFileDurably(join(this.#opts.dir, `${rec.digest}.json`), `${JSON.stringify(body, null, 2)}\n`);
    } catch (err) {
      throw new FwError('E_STORE_IO', `cannot write release record ${rec.digest}: ${(err as Error).message}`, { cause: err });
    }
    this.#cache.set(rec.digest, rec);
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#tail.then(fn, fn);
    this.#tail = run.catch(() => undefined);
    return run;
  }
}

/**
 * The component images each stored release names, for housekeeping (`fwgate images prune` keeps
 * them): SHA-256 → "sensor-release 1.1.0 (deferred)". Read without verifying signatures (keeping
 * too much is safe); `unreadable` lists the records that cannot be read (they might name any image).
 */
export function imagesNamedByReleases(releasesDir: string): { named: Map<string, string[]>; unreadable: string[] } {
  const named = new Map<string, string[]>();
  const unreadable: string[] = [];
  let names: string[];
  try {
    names = readdirSync(releasesDir).filter((n) => recordName.test(n));
  } catch {
    return { named, unreadable };
  }
  for (const n of names) {
    try {
      const rec = JSON.parse(readFileSync(join(releasesDir, n), 'utf8')) as { manifest: ReleaseManifest; state: string };
      for (const c of rec.manifest.components) named.set(c.sha256, [...(named.get(c.sha256) ?? []), `${rec.manifest.release} ${rec.manifest.version} (${rec.state})`]);
    } catch {
      unreadable.push(join(releasesDir, n));
    }
  }
  return { named, unreadable };
}
