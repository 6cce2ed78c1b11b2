import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageStore, type StoreOptions } from '../../gateway/store.ts';
import { isFwError } from '../../protocol/errors.ts';
import { hex32, manifestForImage, type Manifest } from '../../protocol/manifest.ts';
import { CrashRecorder } from '../helpers/crash-fs.ts';

/**
 * gateway/store.ts at its edges: adoptManifest's refusals and when it rewrites, what start-up says
 * about each kind of rotten stored image (code and message in the log), quarantine names, the
 * messages of an upload's refusals, uploads begun back to back or during a commit, and the sync
 * interval's boundary (a block is written and made durable the moment it is full).
 * Complements test/gateway/store.test.ts and store-details.test.ts.
 */

const image = (n: number, seed: number): { bytes: Buffer; manifest: Manifest } => {
  const bytes = Buffer.from(Uint8Array.from({ length: n }, (_, i) => (i * seed + 5) & 0xff));
  return { bytes, manifest: manifestForImage(bytes, { name: 'fw', version: `3.${seed}.0`, hw: ['sensor-v1'], chunk: 1024 }) };
};
const short = (sha: string): string => sha.slice(0, 12);

describe('gateway/store: edges', () => {
  let dir: string;
  let logs: string[];
  const NOW = Date.parse('2026-11-22T10:00:00Z');
  const open = (over: Partial<StoreOptions> = {}): Promise<ImageStore> =>
    ImageStore.open({ dir, maxImageSize: 1 << 20, logger: (l) => logs.push(l), now: () => new Date(NOW), ...over });
  const stored = async (s: ImageStore, img: { bytes: Buffer; manifest: Manifest }): Promise<void> => {
    const up = await s.beginUpload(img.manifest);
    await up.write(0, img.bytes);
    await up.commit();
  };
  const at = (...parts: string[]): string => join(dir, ...parts);
  const logged = (line: string): void => assert.ok(logs.includes(line), `${line}\n--- log:\n${logs.join('\n')}`);

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fwgate-store-e-'));
    logs = [];
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  describe('adoptManifest()', () => {
    it('refuses an image it does not hold, and a manifest whose CRC-32 differs even at the same size, naming both', async () => {
      const a = image(3000, 3);
      const s = await open();
      await stored(s, a);
      const other = image(3000, 9).manifest;
      await assert.rejects(s.adoptManifest(other), (err: unknown) => isFwError(err, 'E_IMAGE_NOT_FOUND')
        && err.message === `image ${other.sha256} is not in the store` && JSON.stringify(err.details) === JSON.stringify({ sha256: other.sha256 }));
      const crc = (a.manifest.crc32 ^ 1) >>> 0;
      await assert.rejects(s.adoptManifest({ ...a.manifest, crc32: crc }), (err: unknown) => isFwError(err, 'E_MANIFEST_INVALID')
        && err.message === `manifest for ${a.manifest.sha256} gives size 3000 / CRC ${crc}, the stored image has 3000 / ${a.manifest.crc32}`);
      assert.deepEqual(s.get(a.manifest.sha256)?.manifest, a.manifest);
    });

    it('the same manifest again is neither rewritten nor logged; a new one is, with its seq when it has one', async () => {
      const a = image(3000, 3);
      const s = await open();
      await stored(s, a);
      const json = at('images', `${a.manifest.sha256}.json`);
      const ino = (await stat(json)).ino;
      logs.length = 0;
      assert.deepEqual((await s.adoptManifest({ ...a.manifest })).manifest, a.manifest);
      assert.equal((await stat(json)).ino, ino, 'the file is left as it is');
      assert.deepEqual(logs, []);
      await s.adoptManifest({ ...a.manifest, version: '3.4.0', seq: 7 });
      logged(`store: image ${short(a.manifest.sha256)} now goes with fw 3.4.0 seq 7`);
      await s.adoptManifest({ ...a.manifest, version: '3.5.0' });
      logged(`store: image ${short(a.manifest.sha256)} now goes with fw 3.5.0`);
      assert.equal(JSON.parse(await readFile(json, 'utf8')).version, '3.5.0');
    });
  });

  describe('rotten stored images', () => {
    it('start-up logs each kind of rot with its code and what is wrong', async () => {
      const s = await open();
      const imgs = [image(3000, 3), image(3000, 5), image(3000, 7), image(3000, 11)];
      for (const i of imgs) await stored(s, i);
      const [badJson, otherSha, shortBin, distrusted] = imgs.map((i) => i.manifest.sha256) as [string, string, string, string];
      const json = (sha: string): string => at('images', `${sha}.json`);
      await writeFile(json(badJson), '{"name": "fw",');
      await writeFile(json(otherSha), JSON.stringify(imgs[0]!.manifest));
      await writeFile(at('images', `${shortBin}.bin`), imgs[2]!.bytes.subarray(0, 2999));
      logs.length = 0;
      const again = await open({ checkManifest: (m) => (m.sha256 === distrusted ? 'signed by an unknown key' : undefined) });
      assert.deepEqual(again.list(), []);
      logged(`store: quarantined image ${badJson}: E_MANIFEST_INVALID: manifest ${json(badJson)} is not valid JSON`);
      logged(`store: quarantined image ${otherSha}: E_MANIFEST_INVALID: manifest ${json(otherSha)} names sha256 ${badJson}`);
      logged(`store: quarantined image ${shortBin}: E_IMAGE_SIZE: image is 2999 bytes, manifest says 3000`);
      logged(`store: quarantined image ${distrusted}: E_MANIFEST_SIGNATURE: manifest ${json(distrusted)}: signed by an unknown key`);
    });

    it('read() of a rotten copy: logged with the check that failed, both files quarantined; two reads at once both refuse it, one quarantine', async () => {
      const a = image(3000, 3);
      const s = await open();
      await stored(s, a);
      const sha = a.manifest.sha256;
      const rotten = Buffer.from(a.bytes);
      rotten[100]! ^= 0x40;
      await writeFile(at('images', `${sha}.bin`), rotten);
      logs.length = 0;
      const reads = await Promise.allSettled([s.read(sha), s.read(sha)]);
      for (const r of reads) assert.ok(r.status === 'rejected' && isFwError(r.reason, 'E_IMAGE_CORRUPT'), String(r.status === 'rejected' ? r.reason : r.status));
      const crc = hex32(a.manifest.crc32);
      assert.deepEqual(logs.filter((l) => l.startsWith('store: quarantined')).map((l) => l.replace(/CRC-32 is 0x[0-9a-f]{8}/, 'CRC-32 is X')),
        [`store: quarantined image ${sha}: E_IMAGE_CRC: image CRC-32 is X, manifest says ${crc}`]);
      assert.deepEqual((await readdir(at('quarantine'))).map((n) => n.split('-').pop()).sort(), [`${sha}.bin`, `${sha}.json`]);
      assert.deepEqual(await readdir(at('images')), []);
    });

    it('quarantined files are named by the time they were set aside and never overwrite each other', async () => {
      const a = image(3000, 3);
      const s = await open();
      const sha = a.manifest.sha256;
      for (let round = 0; round < 2; round++) {
        await stored(s, a);
        await writeFile(at('images', `${sha}.bin`), Buffer.alloc(3000));
        assert.equal(await s.verify(sha), false);
      }
      const names = (await readdir(at('quarantine'))).sort();
      assert.equal(names.length, 4, names.join(', '));
      for (const n of names) assert.match(n, new RegExp(`^2026-11-22T10-00-00-000Z-[0-9a-f]{6}-${sha}\\.(bin|json)$`));
    });
  });

  describe('start-up and partials', () => {
    it('a partial without a manifest is deleted with the reason; a name with a suffix is only ignored', async () => {
      await open();
      const sha = 'ab'.repeat(32);
      await writeFile(at('partial', `${sha}.part`), 'x');
      await writeFile(at('partial', `${sha}.partx`), 'x');
      logs.length = 0;
      await open();
      assert.ok(logs.some((l) => l.startsWith(`store: deleted partial ${short(sha)}: no usable manifest (ENOENT: no such file or directory`)), logs.join('\n'));
      logged(`store: ignoring unexpected file partial/${sha}.partx`);
      assert.deepEqual(await readdir(at('partial')), [`${sha}.partx`]);
    });

    it('a resume with the same manifest leaves the partial\'s manifest file as it is; another manifest for the same image replaces it', async () => {
      const a = image(3000, 3);
      const s = await open();
      const meta = at('partial', `${a.manifest.sha256}.json`);
      let up = await s.beginUpload(a.manifest);
      await up.write(0, a.bytes.subarray(0, 1000));
      await up.abandon();
      const ino = (await stat(meta)).ino;
      up = await s.beginUpload({ ...a.manifest });
      assert.equal(up.offset, 1000);
      await up.abandon();
      assert.equal((await stat(meta)).ino, ino);
      up = await s.beginUpload({ ...a.manifest, version: '3.3.1' });
      await up.abandon();
      assert.equal(JSON.parse(await readFile(meta, 'utf8')).version, '3.3.1');
    });
  });

  describe('an upload\'s refusals and its successors', () => {
    it('says which offset it expected, how far the data goes, and that it is closed', async () => {
      const a = image(3000, 3);
      const s = await open();
      const up = await s.beginUpload(a.manifest);
      await up.write(0, a.bytes.subarray(0, 1000));
      await assert.rejects(up.write(1500, a.bytes.subarray(1500, 2000)), (err: unknown) => isFwError(err, 'E_UPLINK_OFFSET')
        && err.message === 'data at offset 1500, expected 1000');
      await assert.rejects(up.write(1000, Buffer.alloc(2001)), (err: unknown) => isFwError(err, 'E_IMAGE_SIZE')
        && err.message === 'data up to 3001 exceeds the image size 3000');
      await up.discard();
      await assert.rejects(up.write(1000, Buffer.alloc(1)), (err: unknown) => isFwError(err, 'E_UPLINK_STATE')
        && err.message === `upload of ${short(a.manifest.sha256)} is closed`);
    });

    it('uploads begun back to back: each supersedes the one before (said so); only the last takes data', async () => {
      const a = image(3000, 3);
      const s = await open();
      const p1 = s.beginUpload(a.manifest);
      const p2 = s.beginUpload(a.manifest);
      const up1 = await p1;
      for (let i = 0; i < 10; i++) await Promise.resolve(); // the first begin's bookkeeping settles; the second is still opening
      const p3 = s.beginUpload(a.manifest);
      const [up2, up3] = await Promise.all([p2, p3]);
      const superseded = `upload of ${short(a.manifest.sha256)} was superseded by a newer one`;
      for (const old of [up1, up2]) {
        await assert.rejects(old.write(0, a.bytes.subarray(0, 10)), (err: unknown) => isFwError(err, 'E_UPLINK_STATE') && err.message === superseded);
      }
      assert.equal(logs.filter((l) => l === `store: upload ${short(a.manifest.sha256)} superseded by a new beginUpload; resuming its partial`).length, 2);
      await up3.write(0, a.bytes);
      await up3.commit();
      logs.length = 0;
      const after = await s.beginUpload(a.manifest);
      await after.abandon();
      await (await s.beginUpload(a.manifest)).discard();
      assert.ok(!logs.some((l) => l.includes('superseded')), `a closed upload is not superseded:\n${logs.join('\n')}`);
    });

    it('an upload begun while a commit of the same image is under way waits for it, and opens afresh', async () => {
      const a = image(8000, 3);
      const s = await open({ syncEveryBytes: 4000 });
      const up = await s.beginUpload(a.manifest);
      const writing = up.write(0, a.bytes); // a block to write: the commit waits behind it
      const committing = up.commit();
      const next = s.beginUpload(a.manifest);
      await writing;
      assert.equal((await committing).manifest.sha256, a.manifest.sha256);
      const fresh = await next;
      assert.equal(fresh.offset, 0);
      await fresh.discard();
      assert.ok((await s.read(a.manifest.sha256)).equals(a.bytes));
    });
  });

  describe('the sync interval', () => {
    it('by default 256 KiB: small writes reach the file when 256 KiB have gathered, not before', async () => {
      const a = image(300 * 1024, 3);
      const s = await open();
      const part = at('partial', `${a.manifest.sha256}.part`);
      const up = await s.beginUpload(a.manifest);
      for (let o = 0; o < 255 * 1024; o += 1024) await up.write(o, a.bytes.subarray(o, o + 1024));
      assert.equal((await stat(part)).size, 0);
      await up.write(255 * 1024, a.bytes.subarray(255 * 1024, 256 * 1024));
      assert.equal((await stat(part)).size, 256 * 1024);
      await up.discard();
    });

    it('a write that fills a block exactly is written and made durable at once: every crash state keeps it', async () => {
      const a = image(10_000, 3);
      await open();
      const rec = new CrashRecorder(dir);
      await rec.start();
      try {
        const s = await open({ syncEveryBytes: 4096 });
        const up = await s.beginUpload(a.manifest);
        await up.write(0, a.bytes.subarray(0, 4096));
        const rel = join('partial', `${a.manifest.sha256}.part`);
        const states = rec.crashStates(rec.ops.length);
        assert.ok(states.length > 0);
        for (const st of states) {
          const part = st.files.get(rel);
          assert.ok(part?.equals(a.bytes.subarray(0, 4096)), `${st.describe}: ${part?.length ?? 'no'} bytes`);
        }
        await up.discard();
      } finally {
        rec.stop();
      }
    });
  });
});
