/**
 * npm run demo [-- --devices N] [--c-devices N] [--release] [--json] [--keep] [--profile mixed|lan|wifi-good|wifi-poor|cellular|<file>]
 *
 * A whole rollout on this machine, every part real: a socat pty pair as the USB-serial cable,
 * fwgate on a temporary data dir and a free port, fwsim with N devices (each behind its own
 * shaping proxy: profile `mixed` by default, so links differ and ranking shows), and fwpush sending a
 * sample image over the pty. `--c-devices N` adds N C devices (device-c's fwdevice, built on
 * demand with CMake) to the fleet. `--release` rolls out a two-component release instead
 * (firmware-samples' sensor-release 1.1.0: `app` 1.1.0 requiring `net` >=1.5.0, and `net` 1.5.0) to
 * devices with components app and net, half of which already run that very `net`: those get only
 * `app` (docs/operations.md "Releases"). Ends when fwpush ends; everything started is stopped, also on
 * Ctrl-C. Exit code is fwpush's.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { spawn } from 'node:child_process';
import { DeviceFiles } from '../device-sim/bootloader.ts';
import { fleetDeviceId } from '../device-sim/fleet.ts';
import { makeSampleImage } from '../firmware-samples/image-format.ts';
import { generateReleases } from '../firmware-samples/releases.ts';
import { releaseDemoCheck } from './lib/demo-release.ts';
import { generatePassword, hashPassword, writeDevicesFile } from '../gateway/device-auth.ts';
import { generateSigningKey } from '../protocol/signature.ts';
import { cDeviceId, cDevicesOn, startCDevices } from './lib/demo-c-devices.ts';
import { freePort, ROOT, startTs, type Proc } from './lib/processes.ts';
import { createPtyPair, type PtyPair } from './lib/pty-pair.ts';

const { values } = parseArgs({
  options: {
    devices: { type: 'string', default: '20' },
    'c-devices': { type: 'string', default: '0' },
    json: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    profile: { type: 'string', default: 'mixed' },
    release: { type: 'boolean', default: false },
  },
  strict: true,
});
const devices = Number(values.devices);
if (!Number.isInteger(devices) || devices < 1 || devices > 1000) {
  process.stderr.write(`demo: --devices must be a whole number from 1 to 1000, got "${values.devices}"\n`);
  process.exit(2);
}
const cDevices = Number(values['c-devices']);
if (!Number.isInteger(cDevices) || cDevices < 0 || cDevices > 100) {
  process.stderr.write(`demo: --c-devices must be a whole number from 0 to 100, got "${values['c-devices']}"\n`);
  process.exit(2);
}
if (values.release && cDevices > 0) {
  process.stderr.write('demo: --release runs on simulated devices only (the C device kit has one component, app, and checks manifest signatures, not release signatures); drop --c-devices\n');
  process.exit(2);
}
const json = values.json;
const say = (s: string): void => {
  if (!json) process.stdout.write(`${s}\n`);
  else process.stderr.write(`${s}\n`);
};

const HW = 'sensor-v1';
const FROM = '1.0.0';
const TO = '1.1.0';

const dir = await mkdtemp(join(tmpdir(), 'fwgate-demo-'));
let pty: PtyPair | undefined;
const procs: Proc[] = [];
let cleaning: Promise<void> | undefined;

async function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const p of procs.reverse()) await p.stop(5000).catch(() => undefined);
    await pty?.close().catch(() => undefined);
    if (!values.keep) await rm(dir, { recursive: true, force: true });
  })();
  return cleaning;
}
process.on('SIGINT', () => void cleanup().finally(() => process.exit(130)));
process.on('SIGTERM', () => void cleanup().finally(() => process.exit(143)));

/** The release demo's checks are done: skip the single-image checks. */
class Done extends Error {}

let code = 1;
try {
  say(`demo: working in ${dir}${values.keep ? ' (kept)' : ''}`);
  pty = await createPtyPair(dir);
  say(`demo: serial cable = pty pair ${pty.a} <-> ${pty.b}`);

  const image = makeSampleImage({ name: 'sensor-fw', version: TO, hw: HW, size: 256 * 1024 });
  const imagePath = join(dir, `sensor-fw-${TO}.bin`);
  await writeFile(imagePath, image);

  // A throw-away vendor key pair (docs/operations.md "Signing keys"): fwgate trusts it, the devices
  // pin it, fwpush signs the manifest with it.
  const keyBase = join(dir, 'vendor');
  const keygen = spawn(process.execPath, ['--import', 'tsx', 'laptop/cli.ts', 'keygen', '--out', keyBase], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  let keygenOut = '';
  keygen.stdout.on('data', (d: Buffer) => { keygenOut += d.toString(); });
  const keygenCode = await new Promise<number>((resolve) => keygen.once('exit', (c) => resolve(c ?? 1)));
  if (keygenCode !== 0) throw new Error(`fwpush keygen exited with ${keygenCode}`);
  say(`demo: signing key pair ${keyBase}.key / .pub (${keygenOut.split('\n')[0] ?? ''})`);

  // A throw-away technician key (docs/operations.md "Technician keys"): only a laptop holding it may upload.
  const tech = generateSigningKey();
  await writeFile(join(dir, 'technician.key'), tech.privateKeyPem, { mode: 0o600 });
  await writeFile(join(dir, 'gateway.json'), JSON.stringify({ uplink: { technicianKeys: [{ publicKey: tech.publicKeyPem }] } }));
  say(`demo: technician key ${join(dir, 'technician.key')} (key id ${tech.keyId}), trusted by fwgate`);

  // Broker authentication (docs/operations.md "Device credentials"): a device list with a scrypt
  // hash per device for fwgate, the passwords themselves for fwsim.
  const ids = [...Array.from({ length: devices }, (_, i) => fleetDeviceId('dev', i)), ...Array.from({ length: cDevices }, (_, i) => cDeviceId(i))];
  const passwords = Object.fromEntries(ids.map((id) => [id, generatePassword()]));
  await writeDevicesFile(join(dir, 'devices.json'), await Promise.all(ids.map(async (id) => ({ id, scrypt: await hashPassword(passwords[id]!) }))));
  await writeFile(join(dir, 'credentials.json'), JSON.stringify(passwords), { mode: 0o600 });

  const port = await freePort();
  const gw = startTs('fwgate', 'gateway/cli.ts', [
    '--config', join(dir, 'gateway.json'),
    '--serial', pty.a, '--data', join(dir, 'gateway'), '--host', '127.0.0.1', '--port', String(port), '--log-format', 'json',
    '--devices', join(dir, 'devices.json'),
    '--trusted-key', `${keyBase}.pub`,
  ], { stderr: 'pipe' });
  procs.push(gw);
  const gwLog = join(dir, 'gateway.log');
  const { createWriteStream } = await import('node:fs');
  const gwLogStream = createWriteStream(gwLog);
  gw.child.stderr?.pipe(gwLogStream);
  await gw.waitForLine(/^fwgate ready/, 30_000);
  say(`demo: fwgate up, broker mqtt://127.0.0.1:${port} (log: ${gwLog})`);

  // --release: the sample release pair, and the first half of the devices already running its `net`
  const releaseDir = join(dir, 'release');
  const haveNet = Math.floor(devices / 2);
  if (values.release) {
    await mkdir(releaseDir);
    await generateReleases(releaseDir, 256 * 1024, 4096);
  }
  const sim = startTs('fwsim', 'device-sim/cli.ts', [
    '--broker', `mqtt://127.0.0.1:${port}`, '--count', String(devices), '--data', join(dir, 'devices'),
    '--credentials', join(dir, 'credentials.json'),
    '--hw', HW, '--version', FROM, '--profile', values.profile, '--pinned-key', `${keyBase}.pub`, '--json',
    ...(values.release ? ['--components', 'app,net', ...(haveNet > 0 ? ['--component-image', `${haveNet}:net=${join(releaseDir, 'release-net-1.5.0.bin')}`] : [])] : []),
  ]);
  procs.push(sim);
  let connected = 0;
  await sim.waitForLine((l) => {
    try {
      const e = JSON.parse(l) as { type?: string };
      if (e.type === 'connected') connected++;
    } catch { /* not a JSON line */ }
    return connected >= devices;
  }, 60_000);
  say(`demo: ${devices} simulated devices (${HW}, running ${FROM}${values.release ? `; components app and net, ${haveNet} of them already on the release's net 1.5.0` : ''}) connected, each through its own shaped link (profile ${values.profile})`);
  const cProcs = await startCDevices(cDevices, {
    broker: `mqtt://127.0.0.1:${port}`, dir: join(dir, 'c-devices'), credentials: join(dir, 'credentials.json'), pinnedKey: `${keyBase}.pub`, hw: HW, version: FROM,
  });
  procs.push(...cProcs);
  if (cDevices > 0) say(`demo: ${cDevices} C devices (device-c fwdevice, ${HW}, running ${FROM}) connected directly`);

  let pushArgs = [imagePath, '--name', 'sensor-fw', '--version', TO, '--hw', HW, '--sign-key', `${keyBase}.key`, '--seq', '1'];
  if (values.release) {
    // the firmware engineer signs the release description (fwsign release), the technician pushes it
    const desc = join(releaseDir, 'release-1.1.0.json');
    const signed = join(releaseDir, 'sensor-release-1.1.0.release.json');
    const sign = spawn(process.execPath, ['--import', 'tsx', 'laptop/fwsign-cli.ts', 'release', desc, '--key', `${keyBase}.key`, '--out', signed], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
    const signCode = await new Promise<number>((resolve) => sign.once('exit', (c) => resolve(c ?? 1)));
    if (signCode !== 0) throw new Error(`fwsign release exited with ${signCode}`);
    say(`demo: release ${desc} signed -> ${signed}`);
    pushArgs = ['release', desc, '--manifest', signed];
  }
  say(`demo: fwpush ${pushArgs[0] === 'release' ? `release ${pushArgs[1]!}` : imagePath} -> ${pty.b}\n`);
  const push = spawn(process.execPath, [
    '--import', 'tsx', 'laptop/cli.ts', '--port', pty.b, ...pushArgs, '--tech-key', join(dir, 'technician.key'), ...(json ? ['--json'] : []),
  ], { cwd: ROOT, stdio: 'inherit' });
  code = await new Promise<number>((resolve) => push.once('exit', (c, s) => resolve(c ?? (s ? 128 : 1))));
  say(`\ndemo: fwpush exited with ${code}`);

  // Check from the devices' side, independently of what the gateway reported: stop the
  // simulator cleanly and read every device's slot-state record from its flash files.
  await sim.stop();
  if (values.release) {
    const check = await releaseDemoCheck(join(dir, 'devices'), devices, releaseDir);
    say(`demo: checked on the devices' own files: ${check.onRelease}/${devices} run app 1.1.0 and net 1.5.0 of the release (confirmed, nothing in trial); ${haveNet} had that net before and got only app`);
    for (const p of check.problems) say(`demo:   ${p}`);
    if (code === 0 && check.onRelease !== devices) code = 1;
    throw new Done();
  }
  let onNew = 0;
  for (let i = 0; i < devices; i++) {
    const id = fleetDeviceId('dev', i);
    const state = await new DeviceFiles(join(dir, 'devices', id), 16 * 1024 * 1024).loadState();
    const active = state?.slots[state.active];
    if (active?.version === TO && active.state === 'confirmed' && !state!.trial) onNew++;
  }
  for (const p of cProcs) await p.stop();
  const cOnNew = await cDevicesOn(cDevices, join(dir, 'c-devices'), TO);
  say(`demo: checked on the devices' own files: ${onNew}/${devices} boot ${TO} (confirmed)${cDevices > 0 ? `; C devices ${cOnNew}/${cDevices}` : ''}`);
  if (code === 0 && (onNew !== devices || cOnNew !== cDevices)) code = 1;
} catch (err) {
  if (!(err instanceof Done)) {
    process.stderr.write(`demo: ${(err as Error).message}\n`);
    code = 1;
  }
} finally {
  await cleanup();
}
process.exit(code);
