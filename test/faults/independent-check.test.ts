import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DeviceFiles, runBootloader } from '../../device-sim/bootloader.ts';
import { DEVICE_DEFAULTS } from '../../device-sim/options.ts';
import { signedBytes as protocolSignedBytes } from '../../protocol/signature.ts';
import { makeTestKey, testKey } from '../helpers/keys.ts';
import { sampleImage } from '../helpers/rig.ts';
import { judgeDevice, signedBytes, storedManifests } from './independent-check.ts';
import { checkInvariants, describeViolations } from './invariants.ts';

/** The second judge of the fault tests: it must refuse what the simulator's own bootloader would wrongly accept. */
describe('faults: the independent boot check (no code shared with device-sim/)', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fwgate-judge-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const factoryDevice = async (id: string): Promise<string> => {
    const d = join(dir, 'devices', id);
    await runBootloader(new DeviceFiles(d, DEVICE_DEFAULTS.slotCapacity), {
      hw: 'sensor-v1', factoryVersion: '1.0.0', imageName: 'sensor-fw', factoryImageSize: 4096, failSelfTest: false,
    });
    return d;
  };
  const flip = async (path: string, at: number): Promise<void> => {
    const b = await readFile(path);
    b[at] = b[at]! ^ 0xff;
    await writeFile(path, b);
  };
  /** A device with the signed 1.1.0 sample pending in slot b, and the store folder holding its manifest. */
  const pendingDevice = async (id: string): Promise<{ d: string; storeDir: string; sha: string }> => {
    const d = await factoryDevice(id);
    const { image, manifest } = sampleImage({ version: '1.1.0', size: 2048 });
    assert.ok(manifest.signature, 'sampleImage signs with the test vendor key');
    await writeFile(join(d, 'slot-b.bin'), image);
    const state = JSON.parse(await readFile(join(d, 'state.json'), 'utf8')) as { slots: Record<string, unknown> };
    state.slots.b = { state: 'pending', name: 'sensor-fw', version: '1.1.0', sha256: manifest.sha256, size: image.length };
    await writeFile(join(d, 'state.json'), JSON.stringify(state));
    const storeDir = join(dir, 'store');
    await mkdir(join(storeDir, 'images'), { recursive: true });
    await writeFile(join(storeDir, 'images', `${manifest.sha256}.json`), JSON.stringify(manifest));
    await writeFile(join(storeDir, 'images', `${manifest.sha256}.bin`), image);
    return { d, storeDir, sha: manifest.sha256 };
  };
  const keys = [testKey().publicKey];

  it('its signed bytes are the protocol\'s (§5.4.1), written without protocol/ code', () => {
    const { manifest } = sampleImage({ version: '1.1.0', size: 2048 });
    assert.deepEqual(Uint8Array.from(signedBytes(manifest)), Uint8Array.from(protocolSignedBytes(manifest)));
    const big = { ...manifest, size: 70_000, seq: 300, hw: Array.from({ length: 30 }, (_, i) => `hw-${i}`) };
    assert.deepEqual(Uint8Array.from(signedBytes(big)), Uint8Array.from(protocolSignedBytes(big)));
  });

  it('a factory device boots slot a; a flipped byte in its only image leaves nothing to boot', async () => {
    const d = await factoryDevice('dev-001');
    const v = await judgeDevice('dev-001', d, new Map(), keys);
    assert.deepEqual([v.bootable, v.slot, v.version, v.signed], [true, 'a', '1.0.0', false]);
    await flip(join(d, 'slot-a.bin'), 100);
    const bad = await judgeDevice('dev-001', d, new Map(), keys);
    assert.equal(bad.bootable, false);
    assert.match(bad.why ?? '', /SHA-256/);
  });

  it('a pending signed image boots in slot b with its signature verified; its fallback must verify too', async () => {
    const { d, storeDir } = await pendingDevice('dev-002');
    const manifests = await storedManifests(storeDir);
    const v = await judgeDevice('dev-002', d, manifests, keys);
    assert.deepEqual([v.bootable, v.slot, v.version, v.signed], [true, 'b', '1.1.0', true]);
    await flip(join(d, 'slot-a.bin'), 10);
    const worst = await judgeDevice('dev-002', d, manifests, keys);
    assert.equal(worst.bootable, false, 'if the new image failed its self-test, the corrupted factory slot could not take over');
    assert.match(worst.why ?? '', /self-test/);
  });

  it('a stored manifest whose signature does not verify, or by an untrusted key: the slot does not boot', async () => {
    const { d, storeDir, sha } = await pendingDevice('dev-003');
    assert.equal((await judgeDevice('dev-003', d, await storedManifests(storeDir), [makeTestKey().publicKey])).bootable, true,
      'with the pending image refused, the confirmed factory image still boots');
    const untrusted = await judgeDevice('dev-003', d, await storedManifests(storeDir), [makeTestKey().publicKey]);
    assert.equal(untrusted.slot, 'a', 'an image signed by an untrusted key is not booted');
    const path = join(storeDir, 'images', `${sha}.json`);
    const m = JSON.parse(await readFile(path, 'utf8')) as { signature: { sig: string } };
    m.signature.sig = `${m.signature.sig[0] === '0' ? '1' : '0'}${m.signature.sig.slice(1)}`;
    await writeFile(path, JSON.stringify(m));
    const forged = await judgeDevice('dev-003', d, await storedManifests(storeDir), keys);
    assert.equal(forged.slot, 'a', 'an image whose manifest signature fails is not booted');
  });

  it('checkInvariants: what the simulator\'s bootloader accepts but the second judge refuses is reported', async () => {
    const { d, storeDir } = await pendingDevice('dev-004');
    await flip(join(d, 'slot-a.bin'), 10); // only the pending image can boot now
    const ok = await checkInvariants({ devicesDir: join(dir, 'devices'), ids: ['dev-004'], storeDir });
    assert.deepEqual(describeViolations(ok).filter((v) => !v.startsWith('bricked')), []);
    // the simulator checks no signatures: with an untrusted key, only the second judge refuses the image
    const r = await checkInvariants({ devicesDir: join(dir, 'devices'), ids: ['dev-004'], storeDir, trustedKeys: [makeTestKey().publicKey] });
    assert.ok(r.devices.get('dev-004')!.bootable === false || r.bricked.some((b) => /independent check/.test(b.why ?? '')), describeViolations(r).join('\n'));
    assert.ok(describeViolations(r).some((v) => v.startsWith('bricked dev-004')));
  });
});
