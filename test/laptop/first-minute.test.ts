import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { portOpenHint, resolveDefaults } from '../../laptop/defaults.ts';
import { isLikelyAdapter, listPorts, type PortInfo } from '../../laptop/ports.ts';
import { TOOL_VERSION } from '../../protocol/tool-version.ts';
import { createPtyPair, type PtyPair } from '../../scripts/lib/pty-pair.ts';
import { startTs, type Proc } from '../../scripts/lib/processes.ts';
import { runEntry } from '../helpers/run-entry.ts';

const FTDI: PortInfo = { path: '/dev/ttyUSB0', byId: '/dev/serial/by-id/usb-FTDI_FT232R_A1-if00-port0', usb: '0403:6001', manufacturer: 'FTDI' };
const BUILTIN: PortInfo = { path: '/dev/ttyS0' };

describe("fwpush: the technician's first minute", function () {
  this.timeout(60_000);
  let dir: string;
  let pty: PtyPair | undefined;
  let push: Proc | undefined;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fwpush-first-'));
  });
  afterEach(async () => {
    await push?.stop();
    push = undefined;
    await pty?.close();
    pty = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  it('port and key: the flag, else FWPUSH_PORT / FWPUSH_TECH_KEY, else the profile, else the one USB-serial adapter', async () => {
    const profile = join(dir, 'profile.json');
    await writeFile(profile, JSON.stringify({ port: '/dev/ttyProfile', techKey: 'profile.key' }));
    const list = async (): Promise<PortInfo[]> => [BUILTIN, FTDI];
    const none = join(dir, 'none.json');
    assert.deepEqual(await resolveDefaults({ port: '/dev/ttyFlag', techKey: 'flag.key' }, { env: { FWPUSH_PROFILE: profile, FWPUSH_PORT: '/dev/ttyEnv' }, listPorts: list }),
      { port: '/dev/ttyFlag', techKey: 'flag.key', notes: [] });
    const env = await resolveDefaults({}, { env: { FWPUSH_PROFILE: profile, FWPUSH_PORT: '/dev/ttyEnv', FWPUSH_TECH_KEY: 'env.key' }, listPorts: list });
    assert.deepEqual([env.port, env.techKey], ['/dev/ttyEnv', 'env.key']);
    assert.match(env.notes.join('\n'), /port \/dev\/ttyEnv \(from FWPUSH_PORT\)/);
    const prof = await resolveDefaults({}, { env: { FWPUSH_PROFILE: profile }, listPorts: list });
    assert.deepEqual([prof.port, prof.techKey], ['/dev/ttyProfile', 'profile.key']);
    const auto = await resolveDefaults({}, { env: { FWPUSH_PROFILE: none }, listPorts: list });
    assert.equal(auto.port, FTDI.byId, 'the stable by-id name of the only adapter');
    assert.match(auto.notes[0]!, /the only USB-serial adapter found \(\/dev\/ttyUSB0 .*usb 0403:6001 FTDI/);
    await assert.rejects(resolveDefaults({}, { env: { FWPUSH_PROFILE: none }, listPorts: async () => [BUILTIN] }), /no USB-serial adapter found.*fwpush ports/);
    await assert.rejects(resolveDefaults({}, { env: { FWPUSH_PROFILE: none }, listPorts: async () => [FTDI, { path: '/dev/ttyACM0' }] }), /2 USB-serial adapters found \(\/dev\/ttyUSB0, \/dev\/ttyACM0\).*fwpush ports/);
    await writeFile(profile, JSON.stringify({ prot: 'x' }));
    await assert.rejects(resolveDefaults({}, { env: { FWPUSH_PROFILE: profile }, listPorts: list }), /profile\.json: .*Unrecognized key: "prot"/);
  });

  it('fwpush ports: by-id names joined, USB adapters marked likely, built-in ttyS not', async () => {
    const byId = join(dir, 'by-id');
    await import('node:fs/promises').then((fs) => fs.mkdir(byId));
    const dev = join(dir, 'ttyUSB0');
    await writeFile(dev, '');
    await symlink(dev, join(byId, 'usb-FTDI_FT232R-if00-port0'));
    const ports = await listPorts(async () => [{ path: dev, vendorId: '0403', productId: '6001', manufacturer: 'FTDI' }, { path: '/dev/ttyS0' }], byId);
    assert.deepEqual(ports.find((p) => p.path === dev), { path: dev, byId: join(byId, 'usb-FTDI_FT232R-if00-port0'), usb: '0403:6001', manufacturer: 'FTDI' });
    assert.deepEqual(ports.map(isLikelyAdapter), ports.map((p) => p.path === dev));
  });

  it('a missing port names fwpush ports; a permission error names the dialout group', () => {
    assert.match(portOpenHint(new Error('cannot open serial port /dev/ttyUSB9: Error: No such file or directory'), '/dev/ttyUSB9')!, /does not exist.*fwpush ports/);
    assert.match(portOpenHint(new Error('cannot open serial port /dev/ttyUSB0: Error: Permission denied, cannot open /dev/ttyUSB0'), '/dev/ttyUSB0')!, /dialout group.*fwpush ports/);
  });

  it('with no gateway on the line, says within seconds what it waits for and the likely causes, and keeps trying', async () => {
    pty = await createPtyPair(dir);
    push = startTs('fwpush', 'laptop/cli.ts', ['--port', pty.b, 'status']);
    const line = await push.waitForLine(/waiting for the gateway/, 20_000);
    assert.match(line, new RegExp(`waiting for the gateway on ${pty.b}.*fwgate is not running with --serial.*wrong port \\(fwpush ports lists them\\).*wrong cable.*Still trying for \\d+ s`));
    assert.equal(push.child.exitCode, null, 'still trying after the hint');
  });

  it('-V / --tool-version print the version; a usage error is one line and "see --help"; keygen is listed', async () => {
    const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    assert.equal(TOOL_VERSION, pkg.version);
    const tools = [['laptop/cli.ts', '-V', 'fwpush'], ['laptop/cli.ts', '--tool-version', 'fwpush'], ['gateway/cli.ts', '--version', 'fwgate'], ['device-sim/cli.ts', '--version', 'fwsim'], ['laptop/fwsign-cli.ts', '-V', 'fwsign']] as const;
    const [bad, help, ...versions] = await Promise.all([
      runEntry('laptop/cli.ts', ['--bogus', 'img.bin']), runEntry('laptop/cli.ts', ['--help']), ...tools.map(([entry, flag]) => runEntry(entry, [flag])),
    ]);
    tools.forEach(([, flag, name], i) => assert.deepEqual([versions[i]!.code, versions[i]!.stdout], [0, `${name} ${TOOL_VERSION}\n`], `${name} ${flag}`));
    assert.equal(bad!.code, 2);
    assert.equal(bad!.stderr, "error: unknown option '--bogus' (see fwpush --help)\n");
    assert.match(help!.stdout, /^ {2}fwpush keygen --out <base>/m);
    assert.match(help!.stdout, /^ {2}fwpush ports/m);
  });
});
