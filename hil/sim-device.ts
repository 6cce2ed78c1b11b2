import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describeError } from '../protocol/errors.ts';
import { ROOT } from '../scripts/lib/processes.ts';

/**
 * Power switch of a simulated board, for the simulated rig (hil/rigs/sim.json, docs/hil.md):
 *
 *   node --import tsx hil/sim-device.ts on [fwsim flags...]   # start this board's fwsim process
 *   node --import tsx hil/sim-device.ts off                   # power cut: SIGKILL it
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
  const [action, ...flags] = argv;
  const id = env('HIL_DEVICE');
  const dir = join(env('HIL_WORK'), 'devices');
  mkdirSync(dir, { recursive: true });
  const pidFile = join(dir, `${id}.pid`);
  if (action === 'on') {
    if (readPid(pidFile) !== undefined) return 0; // already on
    const pub = process.env.HIL_VENDOR_PUB;
    const args = [
      '--import', 'tsx', 'device-sim/cli.ts', '--id', id, '--broker', env('HIL_BROKER'), '--data', dir, '--json',
      ...(process.env.HIL_HW ? ['--hw', process.env.HIL_HW] : []),
      ...(pub ? ['--pinned-key', pub] : []),
      ...flags,
    ];
    const out = openSync(join(dir, `${id}.console`), 'a');
    const child = spawn(process.execPath, args, { cwd: ROOT, detached: true, stdio: ['ignore', out, out] });
    closeSync(out);
    if (child.pid === undefined) throw new Error('fwsim did not start');
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
  process.stderr.write('usage: sim-device.ts on [fwsim flags...] | off   (HIL_DEVICE, HIL_WORK, HIL_BROKER from the HIL runner)\n');
  return 2;
}

main(process.argv.slice(2)).then((code) => process.exit(code), (err: unknown) => {
  process.stderr.write(`sim-device: ${describeError(err)}\n`);
  process.exit(1);
});
