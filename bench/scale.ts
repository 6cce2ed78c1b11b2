/**
 * bench/scale — how much resident memory does the gateway spend per idle connected device, and
 * how long does a whole fleet take to connect and be registered? For each fleet size (1,000 and
 * 5,000) a fresh fwgate runs in its own process (bench/lib/scale-gateway.ts, node --expose-gc),
 * and the devices in another (bench/lib/scale-devices.ts: idle MQTT.js clients that subscribe and
 * publish `status`, like a device after connect). KiB per device = (RSS with N registered devices
 * - RSS with none), each after full GCs, / N. Connect time = from the first device connect until
 * the gateway's fleet lists all N online. With --json the last line is a JSON object of the figures.
 *
 *   npm run bench:scale [-- --sizes 1000,5000 --inflight 200 --json]
 *
 * Reconnect storm with passwords (--auth-sizes, default 5000; '' skips it): a device list
 * (broker.devicesFile) with an entry per device, the devices log in, the gateway is stopped and
 * started again on the same port and data directory (SIGTERM: what remembered verifications it
 * keeps is its own affair), and `connect_s_<N>_auth` is the time from the new gateway's `ready`
 * until its fleet lists all N online again. Meanwhile a third process (bench/lib/serial-probe.ts)
 * opens the gateway's serial link from the laptop's end of a pty pair every --probe-every ms and
 * exchanges hellos: `serial_max_ms_<N>_auth` is the slowest answer, `serial_fails_<N>_auth` the
 * attempts without one within 5 s (target: every answer within 1 s). The entries share one
 * scrypt hash of one password (hashing 5,000 passwords would cost the bench minutes); each entry
 * is still verified on its own. broker.connectRatePerMin is 0 as below: every device comes from
 * 127.0.0.1, and the default limit would measure the limiter (docs/operations.md).
 *
 *   npm run bench:scale -- --sizes 1000 --auth-sizes 500      # a shorter run
 *
 * Both children start through `bash -c 'ulimit -n 20000; exec node ...'`: 5,000 sockets on each
 * side exceed the usual soft limit of 1,024 descriptors per process.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { fleetDeviceId } from '../device-sim/fleet.ts';
import { generatePassword, hashPassword, writeDevicesFile } from '../gateway/device-auth.ts';
import { freePort, ROOT } from '../scripts/lib/processes.ts';
import { createPtyPair } from '../scripts/lib/pty-pair.ts';
import { intFlag } from './lib/int-flag.ts';

const int = intFlag('bench/scale');

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '1000,5000' },
    inflight: { type: 'string', default: '200' },
    fds: { type: 'string', default: '20000' },
    'auth-sizes': { type: 'string', default: '5000' },
    'probe-every': { type: 'string', default: '200' },
    json: { type: 'boolean', default: false },
  },
  strict: true,
});
const SIZES = values.sizes.split(',').map((v) => int(v, 'sizes', 1, 9000));
const INFLIGHT = int(values.inflight, 'inflight', 1, 5000);
const FDS = int(values.fds, 'fds', 1024, 1_048_576);
const TARGET_KIB = 32;
const AUTH_SIZES = values['auth-sizes'] ? values['auth-sizes'].split(',').map((v) => int(v, 'auth-sizes', 1, 9000)) : [];
const PROBE_EVERY = int(values['probe-every'], 'probe-every', 10, 10_000);


const log = (s: string): void => {
  process.stderr.write(`${s}\n`);
};

interface Mem { online: number; rss: number; heapUsed: number; heapTotal: number; external: number; arrayBuffers: number }

/** A child started with a raised descriptor limit; stdout read line by line. */
class Child {
  readonly proc: ChildProcess;
  private readonly waiting: { match: (l: string) => boolean; resolve: (l: string) => void }[] = [];
  readonly stderrTail: string[] = [];
  stderrLines = 0;
  readonly exited: Promise<number | null>;

  constructor(readonly name: string, nodeArgs: string[], input: boolean) {
    this.proc = spawn('bash', ['-c', `ulimit -n ${FDS} || exit 3; exec "$0" "$@"`, process.execPath, ...nodeArgs], {
      cwd: ROOT, stdio: [input ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    });
    createInterface({ input: this.proc.stdout! }).on('line', (line) => {
      const i = this.waiting.findIndex((w) => w.match(line));
      if (i >= 0) this.waiting.splice(i, 1)[0]!.resolve(line);
    });
    createInterface({ input: this.proc.stderr! }).on('line', (line) => {
      this.stderrLines++;
      this.stderrTail.push(line);
      if (this.stderrTail.length > 5) this.stderrTail.shift();
    });
    this.exited = new Promise((resolve) => this.proc.once('exit', (code, signal) => resolve(code ?? (signal ? 128 : null))));
  }

  /** The next stdout line matching, within timeoutMs (or an error naming the child's last stderr). */
  line(match: (l: string) => boolean, timeoutMs: number): Promise<string> {
    return new Promise<string>((resolve, reject) => {
      const w = { match, resolve: (l: string) => { clearTimeout(t); resolve(l); } };
      const t = setTimeout(() => {
        this.waiting.splice(this.waiting.indexOf(w), 1);
        reject(new Error(`${this.name}: no expected line within ${timeoutMs} ms; stderr: ${this.stderrTail.join(' | ')}`));
      }, timeoutMs);
      this.waiting.push(w);
      void this.exited.then((code) => {
        if (!this.waiting.includes(w)) return;
        clearTimeout(t);
        this.waiting.splice(this.waiting.indexOf(w), 1);
        reject(new Error(`${this.name} exited (${code}); stderr: ${this.stderrTail.join(' | ')}`));
      });
    });
  }

  async stop(graceMs: number): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill('SIGTERM');
    const t = setTimeout(() => this.proc.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(t);
  }
}

/** Ask the gateway child for its fleet size and memory (after full GCs with `gc`). */
async function ask(gw: Child, what: 'stat' | 'gc'): Promise<Mem> {
  const reply = gw.line((l) => l.startsWith('{'), 15_000);
  gw.proc.stdin!.write(`${what}\n`);
  return JSON.parse(await reply) as Mem;
}

interface Figures {
  devices: number;
  connectS: number;
  baseRss: number;
  rss: number;
  kibPerDevice: number;
  heapKibPerDevice: number;
  externalKibPerDevice: number;
  gatewayLogLines: number;
}

async function run(n: number): Promise<Figures> {
  const dir = await mkdtemp(join(tmpdir(), 'fwgate-bench-scale-'));
  const configPath = join(dir, 'gateway.json');
  await writeFile(configPath, JSON.stringify({
    dataDir: join(dir, 'gateway'),
    // No devicesFile: no passwords, as in the other benchmarks (scrypt per connect would time
    // the password hash, not the registration). connectRatePerMin 0: every bench device comes
    // from 127.0.0.1, and the default 600 per minute per address would hold 5,000 devices back
    // for about 7 minutes.
    broker: { host: '127.0.0.1', port: 0, maxClients: 10_000, connectRatePerMin: 0 },
    log: { level: 'warn' },
  }));
  const gw = new Child('scale-gateway', ['--expose-gc', '--import', 'tsx', 'bench/lib/scale-gateway.ts', configPath], true);
  let devices: Child | undefined;
  try {
    const url = (await gw.line((l) => l.startsWith('ready '), 30_000)).slice('ready '.length);
    await sleep(1000);
    const base = await ask(gw, 'gc');
    devices = new Child('scale-devices', ['--import', 'tsx', 'bench/lib/scale-devices.ts', url, String(n), '--inflight', String(INFLIGHT)], false);
    const sims = devices;
    await sims.line((l) => l === 'start', 30_000);
    const t0 = performance.now();
    const allConnected = sims.line((l) => l.startsWith('connected '), 180_000);
    allConnected.catch(() => undefined);
    let online = 0;
    while (online < n) {
      if (performance.now() - t0 > 180_000) throw new Error(`only ${online} of ${n} devices registered after 180 s`);
      await sleep(100);
      online = (await ask(gw, 'stat')).online;
    }
    const connectS = (performance.now() - t0) / 1000;
    await allConnected;
    await sleep(2000);
    const after = await ask(gw, 'gc');
    if (after.online < n) throw new Error(`${n - after.online} devices went offline before the memory reading`);
    const per = (a: number, b: number): number => round((a - b) / n / 1024);
    return {
      devices: n, connectS: round(connectS), baseRss: base.rss, rss: after.rss,
      kibPerDevice: per(after.rss, base.rss),
      heapKibPerDevice: per(after.heapUsed, base.heapUsed),
      externalKibPerDevice: per(after.external, base.external),
      gatewayLogLines: gw.stderrLines,
    };
  } finally {
    await devices?.stop(10_000);
    await gw.stop(10_000);
    await rm(dir, { recursive: true, force: true });
  }
}

interface AuthFigures { devices: number; connectS: number; firstConnectS: number; serialMaxMs: number; serialP50Ms: number; serialProbes: number; serialFails: number }

/** The gateway's fleet lists `n` online within `timeoutMs`; seconds from `t0`. */
async function untilOnline(gw: Child, n: number, t0: number, timeoutMs: number): Promise<number> {
  for (;;) {
    const online = (await ask(gw, 'stat')).online;
    if (online >= n) return (performance.now() - t0) / 1000;
    if (performance.now() - t0 > timeoutMs) throw new Error(`only ${online} of ${n} devices registered after ${timeoutMs / 1000} s`);
    await sleep(100);
  }
}

async function runAuth(n: number): Promise<AuthFigures> {
  const dir = await mkdtemp(join(tmpdir(), 'fwgate-bench-scale-auth-'));
  const pty = await createPtyPair(await mkdtemp(join(dir, 'pty-')));
  const password = generatePassword();
  const hash = await hashPassword(password);
  const devicesFile = join(dir, 'devices.json');
  await writeDevicesFile(devicesFile, Array.from({ length: n }, (_, i) => ({ id: fleetDeviceId('dev', i), scrypt: hash })));
  const port = await freePort();
  const configPath = join(dir, 'gateway.json');
  await writeFile(configPath, JSON.stringify({
    dataDir: join(dir, 'gateway'),
    serial: { path: pty.a },
    broker: { host: '127.0.0.1', port, maxClients: 10_000, connectRatePerMin: 0, devicesFile },
    log: { level: 'warn' },
  }));
  const start = (): Child => new Child('scale-gateway', ['--expose-gc', '--import', 'tsx', 'bench/lib/scale-gateway.ts', configPath], true);
  let gw = start();
  let devices: Child | undefined;
  let probe: Child | undefined;
  try {
    const url = (await gw.line((l) => l.startsWith('ready '), 30_000)).slice('ready '.length);
    devices = new Child('scale-devices', ['--import', 'tsx', 'bench/lib/scale-devices.ts', url, String(n), '--inflight', String(INFLIGHT), '--password', password, '--register-timeout', '600'], false);
    await devices.line((l) => l === 'start', 30_000);
    const t1 = performance.now();
    await devices.line((l) => l.startsWith('connected '), 30 * 60_000);
    const firstConnectS = await untilOnline(gw, n, t1, 30 * 60_000);
    log(`    ${n} devices logged in the first time in ${firstConnectS.toFixed(1)} s; restarting the gateway`);
    await gw.stop(30_000);
    gw = start();
    await gw.line((l) => l.startsWith('ready '), 60_000);
    const t0 = performance.now();
    probe = new Child('serial-probe', ['--import', 'tsx', 'bench/lib/serial-probe.ts', pty.b, '--every', String(PROBE_EVERY)], false);
    const samples: { t: string; ms: number }[] = [];
    createInterface({ input: probe.proc.stdout! }).on('line', (l) => {
      try {
        samples.push(JSON.parse(l) as { t: string; ms: number });
      } catch { /* not a sample */ }
    });
    const connectS = await untilOnline(gw, n, t0, 30 * 60_000);
    await probe.stop(10_000);
    const ok = samples.filter((x) => x.t === 'hello').map((x) => x.ms).sort((a, b) => a - b);
    const fails = samples.filter((x) => x.t !== 'hello');
    return {
      devices: n, connectS: round(connectS), firstConnectS: round(firstConnectS),
      serialMaxMs: round(Math.max(0, ...samples.map((x) => x.ms))), serialP50Ms: round(ok[ok.length >> 1] ?? Number.NaN),
      serialProbes: samples.length, serialFails: fails.length,
    };
  } finally {
    await probe?.stop(10_000);
    await devices?.stop(10_000);
    await gw.stop(10_000);
    await pty.close();
    await rm(dir, { recursive: true, force: true });
  }
}

function round(v: number): number {
  return Math.round(v * 100) / 100;
}

const mib = (b: number): string => (b / 1024 / 1024).toFixed(1);

log(`bench/scale: idle devices per run ${SIZES.join(', ')}; connects in flight ${INFLIGHT}; ulimit -n ${FDS} for both children`);
const results: Figures[] = [];
for (const n of SIZES) {
  log(`  ${n} devices ...`);
  results.push(await run(n));
}
log('');
log('devices | connect+register | RSS 0 devs | RSS N devs | KiB/device RSS | KiB/device heap | KiB/device external | gateway log lines (warn+)');
for (const r of results) {
  log(`${String(r.devices).padStart(7)} | ${r.connectS.toFixed(2).padStart(14)} s | ${mib(r.baseRss).padStart(6)} MiB | ${mib(r.rss).padStart(6)} MiB | ${r.kibPerDevice.toFixed(1).padStart(14)} | ${r.heapKibPerDevice.toFixed(1).padStart(15)} | ${r.externalKibPerDevice.toFixed(1).padStart(19)} | ${r.gatewayLogLines}`);
}
for (const r of results) {
  log(`${r.devices} devices: ${r.kibPerDevice} KiB per device — ${r.kibPerDevice <= TARGET_KIB ? 'meets' : 'misses'} the target of <= ${TARGET_KIB} KiB`);
}
const authResults: AuthFigures[] = [];
for (const n of AUTH_SIZES) {
  log(`  ${n} devices with passwords, reconnecting after a gateway restart ...`);
  const a = await runAuth(n);
  authResults.push(a);
  log(`${n} devices with passwords: all back ${a.connectS.toFixed(2)} s after the restart (first login ${a.firstConnectS.toFixed(2)} s); serial link: ${a.serialProbes} hellos, slowest ${a.serialMaxMs} ms, median ${a.serialP50Ms} ms, ${a.serialFails} without an answer — ${a.connectS <= 15 && a.serialMaxMs <= 1000 && a.serialFails === 0 ? 'meets' : 'misses'} the target (<= 15 s, every hello within 1 s)`);
}

if (values.json) {
  const out: Record<string, number> = {};
  for (const r of results) {
    out[`kib_per_device_${r.devices}`] = r.kibPerDevice;
    out[`connect_s_${r.devices}`] = r.connectS;
  }
  for (const r of results) {
    out[`heap_kib_per_device_${r.devices}`] = r.heapKibPerDevice;
    out[`rss_base_mib_${r.devices}`] = round(r.baseRss / 1024 / 1024);
  }
  for (const a of authResults) {
    out[`connect_s_${a.devices}_auth`] = a.connectS;
    out[`first_connect_s_${a.devices}_auth`] = a.firstConnectS;
    out[`serial_max_ms_${a.devices}_auth`] = a.serialMaxMs;
    out[`serial_median_ms_${a.devices}_auth`] = a.serialP50Ms;
    out[`serial_probes_${a.devices}_auth`] = a.serialProbes;
    out[`serial_fails_${a.devices}_auth`] = a.serialFails;
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
}
