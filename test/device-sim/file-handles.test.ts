import assert from 'node:assert/strict';
import { readFile, readdir, readlink, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { DeviceFiles } from '../../device-sim/bootloader.ts';
import { Flash, InPlaceFile } from '../../device-sim/flash.ts';
import { ReceiveMap, loadProgress, removeProgress, saveProgress } from '../../device-sim/transfer.ts';
import { tempDir } from './helpers.ts';

const NOSYNC = { fsync: false };

/** Descriptors of this process that point into `dir` (Linux /proc; [] elsewhere). */
async function fdsInto(dir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir('/proc/self/fd');
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const n of names) {
    try {
      const target = await readlink(`/proc/self/fd/${n}`);
      if (target.startsWith(dir)) out.push(target);
    } catch {
      // closed meanwhile
    }
  }
  return out;
}

describe('device-sim: kept file descriptors (without fsync)', function () {
  let dir: { path: string; remove(): Promise<void> };
  beforeEach(async () => {
    dir = await tempDir();
  });
  afterEach(async () => dir.remove());

  it('Flash keeps one descriptor across flushes; close() and powerCut() release it; the model is unchanged', async () => {
    const f = new Flash(join(dir.path, 'slot.bin'), 1024, NOSYNC);
    assert.equal(f.isOpen, false);
    f.write(0, Uint8Array.from([1, 2]));
    await f.flush();
    assert.equal(f.isOpen, true);
    f.write(2, Uint8Array.from([3, 4]));
    await f.flush();
    if (process.platform === 'linux') assert.equal((await fdsInto(dir.path)).length, 1, 'one descriptor, not one per flush');
    f.write(4, Uint8Array.from([5]));
    assert.equal(f.powerCut(), 1, 'the pending write is lost');
    assert.equal(f.isOpen, false);
    assert.deepEqual(await fdsInto(dir.path), []);
    assert.deepEqual(await f.read(), Uint8Array.from([1, 2, 3, 4]));
    f.write(0, Uint8Array.from([9]));
    await f.flush(); // reopens after a close
    assert.deepEqual(await f.read(), Uint8Array.from([9, 2, 3, 4]));
    f.close();
    f.close(); // idempotent
    assert.equal(f.isOpen, false);
    await f.erase();
    assert.equal(await f.size(), 0);
    f.close();
    assert.deepEqual(await fdsInto(dir.path), []);
  });

  it('Flash with fsync keeps no descriptor', async () => {
    const f = new Flash(join(dir.path, 'slot.bin'), 1024, { fsync: true });
    f.write(0, Uint8Array.from([1]));
    await f.flush();
    await f.erase();
    assert.equal(f.isOpen, false);
  });

  it('InPlaceFile: writes nothing when the file is missing, keeps its descriptor otherwise, close() releases it', async () => {
    const p = join(dir.path, 'transfer.json');
    const file = new InPlaceFile(p, NOSYNC);
    assert.equal(await file.overwrite(Buffer.from('abc')), false);
    assert.equal(file.isOpen, false);
    const meta = { name: 'fw', version: '1.0.0', size: 4096, crc32: 1, sha256: 'a'.repeat(64) };
    const m = new ReceiveMap(4096, 1024);
    const len = await saveProgress(p, { slot: 'b', meta, map: m }, NOSYNC, undefined, file);
    assert.equal(file.isOpen, false, 'a replace keeps no descriptor');
    m.add(0);
    assert.equal(await saveProgress(p, { slot: 'b', meta, map: m }, NOSYNC, len, file), len);
    assert.equal(file.isOpen, true);
    m.add(1);
    await saveProgress(p, { slot: 'b', meta, map: m }, NOSYNC, len, file);
    assert.deepEqual((await loadProgress(p, 'b', meta.sha256))?.map.held, 2, 'the in-place write reaches the file');
    // A replace (other length) closes the kept descriptor first, so later writes go to the new file.
    const len2 = await saveProgress(p, { slot: 'b', meta, map: m.rechunk(512) }, NOSYNC, len, file);
    assert.notEqual(len2, len);
    assert.equal(file.isOpen, false);
    const m2 = m.rechunk(512);
    m2.add(7);
    assert.equal(await saveProgress(p, { slot: 'b', meta, map: m2 }, NOSYNC, len2, file), len2);
    assert.equal((await loadProgress(p, 'b', meta.sha256))?.map.held, 5);
    await removeProgress(p, NOSYNC, file);
    assert.equal(file.isOpen, false);
    assert.deepEqual(await fdsInto(dir.path), []);
    await assert.rejects(readFile(p), { code: 'ENOENT' });
  });

  it('InPlaceFile: a file removed behind its back is not resurrected after close()', async () => {
    const p = join(dir.path, 'transfer.json');
    const file = new InPlaceFile(p, NOSYNC);
    const meta = { name: 'fw', version: '1.0.0', size: 2048, crc32: 1, sha256: 'b'.repeat(64) };
    const m = new ReceiveMap(2048, 1024);
    const len = await saveProgress(p, { slot: 'a', meta, map: m }, NOSYNC);
    m.add(0);
    await saveProgress(p, { slot: 'a', meta, map: m }, NOSYNC, len, file);
    file.close();
    await unlink(p);
    assert.equal(await file.overwrite(Buffer.alloc(len)), false);
    await assert.rejects(readFile(p), { code: 'ENOENT' });
  });

  it('DeviceFiles: close() and powerCut() leave no descriptor open', async () => {
    const files = new DeviceFiles(dir.path, 4096, NOSYNC);
    files.flash('a').write(0, Uint8Array.from([1]));
    files.flash('b').write(0, Uint8Array.from([2]));
    await files.flash('a').flush();
    await files.flash('b').flush();
    assert.equal(files.openFiles, 2);
    files.close();
    assert.equal(files.openFiles, 0);
    assert.deepEqual(await fdsInto(dir.path), []);
    files.flash('b').write(1, Uint8Array.from([3]));
    await files.flash('b').flush();
    files.flash('b').write(2, Uint8Array.from([4]));
    assert.equal(files.powerCut(), 1);
    assert.equal(files.openFiles, 0);
    assert.deepEqual(await fdsInto(dir.path), []);
    assert.deepEqual(await files.flash('b').read(), Uint8Array.from([2, 3]));
  });
});
