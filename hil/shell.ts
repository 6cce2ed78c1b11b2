import { spawn } from 'node:child_process';
import { FwError } from '../protocol/errors.ts';

/** What a rig command gets besides the runner's own environment (docs/hil.md "Commands"). */
export type HilEnv = Partial<Record<
  'HIL_RIG_DIR' | 'HIL_WORK' | 'HIL_REPO' | 'HIL_BROKER' | 'HIL_DEVICE' | 'HIL_DEVICE_INDEX' | 'HIL_HW' | 'HIL_VERSION' | 'HIL_VARIANT' | 'HIL_OUT'
  | 'HIL_VENDOR_KEY' | 'HIL_VENDOR_PUB' | 'HIL_TECH_KEY',
  string>>;

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

/** At most this much of a command's output is kept (the tail), for the report. */
const KEEP = 16 * 1024;

/**
 * Run one rig command with `sh -c` in `cwd`, bounded by `timeoutMs` (the whole process group is
 * killed at the bound). A non-zero exit or the bound is FwError E_RIG_COMMAND naming the
 * command, its exit code and the tail of its stderr.
 */
export async function runCommand(what: string, command: string, opts: { cwd: string; env: HilEnv; timeoutMs: number }): Promise<CommandResult> {
  const started = Date.now();
  const child = spawn('sh', ['-c', command], {
    cwd: opts.cwd, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true,
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => { stdout = (stdout + d.toString()).slice(-KEEP); });
  child.stderr.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-KEEP); });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch { /* already gone */ }
  }, opts.timeoutMs);
  const code = await new Promise<number>((resolve, reject) => {
    child.once('error', (err) => reject(new FwError('E_RIG_COMMAND', `${what}: cannot run \`${command}\`: ${err.message}`, { cause: err })));
    // 'close', not 'exit': the output pipes are drained by then
    child.once('close', (c, signal) => resolve(c ?? (signal ? 128 : 1)));
  }).finally(() => clearTimeout(timer));
  const ms = Date.now() - started;
  if (timedOut) throw new FwError('E_RIG_COMMAND', `${what}: \`${command}\` did not finish within ${opts.timeoutMs} ms`, { details: { stdout, stderr } });
  if (code !== 0) {
    const tail = stderr.trim().split('\n').slice(-5).join(' | ');
    throw new FwError('E_RIG_COMMAND', `${what}: \`${command}\` exited with ${code}${tail ? `: ${tail}` : ''}`, { details: { code, stdout, stderr } });
  }
  return { code, stdout, stderr, ms };
}
