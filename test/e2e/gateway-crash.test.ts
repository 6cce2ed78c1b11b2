import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { DeviceFiles } from '../../device-sim/bootloader.ts';
import { fleetDeviceId } from '../../device-sim/fleet.ts';
import { makeSampleImage } from '../../firmware-samples/image-format.ts';
import { parseJournal } from '../../gateway/rollout/journal.ts';
import { generateSigningKey } from '../../protocol/signature.ts';
import { ROOT, startTs, type Proc } from '../../scripts/lib/processes.ts';
import { createPtyPair, type PtyPair } from '../../scripts/lib/pty-pair.ts';
import { testKeyFiles } from '../helpers/keys.ts';
import { waitUntil } from '../helpers/wait.ts';

const HW = 'sensor-v1';
const FROM = '1.0.0';
const TO = '1.1.0';
const DEVICES = 6;

/** fwgate as a real process; its JSON log lines (stderr) are collected and can be waited for. */
/** Devices the journals show holding part of the image and not yet activating (0 while there is no journal). */
async function journalHeld(journalDir: string): Promise<number> {
  const names = await readdir(journalDir).catch(() => [] as string[]);
  let n = 0;
  for (const name of names.filter((f) => f.endsWith('.jsonl'))) {
    try {
      const { state } = parseJournal(await readFile(join(journalDir, name), 'utf8'));
      n += [...state.held].filter(([id, bytes]) => bytes > 0 && !state.activating.has(id)).length;
    } catch {
      // being written: its first record is not there yet
    }
  }
  return n;
}

function startGateway(args: string[]): { proc: Proc; logs: Record<string, unknown>[]; waitForLog: (msg: string, timeoutMs: number) => Promise<Record<string, unknown>> } {
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
  return { proc, logs, waitForLog };
}

describe('end to end: fwgate killed with SIGKILL mid-campaign, then restarted', function () {
  this.timeout(150_000);
  let dir: string;
  let pty: PtyPair | undefined;
  const procs: Proc[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fwgate-crash-'));
  });
  afterEach(async () => {
    for (const p of procs.splice(0).reverse()) await p.stop(3000).catch(() => undefined);
    await pty?.close().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });

  /**
   * Kill points: mid-transfer (no device activated yet), the moment the first device acts on its
   * activation (others mid-transfer), and once the first device has confirmed (some results in
   * the journal, some devices rebooting or confirming).
   */
  const killPoints = [
    { name: 'mid-transfer, before any activation', at: '"type":"offer-accepted"', resumesTransfer: true },
    { name: 'at the first activation', at: '"type":"activated"', resumesTransfer: true },
    { name: 'after the first confirmation', at: '"type":"confirmed"', resumesTransfer: false },
  ];
  for (const kill of killPoints) it(`killed ${kill.name}: resumes from its journal, transfers resume, no second activation, every device updated, the image intact`, async () => {
    pty = await createPtyPair(dir);
    const image = makeSampleImage({ name: 'sensor-fw', version: TO, hw: HW, size: 256 * 1024 });
    const sha256 = createHash('sha256').update(image).digest('hex');
    const imagePath = join(dir, 'fw.bin');
    await writeFile(imagePath, image);
    // the technician key that authorises the push (docs/protocol.md §7.2.4)
    const tech = generateSigningKey();
    await writeFile(join(dir, 'technician.key'), tech.privateKeyPem, { mode: 0o600 });
    await writeFile(join(dir, 'gateway.json'), JSON.stringify({ uplink: { technicianKeys: [{ publicKey: tech.publicKeyPem }] } }));
    const gwArgs = (port: number): string[] => ['--config', join(dir, 'gateway.json'), '--data', join(dir, 'gw'), '--host', '127.0.0.1', '--port', String(port), '--log-format', 'json', '--concurrency', '3',
      '--trusted-key', testKeyFiles().pub];

    // the first gateway binds any free port (no check-then-bind); the restarted one takes the same, as a real one would
    const first = startGateway(['--serial', pty.a, ...gwArgs(0)]);
    procs.push(first.proc);
    const ready = await first.proc.waitForLine(/^fwgate ready/, 30_000);
    const port = Number(/:(\d+)\s*$/.exec(ready)?.[1]);
    assert.ok(port > 0, `the ready line names the bound port: ${ready}`);
    // wifi-poor links (250 kB/s, 1 % loss): a 256 KiB image takes about a second per device, so
    // at the kill some devices are mid-transfer and one is past its activation.
    const sim = startTs('fwsim', 'device-sim/cli.ts', [
      '--broker', `mqtt://127.0.0.1:${port}`, '--count', String(DEVICES), '--data', join(dir, 'devices'),
      '--hw', HW, '--version', FROM, '--profile', 'wifi-poor', '--pinned-key', testKeyFiles().pub, '--json',
    ]);
    procs.push(sim);
    const events = (): { id: string; type: string; [k: string]: unknown }[] => sim.lines.flatMap((l) => {
      try {
        return [JSON.parse(l) as { id: string; type: string }];
      } catch {
        return [];
      }
    });
    await sim.waitForLine(() => events().filter((e) => e.type === 'connected').length >= DEVICES, 60_000);

    const push = spawn(process.execPath, ['--import', 'tsx', 'laptop/cli.ts', '--port', pty.b, '--tech-key', join(dir, 'technician.key'), imagePath, '--name', 'sensor-fw', '--version', TO, '--hw', HW, '--json',
      '--sign-key', testKeyFiles().key, '--seq', '1'], { cwd: ROOT, stdio: 'ignore' });
    const pushExited = new Promise<void>((r) => push.once('exit', () => r()));

    // kill -9 at the kill point (for mid-transfer: once the journal shows a device holding part of
    // the image — it acked flushed chunks, so its own files hold them — and none activated yet)
    await sim.waitForLine((l) => l.includes(kill.at), 90_000);
    if (kill.resumesTransfer && kill.at.includes('offer-accepted')) await waitUntil(async () => (await journalHeld(join(dir, 'gw', 'journal'))) > 0, 90_000, 'a device holding part of the image in the journal');
    first.proc.child.kill('SIGKILL');
    await first.proc.exited;
    const killedAt = sim.lines.length;
    push.kill('SIGKILL');
    await pushExited;

    const second = startGateway(gwArgs(port));
    procs.push(second.proc);
    await second.proc.waitForLine(/^fwgate ready/, 30_000);
    const resumed = await second.waitForLog('resuming an unfinished campaign', 10_000);
    const complete = await second.waitForLog('campaign complete', 120_000);
    assert.equal(complete.updated, DEVICES, `every device updated: ${JSON.stringify(complete)}`);
    assert.equal(complete.failed, 0);

    await sim.stop();
    const all = events();
    const after = sim.lines.slice(killedAt).flatMap((l) => {
      try {
        return [JSON.parse(l) as { id: string; type: string; resumed?: boolean; next?: number }];
      } catch {
        return [];
      }
    });
    for (let i = 0; i < DEVICES; i++) {
      const id = fleetDeviceId('dev', i);
      const activations = all.filter((e) => e.id === id && e.type === 'activated').length;
      assert.equal(activations, 1, `${id} activated exactly once (got ${activations})`);
      const state = await new DeviceFiles(join(dir, 'devices', id), 16 * 1024 * 1024).loadState();
      const active = state?.slots[state.active];
      assert.equal(active?.version, TO, `${id} boots ${TO} from its own files`);
      assert.equal(active?.state, 'confirmed', `${id} confirmed`);
    }
    const resumedOffers = after.filter((e) => e.type === 'offer-accepted' && e.resumed === true && (e.next ?? 0) > 0);
    if (kill.resumesTransfer) assert.ok(resumedOffers.length >= 1, `a transfer interrupted by the crash resumed where the device was (offers after the restart: ${JSON.stringify(after.filter((e) => e.type === 'offer-accepted'))})`);

    // the image in the store is intact, and the journal ends with the completion
    const stored = await readFile(join(dir, 'gw', 'store', 'images', `${sha256}.bin`));
    assert.equal(createHash('sha256').update(stored).digest('hex'), sha256);
    const journal = parseJournal(await readFile(join(dir, 'gw', 'journal', `${String(resumed.campaign)}.jsonl`), 'utf8'));
    assert.equal(journal.state.complete?.updated, DEVICES);
    assert.equal(journal.state.results.size, DEVICES);
  });

});
