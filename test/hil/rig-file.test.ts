import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isFwError } from '../../protocol/errors.ts';
import { loadRigFile, parseRig } from '../../hil/rig-file.ts';
import { main } from '../../hil/cli.ts';

const device = (id: string) => ({ id, hw: 'sensor-v1', power: { on: 'true', off: 'true' } });
const realRig = {
  name: 'bench-3',
  gateway: { local: { serial: '/dev/ttyUSB0', host: '0.0.0.0', port: 1883 } },
  laptop: { port: '/dev/ttyUSB1', techKey: 'keys/tech.key', unplug: 'uhubctl -l 1-1 -p 2 -a off', plug: 'uhubctl -l 1-1 -p 2 -a on' },
  images: { make: { command: './build.sh' }, signKey: 'keys/vendor.key' },
  devices: [{ ...device('board-01'), console: { port: '/dev/ttyUSB2' }, booted: 'fwgate-app v\\d+' }],
};

describe('hil: rig file', () => {
  it('the simulated rig and a real-board rig parse, with defaults filled in', async () => {
    const sim = await loadRigFile('hil/rigs/sim.json');
    assert.equal(sim.file.devices.length, 4);
    assert.equal(sim.file.keys.generate, true);
    assert.ok(sim.dir.endsWith('hil/rigs'));
    const real = parseRig(realRig, 'test');
    assert.deepEqual(real.timeouts, { scenarioMs: 180_000, commandMs: 30_000, powerOffMs: 1_000, bootMs: 60_000, unplugMs: 1_500 });
    assert.equal(real.devices[0]!.console && 'port' in real.devices[0]!.console ? real.devices[0]!.console.baud : 0, 115_200);
    const netns = await loadRigFile('hil/rigs/sim-netns.json');
    assert.deepEqual([netns.file.preflight !== undefined, netns.file.teardown !== undefined, 'local' in netns.file.gateway && netns.file.gateway.local.host], [true, true, '10.77.0.1']);
    const example = await loadRigFile('hil/rigs/example-boards.json');
    assert.ok(example.file.devices.length >= 2, 'the worked example in docs/hil.md parses');
  });

  it('bad rig files are refused with the field named', () => {
    const cases: [unknown, RegExp][] = [
      [{ ...realRig, devices: [] }, /devices: must list at least one device/],
      [{ ...realRig, devices: [device('a b')] }, /devices\.0\.id: must be a device id/],
      [{ ...realRig, devices: [{ ...device('x'), power: { on: 'true' } }] }, /devices\.0\.power\.off/],
      [{ ...realRig, devices: [device('x'), device('x')] }, /devices\.1\.id: device id "x" listed twice/],
      [{ ...realRig, devices: [{ ...device('x'), booted: 'ok' }] }, /devices\.0\.booted: a booted pattern needs a console/],
      [{ ...realRig, devices: [{ ...device('x'), console: { port: '/dev/x' }, booted: '(' }] }, /devices\.0\.booted: not a regular expression/],
      [{ ...realRig, laptop: { techKey: 'k' } }, /laptop\.port: give the laptop's serial port/],
      [{ ...realRig, laptop: { ...realRig.laptop, plug: undefined } }, /laptop\.plug: unplug and plug go together/],
      [{ ...realRig, laptop: { port: '/dev/x' } }, /laptop\.techKey: give the technician key/],
      [{ ...realRig, gateway: { remote: { broker: 'http://x' } } }, /gateway/],
      [{ ...realRig, timeouts: { scenarioMs: -1 } }, /timeouts\.scenarioMs/],
      [{ ...realRig, surprise: 1 }, /surprise/],
      [{ ...realRig, gateway: { remote: { broker: 'mqtt://10.0.0.2:1883' } }, laptop: { pty: true, techKey: 'k' } }, /laptop\.pty: a pty cable needs the local gateway/],
      [{ ...realRig, devices: [device('x'), { ...device('y'), hw: 'sensor-v2' }] }, /devices: one hardware model per rig .* sensor-v1, sensor-v2/],
    ];
    for (const [raw, re] of cases) {
      assert.throws(() => parseRig(raw, 'rig'), (err: unknown) => isFwError(err, 'E_RIG') && re.test(err.message), `${JSON.stringify(raw).slice(0, 120)} -> ${re}`);
    }
  });

  it('unreadable and non-JSON rig files say which file and why', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fwgate-rig-'));
    try {
      await writeFile(join(dir, 'bad.json'), '{ "name": ');
      await assert.rejects(loadRigFile(join(dir, 'bad.json')), (err: unknown) => isFwError(err, 'E_RIG') && /bad\.json is not JSON/.test(err.message));
      await assert.rejects(loadRigFile(join(dir, 'none.json')), (err: unknown) => isFwError(err, 'E_RIG') && /cannot read rig file .*none\.json/.test(err.message));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('npm run hil: usage errors exit 2 naming the problem; --list shows every scenario with what it expects', async () => {
    const run = async (argv: string[]): Promise<{ code: number; out: string; err: string }> => {
      let out = '';
      let err = '';
      const code = await main(argv, (s) => { out += s; }, (s) => { err += s; });
      return { code, out, err };
    };
    assert.deepEqual(await run(['--list']).then((r) => [r.code, /happy-path: Happy path/.test(r.out), /laptop-unplug/.test(r.out), /expects: /.test(r.out)]), [0, true, true, true]);
    const noRig = await run([]);
    assert.deepEqual([noRig.code, /--rig <file> is required/.test(noRig.err)], [2, true]);
    const unknown = await run(['--rig', 'hil/rigs/sim.json', '--scenario', 'nope']);
    assert.deepEqual([unknown.code, /no scenario "nope"/.test(unknown.err)], [2, true]);
    const missing = await run(['--rig', 'hil/rigs/missing.json']);
    assert.deepEqual([missing.code, /E_RIG: cannot read rig file/.test(missing.err)], [2, true]);
    const flag = await run(['--rgi', 'x']);
    assert.equal(flag.code, 2);
  });
});
