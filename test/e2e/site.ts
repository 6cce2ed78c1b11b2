import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { DeviceFiles } from '../../device-sim/bootloader.ts';
import { fleetDeviceId } from '../../device-sim/fleet.ts';
import { makeSampleImage } from '../../firmware-samples/image-format.ts';
import { generateSigningKey } from '../../protocol/signature.ts';
import { freePort, ROOT, startTs, type Proc } from '../../scripts/lib/processes.ts';
import { createPtyPair, type PtyPair } from '../../scripts/lib/pty-pair.ts';
import { testKeyFiles } from '../helpers/keys.ts';

/**
 * A whole site as real processes for end-to-end fault tests (issue 17): fwgate on one end of a
 * socat pty pair (the serial cable, which outlives the processes on it, as a USB cable does),
 * fwsim devices on its broker, fwpush on the other end. Outcomes are read from the files:
 * each device's state file, the gateway's store and journals.
 */
export const HW = 'sensor-v1';
export const FROM = '1.0.0';

export interface GatewayProc {
  proc: Proc;
  logs: Record<string, unknown>[];
  waitForLog(msg: string | ((l: Record<string, unknown>) => boolean), timeoutMs: number): Promise<Record<string, unknown>>;
}

export function startGateway(args: string[], env?: NodeJS.ProcessEnv): GatewayProc {
  const proc = startTs('fwgate', 'gateway/cli.ts', args, { stderr: 'pipe', ...(env ? { env } : {}) });
  const logs: Record<string, unknown>[] = [];
  const waiters = new Set<() => void>();
  createInterface({ input: proc.child.stderr! }).on('line', (l) => {
    try {
      logs.push(JSON.parse(l) as Record<string, unknown>);
    } catch { /* not a log line */ }
    for (const w of [...waiters]) w();
  });
  const waitForLog = (msg: string | ((l: Record<string, unknown>) => boolean), timeoutMs: number): Promise<Record<string, unknown>> => new Promise((resolve, reject) => {
    const match = typeof msg === 'string' ? (l: Record<string, unknown>) => l.msg === msg : msg;
    const check = (): void => {
      const hit = logs.find(match);
      if (!hit) return;
      clearTimeout(timer);
      waiters.delete(check);
      resolve(hit);
    };
    const timer = setTimeout(() => {
      waiters.delete(check);
      reject(new Error(`fwgate logged no ${String(msg)} within ${timeoutMs} ms; last lines:\n${logs.slice(-10).map((l) => JSON.stringify(l)).join('\n')}`));
    }, timeoutMs);
    waiters.add(check);
    check();
  });
  return { proc, logs, waitForLog };
}

export interface FwpushProc {
  child: ChildProcess;
  /** JSON lines printed so far (--json). */
  events: Record<string, unknown>[];
  stdout(): string;
  saw(pred: (e: Record<string, unknown>) => boolean, timeoutMs: number): Promise<Record<string, unknown>>;
  exited: Promise<number | null>;
}

export function startFwpush(args: string[]): FwpushProc {
  const child = spawn(process.execPath, ['--import', 'tsx', 'laptop/cli.ts', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const events: Record<string, unknown>[] = [];
  let out = '';
  const waiters = new Set<() => void>();
  createInterface({ input: child.stdout! }).on('line', (l) => {
    out += `${l}\n`;
    try {
      events.push(JSON.parse(l) as Record<string, unknown>);
    } catch { /* a plain line */ }
    for (const w of [...waiters]) w();
  });
  child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child, events, exited, stdout: () => out,
    saw: (pred, timeoutMs) => new Promise((resolve, reject) => {
      const check = (): void => {
        const hit = events.find(pred);
        if (!hit) return;
        clearTimeout(timer);
        waiters.delete(check);
        resolve(hit);
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`fwpush printed no matching line within ${timeoutMs} ms:\n${out.slice(-3000)}`));
      }, timeoutMs);
      waiters.add(check);
      check();
      void exited.then(() => {
        if (!waiters.has(check)) return;
        waiters.delete(check);
        clearTimeout(timer);
        reject(new Error(`fwpush exited without a matching line:\n${out.slice(-3000)}`));
      });
    }),
  };
}

export interface Site {
  dir: string;
  pty: PtyPair;
  port: number;
  gwArgs: string[];
  techKey: string;
  /** Every process started, stopped (reverse order) by close(). */
  procs: { stop(): Promise<unknown> }[];
  close(): Promise<void>;
}

/** A temp dir, a pty cable, a broker port, a technician key and the gateway's config (merged with `config`). */
export async function makeSite(prefix: string, config: Record<string, unknown> = {}, dataDir?: string): Promise<Site> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  const pty = await createPtyPair(dir);
  const port = await freePort();
  const tech = generateSigningKey();
  const techKey = join(dir, 'technician.key');
  await writeFile(techKey, tech.privateKeyPem, { mode: 0o600 });
  const uplink = { technicianKeys: [{ publicKey: tech.publicKeyPem }], ...(config.uplink as object | undefined) };
  await writeFile(join(dir, 'gateway.json'), JSON.stringify({ ...config, uplink }));
  const gwArgs = ['--config', join(dir, 'gateway.json'), '--data', dataDir ?? join(dir, 'gw'), '--host', '127.0.0.1', '--port', String(port),
    '--log-format', 'json', '--trusted-key', testKeyFiles().pub];
  const procs: Site['procs'] = [];
  return {
    dir, pty, port, gwArgs, techKey, procs,
    close: async () => {
      for (const p of procs.splice(0).reverse()) await p.stop().catch(() => undefined);
      await pty.close().catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** fwsim devices on the site's broker; resolves once all are connected. */
export async function startDevices(site: Site, count: number, extra: string[] = []): Promise<Proc> {
  const sim = startTs('fwsim', 'device-sim/cli.ts', [
    '--broker', `mqtt://127.0.0.1:${site.port}`, '--count', String(count), '--data', join(site.dir, 'devices'),
    '--hw', HW, '--version', FROM, '--pinned-key', testKeyFiles().pub, '--json', ...extra,
  ]);
  site.procs.push({ stop: () => sim.stop(3000) });
  await sim.waitForLine(() => simEvents(sim).filter((e) => e.type === 'connected').length >= count, 60_000);
  return sim;
}

export function simEvents(sim: Proc, from = 0): { id: string; type: string; [k: string]: unknown }[] {
  return sim.lines.slice(from).flatMap((l) => {
    try {
      return [JSON.parse(l) as { id: string; type: string }];
    } catch {
      return [];
    }
  });
}

/** An image file for the push and the arguments that push it (signed with the test key). */
export async function imagePush(site: Site, version: string, size: number, extra: string[] = []): Promise<{ sha256: string; args: string[] }> {
  const image = makeSampleImage({ name: 'sensor-fw', version, hw: HW, size });
  const path = join(site.dir, `fw-${version}.bin`);
  await writeFile(path, image);
  return {
    sha256: createHash('sha256').update(image).digest('hex'),
    args: ['--port', site.pty.b, '--tech-key', site.techKey, path, '--name', 'sensor-fw', '--version', version, '--hw', HW, '--json',
      '--sign-key', testKeyFiles().key, '--seq', '1', ...extra],
  };
}

/** What device i boots, from its own files. */
export async function bootedSlot(site: Site, i: number): Promise<{ version: string | undefined; state: string | undefined }> {
  const state = await new DeviceFiles(join(site.dir, 'devices', fleetDeviceId('dev', i)), 64 * 1024 * 1024).loadState();
  const active = state?.slots[state.active];
  return { version: active?.version, state: active?.state };
}
