import { execFileSync, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describeError } from '../protocol/errors.ts';
import { buildDeviceC, fwdevicePath } from '../scripts/lib/device-c.ts';
import { ROOT } from '../scripts/lib/processes.ts';
import { bridgeUp, BRIDGE, deviceUp, GATEWAY_ADDRESS, isTcRate, netnsDevice, teardown } from './netns.ts';

/**
 * Power switch of a simulated board, for the simulated rig (hil/rigs/sim.json, docs/hil.md):
 *
 *   node --import tsx hil/sim-device.ts on [fwsim flags...]   # start this board's fwsim process
 *   node --import tsx hil/sim-device.ts off                   # power cut: SIGKILL it
 *   ... on --netns [--down 2mbit] [--up 1mbit] [fwsim flags...]  # in its own network namespace
 *   ... netns-setup | netns-cleanup                            # the rig's preflight / teardown
 *   ... on --c [fwdevice flags...]   # the board is a C device (device-c, `fwdevice`) instead of fwsim
 *   ... c-build                      # the C rig's preflight: build device-c (CMake, incremental)
 *
 * The board is HIL_DEVICE; it is one fwsim process (`--id HIL_DEVICE`) on its own files in
 * HIL_WORK/devices/<id>/, reaching HIL_BROKER; its console (fwsim's JSON events and messages) is
 * appended to HIL_WORK/devices/<id>.console and its pid kept in HIL_WORK/devices/<id>.pid. A
 * power-on starts it again on the same files, as a board boots from its flash. Off is SIGKILL:
 * no clean-up runs, exactly what a cut supply does to a board. Both are idempotent.
 */
function env(name: string): string {
  const v = process.env[name];
  if (v === undefined || v === '') throw new Error(`${name} is not set (this command is run by the HIL runner, npm run hil)`);
  return v;
}

/** Running (a zombie left for an init that does not reap counts as gone: it holds no socket or file). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true; // no procfs: trust kill(0)
  }
}

function readPid(file: string): number | undefined {
  if (!existsSync(file)) return undefined;
  const pid = Number(readFileSync(file, 'utf8').trim());
  return Number.isInteger(pid) && pid > 0 && alive(pid) ? pid : undefined;
}

async function main(argv: string[]): Promise<number> {
  const [action, ...rest] = argv;
  if (action === 'netns-setup') return netnsSetup();
  if (action === 'netns-cleanup') return netnsCleanup();
  if (action === 'c-build') return buildDeviceC().then(() => 0);
  const cDevice = rest[0] === '--c';
  const { netns, flags } = netnsFlags(cDevice ? rest.slice(1) : rest);
  const id = env('HIL_DEVICE');
  const dir = join(env('HIL_WORK'), 'devices');
  mkdirSync(dir, { recursive: true });
  const pidFile = join(dir, `${id}.pid`);
  if (action === 'on') {
    if (readPid(pidFile) !== undefined) return 0; // already on
    const pub = process.env.HIL_VENDOR_PUB;
    let broker = env('HIL_BROKER');
    let prefix: string[] = [];
    if (netns) {
      // its own namespace behind a veth pair on the rig's bridge; the broker at the bridge's address
      const d = netnsDevice(Number(env('HIL_DEVICE_INDEX')));
      if (!run(['ip', 'netns', 'list']).split('\n').some((l) => l.split(' ')[0] === d.ns)) {
        for (const cmd of deviceUp(d, netns)) run(cmd);
      }
      const url = new URL(broker);
      url.hostname = GATEWAY_ADDRESS;
      broker = url.toString().replace(/\/$/, '');
      prefix = ['ip', 'netns', 'exec', d.ns];
    }
    const common = [
      ...(process.env.HIL_HW ? ['--hw', process.env.HIL_HW] : []),
      ...(pub ? ['--pinned-key', pub] : []),
      ...flags,
    ];
    // a C board: its own files in <dir>/<id>/, as fwsim keeps them; a reboot re-executes in the same process
    const exe = cDevice ? fwdevicePath() : process.execPath; // built once by the rig's preflight, not per board
    const args = cDevice
      ? ['--id', id, '--broker', broker, '--dir', join(dir, id), ...common]
      : ['--import', 'tsx', 'device-sim/cli.ts', '--id', id, '--broker', broker, '--data', dir, '--json', ...common];
    const out = openSync(join(dir, `${id}.console`), 'a');
    // `ip netns exec` execs the command in the namespace: the pid is fwsim's either way
    const child = prefix.length
      ? spawn(prefix[0]!, [...prefix.slice(1), exe, ...args], { cwd: ROOT, detached: true, stdio: ['ignore', out, out] })
      : spawn(exe, args, { cwd: ROOT, detached: true, stdio: ['ignore', out, out] });
    closeSync(out);
    if (child.pid === undefined) throw new Error(`${cDevice ? 'fwdevice' : 'fwsim'} did not start`);
    writeFileSync(pidFile, `${child.pid}\n`);
    child.unref();
    return 0;
  }
  if (action === 'off') {
    const pid = readPid(pidFile);
    if (pid !== undefined) {
      process.kill(pid, 'SIGKILL');
      const deadline = Date.now() + 5_000;
      while (alive(pid)) {
        if (Date.now() > deadline) throw new Error(`process ${pid} of ${id} still alive 5 s after SIGKILL`);
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    rmSync(pidFile, { force: true });
    return 0;
  }
  process.stderr.write('usage: sim-device.ts on [--c] [fwsim or fwdevice flags...] | off | c-build   (HIL_DEVICE, HIL_WORK, HIL_BROKER from the HIL runner)\n');
  return 2;
}

/** `--netns [--down R] [--up R]` at the front of the flags; the rest go to fwsim. */
function netnsFlags(argv: string[]): { netns?: { down?: string; up?: string }; flags: string[] } {
  const flags = [...argv];
  if (flags[0] !== '--netns') return { flags };
  flags.shift();
  const netns: { down?: string; up?: string } = {};
  const next = (): string | undefined => flags[0];
  while (next() === '--down' || next() === '--up') {
    const [flag, rate] = [flags.shift()!, flags.shift()];
    if (rate === undefined || !isTcRate(rate)) throw new Error(`${flag}: expected a tc rate such as 2mbit or 500kbit, got "${rate ?? ''}"`);
    netns[flag === '--down' ? 'down' : 'up'] = rate;
  }
  return { netns, flags };
}

/** Run one ip/tc command; its stderr in the error. */
function run(cmd: string[]): string {
  try {
    return execFileSync(cmd[0]!, cmd.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`\`${cmd.join(' ')}\` failed: ${(e.stderr ?? '').trim() || e.message}`);
  }
}

/** Preflight of a netns rig: root, iproute2, no other run's bridge; then the bridge. Exit 1 with the reason otherwise. */
function netnsSetup(): number {
  if (process.getuid?.() !== 0) {
    process.stderr.write('network namespaces need root (run the rig as root, or use hil/rigs/sim.json: links shaped by fwsim\'s proxy)\n');
    return 1;
  }
  try {
    run(['ip', '-V']);
    run(['tc', '-V']);
  } catch {
    process.stderr.write('network namespaces need iproute2 (ip, tc): apt-get install -y iproute2\n');
    return 1;
  }
  if (run(['ip', '-o', 'link', 'show']).split('\n').some((l) => l.split(': ')[1]?.split('@')[0] === BRIDGE)) {
    process.stderr.write(`bridge ${BRIDGE} exists: another netns rig run is active, or a stale one (\`sim-device.ts netns-cleanup\` removes it)\n`);
    return 1;
  }
  try {
    for (const cmd of bridgeUp()) run(cmd);
  } catch (err) {
    process.stderr.write(`network namespaces not permitted here: ${(err as Error).message}\n`);
    return 1;
  }
  return 0;
}

/** Remove every board namespace and the bridge (idempotent). */
function netnsCleanup(): number {
  const namespaces = run(['ip', 'netns', 'list']).split('\n').map((l) => l.split(' ')[0]!).filter((n) => /^fwhil-\d+$/.test(n));
  for (const cmd of teardown(namespaces)) {
    try {
      run(cmd);
    } catch { /* already gone */ }
  }
  return 0;
}

main(process.argv.slice(2)).then((code) => process.exit(code), (err: unknown) => {
  process.stderr.write(`sim-device: ${describeError(err)}\n`);
  process.exit(1);
});
