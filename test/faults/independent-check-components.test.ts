import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DeviceFiles, runBootloader } from '../../device-sim/bootloader.ts';
import { DEVICE_DEFAULTS } from '../../device-sim/options.ts';
import {
  componentManifest, parseReleaseManifest, releaseDigest, releaseSignedBytes as protocolReleaseBytes, signRelease, type ReleaseManifest,
} from '../../protocol/release.ts';
import { componentImage, type ComponentImage } from '../device-sim/component-helpers.ts';
import { testKey } from '../helpers/keys.ts';
import { judgeDevice, releaseSignedBytes, storedManifests, storedReleases } from './independent-check.ts';

/**
 * The independent judge on multi-component devices (§6.15): every `components.<c>` of state.json with
 * its `<c>-slot-{a,b}.bin`, the set booting and reverting together, and component images vouched
 * for by a stored release whose §5.5.3 signature it verifies with its own CBOR writer.
 */
describe('faults: the independent boot check on multi-component devices', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fwgate-judge-c-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const keys = [testKey().publicKey];
  const app = componentImage('app', '1.1.0', { size: 3000 });
  const net = componentImage('net', '1.1.0', { size: 2000 });
  const release = (parts: ComponentImage[], extra: Partial<ReleaseManifest['components'][number]> = {}): ReleaseManifest => signRelease(parseReleaseManifest({
    release: 'sensor-release', version: '1.1.0', hw: ['sensor-v1'], chunk: 1024, seq: 7,
    components: parts.map((p) => ({
      component: p.component, name: p.manifest.name, version: p.manifest.version, size: p.manifest.size, crc32: p.manifest.crc32, sha256: p.manifest.sha256,
      ...(p.component === 'app' ? { requires: { net: '>=1.1.0' }, ...extra } : {}),
    })),
  }), testKey().privateKey);

  /** A factory device with app and net, the release's images pending in slot b of each, the store and release record written as the gateway does. */
  const pendingSet = async (r: ReleaseManifest): Promise<{ d: string; storeDir: string; releasesDir: string }> => {
    const d = join(dir, 'devices', 'dev-001');
    await runBootloader(new DeviceFiles(d, DEVICE_DEFAULTS.slotCapacity), {
      hw: 'sensor-v1', factoryVersion: '1.0.0', imageName: 'sensor-fw', factoryImageSize: 4096, failSelfTest: false, components: ['app', 'net'],
    });
    const state = JSON.parse(await readFile(join(d, 'state.json'), 'utf8')) as { slots: Record<string, unknown>; components: Record<string, { slots: Record<string, unknown> }> };
    const storeDir = join(dir, 'store');
    await mkdir(join(storeDir, 'images'), { recursive: true });
    for (const c of [app, net]) {
      await writeFile(join(d, `${c.component === 'app' ? '' : 'net-'}slot-b.bin`), c.image);
      const slot = { state: 'pending', name: c.manifest.name, version: c.manifest.version, sha256: c.manifest.sha256, size: c.image.length };
      if (c.component === 'app') state.slots.b = slot;
      else state.components.net!.slots.b = slot;
      const m = componentManifest(r, r.components.find((x) => x.component === c.component)!);
      await writeFile(join(storeDir, 'images', `${m.sha256}.json`), JSON.stringify(m));
      await writeFile(join(storeDir, 'images', `${m.sha256}.bin`), c.image);
    }
    await writeFile(join(d, 'state.json'), JSON.stringify(state));
    const releasesDir = join(dir, 'releases');
    await mkdir(releasesDir, { recursive: true });
    await writeFile(join(releasesDir, `${releaseDigest(r)}.json`), JSON.stringify({ manifest: r, state: 'live', storedAt: 1 }));
    return { d, storeDir, releasesDir };
  };
  const judge = async (p: { d: string; storeDir: string; releasesDir: string }) =>
    judgeDevice('dev-001', p.d, await storedManifests(p.storeDir), keys, await storedReleases(p.releasesDir));

  it("its release signed bytes are the protocol's (§5.5.3), written without protocol/ code", () => {
    const r = release([app, net], { agent: true, requires: { net: '>=1.1.0', zeta: '^2.0.0', alpha: '1.x' } });
    assert.deepEqual(Uint8Array.from(releaseSignedBytes(r)), Uint8Array.from(protocolReleaseBytes(r)));
    const plain = release([net]);
    assert.deepEqual(Uint8Array.from(releaseSignedBytes(plain)), Uint8Array.from(protocolReleaseBytes(plain)));
  });

  it('a pending set boots together, each component image vouched for by the signed release; the worst case is the factory set', async () => {
    const v = await judge(await pendingSet(release([app, net])));
    assert.equal(v.bootable, true, v.why);
    assert.deepEqual(Object.entries(v.components!).map(([c, u]) => [c, u.slot, u.version, u.signed, u.trial]), [
      ['app', 'b', '1.1.0', true, true], ['net', 'b', '1.1.0', true, true],
    ]);
    assert.deepEqual(Object.entries(v.worst!).map(([c, u]) => [c, u.slot, u.version]), [['app', 'a', '1.0.0'], ['net', 'a', '1.0.0']]);
  });

  it('a release record whose signature does not verify, or whose name is not its digest, vouches for nothing', async () => {
    const r = release([app, net]);
    const p = await pendingSet(r);
    const file = join(p.releasesDir, `${releaseDigest(r)}.json`);
    const sig = r.signature!.sig;
    await writeFile(file, JSON.stringify({ manifest: { ...r, signature: { ...r.signature!, sig: `${sig[0] === '0' ? '1' : '0'}${sig.slice(1)}` } }, state: 'live', storedAt: 1 }));
    const bad = await judge(p);
    assert.equal(bad.bootable, true, 'the pending set is refused; the factory set boots');
    assert.deepEqual(Object.values(bad.components!).map((u) => u.slot), ['a', 'a']);
    assert.equal(bad.worst?.app?.slot, 'a');
    // the same record with a changed component is no longer named by its digest: left out
    await writeFile(file, JSON.stringify({ manifest: { ...r, version: '9.9.9' }, state: 'live', storedAt: 1 }));
    assert.deepEqual(await storedReleases(p.releasesDir), []);
  });

  it('one component of the set failing its check reverts the whole set (all or nothing), and a trial set reverts together', async () => {
    const p = await pendingSet(release([app, net]));
    const netB = join(p.d, 'net-slot-b.bin');
    const bytes = await readFile(netB);
    bytes[10] = bytes[10]! ^ 0xff;
    await writeFile(netB, bytes);
    const v = await judge(p);
    assert.equal(v.bootable, true, v.why);
    assert.deepEqual(Object.entries(v.components!).map(([c, u]) => [c, u.slot]), [['app', 'a'], ['net', 'a']], 'app does not boot its new image alone');

    const q = await pendingSet(release([app, net]));
    const state = JSON.parse(await readFile(join(q.d, 'state.json'), 'utf8')) as { active: string; slots: Record<string, { state: string }>; components: Record<string, { active: string; slots: Record<string, { state: string }> }> };
    state.slots.b!.state = 'trial';
    state.active = 'b';
    state.components.net!.slots.b!.state = 'confirmed';
    state.components.net!.active = 'b';
    await writeFile(join(q.d, 'state.json'), JSON.stringify(state));
    const t = await judge(q);
    assert.deepEqual(Object.entries(t.components!).map(([c, u]) => [c, u.slot]), [['app', 'a'], ['net', 'b']], 'a trial app reverts; a confirmed net stays');
  });
});
