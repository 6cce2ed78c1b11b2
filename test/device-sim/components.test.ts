import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { signRelease, type ReleaseManifest } from '../../protocol/release.ts';
import { statusMsg } from '../../protocol/ota.ts';
import { makeSampleImage } from '../../firmware-samples/image-format.ts';
import { parseCli } from '../../device-sim/cli.ts';
import { makeTestKey } from '../helpers/keys.ts';
import { Rig, runCli, sampleImage } from './helpers.ts';
import { componentImage, deliverComponent, digestsFromFiles, runningSetFromFiles, updateSet } from './component-helpers.ts';

const ID = 'dev-001';

/** Multi-component devices (docs/device-sim.md "Components", docs/protocol.md §6.15). */
describe('device-sim: components', function () {
  const rig = new Rig();
  beforeEach(async () => rig.setUp());
  afterEach(async () => rig.tearDown());

  it('a single-image device keeps its files and messages: no components field, slot-a/b.bin only', async () => {
    const { device } = await rig.online(ID);
    const { image, manifest } = sampleImage('1.1.0');
    await rig.gw.deliver(ID, 1, image, manifest);
    await rig.gw.send(ID, { t: 'activate', sid: 1 });
    const boot = await rig.gw.expect(ID, 'boot', (b) => b.trial);
    assert.equal(boot.components, undefined);
    await rig.gw.send(ID, { t: 'confirm', sha256: manifest.sha256 });
    await rig.gw.expect(ID, 'confirmed');
    const st = await rig.gw.expect(ID, 'status', (s) => s.slots.b.state === 'confirmed');
    assert.equal(st.components, undefined);
    assert.equal(device.status()?.components, undefined);
    const rec = JSON.parse(await readFile(join(rig.dir.path, ID, 'state.json'), 'utf8')) as Record<string, unknown>;
    assert.deepEqual(Object.keys(rec), ['format', 'hw', 'active', 'trial', 'bootCount', 'slots', 'security']);
    assert.deepEqual((await readdir(join(rig.dir.path, ID))).sort(), ['slot-a.bin', 'slot-b.bin', 'state.json']);
  });

  it('a blank app,net,agent device: factory images per component, status and boot list them (app first, agent marked)', async () => {
    const device = rig.device(ID, { components: ['net', 'app', 'agent'], componentVersions: { net: '1.4.0' } });
    await device.start();
    const boot = await rig.gw.expect(ID, 'boot');
    const st = await rig.gw.expect(ID, 'status');
    statusMsg.parse(st);
    assert.deepEqual(st.components?.map((c) => [c.name, c.version, c.slot, c.trial, c.agent ?? false]), [
      ['app', '1.0.0', 'a', false, false], ['net', '1.4.0', 'a', false, false], ['agent', '1.0.0', 'a', false, true],
    ]);
    assert.deepEqual(boot.components?.map((c) => [c.name, c.version, c.slot, c.trial]), [['app', '1.0.0', 'a', false], ['net', '1.4.0', 'a', false], ['agent', '1.0.0', 'a', false]]);
    assert.equal(st.version, '1.0.0', 'the top-level fields describe app');
    const files = (await readdir(join(rig.dir.path, ID))).sort();
    assert.deepEqual(files, ['agent-slot-a.bin', 'agent-slot-b.bin', 'net-slot-a.bin', 'net-slot-b.bin', 'slot-a.bin', 'slot-b.bin', 'state.json']);
    const net = makeSampleImage({ name: 'sensor-fw-net', version: '1.4.0', hw: 'sensor-v1', size: 16 * 1024 });
    assert.equal(st.components?.[1]?.sha256, createHash('sha256').update(net).digest('hex'));
    const running = await runningSetFromFiles(rig.dir.path, ID);
    assert.deepEqual([...running.keys()], ['app', 'net', 'agent']);
  });

  it('componentImages: a file becomes the factory image byte-for-byte, its version from the sample header', async () => {
    const net = componentImage('net', '1.5.0');
    const path = join(rig.dir.path, 'net-1.5.0.bin');
    await writeFile(path, net.image);
    await rig.online(ID, { components: ['app', 'net'], componentImages: { net: path } });
    assert.deepEqual(new Uint8Array(await readFile(join(rig.dir.path, ID, 'net-slot-a.bin'))), net.image);
    const st = rig.gw.all(ID, 'status')[0]!;
    assert.deepEqual([st.components?.[1]?.version, st.components?.[1]?.sha256], ['1.5.0', net.manifest.sha256]);
    // the same image offered again is not newer
    await rig.gw.send(ID, rig.gw.offerFor(1, net.manifest, { component: 'net' }));
    assert.equal((await rig.gw.expect(ID, 'reject')).code, 'not-newer');
  });

  it('an offer per component: versions compared with that component, an unknown one refused incompatible', async () => {
    await rig.online(ID, { components: ['app', 'net'], componentVersions: { net: '2.0.0' } });
    await rig.gw.send(ID, rig.gw.offerFor(1, componentImage('radio', '1.0.0').manifest, { component: 'radio' }));
    const r1 = await rig.gw.expect(ID, 'reject', (r) => r.sid === 1);
    assert.deepEqual([r1.code, r1.reason], ['incompatible', 'no component "radio"']);
    await rig.gw.send(ID, rig.gw.offerFor(2, componentImage('net', '1.5.0').manifest, { component: 'net' }));
    const r2 = await rig.gw.expect(ID, 'reject', (r) => r.sid === 2);
    assert.equal(r2.code, 'not-newer');
    assert.match(r2.reason ?? '', /running net 2\.0\.0/);
    // app at 1.0.0 takes 1.5.0; it goes to app's slot B, net's slots stay as they were
    await deliverComponent(rig, ID, 3, componentImage('app', '1.5.0'));
    const st = await rig.gw.expect(ID, 'status', (s) => s.slots.b.state === 'ready');
    assert.deepEqual([st.components?.[1]?.slots?.b.state], ['empty']);
  });

  it('activate with: all named components pending in one write and one reboot; confirm with confirms them together', async () => {
    await rig.online(ID, { components: ['app', 'net'] });
    const old = await digestsFromFiles(rig.dir.path, ID);
    const set = [componentImage('app', '1.1.0'), componentImage('net', '1.1.0')];
    await deliverComponent(rig, ID, 10, set[0]!);
    await deliverComponent(rig, ID, 11, set[1]!);
    const ready = await rig.gw.expect(ID, 'status', (s) => s.components?.[1]?.slots?.b.state === 'ready');
    assert.equal(ready.slots.b.state, 'ready', 'several components are ready at once');
    // an activate naming a sid that is not ready changes nothing
    await rig.gw.send(ID, { t: 'activate', sid: 10, with: [99] });
    await rig.gw.send(ID, { t: 'query' });
    await rig.gw.expect(ID, 'status', (s) => s.slots.b.state === 'ready' && s.components?.[1]?.slots?.b.state === 'ready');
    assert.equal(rig.gw.all(ID, 'activated').length, 0);
    await rig.gw.send(ID, { t: 'activate', sid: 10, with: [11] });
    assert.deepEqual(await rig.gw.expect(ID, 'activated'), { t: 'activated', sid: 10, slot: 'b' });
    const boot = await rig.gw.expect(ID, 'boot', (b) => b.trial);
    assert.deepEqual(boot.components?.map((c) => [c.name, c.version, c.slot, c.trial]), [['app', '1.1.0', 'b', true], ['net', '1.1.0', 'b', true]]);
    assert.equal(rig.gw.all(ID, 'boot').length, 2, 'one reboot');
    // a confirm that leaves a trial component out is ignored
    await rig.gw.send(ID, { t: 'confirm', sha256: set[0]!.manifest.sha256 });
    await rig.gw.send(ID, { t: 'confirm', sha256: set[0]!.manifest.sha256, with: [old.get('net')!] });
    await rig.gw.send(ID, { t: 'confirm', sha256: set[0]!.manifest.sha256, with: [set[1]!.manifest.sha256] });
    const confirmed = await rig.gw.expect(ID, 'confirmed');
    assert.deepEqual(confirmed, { t: 'confirmed', sha256: set[0]!.manifest.sha256, version: '1.1.0' });
    assert.equal(rig.gw.all(ID, 'confirmed').length, 1, 'the two partial confirms were ignored');
    const running = await runningSetFromFiles(rig.dir.path, ID);
    assert.deepEqual([...running.values()].map((r) => [r.sha256, r.state]), set.map((c) => [c.manifest.sha256, 'confirmed']));
    // repeated: answered again, nothing changes
    await rig.gw.send(ID, { t: 'confirm', sha256: set[1]!.manifest.sha256, with: [set[0]!.manifest.sha256] });
    assert.equal((await rig.gw.expect(ID, 'confirmed')).version, '1.1.0');
  });

  it('one transfer at a time: an offer for another component drops the unfinished one; a ready component stays ready', async () => {
    const { device } = await rig.online(ID, { components: ['app', 'net', 'agent'] });
    await deliverComponent(rig, ID, 1, componentImage('agent', '1.1.0'));
    const net = componentImage('net', '1.1.0');
    await rig.gw.send(ID, rig.gw.offerFor(2, net.manifest, { component: 'net' }));
    const accept = await rig.gw.expect(ID, 'accept', (a) => a.sid === 2);
    const { crc32 } = await import('../../protocol/crc.ts');
    const data = net.image.subarray(0, accept.chunk);
    await rig.gw.send(ID, { t: 'chunk', sid: 2, off: 0, data, crc: crc32(data) });
    await rig.gw.expect(ID, 'ack', (a) => a.sid === 2);
    assert.equal(device.status()?.components?.[1]?.slots?.b.state, 'receiving');
    await rig.gw.send(ID, rig.gw.offerFor(3, componentImage('app', '1.1.0').manifest));
    await rig.gw.expect(ID, 'accept', (a) => a.sid === 3);
    const st = device.status()!;
    assert.deepEqual(st.components?.map((c) => c.slots?.b.state), ['receiving', 'empty', 'ready']);
    // the dropped transfer's chunks no longer count; abort of the ready agent empties its slot
    await rig.gw.send(ID, { t: 'abort', sid: 1 });
    await rig.gw.expect(ID, 'aborted', (a) => a.sid === 1);
    assert.equal(device.status()?.components?.[2]?.slots?.b.state, 'empty');
  });

  it('with pinned keys and offer.release: the release signature and its entry for the component are checked', async () => {
    const vendor = makeTestKey();
    await rig.online(ID, { components: ['app', 'net'], pinnedKeys: [vendor.publicKeyPem] });
    const app = componentImage('app', '1.1.0');
    const net = componentImage('net', '1.1.0');
    const entry = (c: typeof app): ReleaseManifest['components'][number] => ({
      component: c.component, name: c.manifest.name, version: c.manifest.version, size: c.manifest.size, crc32: c.manifest.crc32, sha256: c.manifest.sha256,
    });
    const release = signRelease({ release: 'sensor-release', version: '1.1.0', hw: ['sensor-v1'], chunk: 4096, seq: 3, components: [entry(app), entry(net)] }, vendor.privateKey);
    const offer = (sid: number, c: typeof app, over = {}) => rig.gw.offerFor(sid, { ...c.manifest, seq: 3 }, { component: c.component, release, ...over });
    const cases: [number, ReturnType<typeof offer>, RegExp][] = [
      [1, offer(1, net, { release: { ...release, version: '1.1.1' } }), /^signature: bad-signature/],
      [2, offer(2, net, { release: signRelease({ ...release, components: [entry(app)] }, vendor.privateKey) }), /has no component "net"/],
      [3, offer(3, net, { sha256: app.manifest.sha256 }), /sha256 differ/],
      [4, offer(4, net, { seq: 2 }), /seq 2 differs from the release's 3/],
      [5, offer(5, net, { release: signRelease(release, makeTestKey().privateKey) }), /^signature: unknown-key/],
    ];
    for (const [sid, o, why] of cases) {
      await rig.gw.send(ID, o);
      const r = await rig.gw.expect(ID, 'reject', (m) => m.sid === sid);
      assert.equal(r.code, 'invalid');
      assert.match(r.reason ?? '', why);
    }
    await rig.gw.send(ID, offer(6, net));
    const accept = await rig.gw.expect(ID, 'accept', (a) => a.sid === 6);
    await rig.gw.transfer(ID, 6, net.image, accept);
    await rig.gw.send(ID, { t: 'verify', sid: 6 });
    assert.equal((await rig.gw.expect(ID, 'verified', (v) => v.sid === 6)).ok, true);
  });

  it('an existing single-image device started with more components gets them added (factory images); dropping one is an error', async () => {
    const first = rig.device(ID);
    await first.start();
    await rig.gw.expect(ID, 'status');
    await first.stop();
    const second = rig.device(ID, { components: ['app', 'net'] });
    await second.start();
    await rig.gw.expect(ID, 'status', (s) => s.components?.length === 2);
    await second.stop();
    const third = rig.device(ID);
    await assert.rejects(third.start(), /component\(s\) net that its options do not list/);
  });

  it('a full update of app+net from scratch (the scripted gateway of §6.15)', async () => {
    await rig.online(ID, { components: ['app', 'net'] });
    const set = [componentImage('app', '1.1.0'), componentImage('net', '1.1.0')];
    await updateSet(rig, ID, set, 1);
    const running = await runningSetFromFiles(rig.dir.path, ID);
    assert.deepEqual([...running.values()].map((r) => r.sha256), set.map((c) => c.manifest.sha256));
  });

  it('fwsim (real process): --components app,net with --component-image boots both, net from the file, and reports them', async () => {
    const net = componentImage('net', '1.5.0');
    const path = join(rig.dir.path, 'net.bin');
    await writeFile(path, net.image);
    const data = join(rig.dir.path, 'cli');
    const r = await runCli(['--broker', rig.broker.url, '--data', data, '--components', 'app,net', '--component-image', `net=${path}`, '--json'], {
      untilStdout: (out) => out.includes('"type":"connected"'),
    });
    assert.equal(r.code, 0, r.stderr);
    const booted = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { type: string; components?: { name: string; version: string; sha256: string }[] }).find((e) => e.type === 'booted');
    assert.deepEqual(booted?.components?.map((c) => [c.name, c.version]), [['app', '1.0.0'], ['net', '1.5.0']]);
    assert.deepEqual(new Uint8Array(await readFile(join(data, ID, 'net-slot-a.bin'))), net.image);
    const st = await rig.gw.expect(ID, 'status');
    assert.deepEqual(st.components?.map((c) => [c.name, c.sha256]), [['app', booted?.components?.[0]?.sha256], ['net', net.manifest.sha256]]);
  });

  it('fwsim: --components, --component-image/--component-version per device, component fault switches', async () => {
    const net = componentImage('net', '1.5.0');
    const path = join(rig.dir.path, 'net.bin');
    await writeFile(path, net.image);
    const cfg = parseCli(['--count', '4', '--components', 'app,net', '--component-image', '2:net=' + path, '--component-version', 'dev-004:net=1.3.0',
      '--fail-selftest-component', 'dev-003:net', '--power-cut', '1:activation', '--power-cut-component', 'net']);
    assert.deepEqual(cfg.fleet.device?.components, ['app', 'net']);
    assert.deepEqual(cfg.fleet.perDevice?.(1, 'dev-002'), { componentImages: { net: path }, componentVersions: {} });
    assert.equal(cfg.fleet.perDevice?.(2, 'dev-003'), undefined);
    assert.deepEqual(cfg.fleet.perDevice?.(3, 'dev-004'), { componentImages: {}, componentVersions: { net: '1.3.0' } });
    assert.deepEqual(cfg.fleet.faults?.(0, 'dev-001'), { powerCutAt: 'activation', powerCutComponent: 'net' });
    assert.deepEqual(cfg.fleet.faults?.(2, 'dev-003'), { failSelfTestComponent: 'net', powerCutComponent: 'net' });
    for (const [args, why] of [
      [['--components', 'net'], /must include app/],
      [['--components', 'app,app'], /"app" given twice/],
      [['--component-version', 'net=1.0.0'], /no component "net"/],
      [['--components', 'app,net', '--component-image', 'net=/no/such/file'], /cannot read/],
      [['--components', 'app,net', '--fail-selftest-component', 'dev-009:net'], /no device dev-009/],
      [['--power-cut', '1:verification', '--components', 'app,net', '--power-cut-component', 'radio'], /no component "radio"/],
    ] as const) {
      assert.throws(() => parseCli([...args]), why);
    }
  });
});
