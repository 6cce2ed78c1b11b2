import assert from 'node:assert/strict';
import { formatEvent, parseCli } from '../../device-sim/cli.ts';
import type { SimEvent } from '../../device-sim/device.ts';
import { resolveDeviceOptions } from '../../device-sim/options.ts';
import { encodeCbor } from '../../protocol/cbor.ts';
import { isFwError } from '../../protocol/errors.ts';
import type { Task } from '../../protocol/ota.ts';
import { Rig, sampleImage } from './helpers.ts';

/** Downgrades, the anti-rollback floor (docs/protocol.md §6.5.6) and the check-in task list (§6.14). */
describe('device-sim: version policy and check-in tasks', function () {
  const rig = new Rig();
  beforeEach(async () => rig.setUp());
  afterEach(async () => rig.tearDown());

  it('refuses an image below its security floor with below-floor, even as a downgrade, and reports the floor in status', async () => {
    const device = rig.device('dev-001', { factoryVersion: '1.4.0', securityFloor: '1.3.0' });
    await device.start();
    assert.equal((await rig.gw.expect('dev-001', 'status')).floor, '1.3.0');
    const { manifest } = sampleImage('1.2.0');

    await rig.gw.send('dev-001', rig.gw.offerFor(1, manifest, { downgrade: true }));
    const r1 = await rig.gw.expect('dev-001', 'reject', (m) => m.sid === 1);
    assert.equal(r1.code, 'below-floor');
    assert.match(r1.reason ?? '', /1\.2\.0.*floor 1\.3\.0/);
    await rig.gw.send('dev-001', rig.gw.offerFor(2, manifest));
    assert.equal((await rig.gw.expect('dev-001', 'reject', (m) => m.sid === 2)).code, 'below-floor', 'the floor comes before not-newer');
    await rig.gw.send('dev-001', rig.gw.offerFor(3, manifest, { version: '1.3.0-rc.1', downgrade: true }));
    assert.equal((await rig.gw.expect('dev-001', 'reject', (m) => m.sid === 3)).code, 'below-floor', 'a pre-release of the floor is below it');
    // exactly the floor is not below it: a downgrade to it is accepted
    await rig.gw.send('dev-001', rig.gw.offerFor(4, manifest, { version: '1.3.0', downgrade: true }));
    assert.equal((await rig.gw.expect('dev-001', 'accept', (m) => m.sid === 4)).next, 0);
    assert.equal(device.status()?.slots.b.state, 'receiving');
  });

  it('a device without a floor omits it from status', async () => {
    const { device } = await rig.online('dev-001');
    assert.equal('floor' in (device.status() ?? {}), false);
  });

  it('installs an older version only when the offer says downgrade; never the same version', async () => {
    const { device, log } = await rig.online('dev-001', { factoryVersion: '1.1.0' });
    const { image, manifest } = sampleImage('1.0.5');

    await rig.gw.send('dev-001', rig.gw.offerFor(1, manifest));
    const r1 = await rig.gw.expect('dev-001', 'reject', (m) => m.sid === 1);
    assert.equal(r1.code, 'not-newer');
    assert.match(r1.reason ?? '', /not a downgrade/);
    await rig.gw.send('dev-001', rig.gw.offerFor(2, manifest, { downgrade: false }));
    assert.equal((await rig.gw.expect('dev-001', 'reject', (m) => m.sid === 2)).code, 'not-newer');
    await rig.gw.send('dev-001', rig.gw.offerFor(3, manifest, { version: '1.1.0', downgrade: true }));
    assert.equal((await rig.gw.expect('dev-001', 'reject', (m) => m.sid === 3)).code, 'not-newer', 'the running version, flag or not');

    await rig.gw.send('dev-001', rig.gw.offerFor(4, manifest, { downgrade: true }));
    const accept = await rig.gw.expect('dev-001', 'accept', (m) => m.sid === 4);
    await rig.gw.transfer('dev-001', 4, image, accept);
    await rig.gw.send('dev-001', { t: 'verify', sid: 4 });
    assert.equal((await rig.gw.expect('dev-001', 'verified', (m) => m.sid === 4)).ok, true);
    await rig.gw.send('dev-001', { t: 'activate', sid: 4 });
    await rig.gw.expect('dev-001', 'activated');
    const boot = await rig.gw.expect('dev-001', 'boot', (b) => b.version === '1.0.5');
    assert.equal(boot.trial, true);
    await rig.gw.send('dev-001', { t: 'confirm', sha256: manifest.sha256 });
    await rig.gw.expect('dev-001', 'confirmed');
    assert.equal(device.running?.version, '1.0.5');
    assert.equal(log.count('offer-rejected'), 3);
  });

  it('records a tasks list as an event and in pendingTasks, answers nothing, and does not act on it', async () => {
    const { device, log } = await rig.online('dev-001', { factoryVersion: '1.0.0' });
    const { manifest } = sampleImage('1.2.0');
    assert.equal(device.pendingTasks.length, 0);
    const task = (over: Partial<Task> = {}): Task => ({
      campaign: 'c-0a1b2c3d', name: manifest.name, version: manifest.version, sha256: manifest.sha256, size: manifest.size,
      steps: ['download', 'verify', 'activate'], ...over,
    });
    const tasks = [task({ notBefore: 1_767_225_600_000 }), task({ campaign: 'c-00000002', steps: ['download', 'verify'] })];
    const before = rig.gw.received.length;
    await rig.gw.send('dev-001', { t: 'tasks', tasks });
    const e = await log.next('tasks');
    assert.deepEqual(e.tasks, tasks);
    assert.deepEqual(device.pendingTasks, tasks);

    // no reply, no change: a ping is the next thing the device sends, the slots are as they were
    await rig.gw.send('dev-001', { t: 'ping', n: 5 });
    await rig.gw.expect('dev-001', 'pong', (p) => p.n === 5);
    assert.deepEqual(rig.gw.received.slice(before).map((r) => r.msg.t), ['pong']);
    assert.deepEqual(device.status()?.slots.b, { state: 'empty' });
    assert.equal(device.running?.version, '1.0.0');

    // a later list replaces it; an empty one clears it
    await rig.gw.send('dev-001', { t: 'tasks', tasks: [task({ version: '1.3.0' })] });
    await log.next('tasks');
    assert.deepEqual(device.pendingTasks.map((t) => t.version), ['1.3.0']);
    await rig.gw.send('dev-001', { t: 'tasks', tasks: [] });
    await log.next('tasks');
    assert.deepEqual(device.pendingTasks, []);
    assert.equal(device.stats.invalid, 0);
    assert.equal(device.stats.errors, 0);
  });

  it('drops an invalid tasks list whole (9 tasks, a repeated step) and keeps serving', async () => {
    const { device, log } = await rig.online('dev-001');
    const { image, manifest } = sampleImage('1.1.0');
    const task: Task = { campaign: 'c-1', name: 'sensor-fw', version: '1.1.0', sha256: manifest.sha256, size: manifest.size, steps: ['download'] };
    await rig.gw.send('dev-001', { t: 'tasks', tasks: [task] });
    await log.next('tasks');

    await rig.gw.sendRaw('dev-001', encodeCbor({ t: 'tasks', tasks: Array.from({ length: 9 }, () => task) }));
    const e = await log.next('invalid');
    assert.match(e.reason, /tasks/);
    await rig.gw.sendRaw('dev-001', encodeCbor({ t: 'tasks', tasks: [{ ...task, steps: ['verify', 'verify'] }] }));
    await log.next('invalid');
    await rig.gw.sendRaw('dev-001', encodeCbor({ t: 'tasks', tasks: [{ ...task, notBefore: 1.5 }] }));
    await log.next('invalid');
    assert.equal(device.stats.invalid, 3);
    assert.equal(log.count('tasks'), 1);
    assert.deepEqual(device.pendingTasks.map((t) => t.campaign), ['c-1'], 'the last valid list stays');

    await rig.gw.deliver('dev-001', 1, image, manifest);
    assert.equal(device.connected, true);
    assert.equal(device.stats.errors, 0);
  });

  it('options and CLI: --security-floor sets the floor; it must be a version not above the factory version', () => {
    const cfg = parseCli(['--version', '2.0.0', '--security-floor', '1.5.0']);
    assert.equal(cfg.fleet.device?.securityFloor, '1.5.0');
    assert.equal(parseCli([]).fleet.device?.securityFloor, undefined);
    const usage = (args: string[], re: RegExp): void => assert.throws(() => parseCli(args), (err: unknown) => isFwError(err, 'E_USAGE') && re.test(err.message));
    usage(['--security-floor', 'v1'], /--security-floor: "v1" is not a semantic version/);
    usage(['--version', '1.0.0', '--security-floor', '1.0.1'], /above --version 1\.0\.0/);
    const base = { id: 'dev-001', broker: 'mqtt://127.0.0.1:1883', dataDir: '/tmp/x' };
    assert.equal(resolveDeviceOptions({ ...base, factoryVersion: '1.0.0', securityFloor: '1.0.0' }).securityFloor, '1.0.0');
    assert.throws(() => resolveDeviceOptions({ ...base, factoryVersion: '1.0.0', securityFloor: '2.0.0' }), (err: unknown) => isFwError(err, 'E_CONFIG') && /securityFloor/.test(err.message));
    assert.throws(() => resolveDeviceOptions({ ...base, securityFloor: '1.0' }), (err: unknown) => isFwError(err, 'E_CONFIG') && /securityFloor/.test(err.message));
  });

  it('formats a tasks event on one line', () => {
    const sha256 = 'a'.repeat(64);
    const e: SimEvent = {
      id: 'dev-001', type: 'tasks',
      tasks: [
        { campaign: 'c-1', name: 'sensor-fw', version: '1.2.0', sha256, size: 200, steps: ['download', 'verify'], notBefore: 1_767_225_600_000 },
        { campaign: 'c-2', name: 'sensor-fw', version: '1.3.0', sha256, size: 200, steps: ['activate'] },
      ],
    };
    assert.match(formatEvent(e, false), /dev-001 tasks: 2 pending: c-1 sensor-fw v1\.2\.0 \(download, verify\) not before 2026-01-01T00:00:00\.000Z; c-2 sensor-fw v1\.3\.0 \(activate\)$/);
    assert.match(formatEvent({ id: 'dev-001', type: 'tasks', tasks: [] }, false), /tasks: none pending$/);
    assert.deepEqual(JSON.parse(formatEvent(e, true)).tasks, e.tasks);
  });
});
