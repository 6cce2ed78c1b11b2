import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { FwError } from '../protocol/errors.ts';
import { ROOT } from '../scripts/lib/processes.ts';
import { createPtyPair, type PtyPair } from '../scripts/lib/pty-pair.ts';

/** The laptop's serial cable on the simulated rig: two tty paths, and a way to pull it and plug it back. */
export interface SimCable {
  readonly laptopEnd: string;
  readonly gatewayEnd: string;
  /** Both ttys vanish (as when the USB-serial adapter is pulled). */
  unplug(): Promise<void>;
  /** Back at the same paths. */
  plug(): Promise<void>;
  close(): Promise<void>;
}

/**
 * A socat pty pair in `dir` without pacing (`baud` undefined), or a UART emulation at `baud`
 * (hil/uart-cable.ts: two pty pairs and a pacing relay, in its own process group).
 */
export async function makeSimCable(dir: string, baud: number | undefined, startMs = 10_000): Promise<SimCable> {
  if (baud === undefined) {
    let pair: PtyPair = await createPtyPair(dir);
    return {
      laptopEnd: pair.b, gatewayEnd: pair.a,
      unplug: () => pair.close(),
      async plug() {
        pair = await createPtyPair(dir);
      },
      close: () => pair.close(),
    };
  }
  const cableDir = join(dir, 'cable');
  let child: ChildProcess | undefined;
  const start = async (): Promise<void> => {
    const c = spawn(process.execPath, ['--import', 'tsx', 'hil/uart-cable.ts', '--dir', cableDir, '--baud', String(baud)], { cwd: ROOT, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    child = c;
    let stderr = '';
    c.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new FwError('E_RIG_COMMAND', `the emulated UART cable did not start within ${startMs} ms: ${stderr.trim()}`)), startMs);
      createInterface({ input: c.stdout! }).on('line', (l) => {
        if (!l.startsWith('cable ready')) return;
        clearTimeout(timer);
        resolve();
      });
      c.once('exit', (code) => {
        clearTimeout(timer);
        reject(new FwError('E_RIG_COMMAND', `the emulated UART cable exited (${code}): ${stderr.trim()}`));
      });
    });
  };
  const stop = async (): Promise<void> => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const gone = new Promise<void>((r) => c.once('exit', () => r()));
    try {
      process.kill(-c.pid!, 'SIGKILL'); // the relay and its socat processes: the whole cable at once
    } catch { /* already gone */ }
    await gone;
  };
  await start();
  return {
    laptopEnd: join(cableDir, 'laptop', 'b.tty'), gatewayEnd: join(cableDir, 'gateway', 'a.tty'),
    unplug: stop, plug: start, close: stop,
  };
}
