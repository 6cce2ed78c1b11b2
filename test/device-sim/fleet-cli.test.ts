import assert from 'node:assert/strict';
import { isFwError } from '../../protocol/errors.ts';
import { parseCli, formatEvent } from '../../device-sim/cli.ts';
import { Fleet, fleetDeviceId } from '../../device-sim/fleet.ts';
import { EventLog, FAST, ScriptedGateway, startBroker, tempDir, waitFor, type TestBroker, runCli } from './helpers.ts';



describe('device-sim: fleet and CLI', function () {
  let broker: TestBroker;
  let dir: { path: string; remove(): Promise<void> };
  beforeEach(async () => {
    broker = await startBroker();
    dir = await tempDir();
  });
  afterEach(async () => {
    await broker.close();
    await dir.remove();
  });

  it('fleet: N devices with padded ids, each its own connection, per-device faults; stop closes them all', async () => {
    const gw = await ScriptedGateway.connect(broker.url);
    const fleet = new Fleet({
      broker: broker.url, count: 3, dataDir: dir.path, prefix: 'site1',
      device: { ...FAST, hw: 'sensor-v2', factoryVersion: '2.0.0' },
      faults: (i) => (i === 1 ? { busy: true } : undefined),
    });
    const log = new EventLog(fleet);
    try {
      assert.deepEqual(fleet.devices.map((d) => d.id), ['site1-001', 'site1-002', 'site1-003']);
      await fleet.start();
      await waitFor(() => log.count('connected') === 3, 5_000, '3 connects');
      for (const d of fleet.devices) {
        const st = await gw.expect(d.id, 'status');
        assert.equal(st.version, '2.0.0');
        assert.equal(st.hw, 'sensor-v2');
        assert.equal(st.busy, d.id === 'site1-002');
      }
      assert.equal(broker.broker.connectedClients, 4);
      assert.equal(fleet.get('site1-003'), fleet.devices[2]);
    } finally {
      await fleet.stop();
      await gw.close();
    }
    await waitFor(() => broker.broker.connectedClients === 0, 2_000, 'all clients gone');
    assert.equal(log.count('stopped'), 3);
    assert.equal(fleetDeviceId('dev', 0), 'dev-001');
    assert.equal(fleetDeviceId('dev', 1233), 'dev-1234');
  });

  it('parseCli: flags map to fleet options and per-device faults', () => {
    const cfg = parseCli([
      '--broker', 'mqtt://10.0.0.5:1884', '--count', '4', '--data', dir.path, '--hw', 'sensor-v2', '--version', '1.1.0',
      '--prefix', 'lab', '--boot-delay', '0', '--busy', '1', '--fail-self-test', 'lab-004', '--corrupt-chunk', '2:5',
      '--drop-after', 'lab-003:10', '--power-cut', '1:first-boot', '--json',
    ]);
    assert.equal(cfg.json, true);
    assert.equal(cfg.fleet.count, 4);
    assert.equal(cfg.fleet.device?.bootDelayMs, 0);
    assert.equal(cfg.fleet.device?.factoryVersion, '1.1.0');
    const f = (i: number): unknown => cfg.fleet.faults?.(i, fleetDeviceId('lab', i));
    assert.deepEqual(f(0), { busy: true, corruptChunk: 5, powerCutAt: 'first-boot' });
    assert.deepEqual(f(1), { corruptChunk: 5 });
    assert.deepEqual(f(2), { dropAfterChunks: 10 });
    assert.deepEqual(f(3), { failSelfTest: true });
  });

  it('parseCli: invalid flags are usage errors that name the flag', () => {
    const bad: [string[], RegExp][] = [
      [['--count', '0'], /--count/],
      [['--count', 'many'], /--count/],
      [['--broker', 'http://x'], /--broker/],
      [['--version', '1.0'], /--version/],
      [['--boot-delay', '-5'], /--boot-delay/],
      [['--max-chunk', '10'], /--max-chunk/],
      [['--corrupt-chunk', '2'], /--corrupt-chunk/],
      [['--corrupt-chunk', '1:x'], /--corrupt-chunk/],
      [['--power-cut', '1:lunch'], /--power-cut: phase must be one of/],
      [['--busy', 'dev-009'], /no device dev-009/],
      [['--busy', 'a b'], /--busy/],
      [['--prefix', '-bad'], /--prefix/],
    ];
    for (const [args, re] of bad) {
      assert.throws(() => parseCli(args), (err: unknown) => isFwError(err, 'E_USAGE') && re.test(err.message), args.join(' '));
    }
  });

  it('parseCli --fsync: devices fsync their flushes only when asked (default off, docs/device-sim.md)', () => {
    assert.equal(parseCli(['--data', dir.path]).fleet.device?.fsync, false);
    const cfg = parseCli(['--data', dir.path, '--fsync']);
    assert.equal(cfg.fleet.device?.fsync, true);
    assert.equal(new Fleet(cfg.fleet).devices[0]!.files.sync.fsync, true);
    assert.equal(new Fleet(parseCli(['--data', dir.path]).fleet).devices[0]!.files.sync.fsync, false);
  });

  it('parseCli --id: explicit device ids (one device per process on a HIL rig), checked like generated ones', () => {
    const cfg = parseCli(['--data', dir.path, '--id', 'board-07', '--busy', 'board-07']);
    assert.equal(cfg.fleet.count, 1);
    assert.deepEqual(cfg.fleet.ids, ['board-07']);
    assert.deepEqual(cfg.fleet.faults!(0, 'board-07'), { busy: true });
    assert.deepEqual(new Fleet(cfg.fleet).devices.map((d) => d.id), ['board-07']);
    assert.deepEqual(parseCli(['--data', dir.path, '--id', 'a', '--id', 'b']).fleet.ids, ['a', 'b']);
    const bad: [string[], RegExp][] = [
      [['--id', 'no spaces'], /--id: "no spaces" is not a device id/],
      [['--id', 'a', '--id', 'a'], /--id: "a" given twice/],
      [['--id', 'a', '--count', '3'], /--count 3 does not match the 1 --id/],
      [['--id', 'a', '--busy', 'b'], /no device b in this fleet \(a\.\.a\)/],
    ];
    for (const [args, re] of bad) {
      assert.throws(() => parseCli(['--data', dir.path, ...args]), (err: unknown) => isFwError(err, 'E_USAGE') && re.test(err.message), args.join(' '));
    }
  });

  it('formatEvent: human lines and JSON lines', () => {
    const e = { id: 'dev-001', type: 'booted', version: '1.1.0', slot: 'b', trial: true, reverted: false, factory: false, bootCount: 2 } as const;
    assert.match(formatEvent(e, false), /^\d\d:\d\d:\d\d\.\d{3} dev-001 booted v1\.1\.0 from slot b \(trial\)$/);
    const j = JSON.parse(formatEvent(e, true)) as Record<string, unknown>;
    assert.equal(j.type, 'booted');
    assert.equal(j.id, 'dev-001');
    assert.equal(typeof j.ts, 'string');
  });

  it('fwsim process: exit 2 on a bad flag', async () => {
    const r = await runCli(['--count', '0']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--count: must be 1\.\.10000/);
    const u = await runCli(['--no-such-flag']);
    assert.equal(u.code, 2);
    assert.match(u.stderr, /unknown option/);
  });

  it('fwsim process: devices connect, print JSON events, and SIGTERM closes them cleanly with exit 0', async () => {
    const r = await runCli(['--broker', broker.url, '--count', '2', '--data', dir.path, '--json', '--boot-delay', '0'], {
      untilStdout: (out) => out.split('\n').filter((l) => l.includes('"type":"connected"')).length === 2,
    });
    assert.equal(r.code, 0, r.stderr);
    const events = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { id: string; type: string });
    assert.deepEqual(events.filter((e) => e.type === 'booted').map((e) => e.id).sort(), ['dev-001', 'dev-002']);
    assert.equal(events.filter((e) => e.type === 'stopped').length, 2);
    await waitFor(() => broker.broker.connectedClients === 0, 2_000, 'clients gone');
  });
});
