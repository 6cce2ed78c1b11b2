import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { startTs, type Proc } from '../../scripts/lib/processes.ts';
import { createPtyPair, type PtyPair } from '../../scripts/lib/pty-pair.ts';
import { waitUntil } from '../helpers/wait.ts';
import { startFwpush } from '../laptop/run-fwpush.ts';

/**
 * The gateway CLI keeps its serial port (gateway/cli.ts serveSerial, docs/operations.md): with real
 * processes — fwgate on one end of a socat pty pair, fwpush on the other — the pair is destroyed
 * (the cable pulled: both ttys gone) and made again at the same paths (plugged back); fwgate says
 * the port went away, reopens it by itself, and a new fwpush is answered through it.
 */
describe('end to end: fwgate reopens its serial port after the cable is pulled and plugged back', function () {
  this.timeout(120_000);
  let dir: string;
  let pty: PtyPair | undefined;
  let gw: Proc | undefined;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fwgate-reopen-'));
  });
  afterEach(async () => {
    await gw?.stop(3000).catch(() => undefined);
    await pty?.close().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });

  it('serial port gone -> reopened; fwpush status works before and after', async () => {
    pty = await createPtyPair(dir);
    gw = startTs('fwgate', 'gateway/cli.ts', ['--serial', pty.a, '--data', join(dir, 'gw'), '--host', '127.0.0.1', '--port', '0', '--log-format', 'json'], { stderr: 'pipe' });
    const logs: { msg?: string }[] = [];
    createInterface({ input: gw.child.stderr! }).on('line', (l) => {
      try {
        logs.push(JSON.parse(l) as { msg?: string });
      } catch { /* not a log line */ }
    });
    const opened = (): number => logs.filter((l) => l.msg === 'serial port open').length;
    await gw.waitForLine(/^fwgate ready/, 30_000);
    await waitUntil(() => opened() === 1, 20_000, 'the serial port open');

    const before = await startFwpush(['--port', pty.b, 'status'], 60_000).exited;
    assert.equal(before.code, 0, `status before the unplug: ${before.stdout}\n${before.stderr}`);

    await pty.close(); // the cable out: both ttys vanish
    await waitUntil(() => logs.some((l) => /^serial port (disappeared|replaced|closed); reopening$/.test(l.msg ?? '')), 20_000, 'fwgate to see the port go');
    pty = await createPtyPair(dir); // plugged back: the same paths, new ttys
    await waitUntil(() => opened() === 2, 30_000, 'fwgate to reopen the port');

    const after = await startFwpush(['--port', pty.b, 'status'], 60_000).exited;
    assert.equal(after.code, 0, `status after the port was reopened: ${after.stdout}\n${after.stderr}`);
    assert.equal(gw.child.exitCode, null, 'fwgate kept running throughout');
  });
});
