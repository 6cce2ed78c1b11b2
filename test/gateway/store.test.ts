import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isFwError, type ErrorCode } from '../../protocol/errors.ts';
import { manifestForImage, type Manifest } from '../../protocol/manifest.ts';
import { ImageStore, type StoreOptions } from '../../gateway/store.ts';

function image(size: number): { data: Buffer; manifest: Manifest } {
  const data = randomBytes(size);
  return { data, manifest: manifestForImage(data, { name: 'sensor-fw', version: '1.2.3', hw: ['board-a'] }) };
}

function fwCode(code: ErrorCode, details?: Record<string, unknown>): (err: unknown) => boolean {
  return (err) => {
    assert.ok(isFwError(err, code), `expected ${code}, got ${String(err)}`);
    if (details) for (const [k, v] of Object.entries(details)) assert.deepEqual(err.details?.[k], v, `details.${k}`);
    return true;
  };
}

async function writeAll(upload: { offset: number; write(o: number, d: Uint8Array): Promise<void> }, data: Buffer, piece: number): Promise<void> {
  for (let o = upload.offset; o < data.length; o += piece) await upload.write(o, data.subarray(o, Math.min(o + piece, data.length)));
}

describe('gateway/store', () => {
  let dir: string;
  let logs: string[];
  const open = (over: Partial<StoreOptions> = {}): Promise<ImageStore> =>
    ImageStore.open({ dir, maxImageSize: 4 * 1024 * 1024, logger: (l) => logs.push(l), ...over });

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fwgate-store-'));
    logs = [];
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function storeOne(store: ImageStore, size = 8192): Promise<{ data: Buffer; manifest: Manifest }> {
    const img = image(size);
    const up = await store.beginUpload(img.manifest);
    await writeAll(up, img.data, 4096);
    await up.commit();
    return img;
  }

  it('read() verifies the digest of what it reads back: a rotten copy is quarantined and never served (E_IMAGE_CORRUPT)', async () => {
    const store = await open();
    const { manifest } = await storeOne(store);
    const bin = join(dir, 'images', `${manifest.sha256}.bin`);
    const bytes = await readFile(bin);
    bytes[17] = bytes[17]! ^ 1; // same size, one bit off
    await writeFile(bin, bytes);
    await assert.rejects(store.read(manifest.sha256), fwCode('E_IMAGE_CORRUPT', { sha256: manifest.sha256 }));
    assert.equal(store.has(manifest.sha256), false, 'forgotten');
    assert.ok((await readdir(join(dir, 'quarantine'))).some((n) => n.endsWith(`${manifest.sha256}.bin`)), 'moved to quarantine');
    await assert.rejects(store.read(manifest.sha256), fwCode('E_IMAGE_NOT_FOUND'));
  });

  it('verify() re-hashes the file on disk: true while it matches, false (and quarantined) once it does not', async () => {
    const store = await open();
    const { manifest } = await storeOne(store);
    assert.equal(await store.verify(manifest.sha256), true);
    await writeFile(join(dir, 'images', `${manifest.sha256}.bin`), Buffer.alloc(8192));
    assert.equal(await store.verify(manifest.sha256), false);
    assert.equal(store.has(manifest.sha256), false);
    assert.equal(await store.verify('0'.repeat(64)), false, 'an image it does not hold');
  });

  it('adoptManifest(): a new manifest for stored bytes replaces the stored one durably; one that names other sizes is refused', async () => {
    const store = await open();
    const { manifest } = await storeOne(store);
    const newer = { ...manifest, version: '1.3.0', seq: 5 };
    const adopted = await store.adoptManifest(newer);
    assert.deepEqual([adopted.manifest.version, adopted.manifest.seq], ['1.3.0', 5]);
    assert.equal(store.get(manifest.sha256)?.manifest.version, '1.3.0');
    const reopened = await open();
    assert.equal(reopened.get(manifest.sha256)?.manifest.version, '1.3.0', 'kept across a restart');
    await assert.rejects(store.adoptManifest({ ...manifest, size: manifest.size + 1 }), fwCode('E_MANIFEST_INVALID'));
    await assert.rejects(store.adoptManifest({ ...manifest, sha256: 'f'.repeat(64) }), fwCode('E_IMAGE_NOT_FOUND'));
  });

  it('at start-up a stored manifest that checkManifest distrusts (its signature) is quarantined, never served', async () => {
    const first = await open();
    const { manifest } = await storeOne(first);
    const trusted = await open({ checkManifest: () => undefined });
    assert.ok(trusted.has(manifest.sha256));
    const distrusting = await open({ checkManifest: (m) => (m.sha256 === manifest.sha256 ? 'manifest has no signature' : undefined) });
    assert.equal(distrusting.has(manifest.sha256), false);
    assert.ok(logs.some((l) => l.includes(`quarantined image ${manifest.sha256}`) && l.includes('manifest has no signature')), logs.join('\n'));
    assert.ok((await readdir(join(dir, 'quarantine'))).some((n) => n.endsWith(`${manifest.sha256}.json`)));
  });

  it('creates its directories', async () => {
    await open();
    assert.deepEqual((await readdir(dir)).sort(), ['images', 'partial', 'quarantine']);
  });

  it('round-trips an image written in pieces: has, get, list, read; survives a reopen', async () => {
    const { data, manifest } = image(300_001);
    const store = await open({ now: () => new Date('2030-01-02T03:04:05.000Z') });
    const up = await store.beginUpload(manifest);
    assert.equal(up.offset, 0);
    await writeAll(up, data, 70_000);
    assert.equal(up.offset, data.length);
    const stored = await up.commit();
    assert.deepEqual(stored.manifest, manifest);
    assert.equal(stored.storedAt, '2030-01-02T03:04:05.000Z');
    assert.equal(stored.path, join(dir, 'images', `${manifest.sha256}.bin`));
    assert.ok(store.has(manifest.sha256));
    assert.deepEqual(store.get(manifest.sha256), stored);
    assert.deepEqual(store.list(), [stored]);
    assert.ok((await store.read(manifest.sha256)).equals(data));
    assert.deepEqual(await readdir(join(dir, 'partial')), []);
    assert.deepEqual(JSON.parse(await readFile(join(dir, 'images', `${manifest.sha256}.json`), 'utf8')), manifest);

    const again = await open();
    assert.deepEqual(again.list(), [stored]);
    assert.ok((await again.read(manifest.sha256)).equals(data));
  });

  it('accepts writes issued without awaiting each (they are serialised)', async () => {
    const { data, manifest } = image(10_000);
    const store = await open();
    const up = await store.beginUpload(manifest);
    await Promise.all([0, 1, 2, 3, 4].map((k) => up.write(k * 2000, data.subarray(k * 2000, (k + 1) * 2000))));
    await up.commit();
    assert.ok((await store.read(manifest.sha256)).equals(data));
  });

  it('refuses a SHA-256 mismatch: nothing stored, no partial left', async () => {
    const { data, manifest } = image(5000);
    const lying = { ...manifest, sha256: 'ab'.repeat(32) };
    const store = await open();
    const up = await store.beginUpload(lying);
    await writeAll(up, data, 1000);
    await assert.rejects(up.commit(), fwCode('E_IMAGE_SHA256', { expected: lying.sha256, actual: manifest.sha256 }));
    assert.equal(store.has(lying.sha256), false);
    assert.equal(store.has(manifest.sha256), false);
    assert.deepEqual(store.list(), []);
    assert.deepEqual(await readdir(join(dir, 'partial')), []);
    assert.deepEqual(await readdir(join(dir, 'images')), []);
  });

  it('refuses a CRC-32 mismatch (a corrupted byte in transit)', async () => {
    const { data, manifest } = image(5000);
    const store = await open();
    const up = await store.beginUpload(manifest);
    const bad = Buffer.from(data);
    bad[1234]! ^= 0x10;
    await writeAll(up, bad, 4096);
    await assert.rejects(up.commit(), fwCode('E_IMAGE_CRC'));
    assert.deepEqual(store.list(), []);
    assert.deepEqual(await readdir(join(dir, 'partial')), []);
  });

  it('refuses a size mismatch: short at commit, or data past the manifest size', async () => {
    const { data, manifest } = image(4000);
    const store = await open();
    const up = await store.beginUpload(manifest);
    await up.write(0, data.subarray(0, 3000));
    await assert.rejects(up.write(3000, Buffer.alloc(1001)), fwCode('E_IMAGE_SIZE', { expected: 4000, actual: 4001 }));
    assert.equal(up.offset, 3000);
    await assert.rejects(up.commit(), fwCode('E_IMAGE_SIZE', { expected: 4000, actual: 3000 }));
    assert.deepEqual(store.list(), []);
    assert.deepEqual(await readdir(join(dir, 'partial')), []);
  });

  it('resumes an abandoned upload after a reopen at its durable length', async () => {
    const { data, manifest } = image(600_000);
    const half = 300_000;
    const first = await open();
    const up1 = await first.beginUpload(manifest);
    await up1.write(0, data.subarray(0, half));
    await up1.abandon();
    assert.equal((await stat(join(dir, 'partial', `${manifest.sha256}.part`))).size, half);

    const second = await open();
    assert.equal(second.has(manifest.sha256), false);
    const up2 = await second.beginUpload(manifest);
    assert.equal(up2.offset, half);
    await writeAll(up2, data, 64 * 1024);
    await up2.commit();
    assert.ok((await second.read(manifest.sha256)).equals(data));
    assert.ok(logs.some((l) => l.includes(`resuming upload ${manifest.sha256.slice(0, 12)} at ${half}/600000`)));
  });

  it('gathers small writes into blocks of the sync interval: the file grows a block at a time (a crash costs at most one block), abandon writes the rest', async () => {
    const { data, manifest } = image(100_000);
    const store = await open({ syncEveryBytes: 32 * 1024 });
    const up = await store.beginUpload(manifest);
    const part = join(dir, 'partial', `${manifest.sha256}.part`);
    const sizes: number[] = [];
    for (let o = 0; o < 80_000; o += 4000) {
      await up.write(o, data.subarray(o, o + 4000));
      sizes.push((await stat(part)).size);
    }
    assert.equal(up.offset, 80_000);
    // 4000-byte chunks: a block is written once 32 KiB have gathered (9 chunks = 36000 bytes)
    assert.deepEqual([...new Set(sizes)], [0, 36_000, 72_000]);
    await up.abandon();
    assert.equal((await stat(part)).size, 80_000);
    const again = await (await open()).beginUpload(manifest);
    assert.equal(again.offset, 80_000);
    await writeAll(again, data, 4000);
    await again.commit();
  });

  it('clamps a partial longer than the manifest size to the size', async () => {
    const { data, manifest } = image(2000);
    const store = await open();
    const up = await store.beginUpload(manifest);
    await up.write(0, data);
    await up.abandon();
    await writeFile(join(dir, 'partial', `${manifest.sha256}.part`), Buffer.concat([data, Buffer.alloc(500)]));
    const again = await store.beginUpload(manifest);
    assert.equal(again.offset, 2000);
    await again.commit();
    assert.ok((await store.read(manifest.sha256)).equals(data));
  });

  it('rejects data at the wrong offset with E_UPLINK_OFFSET (expected/actual)', async () => {
    const { data, manifest } = image(3000);
    const store = await open();
    const up = await store.beginUpload(manifest);
    await up.write(0, data.subarray(0, 1000));
    await assert.rejects(up.write(1500, data.subarray(1500, 2000)), fwCode('E_UPLINK_OFFSET', { expected: 1000, actual: 1500 }));
    await assert.rejects(up.write(0, data.subarray(0, 1000)), fwCode('E_UPLINK_OFFSET', { expected: 1000, actual: 0 }));
    await writeAll(up, data, 1000);
    await up.commit();
    assert.ok(store.has(manifest.sha256));
  });

  it('refuses an image larger than maxImageSize', async () => {
    const { manifest } = image(2048);
    const store = await open({ maxImageSize: 2047 });
    await assert.rejects(store.beginUpload(manifest), fwCode('E_IMAGE_TOO_LARGE', { size: 2048, max: 2047 }));
    assert.deepEqual(await readdir(join(dir, 'partial')), []);
  });

  it('refuses an invalid manifest', async () => {
    const { manifest } = image(100);
    const store = await open();
    await assert.rejects(store.beginUpload({ ...manifest, sha256: '../../etc/passwd' }), fwCode('E_MANIFEST_INVALID'));
  });

  it('quarantines a stored image corrupted on disk at the next open', async () => {
    const { data, manifest } = image(4096);
    const store = await open();
    const up = await store.beginUpload(manifest);
    await up.write(0, data);
    await up.commit();
    const bin = join(dir, 'images', `${manifest.sha256}.bin`);
    const bytes = await readFile(bin);
    bytes[100]! ^= 0x01;
    await writeFile(bin, bytes);

    const again = await open();
    assert.equal(again.has(manifest.sha256), false);
    assert.deepEqual(again.list(), []);
    await assert.rejects(again.read(manifest.sha256), fwCode('E_IMAGE_NOT_FOUND'));
    assert.deepEqual(await readdir(join(dir, 'images')), []);
    const q = (await readdir(join(dir, 'quarantine'))).sort();
    assert.equal(q.length, 2);
    assert.ok(q[0]!.endsWith(`${manifest.sha256}.bin`) && q[1]!.endsWith(`${manifest.sha256}.json`), q.join(','));
    assert.ok(logs.some((l) => l.includes(`quarantined image ${manifest.sha256}`) && l.includes('E_IMAGE_CRC')), logs.join('\n'));
  });

  it('quarantines a stored image whose file was truncated', async () => {
    const { data, manifest } = image(4096);
    const store = await open();
    const up = await store.beginUpload(manifest);
    await up.write(0, data);
    await up.commit();
    await truncate(join(dir, 'images', `${manifest.sha256}.bin`), 4000);
    const again = await open();
    assert.deepEqual(again.list(), []);
    assert.ok(logs.some((l) => l.includes('E_IMAGE_SIZE')));
  });

  it('quarantines an image whose manifest JSON is truncated, with a clear log line', async () => {
    const { data, manifest } = image(4096);
    const store = await open();
    const up = await store.beginUpload(manifest);
    await up.write(0, data);
    await up.commit();
    const json = join(dir, 'images', `${manifest.sha256}.json`);
    const text = await readFile(json, 'utf8');
    await writeFile(json, text.slice(0, text.length >> 1));

    const again = await open();
    assert.deepEqual(again.list(), []);
    assert.equal((await readdir(join(dir, 'quarantine'))).length, 2);
    assert.ok(logs.some((l) => l.includes(`quarantined image ${manifest.sha256}`) && l.includes('not valid JSON')), logs.join('\n'));
  });

  it('quarantines an image without its manifest', async () => {
    const { data, manifest } = image(1000);
    const store = await open();
    const up = await store.beginUpload(manifest);
    await up.write(0, data);
    await up.commit();
    await rm(join(dir, 'images', `${manifest.sha256}.json`));
    const again = await open();
    assert.deepEqual(again.list(), []);
    assert.equal((await readdir(join(dir, 'quarantine'))).length, 1);
  });

  it('deletes stray temp files and unusable partials at open', async () => {
    const { data, manifest } = image(1000);
    const store = await open();
    const up = await store.beginUpload(manifest);
    await up.write(0, data.subarray(0, 500));
    await up.abandon();
    const other = 'cd'.repeat(32);
    await writeFile(join(dir, 'images', `${other}.json.tmp-123-abcd`), '{');
    await writeFile(join(dir, 'partial', `${manifest.sha256}.json.tmp-9-ff`), '{');
    await writeFile(join(dir, 'partial', `${other}.part`), 'no manifest for me');

    await open();
    assert.deepEqual(await readdir(join(dir, 'images')), []);
    assert.deepEqual((await readdir(join(dir, 'partial'))).sort(), [`${manifest.sha256}.json`, `${manifest.sha256}.part`]);
    assert.ok(logs.some((l) => l.includes('stray temp file')));
    assert.ok(logs.some((l) => l.includes(`deleted partial ${other.slice(0, 12)}`)));
  });

  it('commits an already-stored image idempotently', async () => {
    const { data, manifest } = image(2000);
    const store = await open();
    const up1 = await store.beginUpload(manifest);
    await up1.write(0, data);
    const first = await up1.commit();
    const up2 = await store.beginUpload(manifest);
    await up2.write(0, data);
    assert.deepEqual(await up2.commit(), first);
    assert.equal(store.list().length, 1);
    assert.deepEqual(await readdir(join(dir, 'partial')), []);
  });

  it('closes an upload after commit, discard or abandon; discard deletes the partial', async () => {
    const { data, manifest } = image(2000);
    const store = await open();
    const up = await store.beginUpload(manifest);
    await up.write(0, data.subarray(0, 100));
    await up.discard();
    assert.deepEqual(await readdir(join(dir, 'partial')), []);
    await assert.rejects(up.write(100, data.subarray(100, 200)), fwCode('E_UPLINK_STATE'));
    await assert.rejects(up.commit(), fwCode('E_UPLINK_STATE'));
    const fresh = await store.beginUpload(manifest);
    assert.equal(fresh.offset, 0);
    await fresh.abandon();
    await fresh.abandon();
  });

  it('a second beginUpload for the same image supersedes the first and resumes its bytes', async () => {
    const { data, manifest } = image(3000);
    const store = await open();
    const old = await store.beginUpload(manifest);
    await old.write(0, data.subarray(0, 1200));
    const next = await store.beginUpload(manifest);
    assert.equal(next.offset, 1200);
    await assert.rejects(old.write(1200, data.subarray(1200, 1300)), fwCode('E_UPLINK_STATE'));
    await old.discard(); // a no-op now: the partial belongs to `next`
    await writeAll(next, data, 1000);
    await next.commit();
    assert.ok((await store.read(manifest.sha256)).equals(data));
  });

  it('wraps file-system failures as E_STORE_IO with a cause', async () => {
    const file = join(dir, 'not-a-dir');
    await writeFile(file, 'x');
    await assert.rejects(ImageStore.open({ dir: join(file, 'store'), maxImageSize: 1000 }), (err: unknown) => {
      assert.ok(isFwError(err, 'E_STORE_IO'));
      assert.equal((err.cause as NodeJS.ErrnoException).code, 'ENOTDIR');
      return true;
    });
  });
});
