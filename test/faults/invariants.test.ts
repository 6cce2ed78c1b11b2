import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DeviceFiles, runBootloader } from '../../device-sim/bootloader.ts';
import { DEVICE_DEFAULTS } from '../../device-sim/options.ts';
import { ImageStore } from '../../gateway/store.ts';
import type { ResultMessage } from '../../protocol/uplink.ts';
import { sampleImage } from '../helpers/rig.ts';
import { accountFor, bootFromFiles, checkStore, type BootCheck } from './invariants.ts';

/** The checker itself: it must see a bricked device, a corrupted stored image and a result the files contradict. */
describe('faults: the invariant checks catch what they are for', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fwgate-inv-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const factoryDevice = async (id: string): Promise<string> => {
    const d = join(dir, id);
    await runBootloader(new DeviceFiles(d, DEVICE_DEFAULTS.slotCapacity), {
      hw: 'sensor-v1', factoryVersion: '1.0.0', imageName: 'sensor-fw', factoryImageSize: 4096, failSelfTest: false,
    });
    return d;
  };
  const flipByte = async (path: string, at: number): Promise<void> => {
    const b = await readFile(path);
    b[at] = b[at]! ^ 0xff;
    await writeFile(path, b);
  };

  it('a factory device boots 1.0.0; flipping a byte of its only image bricks it; no state.json bricks it', async () => {
    const d = await factoryDevice('dev-001');
    const ok = await bootFromFiles('dev-001', d);
    assert.deepEqual([ok.bootable, ok.version, ok.slot, ok.trial], [true, '1.0.0', 'a', false]);
    const before = await readFile(join(d, 'state.json'), 'utf8');
    await flipByte(join(d, 'slot-a.bin'), 100);
    const bad = await bootFromFiles('dev-001', d);
    assert.equal(bad.bootable, false);
    assert.match(bad.why ?? '', /no bootable image/);
    assert.equal(await readFile(join(d, 'state.json'), 'utf8'), before, 'the check boots a copy, never the device folder');
    await unlink(join(d, 'state.json'));
    assert.deepEqual(await bootFromFiles('dev-001', d), { id: 'dev-001', bootable: false, why: 'no state.json' });
  });

  it('a pending image that does not verify is not bootable, but the device is: it falls back to the confirmed one', async () => {
    const d = await factoryDevice('dev-002');
    const state = JSON.parse(await readFile(join(d, 'state.json'), 'utf8')) as { slots: Record<string, unknown> };
    const { image, manifest } = sampleImage({ version: '1.1.0', size: 2048 });
    await writeFile(join(d, 'slot-b.bin'), image);
    state.slots.b = { state: 'pending', name: 'sensor-fw', version: '1.1.0', sha256: manifest.sha256, size: image.length };
    await writeFile(join(d, 'state.json'), JSON.stringify(state));
    const good = await bootFromFiles('dev-002', d);
    assert.deepEqual([good.bootable, good.version, good.trial], [true, '1.1.0', true], 'boots the new image in trial');
    await flipByte(join(d, 'slot-b.bin'), 10);
    const fallback = await bootFromFiles('dev-002', d);
    assert.deepEqual([fallback.bootable, fallback.version, fallback.trial], [true, '1.0.0', false]);
  });

  it('re-verifies stored images from disk: a flipped byte and a missing image are reported', async () => {
    const storeDir = join(dir, 'store');
    const store = await ImageStore.open({ dir: storeDir, maxImageSize: 1 << 20 });
    const { image, manifest } = sampleImage({ version: '1.1.0', size: 8192 });
    const up = await store.beginUpload(manifest);
    await up.write(0, image);
    await up.commit();
    assert.deepEqual(await checkStore(storeDir, [manifest.sha256]), { checked: 1, corrupted: [], missing: [] });
    await flipByte(join(storeDir, 'images', `${manifest.sha256}.bin`), 4000);
    const r = await checkStore(storeDir, [manifest.sha256, 'ab'.repeat(32)]);
    assert.equal(r.corrupted.length, 1);
    assert.match(r.corrupted[0]!.why, /CRC-32|SHA-256/);
    assert.deepEqual(r.missing, ['ab'.repeat(32)]);
  });

  it('a result is accounted for only when the files agree with it', () => {
    const image = { version: '1.1.0', sha256: 'aa'.repeat(32) };
    const result = (outcome: ResultMessage['outcome'], code: ResultMessage['code'], reason?: string): ResultMessage => ({
      t: 'result', campaign: 'c-1', id: 'dev-001', outcome, code, ...(reason ? { reason } : {}), from: '1.0.0', to: '1.1.0', durationMs: 1, retries: 0,
    });
    const onNew: BootCheck = { id: 'dev-001', bootable: true, version: '1.1.0', sha256: image.sha256, trial: false };
    const onOld: BootCheck = { id: 'dev-001', bootable: true, version: '1.0.0', sha256: 'bb'.repeat(32), trial: false };
    const t = (r?: ResultMessage, extra?: number) => ({ id: 'dev-001', before: '1.0.0', result: r, ...(extra ? { extraResults: extra } : {}) });
    assert.equal(accountFor(t(result('updated', 'ok')), image, onNew), null);
    assert.equal(accountFor(t(result('rolled-back', 'self-test-failed', 'self-test failed')), image, onOld), null);
    assert.match(accountFor(t(result('updated', 'ok')), image, onOld)!, /reported updated, but its files boot 1\.0\.0/);
    assert.match(accountFor(t(result('updated', 'ok')), image, { ...onNew, trial: true })!, /still in trial/);
    assert.match(accountFor(t(result('failed', 'timeout', 'no confirm')), image, onNew)!, /not its previous 1\.0\.0/);
    assert.match(accountFor(t(result('failed', 'timeout')), image, onOld)!, /without a code and reason/);
    assert.equal(accountFor(t(undefined), image, onOld), 'no final result');
    assert.equal(accountFor(t(result('updated', 'ok'), 1), image, onNew), '2 final results');
  });
});
