/**
 * bench/fanout — what does one image to many devices cost the gateway, against plain MQTT?
 * For each N: a fresh fwgate in its own process (bench/lib/fanout-gateway.ts, broker on
 * 127.0.0.1) and N simulated devices as a separate `fwsim --boot-delay 0` process (direct links,
 * no shaping) get one image of --size bytes; wall time from startCampaign until every device has
 * confirmed, the gateway's CPU time over the same span (process.cpuUsage in that process), and
 * delivered MiB/s = N x size / wall. Baseline, same run: the same bytes in the same chunk size as
 * plain QoS 0 messages from one MQTT.js publisher to N MQTT.js subscribers (MQTT 3.1.1, own
 * process) through a Broker started with the gateway's broker options; the publisher keeps
 * --window messages in flight. ratio_N = gateway MiB/s / baseline MiB/s.
 * Floor, same run: the baseline again with subscribers that also do the least a device must do
 * with an image (CRC-32 per chunk, a slot file written, read back, CRC-32 and SHA-256 at the end;
 * bench/lib/fanout-subscribers.ts --device-work): floor_ratio_N = floor MiB/s / baseline MiB/s is
 * the highest ratio_N any gateway and device pair could reach on this host;
 * fanout_vs_floor_N = ratio_N / floor_ratio_N (= floor wall / gateway wall) is how far the gateway
 * is from it. gateway_cpu_ms_per_device_mib = the gateway process's CPU ms per MiB delivered (N x
 * size) at N = 100 (--cpu-n).
 *
 * Each of gateway, baseline and floor runs --repeat times (3) per N, in rounds with the order
 * rotated, after a warm-up round (the smallest N, dropped) that runs each once: the baseline's
 * broker runs in this process, and a cold first run of it made the published floor look faster
 * than its baseline (floor_ratio_10 1.044). Figures are medians with [min, max]; ratios are the
 * medians of each round's own ratio.
 *
 *   npm run bench:fanout [-- --devices 10,100,500 --size 1048576 --repeat 3 --json --profile 100]
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import mqtt from 'mqtt';
import { Broker } from '../gateway/broker.ts';
import { brokerOptions } from '../gateway/broker-setup.ts';
import { parseConfig } from '../gateway/config.ts';
import { DEFAULT_CHUNK_SIZE } from '../protocol/manifest.ts';
import { ROOT, startTs, type Proc } from '../scripts/lib/processes.ts';
import { topSelfTime, type Hotspot } from './lib/fanout-profile.ts';
import { intFlag } from './lib/int-flag.ts';

const int = intFlag('bench/fanout');

const { values } = parseArgs({
  options: {
    devices: { type: 'string', default: '10,100,500' },
    size: { type: 'string', default: String(1024 * 1024) },
    window: { type: 'string', default: '16' },
    concurrency: { type: 'string', default: '' },
    repeat: { type: 'string', default: '3' },
    'cpu-n': { type: 'string', default: '100' },
    profile: { type: 'string', default: '' },
    json: { type: 'boolean', default: false },
  },
  strict: true,
});
const NS = values.devices.split(',').map((v) => int(v, 'devices', 1, 5000));
const SIZE = int(values.size, 'size', 4096, 64 * 1024 * 1024);
const WINDOW = int(values.window, 'window', 1, 1024);
const PROFILE_N = values.profile ? int(values.profile, 'profile', 1, 5000) : 0;
const REPEAT = int(values.repeat, 'repeat', 1, 20);
/** The N whose gateway CPU per device-MiB is the headline figure (it must be one of --devices). */
const CPU_N = int(values['cpu-n'], 'cpu-n', 1, 5000);
const MIB = 1024 * 1024;
const BASELINE_TOPIC = 'bench/fanout';

const log = (s: string): void => {
  process.stderr.write(`${s}\n`);
};
const round = (x: number, d = 3): number => Math.round(x * 10 ** d) / 10 ** d;
const line = (p: Proc, t: string, ms: number): Promise<Record<string, unknown>> =>
  p.waitForLine((l) => l.startsWith('{') && (JSON.parse(l) as { t?: string }).t === t, ms).then((l) => JSON.parse(l) as Record<string, unknown>);

interface GatewayRun {
  wallS: number; firstOfferS: number; cpuS: number; updated: number; chunk: number;
  /** CPU seconds of the fleet process (fwsim, N devices) over the same span, from /proc. */
  fleetCpuS: number;
  /** Where the wall time went (bench/lib/fanout-gateway.ts phaseFigures), ms. */
  phases: Record<string, number>;
}

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** User + system CPU seconds of a process so far (Linux /proc; NaN elsewhere). */
function procCpuS(pid: number | undefined): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLK_TCK;
  } catch {
    return Number.NaN;
  }
}

/**
 * One campaign: gateway process + fleet process. With cpuProfDir, both run under --cpu-prof
 * (profiles in `<cpuProfDir>/gateway` and `<cpuProfDir>/fleet`).
 */
async function gatewayRun(n: number, cpuProfDir?: string): Promise<GatewayRun> {
  const dir = await mkdtemp(join(tmpdir(), 'fwgate-bench-fanout-'));
  const concurrency = values.concurrency ? int(values.concurrency, 'concurrency', 1, 10_000) : n;
  // --cpu-prof is refused in NODE_OPTIONS: startTs runs `node --import tsx <entry> <args>`, so the
  // profiler flags go where the entry would be and the entry follows them.
  const entry = ['bench/lib/fanout-gateway.ts', '--devices', String(n), '--size', String(SIZE), '--concurrency', String(concurrency), '--data', dir];
  const gw = cpuProfDir
    ? startTs('fanout-gateway', '--cpu-prof', [`--cpu-prof-dir=${join(cpuProfDir, 'gateway')}`, ...entry], { stderr: 'inherit' })
    : startTs('fanout-gateway', entry[0]!, entry.slice(1), { stderr: 'inherit' });
  let sims: Proc | undefined;
  try {
    const url = String((await line(gw, 'ready', 30_000)).url);
    const simArgs = [
      '--broker', url, '--count', String(n), '--data', join(dir, 'devices'),
      '--hw', 'sensor-v1', '--version', '1.0.0', '--boot-delay', '0',
    ];
    sims = cpuProfDir
      ? startTs('fwsim', '--cpu-prof', [`--cpu-prof-dir=${join(cpuProfDir, 'fleet')}`, 'device-sim/cli.ts', ...simArgs])
      : startTs('fwsim', 'device-sim/cli.ts', simArgs);
    const failed = line(gw, 'error', 600_000).then((e) => {
      throw new Error(String(e.message));
    });
    await Promise.race([line(gw, 'start', 600_000), failed]);
    const fleetCpu0 = procCpuS(sims.child.pid);
    const done = await Promise.race([line(gw, 'done', 600_000), failed]);
    const fleetCpuS = procCpuS(sims.child.pid) - fleetCpu0;
    // the gateway exits by itself once the fleet is gone (and so writes its --cpu-prof profile)
    await sims.stop(10_000);
    await Promise.race([gw.exited, new Promise((r) => setTimeout(r, 30_000))]);
    return {
      wallS: Number(done.wallMs) / 1000, firstOfferS: Number(done.firstOfferMs) / 1000,
      cpuS: (Number(done.cpuUserUs) + Number(done.cpuSysUs)) / 1e6, updated: Number(done.updated), chunk: Number(done.chunk),
      fleetCpuS, phases: done.phases as Record<string, number>,
    };
  } finally {
    await sims?.stop(10_000);
    await gw.stop(10_000);
    await rm(dir, { recursive: true, force: true });
  }
}

/** The same bytes as plain MQTT: broker in this process, subscribers in their own. */
interface Baseline { wallS: number; cpuS: number; subsCpuS: number }

async function baselineRun(n: number, chunk: number, deviceWork = false): Promise<Baseline> {
  const workDir = deviceWork ? await mkdtemp(join(tmpdir(), 'fwgate-bench-floor-')) : undefined;
  const config = parseConfig({ broker: { host: '127.0.0.1', port: 0, connectRatePerMin: 0 }, log: { level: 'silent' } }); // as the gateway run
  const broker = await Broker.start(await brokerOptions(config, () => undefined));
  // The gateway's topic rules (broker-access.ts) let a client publish only on its own up topic and
  // subscribe only to its own down topic, which forbids a plain fan-out; let one bench topic
  // through and keep every other decision (and its cost) as it is.
  const { aedes } = broker;
  const pub0 = aedes.authorizePublish!.bind(aedes);
  const sub0 = aedes.authorizeSubscribe!.bind(aedes);
  aedes.authorizePublish = (client, packet, done) => (packet.topic === BASELINE_TOPIC ? done(null) : pub0(client, packet, done));
  aedes.authorizeSubscribe = (client, sub, done) => (sub.topic === BASELINE_TOPIC ? done(null, sub) : sub0(client, sub, done));
  const subs = startTs('fanout-subscribers', 'bench/lib/fanout-subscribers.ts', [
    '--url', broker.url, '--count', String(n), '--topic', BASELINE_TOPIC, '--bytes', String(SIZE),
    ...(workDir === undefined ? [] : ['--device-work', workDir]),
  ], { stderr: 'inherit' });
  const publisher = mqtt.connect(broker.url, { clientId: 'fanout-pub', protocolVersion: 4, reconnectPeriod: 0 });
  try {
    await line(subs, 'ready', 120_000);
    if (!publisher.connected) await new Promise<void>((resolve, reject) => {
      publisher.once('connect', () => resolve());
      publisher.once('error', reject);
    });
    const image = Buffer.alloc(SIZE, 0xa5);
    const doneLine = line(subs, 'done', 600_000);
    const subsCpu0 = procCpuS(subs.child.pid);
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    // MQTT.js has no flow control of its own: at most WINDOW publishes in flight, each freed by
    // its callback (QoS 0: written to the socket).
    let inFlight = 0;
    let wake: (() => void) | undefined;
    for (let off = 0; off < SIZE; off += chunk) {
      while (inFlight >= WINDOW) await new Promise<void>((r) => { wake = r; });
      inFlight++;
      publisher.publish(BASELINE_TOPIC, image.subarray(off, Math.min(off + chunk, SIZE)), { qos: 0 }, () => {
        inFlight--;
        wake?.();
        wake = undefined;
      });
    }
    await doneLine;
    const wallS = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    return { wallS, cpuS: (cpu.user + cpu.system) / 1e6, subsCpuS: procCpuS(subs.child.pid) - subsCpu0 };
  } finally {
    await publisher.endAsync(true);
    await subs.stop(10_000);
    await broker.close();
    if (workDir !== undefined) await rm(workDir, { recursive: true, force: true });
  }
}

log(`bench/fanout: image ${SIZE} B to N = ${NS.join(', ')} devices on loopback (no shaping, boot delay 0); baseline window ${WINDOW}; ${REPEAT} round(s) per N after a warm-up`);
type Side = 'gateway' | 'baseline' | 'floor';
const SIDES: readonly Side[] = ['gateway', 'baseline', 'floor'];
interface Round { gw: GatewayRun; base: Baseline; floor: Baseline }

/** One round at N: the three measurements in the order given (chunk size from the gateway's manifest). */
async function round_(n: number, order: readonly Side[]): Promise<Round> {
  const got: Partial<Round> = {};
  const chunk = DEFAULT_CHUNK_SIZE;
  for (const side of order) {
    if (side === 'gateway') got.gw = await gatewayRun(n);
    else if (side === 'baseline') got.base = await baselineRun(n, chunk);
    else got.floor = await baselineRun(n, chunk, true);
  }
  return got as Round;
}

const med = (xs: readonly number[]): number => {
  const v = [...xs].sort((a, b) => a - b);
  const k = v.length >> 1;
  return v.length % 2 ? v[k]! : (v[k - 1]! + v[k]!) / 2;
};
const mm = (xs: readonly number[], d = 3): [number, number] => [round(Math.min(...xs), d), round(Math.max(...xs), d)];

// warm-up: every side once at the smallest N, dropped (JIT, the in-process broker, page cache)
await round_(Math.min(...NS), SIDES);
log('  N     gateway wall  MiB/s   CPU s  CPU s/MiB | baseline wall  MiB/s  broker CPU s | ratio | floor wall  MiB/s | floor ratio   (medians)');
interface Row {
  n: number; rounds: Round[]; gw: GatewayRun; base: Baseline; floor: Baseline;
  ratios: number[]; floorRatios: number[]; vsFloor: number[]; cpuMsPerDeviceMib: number[];
  ratio: number; floorRatio: number;
}
const rows: Row[] = [];
for (const n of NS) {
  const rounds: Round[] = [];
  for (let r = 0; r < REPEAT; r++) {
    const order = SIDES.map((_, i) => SIDES[(i + r) % SIDES.length]!);
    const got = await round_(n, order);
    rounds.push(got);
    log(`  N = ${n} round ${r + 1}/${REPEAT} (${order.join(', ')}): gateway ${got.gw.wallS.toFixed(2)} s, baseline ${got.base.wallS.toFixed(2)} s, floor ${got.floor.wallS.toFixed(2)} s`);
  }
  const mib = (n * SIZE) / MIB;
  // the round whose gateway wall time is the median stands for the gateway's phase figures
  const gwMedian = [...rounds].sort((a, b) => a.gw.wallS - b.gw.wallS)[rounds.length >> 1]!.gw;
  const gw: GatewayRun = { ...gwMedian, wallS: med(rounds.map((x) => x.gw.wallS)), cpuS: med(rounds.map((x) => x.gw.cpuS)), fleetCpuS: med(rounds.map((x) => x.gw.fleetCpuS)), updated: Math.min(...rounds.map((x) => x.gw.updated)) };
  const base: Baseline = { wallS: med(rounds.map((x) => x.base.wallS)), cpuS: med(rounds.map((x) => x.base.cpuS)), subsCpuS: med(rounds.map((x) => x.base.subsCpuS)) };
  const floor: Baseline = { wallS: med(rounds.map((x) => x.floor.wallS)), cpuS: med(rounds.map((x) => x.floor.cpuS)), subsCpuS: med(rounds.map((x) => x.floor.subsCpuS)) };
  const ratios = rounds.map((x) => x.base.wallS / x.gw.wallS);
  const floorRatios = rounds.map((x) => x.base.wallS / x.floor.wallS);
  const vsFloor = rounds.map((x) => x.floor.wallS / x.gw.wallS);
  const cpuMsPerDeviceMib = rounds.map((x) => (x.gw.cpuS * 1000) / mib);
  const ratio = med(ratios);
  const floorRatio = med(floorRatios);
  rows.push({ n, rounds, gw, base, floor, ratios, floorRatios, vsFloor, cpuMsPerDeviceMib, ratio, floorRatio });
  log(`  ${String(n).padEnd(5)} ${gw.wallS.toFixed(2).padStart(8)} s ${(mib / gw.wallS).toFixed(1).padStart(7)} ${gw.cpuS.toFixed(2).padStart(7)} ${(gw.cpuS / mib).toFixed(3).padStart(9)}  | ${base.wallS.toFixed(2).padStart(10)} s ${(mib / base.wallS).toFixed(1).padStart(7)} ${base.cpuS.toFixed(2).padStart(9)}    | ${ratio.toFixed(2)}  | ${floor.wallS.toFixed(2).padStart(7)} s ${(mib / floor.wallS).toFixed(1).padStart(6)} | ${floorRatio.toFixed(2)}${gw.updated === n ? '' : `  (only ${gw.updated}/${n} updated)`}`);
  const p = gw.phases;
  log(`        fanout / floor ${med(vsFloor).toFixed(2)}; gateway CPU ${med(cpuMsPerDeviceMib).toFixed(1)} ms per device-MiB; fleet CPU ${gw.fleetCpuS.toFixed(2)} s (subscribers ${base.subsCpuS.toFixed(2)} s); median round: probe ${p.probeMs} ms, last transfer start ${p.lastTransferStartMs} ms, last verified ${p.lastVerifiedMs} ms; per device mean/max ms: offer ${p.offerMeanMs}/${p.offerMaxMs}, transfer ${p.transferMeanMs}/${p.transferMaxMs}, verify ${p.verifyMeanMs}/${p.verifyMaxMs}, activate->confirm ${p.activateToConfirmMeanMs}/${p.activateToConfirmMaxMs}`);
}

interface Profiled { path: string; busyMs: number; gcMs: number; hotspots: Hotspot[] }
const profiles: { gateway?: Profiled; fleet?: Profiled } = {};
if (PROFILE_N) {
  const profDir = await mkdtemp(join(tmpdir(), 'fwgate-fanout-prof-'));
  const gw = await gatewayRun(PROFILE_N, profDir);
  for (const side of ['gateway', 'fleet'] as const) {
    const dir = join(profDir, side);
    // CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile: thread 0 is the main thread (tsx's loader thread writes one too)
    const files = (await readdir(dir).catch(() => [])).filter((f) => f.endsWith('.cpuprofile'));
    const file = files.find((f) => f.split('.')[4] === '0') ?? files[0];
    if (!file) {
      log(`  no .cpuprofile in ${dir}`);
      continue;
    }
    const top = await topSelfTime(join(dir, file), ROOT, 8);
    profiles[side] = { path: join(dir, file), busyMs: top.busyMs, gcMs: top.gcMs, hotspots: top.hotspots };
    log(`  profile of the ${side} process (N = ${PROFILE_N}, wall ${gw.wallS.toFixed(2)} s, whole process, busy ${top.busyMs} ms, GC ${top.gcMs} ms): ${join(dir, file)}`);
    for (const h of top.hotspots) log(`    ${(h.share * 100).toFixed(1).padStart(5)} %  ${String(h.selfMs).padStart(6)} ms  ${h.fn}`);
  }
}

const byN = (n: number): Row | undefined => rows.find((r) => r.n === n);
const totalMib = rows.reduce((a, r) => a + (r.n * SIZE) / MIB, 0);
const perN: Record<string, number | [number, number] | null> = {};
for (const n of new Set([10, 100, 500, ...NS])) {
  const r = byN(n);
  perN[`ratio_${n}`] = r ? round(med(r.ratios)) : null;
  perN[`ratio_${n}_min_max`] = r ? mm(r.ratios) : null;
  perN[`floor_ratio_${n}`] = r ? round(med(r.floorRatios)) : null;
  perN[`floor_ratio_${n}_min_max`] = r ? mm(r.floorRatios) : null;
  perN[`fanout_vs_floor_${n}`] = r ? round(med(r.vsFloor)) : null;
  perN[`fanout_vs_floor_${n}_min_max`] = r ? mm(r.vsFloor) : null;
}
const cpuRow = byN(CPU_N);
const out = {
  bench: 'fanout',
  image_bytes: SIZE,
  chunk_bytes: rows[0]?.gw.chunk ?? null,
  baseline_window: WINDOW,
  repeat: REPEAT,
  ...perN,
  /** The gateway process's own CPU (process.cpuUsage in bench/lib/fanout-gateway.ts) per MiB delivered, at N = --cpu-n. */
  gateway_cpu_ms_per_device_mib: cpuRow ? round(med(cpuRow.cpuMsPerDeviceMib), 2) : null,
  gateway_cpu_ms_per_device_mib_min_max: cpuRow ? mm(cpuRow.cpuMsPerDeviceMib, 2) : null,
  gateway_cpu_n: CPU_N,
  cpu_s_per_mib: totalMib ? round(rows.reduce((a, r) => a + r.gw.cpuS, 0) / totalMib, 4) : null,
  target_fanout_vs_floor_100_ge_0_7: byN(100) ? med(byN(100)!.vsFloor) >= 0.7 : null,
  all_updated: rows.every((r) => r.gw.updated === r.n),
  runs: rows.map((r) => ({
    n: r.n, wall_s: round(r.gw.wallS), first_offer_s: round(r.gw.firstOfferS), gateway_mib_s: round((r.n * SIZE) / MIB / r.gw.wallS, 2),
    cpu_s: round(r.gw.cpuS), cpu_s_per_mib: round(r.gw.cpuS / ((r.n * SIZE) / MIB), 4),
    fleet_cpu_s: round(r.gw.fleetCpuS),
    baseline_wall_s: round(r.base.wallS), baseline_mib_s: round((r.n * SIZE) / MIB / r.base.wallS, 2), baseline_broker_cpu_s: round(r.base.cpuS),
    baseline_subscribers_cpu_s: round(r.base.subsCpuS),
    floor_wall_s: round(r.floor.wallS), floor_broker_cpu_s: round(r.floor.cpuS), floor_subscribers_cpu_s: round(r.floor.subsCpuS),
    phases_ms: r.gw.phases,
  })),
  hotspots: profiles.gateway?.hotspots.map((h) => ({ fn: h.fn, share: h.share })) ?? [],
  fleet_hotspots: profiles.fleet?.hotspots.map((h) => ({ fn: h.fn, share: h.share })) ?? [],
};
if (values.json) process.stdout.write(`${JSON.stringify(out)}\n`);
else process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
