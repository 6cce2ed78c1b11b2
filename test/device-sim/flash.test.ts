import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MAX_ACK_MISSING } from '../../protocol/limits.ts';
import { DeviceFiles, PowerLost, runBootloader, type BootInput } from '../../device-sim/bootloader.ts';
import { Flash, readJson, writeJsonAtomic } from '../../device-sim/flash.ts';
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
