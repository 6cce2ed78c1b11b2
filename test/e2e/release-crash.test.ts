import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { generateReleases } from '../../firmware-samples/releases.ts';
import { parseJournal } from '../../gateway/rollout/journal.ts';
import { generateSigningKey } from '../../protocol/signature.ts';
import { releaseDemoCheck } from '../../scripts/lib/demo-release.ts';
import { ROOT, startTs, type Proc } from '../../scripts/lib/processes.ts';
import { createPtyPair, type PtyPair } from '../../scripts/lib/pty-pair.ts';
import { testKeyFiles } from '../helpers/keys.ts';

/**
 * A release campaign (docs/protocol.md §6.15) survives a gateway killed with SIGKILL the moment the
 * first device acts on its combined activation: the restarted gateway resumes it from its journal
 * (the release manifest is in the campaign record, checked again), no device is activated twice,
 * and every device ends on the release's app and net, judged from its own files.
 */
const DEVICES = 4;

function startGateway(args: string[]): { proc: Proc; waitForLog: (msg: string, timeoutMs: number) => Promise<Record<string, unknown>> } {
  const proc = startTs('fwgate', 'gateway/cli.ts', args, { stderr: 'pipe' });
  const logs: Record<string, unknown>[] = [];
  const waiters = new Set<() => void>();
  createInterface({ input: proc.child.stderr! }).on('line', (l) => {
    try {
      logs.push(JSON.parse(l) as Record<string, unknown>);
    } catch { /* not a log line */ }
    for (const w of [...waiters]) w();
  });
  const waitForLog = (msg: string, timeoutMs: number): Promise<Record<string, unknown>> => new Promise((resolve, reject) => {
    const check = (): void => {
      const hit = logs.find((l) => l.msg === msg);
      if (!hit) return;
      clearTimeout(timer);
      waiters.delete(check);
      resolve(hit);
    };
    const timer = setTimeout(() => {
      waiters.delete(check);
      reject(new Error(`fwgate logged no "${msg}" within ${timeoutMs} ms; last lines:\n${logs.slice(-10).map((l) => JSON.stringify(l)).join('\n')}`));
    }, timeoutMs);
    waiters.add(check);
    check();
  });
  return { proc, waitForLog };
}

describe('end to end: a release campaign when fwgate is killed with SIGKILL at the first combined activation', function () {
  this.timeout(150_000);
  let dir: string;
  let pty: PtyPair | undefined;
  const procs: Proc[] = [];
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fwgate-release-crash-'));
  });
  afterEach(async () => {
    for (const p of procs.splice(0).reverse()) await p.stop(3000).catch(() => undefined);
    await pty?.close().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });

  it('resumes from its journal, activates no device twice, and every device runs the release\'s app and net (its files)', async () => {
    pty = await createPtyPair(dir);
    const rel = join(dir, 'release');
    await mkdir(rel);
    await generateReleases(rel, 128 * 1024, 4096);
    const signed = join(rel, 'signed.json');
    const sign = spawn(process.execPath, ['--import', 'tsx', 'laptop/fwsign-cli.ts', 'release', join(rel, 'release-1.1.0.json'), '--key', testKeyFiles().key, '--out', signed], { cwd: ROOT, stdio: 'ignore' });
    assert.equal(await new Promise((r) => sign.once('exit', r)), 0, 'fwsign release');
    const tech = generateSigningKey();
    await writeFile(join(dir, 'technician.key'), tech.privateKeyPem, { mode: 0o600 });
    await writeFile(join(dir, 'gateway.json'), JSON.stringify({ uplink: { technicianKeys: [{ publicKey: tech.publicKeyPem }] } }));
    const gwArgs = (port: number): string[] => ['--config', join(dir, 'gateway.json'), '--data', join(dir, 'gw'), '--host', '127.0.0.1', '--port', String(port), '--log-format', 'json',
      '--concurrency', '2', '--trusted-key', testKeyFiles().pub];
    const first = startGateway(['--serial', pty.a, ...gwArgs(0)]);
    procs.push(first.proc);
    const port = Number(/:(\d+)\s*$/.exec(await first.proc.waitForLine(/^fwgate ready/, 30_000))?.[1]);
    // two of the four already run the release's net; wifi-poor links so that others are mid-transfer at the kill
    const sim = startTs('fwsim', 'device-sim/cli.ts', [
      '--broker', `mqtt://127.0.0.1:${port}`, '--count', String(DEVICES), '--data', join(dir, 'devices'), '--hw', 'sensor-v1', '--version', '1.0.0',
      '--profile', 'wifi-poor', '--pinned-key', testKeyFiles().pub, '--json', '--components', 'app,net', '--component-image', `2:net=${join(rel, 'release-net-1.5.0.bin')}`,
    ]);
    procs.push(sim);
    const events = (): { id: string; type: string }[] => sim.lines.flatMap((l) => {
      try {
        return [JSON.parse(l) as { id: string; type: string }];
      } catch {
        return [];
      }
    });
    await sim.waitForLine(() => events().filter((e) => e.type === 'connected').length >= DEVICES, 60_000);
    const push = spawn(process.execPath, ['--import', 'tsx', 'laptop/cli.ts', '--port', pty.b, '--tech-key', join(dir, 'technician.key'), '--json',
      'release', join(rel, 'release-1.1.0.json'), '--manifest', signed], { cwd: ROOT, stdio: 'ignore' });
    const pushExited = new Promise<void>((r) => push.once('exit', () => r()));

    await sim.waitForLine((l) => l.includes('"type":"activated"'), 90_000);
    first.proc.child.kill('SIGKILL');
    await first.proc.exited;
    push.kill('SIGKILL');
    await pushExited;

    const second = startGateway(gwArgs(port));
    procs.push(second.proc);
    await second.proc.waitForLine(/^fwgate ready/, 30_000);
    const resumed = await second.waitForLog('resuming an unfinished release campaign', 10_000);
    const complete = await second.waitForLog('campaign complete', 120_000);
    assert.equal(complete.updated, DEVICES, `every device updated: ${JSON.stringify(complete)}`);
    assert.equal(complete.componentsSkipped, 2, 'the two devices that had the release net were sent only app');
    await sim.stop();
    for (const e of [...new Set(events().map((x) => x.id))]) {
      assert.equal(events().filter((x) => x.id === e && x.type === 'activated').length, 1, `${e} activated exactly once`);
    }
    const check = await releaseDemoCheck(join(dir, 'devices'), DEVICES, rel);
    assert.deepEqual(check.problems, []);
    assert.equal(check.onRelease, DEVICES);
    const journal = parseJournal(await readFile(join(dir, 'gw', 'journal', `${String(resumed.campaign)}.jsonl`), 'utf8'));
    assert.equal(journal.state.release?.version, '1.1.0', 'the campaign record carries the release');
    assert.equal(journal.state.complete?.updated, DEVICES);
  });
});
