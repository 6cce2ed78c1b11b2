import { spawn, type ChildProcess } from 'node:child_process';
import { access, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface PtyPair {
  /** The two ends: what one side writes, the other reads. */
  a: string;
  b: string;
  close(): Promise<void>;
}

/**
 * A real pseudo-terminal pair joined by socat — a null-modem cable in software. The ends are
 * symlinks in a temp dir. socat must be installed (.ci/run installs it).
 */
export async function createPtyPair(dir?: string, timeoutMs = 5000): Promise<PtyPair> {
  const base = dir ?? await mkdtemp(join(tmpdir(), 'fwgate-pty-'));
  const a = join(base, 'a.tty');
  const b = join(base, 'b.tty');
  const child: ChildProcess = spawn('socat', [`pty,raw,echo=0,link=${a}`, `pty,raw,echo=0,link=${b}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  const spawnError = new Promise<never>((_, reject) => child.once('error', (e) => reject(new Error(`cannot start socat (is it installed?): ${e.message}`))));
  spawnError.catch(() => undefined);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ready = await Promise.race([Promise.all([access(a), access(b)]).then(() => true, () => false), spawnError]);
    if (ready) break;
    if (child.exitCode !== null) throw new Error(`socat exited (${child.exitCode}): ${stderr.trim()}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`socat did not create the pty pair within ${timeoutMs} ms`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    a, b,
    async close() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 2000);
      await exited;
      clearTimeout(t);
    },
  };
}
