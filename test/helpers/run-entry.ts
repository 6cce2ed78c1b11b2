import { spawn } from 'node:child_process';
import { ROOT } from '../../scripts/lib/processes.ts';

export interface EntryRun { code: number | null; stdout: string; stderr: string }

/** Run a project entry point (e.g. `gateway/cli.ts`) as a real process to its end; bounded by `timeoutMs`. */
export function runEntry(entry: string, args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<EntryRun> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const child = spawn(process.execPath, ['--import', 'tsx', entry, ...args], {
    cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], ...(opts.env ? { env: { ...process.env, ...opts.env } } : {}),
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${entry} ${args.join(' ')} did not finish within ${timeoutMs} ms\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
