import { createHash, randomBytes } from 'node:crypto';
import { constants as fsc, createReadStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, stat, unlink, utimes, type FileHandle } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { crc32 } from '../protocol/crc.ts';
import { syncDir, TMP_MARK, writeFileDurably } from './durable.ts';
import { describeError, FwError, isFwError } from '../protocol/errors.ts';
import { checkDigest, digestImage, parseManifest, type ImageDigest, type Manifest } from '../protocol/manifest.ts';

/**
 * The durable, content-addressed image store.
 *
 * Layout under `dir`:
 *   images/<sha256>.bin      a verified image (the final name only ever holds a verified image)
 *   images/<sha256>.json     its manifest (plain manifest JSON); storedAt is the .bin's mtime, set at commit
 *   partial/<sha256>.part    an upload in progress, resumable; its length is the resume offset
 *   partial/<sha256>.json    the partial's manifest, so a partial is self-describing
 *   quarantine/              whatever failed verification at start-up, kept for inspection, never served
 * Temporary files carry `.tmp-` in their name and are deleted at start-up.
 *
 * Commit order (crash safety): images/<sha>.json (temp + fsync + rename), then
 * partial/<sha>.part -> images/<sha>.bin, fsync images/, then remove partial/<sha>.json.
 * A crash in between leaves a manifest without its image (quarantined at start-up) and the partial
 * still resumable.
 */

export interface StoreOptions {
  dir: string;
  maxImageSize: number;
  /** fdatasync a partial at least every this many bytes (default 256 KiB). */
  syncEveryBytes?: number;
  logger?: (line: string) => void;
  /** Clock for `storedAt`; injected for tests. */
  now?: () => Date;
  /**
   * Why a stored manifest must not be trusted (its signature does not verify with the trusted
   * keys), or undefined: checked for every image at start-up, which quarantines a failure.
   */
  checkManifest?: (m: Manifest) => string | undefined;
}

export interface StoredImage {
  manifest: Manifest;
  /** Absolute or `dir`-relative path of the image bytes (as `dir` was given). */
  path: string;
  /** ISO 8601. */
  storedAt: string;
}

export interface Upload {
  readonly manifest: Manifest;
  /** Next byte expected. */
  readonly offset: number;
  /**
   * Append `data` at `offset`, which must equal `this.offset` (E_UPLINK_OFFSET); never past
   * manifest.size (E_IMAGE_SIZE). Writes are gathered in memory and reach the file in blocks of up
   * to the sync interval (one writev, then fdatasync), so `data` is kept by reference until then:
   * the caller must not change it.
   */
  write(offset: number, data: Uint8Array): Promise<void>;
  /** Verify the whole partial against the manifest and store it; on a mismatch the partial is deleted and the check's error thrown. */
  commit(): Promise<StoredImage>;
  /** Close, keeping the partial (made durable) for a later resume. */
  abandon(): Promise<void>;
  /** Close and delete the partial (a no-op once committed, abandoned or superseded). */
  discard(): Promise<void>;
}

/** Default for StoreOptions.syncEveryBytes (config `uplink.partialSyncBytes`). */
const SYNC_EVERY_BYTES = 256 * 1024;
const READ_CHUNK = 1024 * 1024;

export class ImageStore {
  readonly #dir: string;
  readonly #imagesDir: string;
  readonly #partialDir: string;
  readonly #quarantineDir: string;
  readonly #maxImageSize: number;
  readonly #syncEveryBytes: number;
  readonly #log: (line: string) => void;
  readonly #now: () => Date;
  readonly #checkManifest: ((m: Manifest) => string | undefined) | undefined;
  readonly #images = new Map<string, StoredImage>();
  /** The live upload per sha256 (at most one). */
  readonly #active = new Map<string, UploadImpl>();
  /** Serialises beginUpload per sha256. */
  readonly #beginTail = new Map<string, Promise<unknown>>();

  private constructor(opts: StoreOptions) {
    this.#dir = opts.dir;
    this.#imagesDir = join(opts.dir, 'images');
    this.#partialDir = join(opts.dir, 'partial');
    this.#quarantineDir = join(opts.dir, 'quarantine');
    this.#maxImageSize = opts.maxImageSize;
    this.#syncEveryBytes = opts.syncEveryBytes ?? SYNC_EVERY_BYTES;
    this.#log = opts.logger ?? (() => undefined);
    this.#now = opts.now ?? (() => new Date());
    this.#checkManifest = opts.checkManifest;
  }

  /** Create the directories, delete temp files, verify every stored image (quarantining bad ones) and check partials. */
  static async open(opts: StoreOptions): Promise<ImageStore> {
    const store = new ImageStore(opts);
    await io(`create ${opts.dir}`, async () => {
      for (const d of [store.#imagesDir, store.#partialDir, store.#quarantineDir]) await mkdir(d, { recursive: true });
    });
    await store.#loadImages();
    await store.#checkPartials();
    return store;
  }

  get dir(): string {
    return this.#dir;
  }

  has(sha256: string): boolean {
    return this.#images.has(sha256);
  }

  get(sha256: string): StoredImage | undefined {
    return this.#images.get(sha256);
  }

  /** Stored images, oldest first. */
  list(): StoredImage[] {
    return [...this.#images.values()].sort((a, b) => a.storedAt.localeCompare(b.storedAt));
  }

  /**
   * The whole image, verified against its digest (size, CRC-32, SHA-256) as it is read back: a
   * stored copy that no longer matches (a flipped bit on disk, a hand edit) is quarantined and
   * never served (E_IMAGE_CORRUPT: re-push the image). E_IMAGE_NOT_FOUND when not stored.
   */
  async read(sha256: string): Promise<Buffer> {
    const img = this.#images.get(sha256);
    if (!img) throw new FwError('E_IMAGE_NOT_FOUND', `image ${sha256} is not in the store`, { details: { sha256 } });
    const data = await io(`read ${img.path}`, () => readFile(img.path));
    try {
      checkDigest(img.manifest, digestImage(data));
    } catch (err) {
      await this.#setAside(sha256, err);
      throw new FwError('E_IMAGE_CORRUPT', `stored copy of image ${sha256} is corrupt (${describeError(err)}); quarantined: re-push the image`, { cause: err, details: { sha256 } });
    }
    return data;
  }

  /**
   * Re-check a stored image on disk (streamed); a copy that no longer matches is quarantined and
   * forgotten, so an upload of the same image stores it afresh. True when it verifies. A copy that
   * cannot be read (E_STORE_IO: the disk, not the bytes) is kept and the error thrown, as read()
   * does: a passing I/O error must not cost the site its good copy.
   */
  async verify(sha256: string): Promise<boolean> {
    const img = this.#images.get(sha256);
    if (!img) return false;
    const digest = await io(`read ${img.path}`, () => digestFile(img.path));
    try {
      checkDigest(img.manifest, digest);
      return true;
    } catch (err) {
      await this.#setAside(sha256, err);
      return false;
    }
  }

  /**
   * A new signed manifest for an image already stored (same bytes: a new version, seq or
   * signature, §7.3.8): kept as the image's manifest from now on (images/<sha>.json, replaced
   * durably) and returned as the stored image campaigns use. The caller checked its signature.
   */
  async adoptManifest(untrusted: Manifest): Promise<StoredImage> {
    const manifest = parseManifest(untrusted);
    const img = this.#images.get(manifest.sha256);
    if (!img) throw new FwError('E_IMAGE_NOT_FOUND', `image ${manifest.sha256} is not in the store`, { details: { sha256: manifest.sha256 } });
    if (img.manifest.size !== manifest.size || img.manifest.crc32 !== manifest.crc32) {
      throw new FwError('E_MANIFEST_INVALID', `manifest for ${manifest.sha256} gives size ${manifest.size} / CRC ${manifest.crc32}, the stored image has ${img.manifest.size} / ${img.manifest.crc32}`);
    }
    if (!sameManifest(img.manifest, manifest)) {
      await io(`store manifest ${manifest.sha256}`, () => writeFileDurably(join(this.#imagesDir, `${manifest.sha256}.json`), `${JSON.stringify(manifest, null, 2)}\n`));
      this.#log(`store: image ${short(manifest.sha256)} now goes with ${manifest.name} ${manifest.version}${manifest.seq !== undefined ? ` seq ${manifest.seq}` : ''}`);
    }
    const next: StoredImage = { ...img, manifest };
    this.#images.set(manifest.sha256, next);
    return next;
  }

  async #setAside(sha256: string, err: unknown): Promise<void> {
    const img = this.#images.get(sha256);
    if (!img) return;
    this.#images.delete(sha256);
    this.#log(`store: quarantined image ${sha256}: ${describeError(err)}`);
    await this.#quarantine(img.path, join(this.#imagesDir, `${sha256}.json`));
  }

  /**
   * Start or resume the upload of an image. A partial for the same sha256 is resumed (offset = its
   * length on disk, clamped to manifest.size). If another Upload for this sha256 is still live it is
   * superseded: its partial is made durable and its further calls fail with E_UPLINK_STATE.
   */
  async beginUpload(untrusted: Manifest): Promise<Upload> {
    const manifest = parseManifest(untrusted);
    if (manifest.size > this.#maxImageSize) {
      throw new FwError('E_IMAGE_TOO_LARGE', `image is ${manifest.size} bytes, the store accepts at most ${this.#maxImageSize}`, {
        details: { size: manifest.size, max: this.#maxImageSize },
      });
    }
    const sha = manifest.sha256;
    const run = (this.#beginTail.get(sha) ?? Promise.resolve()).then(() => this.#openUpload(manifest));
    const tail = run.catch(() => undefined);
    this.#beginTail.set(sha, tail);
    void tail.then(() => {
      if (this.#beginTail.get(sha) === tail) this.#beginTail.delete(sha);
    });
    return run;
  }

  async #openUpload(manifest: Manifest): Promise<UploadImpl> {
    const sha = manifest.sha256;
    const previous = this.#active.get(sha);
    if (previous) {
      this.#log(`store: upload ${short(sha)} superseded by a new beginUpload; resuming its partial`);
      await previous.supersede();
    }
    const partPath = join(this.#partialDir, `${sha}.part`);
    const metaPath = join(this.#partialDir, `${sha}.json`);
    return io(`open partial ${partPath}`, async () => {
      const existing = await readJsonOrUndefined(metaPath);
      if (!sameManifest(existing, manifest)) await writeFileDurably(metaPath, `${JSON.stringify(manifest)}\n`);
      const fd = await open(partPath, fsc.O_WRONLY | fsc.O_CREAT, 0o644);
      try {
        let length = (await fd.stat()).size;
        if (length > manifest.size) {
          await fd.truncate(manifest.size);
          await fd.sync();
          length = manifest.size;
        }
        await syncDir(this.#partialDir);
        if (length > 0) this.#log(`store: resuming upload ${short(sha)} at ${length}/${manifest.size}`);
        const upload: UploadImpl = new UploadImpl({
          released: () => {
            if (this.#active.get(sha) === upload) this.#active.delete(sha);
          },
          install: () => this.#install(manifest, partPath, metaPath),
          syncEveryBytes: this.#syncEveryBytes,
        }, manifest, fd, partPath, metaPath, length);
        this.#active.set(sha, upload);
        return upload;
      } catch (err) {
        await fd.close().catch(() => undefined);
        throw err;
      }
    });
  }

  /** Move a verified partial into place. Called by UploadImpl.commit after the digest check. */
  async #install(manifest: Manifest, partPath: string, metaPath: string): Promise<StoredImage> {
    const sha = manifest.sha256;
    const existing = this.#images.get(sha);
    if (existing) {
      this.#log(`store: image ${short(sha)} already stored; discarded the duplicate upload`);
      await io(`delete partial ${partPath}`, async () => {
        await removeQuietly(partPath, metaPath);
        await syncDir(this.#partialDir);
      });
      return this.adoptManifest(manifest); // this upload's manifest is the one its campaign uses
    }
    const binPath = join(this.#imagesDir, `${sha}.bin`);
    const jsonPath = join(this.#imagesDir, `${sha}.json`);
    const now = this.#now();
    await io(`store image ${sha}`, async () => {
      await writeFileDurably(jsonPath, `${JSON.stringify(manifest, null, 2)}\n`);
      await utimes(partPath, now, now);
      await rename(partPath, binPath);
      await syncDir(this.#imagesDir);
      await unlink(metaPath).catch(ignoreMissing);
      await syncDir(this.#partialDir);
    });
    const img: StoredImage = { manifest, path: binPath, storedAt: now.toISOString() };
    this.#images.set(sha, img);
    this.#log(`store: stored ${manifest.name} ${manifest.version} (${manifest.size} bytes, ${short(sha)})`);
    return img;
  }

  async #loadImages(): Promise<void> {
    const names = await io(`list ${this.#imagesDir}`, () => readdir(this.#imagesDir));
    const seen = new Set<string>();
    for (const name of names) {
      if (name.includes(TMP_MARK)) {
        await this.#deleteTemp(this.#imagesDir, name);
        continue;
      }
      const m = /^([0-9a-f]{64})\.(bin|json)$/.exec(name);
      if (!m) {
        this.#log(`store: ignoring unexpected file images/${name}`);
        continue;
      }
      seen.add(m[1]!);
    }
    for (const sha of seen) {
      const binPath = join(this.#imagesDir, `${sha}.bin`);
      const jsonPath = join(this.#imagesDir, `${sha}.json`);
      try {
        const img = await verifyStored(sha, binPath, jsonPath);
        const untrusted = this.#checkManifest?.(img.manifest);
        if (untrusted !== undefined) throw new FwError('E_MANIFEST_SIGNATURE', `manifest ${jsonPath}: ${untrusted}`);
        this.#images.set(sha, img);
      } catch (err) {
        this.#log(`store: quarantined image ${sha}: ${describeError(err)}`);
        await this.#quarantine(binPath, jsonPath);
      }
    }
    if (this.#images.size > 0) this.#log(`store: ${this.#images.size} image(s) verified`);
  }

  async #checkPartials(): Promise<void> {
    const names = await io(`list ${this.#partialDir}`, () => readdir(this.#partialDir));
    const shas = new Set<string>();
    for (const name of names) {
      if (name.includes(TMP_MARK)) {
        await this.#deleteTemp(this.#partialDir, name);
        continue;
      }
      const m = /^([0-9a-f]{64})\.(part|json)$/.exec(name);
      if (m) shas.add(m[1]!);
      else this.#log(`store: ignoring unexpected file partial/${name}`);
    }
    for (const sha of shas) {
      const partPath = join(this.#partialDir, `${sha}.part`);
      const metaPath = join(this.#partialDir, `${sha}.json`);
      let reason: string | undefined;
      if (this.#images.has(sha)) reason = 'image already stored';
      else {
        try {
          const manifest = parseManifest(JSON.parse(await readFile(metaPath, 'utf8')));
          if (manifest.sha256 !== sha) reason = 'manifest names another sha256';
        } catch (err) {
          reason = `no usable manifest (${describeError(err)})`;
        }
      }
      if (reason !== undefined) {
        this.#log(`store: deleted partial ${short(sha)}: ${reason}`);
        await io(`delete partial ${sha}`, () => removeQuietly(partPath, metaPath));
      }
    }
    await io(`sync ${this.#partialDir}`, () => syncDir(this.#partialDir));
  }

  async #deleteTemp(dir: string, name: string): Promise<void> {
    this.#log(`store: deleted stray temp file ${join(dir, name)}`);
    await io(`delete ${name}`, () => unlink(join(dir, name)).catch(ignoreMissing));
  }

  /** Move whichever of the files exist into quarantine/ under a unique name; never throws. */
  async #quarantine(...paths: string[]): Promise<void> {
    const stamp = `${this.#now().toISOString().replace(/[:.]/g, '-')}-${randomBytes(3).toString('hex')}`;
    for (const p of paths) {
      try {
        await rename(p, join(this.#quarantineDir, `${stamp}-${basename(p)}`));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        // It is not in #images, so it is never served; say so and carry on.
        this.#log(`store: could not move ${p} to quarantine: ${describeError(err)}`);
      }
    }
    await syncDir(this.#imagesDir).catch(() => undefined);
  }
}

type UploadState = 'open' | 'closed' | 'superseded';

/** What an upload asks of its store. */
interface UploadHooks {
  /** The upload closed (commit, abandon, discard, supersede): it is no longer the live one. */
  released(): void;
  /** Move the verified partial into place. */
  install(): Promise<StoredImage>;
  /** fdatasync the partial at least every this many bytes. */
  syncEveryBytes: number;
}

/** Most bytes an upload gathers in memory before writing them (less when the sync interval is shorter). */
const GATHER_BYTES = 1024 * 1024;

class UploadImpl implements Upload {
  /** Next byte expected (gathered ones included). */
  #offset: number;
  /** Bytes in the file: where the gathered bytes go. */
  #written: number;
  #gathered: Uint8Array[] = [];
  #gatheredBytes = 0;
  #state: UploadState = 'open';
  #unsynced = 0;
  /** Every operation runs after the previous one settles. */
  #tail: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly hooks: UploadHooks,
    readonly manifest: Manifest,
    private readonly fd: FileHandle,
    private readonly partPath: string,
    private readonly metaPath: string,
    offset: number,
  ) {
    this.#offset = offset;
    this.#written = offset;
  }

  get offset(): number {
    return this.#offset;
  }

  write(offset: number, data: Uint8Array): Promise<void> {
    return this.#serial(async () => {
      this.#assertOpen();
      if (offset !== this.#offset) {
        throw new FwError('E_UPLINK_OFFSET', `data at offset ${offset}, expected ${this.#offset}`, {
          details: { expected: this.#offset, actual: offset },
        });
      }
      const end = offset + data.length;
      if (end > this.manifest.size) {
        throw new FwError('E_IMAGE_SIZE', `data up to ${end} exceeds the image size ${this.manifest.size}`, {
          details: { expected: this.manifest.size, actual: end },
        });
      }
      if (data.length === 0) return;
      this.#gathered.push(data);
      this.#gatheredBytes += data.length;
      this.#offset = end;
      if (this.#gatheredBytes >= Math.min(GATHER_BYTES, this.hooks.syncEveryBytes)) await this.#writeGathered();
    });
  }

  /**
   * Write what was gathered (one writev) and fdatasync once syncEveryBytes are unsynced. On an
   * I/O error the gathered bytes are dropped and the offset falls back to what the file holds.
   */
  async #writeGathered(): Promise<void> {
    if (this.#gatheredBytes === 0) return;
    const parts = this.#gathered;
    const total = this.#gatheredBytes;
    this.#gathered = [];
    this.#gatheredBytes = 0;
    try {
      await io(`write ${this.partPath}`, async () => {
        const { bytesWritten } = await this.fd.writev(parts, this.#written);
        let done = bytesWritten;
        if (done < total) {
          // a short writev (rare on a file): the rest one buffer at a time
          const rest = Buffer.concat(parts).subarray(done);
          for (let o = 0; o < rest.length;) {
            const w = await this.fd.write(rest, o, rest.length - o, this.#written + done + o);
            o += w.bytesWritten;
          }
          done = total;
        }
        this.#written += total;
        this.#unsynced += total;
        if (this.#unsynced >= this.hooks.syncEveryBytes) {
          await this.fd.datasync();
          this.#unsynced = 0;
        }
      });
    } catch (err) {
      this.#offset = this.#written;
      throw err;
    }
  }

  commit(): Promise<StoredImage> {
    return this.#serial(async () => {
      this.#assertOpen();
      this.#state = 'closed';
      this.hooks.released();
      await this.#closeDurably();
      const digest = await io(`re-read ${this.partPath}`, () => digestFile(this.partPath));
      try {
        checkDigest(this.manifest, digest);
      } catch (err) {
        await io(`delete partial ${this.partPath}`, () => removeQuietly(this.partPath, this.metaPath));
        throw err;
      }
      return this.hooks.install();
    });
  }

  abandon(): Promise<void> {
    return this.#serial(async () => {
      if (this.#state !== 'open') return;
      this.#state = 'closed';
      this.hooks.released();
      await this.#closeDurably();
    });
  }

  /** No-op once the upload is closed (committed, abandoned, superseded): the partial may belong to a newer upload by then. */
  discard(): Promise<void> {
    return this.#serial(async () => {
      if (this.#state !== 'open') return;
      this.#state = 'closed';
      this.hooks.released();
      await this.fd.close().catch(() => undefined);
      await io(`delete partial ${this.partPath}`, () => removeQuietly(this.partPath, this.metaPath));
    });
  }

  /** A newer beginUpload for the same image takes over: make the partial durable and close. */
  supersede(): Promise<void> {
    return this.#serial(async () => {
      if (this.#state !== 'open') return;
      this.#state = 'superseded';
      this.hooks.released();
      await this.#closeDurably();
    });
  }

  async #closeDurably(): Promise<void> {
    try {
      await this.#writeGathered();
      await io(`sync ${this.partPath}`, async () => {
        await this.fd.truncate(this.#written);
        await this.fd.sync();
      });
    } finally {
      await this.fd.close().catch(() => undefined);
    }
  }

  #assertOpen(): void {
    if (this.#state === 'superseded') throw new FwError('E_UPLINK_STATE', `upload of ${short(this.manifest.sha256)} was superseded by a newer one`);
    if (this.#state !== 'open') throw new FwError('E_UPLINK_STATE', `upload of ${short(this.manifest.sha256)} is closed`);
  }

  #serial<T>(op: () => Promise<T>): Promise<T> {
    const run = this.#tail.then(op);
    this.#tail = run.catch(() => undefined);
    return run;
  }
}

/** Read and verify one stored image pair; throws (FwError) when it must be quarantined. */
async function verifyStored(sha: string, binPath: string, jsonPath: string): Promise<StoredImage> {
  let text: string;
  try {
    text = await readFile(jsonPath, 'utf8');
  } catch (err) {
    throw new FwError('E_STORE_IO', `manifest ${jsonPath} unreadable`, { cause: err });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new FwError('E_MANIFEST_INVALID', `manifest ${jsonPath} is not valid JSON`, { cause: err });
  }
  const manifest = parseManifest(json);
  if (manifest.sha256 !== sha) throw new FwError('E_MANIFEST_INVALID', `manifest ${jsonPath} names sha256 ${manifest.sha256}`);
  const st = await io(`stat ${binPath}`, () => stat(binPath));
  if (st.size !== manifest.size) {
    throw new FwError('E_IMAGE_SIZE', `image is ${st.size} bytes, manifest says ${manifest.size}`, { details: { expected: manifest.size, actual: st.size } });
  }
  checkDigest(manifest, await io(`read ${binPath}`, () => digestFile(binPath)));
  return { manifest, path: binPath, storedAt: st.mtime.toISOString() };
}

/** Size, CRC-32 and SHA-256 of a file, streamed. */
async function digestFile(path: string): Promise<ImageDigest> {
  const hash = createHash('sha256');
  let crc = 0;
  let size = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: READ_CHUNK }) as AsyncIterable<Buffer>) {
    hash.update(chunk);
    crc = crc32(chunk, crc);
    size += chunk.length;
  }
  return { size, crc32: crc, sha256: hash.digest('hex') };
}

async function readJsonOrUndefined(path: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(path, 'utf8'));
  } catch {
    return undefined;
  }
}

function sameManifest(a: unknown, b: Manifest): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

async function removeQuietly(...paths: string[]): Promise<void> {
  for (const p of paths) await unlink(p).catch(ignoreMissing);
}

function ignoreMissing(err: unknown): void {
  if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
}

/** Run an fs operation; FwErrors pass through, anything else becomes E_STORE_IO with `cause`. */
async function io<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (isFwError(err)) throw err;
    throw new FwError('E_STORE_IO', `image store: ${what} failed`, { cause: err });
  }
}

function short(sha: string): string {
  return sha.slice(0, 12);
}
