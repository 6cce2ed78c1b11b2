import assert from 'node:assert/strict';
import { readdirSync, readlinkSync } from 'node:fs';
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageStore, type StoreOptions } from '../../gateway/store.ts';
import { isFwError } from '../../protocol/errors.ts';
import { manifestForImage, type Manifest } from '../../protocol/manifest.ts';
import { FaultyFs } from '../helpers/fs-faults-promises.ts';

/**
 * gateway/store.ts when the file system fails (test/helpers/fs-faults-promises.ts injects the errno): every
 * failure is E_STORE_IO naming the operation and the file, with the errno as its cause; what the
 * store keeps afterwards (an I/O error is not rot: the image stays; a failed write falls back to what
 * the file holds); files are closed on every path; a short writev is completed.
 */

const image = (n: number, seed: number): { bytes: Buffer; manifest: Manifest } => {
  const bytes = Buffer.from(Uint8Array.from({ length: n }, (_, i) => (i * seed + 11) & 0xff));
  return { bytes, manifest: manifestForImage(bytes, { name: 'fw', version: `2.${seed}.0`, hw: ['sensor-v1'], chunk: 1024 }) };
};

/** E_STORE_IO with exactly this message and an errno cause `code`. */
const storeIo = (message: string, code = 'EIO') => (err: unknown): boolean => {
  assert.ok(isFwError(err, 'E_STORE_IO'), `expected E_STORE_IO, got ${String(err)}`);
  assert.equal(err.message, message);
  assert.equal((err.cause as NodeJS.ErrnoException).code, code);
  return true;
};

/** Paths of this process's open file descriptors under `dir`. */
const openFilesUnder = (dir: string): string[] => readdirSync('/proc/self/fd').flatMap((fd) => {
  try {
    const target = readlinkSync(`/proc/self/fd/${fd}`);
    return target.startsWith(dir) ? [target] : [];
  } catch {
    return [];
  }
});

describe('gateway/store: file-system failures', () => {
  let dir: string;
  let logs: string[];
  let faults: FaultyFs;
  const open = (over: Partial<StoreOptions> = {}): Promise<ImageStore> =>
    ImageStore.open({ dir, maxImageSize: 1 << 20, logger: (l) => logs.push(l), ...over });
  const stored = async (s: ImageStore, img: { bytes: Buffer; manifest: Manifest }): Promise<void> => {
    const up = await s.beginUpload(img.manifest);
    await up.write(0, img.bytes);
    await up.commit();
  };
  const at = (...parts: string[]): string => join(dir, ...parts);
  const is = (p: string) => (x: string): boolean => x === p;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fwgate-store-f-'));
    logs = [];
    faults = await FaultyFs.install();
  });
  afterEach(async () => {
    faults.restore();
    await rm(dir, { recursive: true, force: true });
  });

  describe('at open()', () => {
    it('its folders cannot be created: create <dir> failed', async () => {
      faults.fail({ op: 'mkdir', path: is(at('images')) });
      await assert.rejects(open(), storeIo(`image store: create ${dir} failed`));
    });

    it('images/ or partial/ cannot be listed: list <folder> failed', async () => {
      faults.fail({ op: 'readdir', path: is(at('images')), times: 1 });
      await assert.rejects(open(), storeIo(`image store: list ${at('images')} failed`));
      faults.fail({ op: 'readdir', path: is(at('partial')), times: 1 });
      await assert.rejects(open(), storeIo(`image store: list ${at('partial')} failed`));
      await open();
    });

    it('a stray temp file or an unusable partial that cannot be deleted: delete <name> / delete partial <sha> failed', async () => {
      await open();
      const temp = `${'cd'.repeat(32)}.json.tmp-1-ab`;
      await writeFile(at('images', temp), '{');
      faults.fail({ op: 'unlink', path: is(at('images', temp)), times: 1 });
      await assert.rejects(open(), storeIo(`image store: delete ${temp} failed`));
      await open();
      assert.deepEqual(await readdir(at('images')), [], 'deleted at the next open');

      const sha = 'ef'.repeat(32);
      await writeFile(at('partial', `${sha}.part`), 'no manifest');
      faults.fail({ op: 'unlink', path: is(at('partial', `${sha}.part`)), times: 1 });
      await assert.rejects(open(), storeIo(`image store: delete partial ${sha} failed`));
    });

    it('partial/ cannot be fsynced after the clean-up: sync <partial> failed', async () => {
      await open();
      faults.fail({ op: 'open', path: is(at('partial')), times: 1 });
      await assert.rejects(open(), storeIo(`image store: sync ${at('partial')} failed`));
    });

    it('a stored image whose .bin is gone or unreadable is quarantined, the log naming the failed operation', async () => {
      const a = image(3000, 3);
      const b = image(2000, 5);
      const s = await open();
      await stored(s, a);
      await stored(s, b);
      await rm(at('images', `${a.manifest.sha256}.bin`));
      faults.fail({ op: 'open', path: is(at('images', `${b.manifest.sha256}.bin`)), times: 1 });
      const again = await open();
      assert.deepEqual(again.list(), []);
      assert.ok(logs.includes(`store: quarantined image ${a.manifest.sha256}: E_STORE_IO: image store: stat ${at('images', `${a.manifest.sha256}.bin`)} failed`), logs.join('\n'));
      assert.ok(logs.includes(`store: quarantined image ${b.manifest.sha256}: E_STORE_IO: image store: read ${at('images', `${b.manifest.sha256}.bin`)} failed`), logs.join('\n'));
    });

    it('a file that cannot be moved to quarantine is logged and left, never served; a missing one is not worth a line', async () => {
      const a = image(3000, 3);
      const s = await open();
      await stored(s, a);
      const bin = at('images', `${a.manifest.sha256}.bin`);
      const json = at('images', `${a.manifest.sha256}.json`);
      await writeFile(bin, Buffer.alloc(3000));
      faults.fail({ op: 'rename', path: is(bin), code: 'EXDEV' });
      logs.length = 0;
      const again = await open();
      assert.equal(again.has(a.manifest.sha256), false, 'not served');
      assert.ok(logs.some((l) => l.startsWith(`store: could not move ${bin} to quarantine: EXDEV: injected fault`)), logs.join('\n'));
      assert.ok(!logs.some((l) => l.includes(`could not move ${json}`)), 'the manifest moved');
      assert.deepEqual((await readdir(at('images'))), [`${a.manifest.sha256}.bin`]);

      // an image without its manifest: the manifest is simply not there to move
      faults.restore();
      logs.length = 0;
      await open();
      assert.ok(logs.some((l) => l.startsWith(`store: quarantined image ${a.manifest.sha256}: E_STORE_IO: manifest ${json} unreadable`)), logs.join('\n'));
      assert.ok(!logs.some((l) => l.includes('could not move')), logs.join('\n'));
      assert.deepEqual(await readdir(at('images')), []);
    });
  });

  describe('serving', () => {
    it('read(): an I/O error is E_STORE_IO (read <path> failed), not rot: the image stays and reads again', async () => {
      const a = image(3000, 3);
      const s = await open();
      await stored(s, a);
      const bin = at('images', `${a.manifest.sha256}.bin`);
      faults.fail({ op: 'readFile', path: is(bin), times: 1 });
      await assert.rejects(s.read(a.manifest.sha256), storeIo(`image store: read ${bin} failed`));
      assert.equal(s.has(a.manifest.sha256), true);
      assert.deepEqual(await readdir(at('quarantine')), []);
      assert.ok((await s.read(a.manifest.sha256)).equals(a.bytes));
    });

    it('verify(): an I/O error is E_STORE_IO (read <path> failed), not rot: the copy is kept, not quarantined, and verifies once the disk reads again', async () => {
      const a = image(3000, 3);
      const s = await open();
      await stored(s, a);
      const bin = at('images', `${a.manifest.sha256}.bin`);
      faults.fail({ op: 'open', path: is(bin), times: 1 });
      await assert.rejects(s.verify(a.manifest.sha256), storeIo(`image store: read ${bin} failed`));
      assert.equal(s.has(a.manifest.sha256), true);
      assert.deepEqual(await readdir(at('quarantine')), []);
      assert.ok(!logs.some((l) => l.includes('quarantined')), logs.join('\n'));
      assert.equal(await s.verify(a.manifest.sha256), true);
    });

    it('adoptManifest(): the new manifest cannot be written: store manifest <sha> failed, the old one stays', async () => {
      const a = image(3000, 3);
      const s = await open();
      await stored(s, a);
      faults.fail({ op: 'open', path: (p) => p.startsWith(at('images', `${a.manifest.sha256}.json.tmp-`)) });
      await assert.rejects(s.adoptManifest({ ...a.manifest, version: '9.9.9' }), storeIo(`image store: store manifest ${a.manifest.sha256} failed`));
      assert.equal(s.get(a.manifest.sha256)?.manifest.version, a.manifest.version);
    });
  });

  describe('uploads', () => {
    it('the partial cannot be opened or made durable: open partial <path> failed, and no file is left open', async () => {
      const a = image(3000, 3);
      const s = await open();
      const part = at('partial', `${a.manifest.sha256}.part`);
      faults.fail({ op: 'open', path: is(part), times: 1 });
      await assert.rejects(s.beginUpload(a.manifest), storeIo(`image store: open partial ${part} failed`));
      faults.fail({ op: 'open', path: is(at('partial')), times: 1 });
      await assert.rejects(s.beginUpload(a.manifest), storeIo(`image store: open partial ${part} failed`));
      assert.deepEqual(openFilesUnder(dir), [], 'the partial opened before the failure is closed');
      const up = await s.beginUpload(a.manifest);
      await up.write(0, a.bytes);
      await up.commit();
      assert.deepEqual(openFilesUnder(dir), [], 'closed after the commit');
    });

    it('a failed write is E_STORE_IO (write <path> failed); the offset falls back to what the file holds and the upload carries on from there', async () => {
      const a = image(10_000, 3);
      const s = await open({ syncEveryBytes: 4000 });
      const part = at('partial', `${a.manifest.sha256}.part`);
      const up = await s.beginUpload(a.manifest);
      await up.write(0, a.bytes.subarray(0, 4000));
      await up.write(4000, a.bytes.subarray(4000, 6000));
      assert.equal(up.offset, 6000);
      faults.fail({ op: 'writev', path: is(part), times: 1 });
      await assert.rejects(up.write(6000, a.bytes.subarray(6000, 8000)), storeIo(`image store: write ${part} failed`));
      assert.equal(up.offset, 4000, 'the gathered bytes are dropped');
      assert.equal((await stat(part)).size, 4000);
      await up.write(4000, a.bytes.subarray(4000));
      await up.commit();
      assert.ok((await s.read(a.manifest.sha256)).equals(a.bytes));
    });

    it('short writevs are completed a write at a time, each at its own position', async () => {
      const a = image(50_000, 7);
      const s = await open({ syncEveryBytes: 16 * 1024 });
      faults.shortWrites(1000);
      const up = await s.beginUpload(a.manifest);
      for (let o = 0; o < a.bytes.length; o += 5000) await up.write(o, a.bytes.subarray(o, o + 5000));
      await up.commit();
      assert.ok(faults.shortened > 0, 'the writevs did come back short');
      faults.restore();
      assert.ok((await s.read(a.manifest.sha256)).equals(a.bytes));
    });

    it('the partial cannot be made durable when closed: sync <path> failed, and the file is closed anyway', async () => {
      const a = image(3000, 3);
      const s = await open();
      const part = at('partial', `${a.manifest.sha256}.part`);
      const up = await s.beginUpload(a.manifest);
      await up.write(0, a.bytes.subarray(0, 1000));
      faults.fail({ op: 'sync', path: is(part), times: 1 });
      await assert.rejects(up.abandon(), storeIo(`image store: sync ${part} failed`));
      assert.deepEqual(openFilesUnder(dir), []);
    });

    it('commit: the partial cannot be read back: re-read <path> failed; a bad partial that cannot be deleted: delete partial <path> failed', async () => {
      const a = image(3000, 3);
      const s = await open();
      const part = at('partial', `${a.manifest.sha256}.part`);
      let up = await s.beginUpload(a.manifest);
      await up.write(0, a.bytes);
      faults.fail({ op: 'open', path: is(part), times: 1 });
      await assert.rejects(up.commit(), storeIo(`image store: re-read ${part} failed`));
      assert.equal(s.has(a.manifest.sha256), false);

      up = await s.beginUpload(a.manifest);
      await writeFile(part, Buffer.alloc(3000));
      faults.fail({ op: 'unlink', path: is(part), times: 1 });
      await assert.rejects(up.commit(), storeIo(`image store: delete partial ${part} failed`));
    });

    it('commit: the image cannot be moved into place: store image <sha> failed, nothing stored', async () => {
      const a = image(3000, 3);
      const s = await open();
      const up = await s.beginUpload(a.manifest);
      await up.write(0, a.bytes);
      faults.fail({ op: 'rename', path: is(at('images', `${a.manifest.sha256}.bin`)) });
      await assert.rejects(up.commit(), storeIo(`image store: store image ${a.manifest.sha256} failed`));
      assert.equal(s.has(a.manifest.sha256), false);
    });

    it('commit of an image already stored: the duplicate partial cannot be deleted: delete partial <path> failed', async () => {
      const a = image(3000, 3);
      const s = await open();
      await stored(s, a);
      const part = at('partial', `${a.manifest.sha256}.part`);
      const up = await s.beginUpload(a.manifest);
      await up.write(0, a.bytes);
      faults.fail({ op: 'unlink', path: is(part) });
      await assert.rejects(up.commit(), storeIo(`image store: delete partial ${part} failed`));
    });

    it('discard: only a missing partial is fine; another unlink error is delete partial <path> failed', async () => {
      const a = image(3000, 3);
      const s = await open();
      const part = at('partial', `${a.manifest.sha256}.part`);
      let up = await s.beginUpload(a.manifest);
      await rm(part);
      await up.discard();
      up = await s.beginUpload(a.manifest);
      faults.fail({ op: 'unlink', path: is(part), code: 'EBUSY' });
      await assert.rejects(up.discard(), storeIo(`image store: delete partial ${part} failed`, 'EBUSY'));
    });
  });
});
