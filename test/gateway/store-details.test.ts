import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageStore, type StoreOptions } from '../../gateway/store.ts';
import { isFwError } from '../../protocol/errors.ts';
import { manifestForImage, type Manifest } from '../../protocol/manifest.ts';

/**
 * gateway/store.ts in detail: the order of list(), what read() refuses, the size limit's edge,
 * the files start-up ignores or deletes and what it says about them, and the log lines an operator
 * reads (docs/operations.md "Image store"). Complements test/gateway/store.test.ts.
 */

const image = (n: number, seed: number): { bytes: Buffer; manifest: Manifest } => {
  const bytes = Buffer.from(Uint8Array.from({ length: n }, (_, i) => (i * seed + 7) & 0xff));
  return { bytes, manifest: manifestForImage(bytes, { name: 'fw', version: `1.${seed}.0`, hw: ['sensor-v1'], chunk: 1024 }) };
};

describe('gateway/store: details', () => {
  let dir: string;
  let logs: string[];
  let clock: number;
  const open = (over: Partial<StoreOptions> = {}): Promise<ImageStore> =>
    ImageStore.open({ dir, maxImageSize: 64 * 1024, logger: (l) => logs.push(l), now: () => new Date(clock), ...over });
  const store = async (s: ImageStore, img: { bytes: Buffer; manifest: Manifest }): Promise<void> => {
    const up = await s.beginUpload(img.manifest);
    await up.write(0, img.bytes);
    await up.commit();
  };

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fwgate-store-d-'));
    logs = [];
    clock = Date.parse('2026-11-22T10:00:00Z');
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('list() is oldest first; dir is the folder given; the log says what was stored, and how many verified at the next open', async () => {
    const s = await open();
    assert.equal(s.dir, dir);
    const a = image(3000, 3);
    const b = image(2000, 5);
    clock += 60_000;
    await store(s, b);
    clock -= 120_000;
    await store(s, a);
    assert.deepEqual(s.list().map((i) => i.manifest.sha256), [a.manifest.sha256, b.manifest.sha256], 'by storedAt, not by insertion');
    assert.ok(logs.includes(`store: stored fw 1.3.0 (3000 bytes, ${a.manifest.sha256.slice(0, 12)})`), logs.join('\n'));
    logs.length = 0;
    const again = await open();
    assert.deepEqual(again.list().map((i) => i.manifest.sha256), [a.manifest.sha256, b.manifest.sha256]);
    assert.ok(logs.includes('store: 2 image(s) verified'), logs.join('\n'));
    logs.length = 0;
    await open({ dir: join(dir, 'empty') });
    assert.ok(!logs.some((l) => /image\(s\) verified/.test(l)), 'nothing to say about an empty store');
  });

  it('read(): E_IMAGE_NOT_FOUND naming the image; a file changed under the store gives E_IMAGE_CORRUPT, its E_IMAGE_SIZE cause naming both sizes', async () => {
    const s = await open();
    const a = image(3000, 3);
    await store(s, a);
    assert.equal((await s.read(a.manifest.sha256)).length, 3000);
    await assert.rejects(s.read('ab'.repeat(32)), (err: unknown) => isFwError(err, 'E_IMAGE_NOT_FOUND')
      && err.message === `image ${'ab'.repeat(32)} is not in the store` && (err.details as { sha256: string }).sha256 === 'ab'.repeat(32));
    await truncate(join(dir, 'images', `${a.manifest.sha256}.bin`), 100);
    await assert.rejects(s.read(a.manifest.sha256), (err: unknown) => isFwError(err, 'E_IMAGE_CORRUPT')
      && err.message.startsWith(`stored copy of image ${a.manifest.sha256} is corrupt (`) && err.message.endsWith('; quarantined: re-push the image')
      && isFwError(err.cause, 'E_IMAGE_SIZE') && JSON.stringify(err.cause.details) === JSON.stringify({ expected: 3000, actual: 100 }));
  });

  it('the size limit: exactly maxImageSize is accepted, one byte more is E_IMAGE_TOO_LARGE naming both', async () => {
    const s = await open({ maxImageSize: 2000 });
    const ok = image(2000, 3);
    await (await s.beginUpload(ok.manifest)).discard();
    const big = image(2001, 5);
    await assert.rejects(s.beginUpload(big.manifest), (err: unknown) => isFwError(err, 'E_IMAGE_TOO_LARGE')
      && err.message === 'image is 2001 bytes, the store accepts at most 2000');
  });

  it('a resumed upload is logged with its offset; a duplicate upload of a stored image is discarded and said so', async () => {
    const s = await open();
    const a = image(3000, 3);
    const up = await s.beginUpload(a.manifest);
    await up.write(0, a.bytes.subarray(0, 1000));
    await up.abandon();
    logs.length = 0;
    const again = await s.beginUpload(a.manifest);
    assert.equal(again.offset, 1000);
    assert.ok(logs.includes(`store: resuming upload ${a.manifest.sha256.slice(0, 12)} at 1000/3000`), logs.join('\n'));
    await again.write(1000, a.bytes.subarray(1000));
    await again.commit();
    logs.length = 0;
    const fresh = await s.beginUpload(a.manifest);
    assert.ok(!logs.some((l) => l.includes('resuming upload')), 'a new upload from 0 is not a resume');
    await fresh.write(0, a.bytes);
    await fresh.commit();
    assert.ok(logs.includes(`store: image ${a.manifest.sha256.slice(0, 12)} already stored; discarded the duplicate upload`), logs.join('\n'));
    assert.deepEqual(await readdir(join(dir, 'partial')), [], 'the duplicate\'s partial is gone');
  });

  it('start-up: names that only resemble an image or a partial are ignored and said so; partials it cannot use are deleted with the reason', async () => {
    let s = await open();
    const a = image(3000, 3);
    await store(s, a);
    const sha = a.manifest.sha256;
    const other = image(1000, 9).manifest;
    // look-alikes: a prefix, a suffix
    await writeFile(join(dir, 'images', `x${sha}.bin`), 'x');
    await writeFile(join(dir, 'images', `${sha}.binx`), 'x');
    await writeFile(join(dir, 'partial', `x${other.sha256}.part`), 'x');
    // a partial of an image already stored; a partial whose manifest names another image
    await writeFile(join(dir, 'partial', `${sha}.part`), 'x');
    await writeFile(join(dir, 'partial', `${sha}.json`), JSON.stringify(a.manifest));
    await writeFile(join(dir, 'partial', `${other.sha256}.part`), 'x');
    await writeFile(join(dir, 'partial', `${other.sha256}.json`), JSON.stringify(a.manifest));
    logs.length = 0;
    s = await open();
    assert.equal(s.list().length, 1);
    for (const line of [
      `store: ignoring unexpected file images/x${sha}.bin`,
      `store: ignoring unexpected file images/${sha}.binx`,
      `store: ignoring unexpected file partial/x${other.sha256}.part`,
      `store: deleted partial ${sha.slice(0, 12)}: image already stored`,
      `store: deleted partial ${other.sha256.slice(0, 12)}: manifest names another sha256`,
    ]) assert.ok(logs.includes(line), `${line}\n---\n${logs.join('\n')}`);
    assert.deepEqual((await readdir(join(dir, 'partial'))).sort(), [`x${other.sha256}.part`], 'only the look-alike is left');
    const check = createHash('sha256').update(await s.read(sha)).digest('hex');
    assert.equal(check, sha);
  });
});
