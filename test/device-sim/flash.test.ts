import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, readdir, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MAX_ACK_MISSING } from '../../protocol/limits.ts';
import { DeviceFiles, PowerLost, runBootloader, type BootInput } from '../../device-sim/bootloader.ts';
import { Flash, readJson, recoverAtomic, writeJsonAtomic } from '../../device-sim/flash.ts';
import { ReceiveMap, loadProgress, saveProgress } from '../../device-sim/transfer.ts';
import { makeSampleImage } from '../../firmware-samples/image-format.ts';
import { tempDir } from './helpers.ts';

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

describe('device-sim: flash, slot state, bootloader', function () {
  let dir: { path: string; remove(): Promise<void> };
  beforeEach(async () => {
    dir = await tempDir();
  });
  afterEach(async () => dir.remove());

  describe('Flash', function () {
    it('makes writes durable only on flush; a power cut discards the rest', async () => {
      const f = new Flash(join(dir.path, 'slot.bin'), 1024);
      f.write(0, Uint8Array.from([1, 2, 3, 4]));
      assert.equal((await f.read()).length, 0, 'nothing durable before flush');
      await f.flush();
      f.write(4, Uint8Array.from([5, 6]));
      f.write(0, Uint8Array.from([9]));
      assert.equal(f.pendingWrites, 2);
      assert.equal(f.powerCut(), 2);
      await f.flush();
      assert.deepEqual(await f.read(), Uint8Array.from([1, 2, 3, 4]));
      f.write(2, Uint8Array.from([7]));
      await f.flush();
      assert.deepEqual(await f.read(), Uint8Array.from([1, 2, 7, 4]));
      await f.erase();
      assert.equal(await f.size(), 0);
    });

    it('refuses writes beyond its capacity and copies the data it buffers', async () => {
      const f = new Flash(join(dir.path, 'slot.bin'), 8);
      assert.throws(() => f.write(6, new Uint8Array(3)), RangeError);
      const data = Uint8Array.from([1, 1]);
      f.write(0, data);
      data[0] = 2;
      await f.flush();
      assert.deepEqual(await f.read(), Uint8Array.from([1, 1]));
    });

    it('without fsync (the default for devices): the same model — durable on flush, pending writes lost at a cut', async () => {
      const f = new Flash(join(dir.path, 'sub', 'slot.bin'), 1 << 16, { fsync: false });
      f.write(0, Uint8Array.from([1, 2]));
      f.write(2, Uint8Array.from([3, 4])); // continues the first: one writev
      f.write(8, Uint8Array.from([9]));
      assert.equal((await f.read()).length, 0, 'nothing durable before flush');
      await f.flush();
      assert.deepEqual(await f.read(), Uint8Array.from([1, 2, 3, 4, 0, 0, 0, 0, 9]));
      f.write(0, Uint8Array.from([7]));
      assert.equal(f.powerCut(), 1);
      await f.flush();
      assert.deepEqual((await f.read()).subarray(0, 2), Uint8Array.from([1, 2]), 'the write lost at the cut never reached the file');
      const big = Array.from({ length: 1100 }, (_, i) => Uint8Array.from([i & 0xff])); // more than one writev takes
      big.forEach((b, i) => f.write(i, b));
      await f.flush();
      assert.deepEqual(await f.read(), Uint8Array.from(big.map((b) => b[0]!)));
      await f.erase();
      assert.equal(await f.size(), 0);
    });

    it('writeJsonAtomic: a cut before the rename leaves the old file intact', async () => {
      const p = join(dir.path, 'state.json');
      assert.equal(await writeJsonAtomic(p, { v: 1 }), 'written');
      assert.equal(await writeJsonAtomic(p, { v: 2 }, () => true), 'cut');
      assert.deepEqual(await readJson(p), { v: 1 });
      assert.deepEqual(JSON.parse(await readFile(`${p}.tmp`, 'utf8')), { v: 2 });
      assert.equal(await writeJsonAtomic(p, { v: 3 }), 'written');
      assert.deepEqual(await readJson(p), { v: 3 });
      assert.deepEqual((await readdir(dir.path)).sort(), ['state.json']);
    });
  });

  describe('writeJsonAtomic without fsync (unlink, then rename: no replace)', function () {
    const NOSYNC = { fsync: false };
    const valid = (v: unknown): boolean => typeof v === 'object' && v !== null && 'v' in v;

    it('replaces the file; a cut before the rename leaves the old file', async () => {
      const p = join(dir.path, 'state.json');
      assert.equal(await writeJsonAtomic(p, { v: 1 }, undefined, NOSYNC), 'written');
      assert.equal(await writeJsonAtomic(p, { v: 2 }, undefined, NOSYNC), 'written');
      assert.deepEqual(await readJson(p), { v: 2 });
      assert.equal(await writeJsonAtomic(p, { v: 3 }, () => true, NOSYNC), 'cut');
      assert.deepEqual(await readJson(p), { v: 2 }, 'the old file was not unlinked before the cut point');
      assert.equal(await recoverAtomic(p, valid, NOSYNC), 'none');
      assert.deepEqual(await readdir(dir.path), ['state.json'], 'the abandoned .tmp is removed');
      assert.deepEqual(await readJson(p), { v: 2 });
    });

    it('recoverAtomic: the file missing and a complete .tmp (killed between unlink and rename) → renamed into place', async () => {
      const p = join(dir.path, 'state.json');
      await writeFile(`${p}.tmp`, JSON.stringify({ v: 7 }));
      assert.equal(await recoverAtomic(p, valid, NOSYNC), 'recovered');
      assert.deepEqual(await readJson(p), { v: 7 });
      assert.deepEqual(await readdir(dir.path), ['state.json']);
    });

    it('recoverAtomic: a torn or invalid .tmp with no file is removed, never put in place', async () => {
      const p = join(dir.path, 'state.json');
      await writeFile(`${p}.tmp`, '{"v": 7');
      assert.equal(await recoverAtomic(p, valid, NOSYNC), 'none');
      await writeFile(`${p}.tmp`, '{"w": 1}');
      assert.equal(await recoverAtomic(p, valid, NOSYNC), 'none');
      assert.deepEqual(await readdir(dir.path), []);
    });
  });

  describe('ReceiveMap', function () {
    it('tracks next, gaps and a bad chunk; the last chunk may be short', () => {
      const m = new ReceiveMap(10 * 100 + 50, 100);
      assert.equal(m.count, 11);
      assert.equal(m.lengthOf(10), 50);
      assert.equal(m.next, 0);
      m.add(0);
      m.add(1);
      assert.equal(m.next, 200);
      assert.deepEqual(m.missing(), []);
      assert.deepEqual(m.missing(200), [200], 'a bad chunk at next is named');
      m.add(4);
      assert.deepEqual(m.missing(), [200, 300]);
      assert.deepEqual(m.missing(600), [200, 300, 600]);
      assert.deepEqual(m.missing(400), [200, 300], 'a held chunk is never missing');
      for (const i of [2, 3, 5, 6, 7, 8, 9, 10]) m.add(i);
      assert.equal(m.complete, true);
      assert.equal(m.next, 1050);
      assert.equal(m.add(3), false);
    });

    it('caps missing at MAX_ACK_MISSING entries', () => {
      const m = new ReceiveMap(1000 * 64, 64);
      m.add(999);
      assert.equal(m.missing().length, MAX_ACK_MISSING);
    });

    it('converts holdings to another chunk size and round-trips through the progress file', async () => {
      const m = new ReceiveMap(4096 * 4, 4096);
      m.add(0);
      m.add(2);
      const small = m.rechunk(1024);
      assert.equal(small.next, 4096);
      assert.equal(small.held, 8);
      const big = small.rechunk(8192);
      assert.equal(big.held, 0, 'an 8 KiB chunk is held only when all of it is');
      const p = join(dir.path, 'transfer.json');
      const meta = { name: 'x', version: '1.0.0', size: 4096 * 4, crc32: 5, sha256: 'a'.repeat(64) };
      await saveProgress(p, { slot: 'b', meta, map: m });
      const back = await loadProgress(p, 'b', 'a'.repeat(64));
      assert.ok(back);
      assert.equal(back.map.next, 4096);
      assert.deepEqual(back.map.missing(), [4096]);
      assert.equal(await loadProgress(p, 'a', 'a'.repeat(64)), null, 'progress for another slot is ignored');
      assert.equal(await loadProgress(p, 'b', 'b'.repeat(64)), null, 'progress for another image is ignored');
      await writeFile(p, '{ torn');
      assert.equal(await loadProgress(p, 'b', 'a'.repeat(64)), null);
    });

    it('lists every bad chunk of a batch in missing (one ack answers the batch, §6.6.4)', () => {
      const m = new ReceiveMap(4096 * 8, 4096);
      for (const i of [0, 1, 3, 4]) m.add(i);
      assert.deepEqual(m.missing([4096 * 6, 4096 * 5]), [4096 * 2, 4096 * 5, 4096 * 6], 'the gap, then both bad chunks, sorted');
      assert.deepEqual(m.missing([4096 * 3]), [4096 * 2], 'a chunk held meanwhile is not listed');
      assert.deepEqual(m.missing(4096 * 7), [4096 * 2, 4096 * 7]);
    });

    it('progress saves of one transfer overwrite the file in place; any mix of old and new bytes claims only flushed chunks', async () => {
      const p = join(dir.path, 'transfer.json');
      const meta = { name: 'x', version: '1.0.0', size: 4096 * 40, crc32: 5, sha256: 'a'.repeat(64) };
      const m = new ReceiveMap(meta.size, 4096);
      for (const i of [0, 1, 2, 9]) m.add(i);
      const len = await saveProgress(p, { slot: 'b', meta, map: m }, { fsync: false });
      const before = await readFile(p);
      assert.equal(before.length, len);
      const ino = (await stat(p)).ino;
      for (let i = 3; i < 20; i++) m.add(i);
      assert.equal(await saveProgress(p, { slot: 'b', meta, map: m }, { fsync: false }, len), len);
      const after = await readFile(p);
      assert.equal((await stat(p)).ino, ino, 'the same file, written in place (no temporary file, no rename)');
      assert.deepEqual((await readdir(dir.path)).sort(), ['transfer.json']);
      assert.equal((await loadProgress(p, 'b', meta.sha256))?.map.next, 20 * 4096);
      const heldOf = async (bytes: Buffer): Promise<Set<number>> => {
        await writeFile(p, bytes);
        const back = await loadProgress(p, 'b', meta.sha256);
        assert.ok(back, 'a mix still parses');
        return new Set(Array.from({ length: back.map.count }, (_, i) => i).filter((i) => back.map.has(i)));
      };
      const oldHeld = await heldOf(before);
      const newHeld = await heldOf(after);
      for (let cut = 0; cut <= after.length; cut++) {
        // a write that stopped after `cut` bytes: new bytes before it, old ones after
        const mix = await heldOf(Buffer.concat([after.subarray(0, cut), before.subarray(cut)]));
        for (const i of oldHeld) assert.ok(mix.has(i), `cut at ${cut}: chunk ${i} held before is still held`);
        for (const i of mix) assert.ok(newHeld.has(i), `cut at ${cut}: chunk ${i} is claimed but was not flushed`);
      }
      // another length (a different chunk size): replaced whole, atomically
      const len2 = await saveProgress(p, { slot: 'b', meta, map: m.rechunk(1024) }, { fsync: false }, len);
      assert.notEqual(len2, len);
      assert.equal((await loadProgress(p, 'b', meta.sha256))?.map.chunk, 1024);
      assert.deepEqual((await readdir(dir.path)).sort(), ['transfer.json']);
    });
  });

  describe('bootloader', function () {
    const input: BootInput = { hw: 'sensor-v1', factoryVersion: '1.0.0', imageName: 'sensor-fw', factoryImageSize: 4096, failSelfTest: false };

    async function install(files: DeviceFiles, version: string, selftest: 'pass' | 'fail' = 'pass'): Promise<string> {
      const image = makeSampleImage({ name: 'sensor-fw', version, hw: 'sensor-v1', size: 5000, selftest });
      const f = files.flash('b');
      await f.erase();
      f.write(0, image);
      await f.flush();
      const rec = (await files.loadState())!;
      rec.slots.b = { state: 'pending', name: 'sensor-fw', version, sha256: sha(image), size: image.length };
      await files.saveState(rec);
      return sha(image);
    }

    it('blank device: factory image in slot A, confirmed; the next boot is a normal boot', async () => {
      const files = new DeviceFiles(join(dir.path, 'd'), 1 << 20);
      const a = await runBootloader(files, input);
      assert.equal(a.factory, true);
      assert.equal(a.slot, 'a');
      assert.equal(a.version, '1.0.0');
      assert.equal(a.trial, false);
      const b = await runBootloader(files, input);
      assert.equal(b.factory, false);
      assert.equal(b.record.bootCount, 2);
    });

    it('a kill between the unlink of state.json and the rename of its replacement: the next boot completes the replace', async () => {
      const files = new DeviceFiles(join(dir.path, 'd'), 1 << 20, { fsync: false });
      await runBootloader(files, input);
      const digest = await install(files, '1.1.0'); // state.json says slot b is pending
      const text = await readFile(files.stateFile, 'utf8');
      // the process died after the unlink, before the rename: only the complete .tmp is left
      await writeFile(`${files.stateFile}.tmp`, text);
      await unlink(files.stateFile);
      const t = await runBootloader(files, input);
      assert.deepEqual([t.factory, t.slot, t.sha256, t.trial], [false, 'b', digest, true], 'booted from the recovered record, not as a blank device');
      assert.deepEqual((await readdir(files.dir)).filter((f) => f.startsWith('state.json')), ['state.json']);
    });

    it('pending boots once in trial; found in trial at the next boot it is reverted', async () => {
      const files = new DeviceFiles(join(dir.path, 'd'), 1 << 20);
      await runBootloader(files, input);
      const digest = await install(files, '1.1.0');
      const t = await runBootloader(files, input);
      assert.deepEqual([t.slot, t.version, t.sha256, t.trial, t.reverted], ['b', '1.1.0', digest, true, false]);
      assert.equal((await files.loadState())?.slots.b.state, 'trial');
      const r = await runBootloader(files, input);
      assert.deepEqual([r.slot, r.version, r.trial, r.reverted], ['a', '1.0.0', false, true]);
      assert.equal(r.reason, 'trial image not confirmed before reset');
      assert.equal((await files.loadState())?.slots.b.state, 'bad');
    });

    it('a pending image that fails its self-test or its SHA-256 check is reverted at once', async () => {
      const files = new DeviceFiles(join(dir.path, 'd'), 1 << 20);
      await runBootloader(files, input);
      await install(files, '1.1.0', 'fail');
      const r = await runBootloader(files, input);
      assert.deepEqual([r.slot, r.reverted, r.reason], ['a', true, 'self-test failed']);

      await install(files, '1.2.0');
      const f = files.flash('b');
      f.write(100, Uint8Array.from([0xde, 0xad]));
      await f.flush();
      const c = await runBootloader(files, input);
      assert.equal(c.slot, 'a');
      assert.match(c.reason ?? '', /image check failed: SHA-256 mismatch/);
    });

    it('a first-boot power cut leaves the slot in trial, so the next boot reverts', async () => {
      const files = new DeviceFiles(join(dir.path, 'd'), 1 << 20);
      await runBootloader(files, input);
      await install(files, '1.1.0');
      await assert.rejects(runBootloader(files, { ...input, onFirstBoot: () => true }), PowerLost);
      const r = await runBootloader(files, input);
      assert.equal(r.slot, 'a');
      assert.equal(r.reverted, true);
      assert.equal(r.reason, 'trial image not confirmed before reset');
      // a soft reboot passes its reason (the trial timer does this)
      await install(files, '1.2.0');
      await runBootloader(files, input);
      assert.equal((await runBootloader(files, { ...input, hint: 'trial timeout' })).reason, 'trial timeout');
    });

    it('falls back to the other confirmed slot when the active one is damaged', async () => {
      const files = new DeviceFiles(join(dir.path, 'd'), 1 << 20);
      await runBootloader(files, input);
      const digest = await install(files, '1.1.0');
      await runBootloader(files, input);
      const rec = (await files.loadState())!;
      rec.slots.b.state = 'confirmed';
      rec.trial = false;
      await files.saveState(rec);
      await writeFile(files.flash('b').path, 'garbage');
      const r = await runBootloader(files, input);
      assert.equal(r.slot, 'a');
      assert.equal(r.reverted, true);
      assert.notEqual(r.sha256, digest);
    });

    it('refuses a corrupt slot-state record instead of wiping the device', async () => {
      const files = new DeviceFiles(join(dir.path, 'd'), 1 << 20);
      await runBootloader(files, input);
      await writeFile(files.stateFile, '{"format": 1}');
      await assert.rejects(runBootloader(files, input), /slot-state record is invalid/);
    });
  });
});
