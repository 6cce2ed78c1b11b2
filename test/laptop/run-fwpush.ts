import { spawn } from 'node:child_process';
import { ROOT } from '../../scripts/lib/processes.ts';
import { testKeyFiles } from '../helpers/keys.ts';

export interface FwpushRun {
  exited: Promise<{ code: number | null; stdout: string; stderr: string }>;
  /** Resolves once stdout has a line matching `re` (bounded by the run's own timeout). */
  saw(re: RegExp): Promise<void>;
}

/**
 * A push that makes its manifest (--version / --image-version, no --manifest, no --sign-key) is
 * signed with the test key at --seq 1 (unless it names one), as the Rig's gateway and devices
 * trust it (test/helpers/keys.ts).
 */
export function withTestSigning(args: string[]): string[] {
  const generates = (args.includes('--version') || args.includes('--image-version')) && !args.includes('--manifest') && !args.includes('-m');
  if (!generates || args.includes('--sign-key')) return args;
  return [...args, '--sign-key', testKeyFiles().key, ...(args.includes('--seq') ? [] : ['--seq', '1'])];
}

/** fwpush as a real process on the laptop end of the pty; stdout is a pipe (plain text). Bounded. */
export function startFwpush(args: string[], timeoutMs = 60_000): FwpushRun {
  const child = spawn(process.execPath, ['--import', 'tsx', 'laptop/cli.ts', ...withTestSigning(args)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  const watchers: { re: RegExp; resolve: () => void }[] = [];
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
    for (const w of watchers.filter((x) => x.re.test(stdout))) {
      watchers.splice(watchers.indexOf(w), 1);
      w.resolve();
    }
  });
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  const exited = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`fwpush ${args.join(' ')} did not finish within ${timeoutMs} ms\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
  return {
    exited,
    saw: (re) => (re.test(stdout) ? Promise.resolve() : Promise.race([
      new Promise<void>((resolve) => watchers.push({ re, resolve })),
      exited.then((r) => { throw new Error(`fwpush exited (${r.code}) without printing ${re}\n${r.stdout}\n${r.stderr}`); }),
    ])),
  };
}

/** The JSON lines of an `fwpush --json` run. */
export function jsonLines(stdout: string): Record<string, unknown>[] {
  return stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
}
