/**
 * bench/rollout — does fastest-first pay off, and does tail protection keep the makespan near
 * its bound? The same heterogeneous fleet (every device behind its own shaping proxy, profile
 * `mixed`) gets the same image three times in one run: ranked (the gateway's order), random, and
 * slowest-first. The random order is run --random-runs times (3) with different seeds and its
 * figures averaged: one shuffle can be lucky or unlucky by ±5 %. Prints mean time-to-update and makespan per order, the lower bound on the
 * makespan, and the ratios; with --json the last line is a JSON object of the figures (with the
 * image size, `image_bytes`). The default image is 1 MiB, the middle of the 256 KiB–2 MiB range of
 * MCU firmware images (docs/performance-log.md); --size 262144 gives the earlier 256 KiB figures.
 *
 * Each order runs on a gateway that has updated this fleet once before (a warm-up campaign of an
 * earlier image, ranked), as on a site after its first rollout: the gateway has learned each
 * device's reboot time and device time per MiB (docs/protocol.md §7.5.3). --cold skips the
 * warm-up: a first rollout on a new gateway, planned on the defaults.
 *
 * --repeat N (3): the whole comparison (ranked, the random seeds, slowest-first) runs N times, rounds
 * one after the other (the policies' order rotated per round) so that a slow spell on the machine
 * falls on every order alike, each round with its own random seeds; the JSON reports the median of the rounds' ratios (and min/max), since
 * one round's ratio moved between 0.64 and 0.75 on a busy 2-core host.
 *
 *   npm run bench:rollout [-- --devices 50 --size 1048576 --concurrency 8 --repeat 3 --sweep 4,8,16 --cold --json]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { makeSampleImage } from '../firmware-samples/image-format.ts';
import { parseConfig } from '../gateway/config.ts';
import { Gateway } from '../gateway/gateway.ts';
import { silentLogger } from '../gateway/log.ts';
import type { StoredImage } from '../gateway/store.ts';
import type { OrderPolicy } from '../gateway/rollout/campaign.ts';
import { makespanLowerBound } from '../gateway/rollout/planner.ts';
import { manifestForImage } from '../protocol/manifest.ts';
import type { ResultMessage } from '../protocol/uplink.ts';
import { startTs } from '../scripts/lib/processes.ts';
import { intFlag } from './lib/int-flag.ts';

const int = intFlag('bench/rollout');

const { values } = parseArgs({
  options: {
    devices: { type: 'string', default: '50' },
    size: { type: 'string', default: String(1024 * 1024) },
    concurrency: { type: 'string', default: '8' },
    sweep: { type: 'string', default: '' },
    json: { type: 'boolean', default: false },
    verbose: { type: 'boolean', default: false },
    policies: { type: 'string', default: 'ranked,random,slowest-first' },
    'random-runs': { type: 'string', default: '3' },
    repeat: { type: 'string', default: '3' },
    cold: { type: 'boolean', default: false },
  },
  strict: true,
});
const DEVICES = int(values.devices, 'devices', 1, 1000);
const SIZE = int(values.size, 'size', 1024, 64 * 1024 * 1024);
const CONCURRENCY = int(values.concurrency, 'concurrency', 1, 1000);
const RANDOM_RUNS = int(values['random-runs'], 'random-runs', 1, 20);
const REPEAT = int(values.repeat, 'repeat', 1, 20);
const SWEEP = values.sweep ? values.sweep.split(',').map((v) => int(v, 'sweep', 1, 1000)) : [];


const log = (s: string): void => {
  process.stderr.write(`${s}\n`);
};

interface RunFigures {
  policy: OrderPolicy;
  concurrency: number;
  updated: number;
  meanS: number;
  makespanS: number;
  /** Lower bound on the makespan from the per-device slot times and durations measured in this run. */
  lowerBoundS: number;
  /** The same bound from the gateway's pre-campaign estimates (probe figures), for comparison. */
  estimatedBoundS: number;
}

async function run(policy: OrderPolicy, concurrency: number, seed = 42): Promise<RunFigures> {
  const dir = await mkdtemp(join(tmpdir(), 'fwgate-bench-rollout-'));
  const config = parseConfig({
    dataDir: join(dir, 'gateway'),
    broker: { host: '127.0.0.1', port: 0 },
    rollout: { concurrency, rebootTimeoutMs: 60_000, offlineWaitMs: 30_000 },
    log: { level: 'silent' },
  });
  const gateway = await Gateway.start({ config, log: silentLogger() });
  // The fleet runs in its own process (fwsim --profile mixed), as in real use: the gateway's
  // event loop is not shared with 50 devices and their shaping proxies.
  const sims = startTs('fwsim', 'device-sim/cli.ts', [
    '--broker', gateway.broker.url, '--count', String(DEVICES), '--data', join(dir, 'devices'),
    '--hw', 'sensor-v1', '--version', '1.0.0', '--boot-delay', '300', '--profile', 'mixed', '--json',
  ]);
  try {
    const deadline = Date.now() + 60_000;
    while (gateway.fleet.online().length < DEVICES) {
      if (Date.now() > deadline) throw new Error(`only ${gateway.fleet.online().length} of ${DEVICES} devices registered`);
      if (sims.child.exitCode !== null) throw new Error(`fwsim exited (${sims.child.exitCode})`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const store = async (version: string): Promise<StoredImage> => {
      const image = Buffer.from(makeSampleImage({ name: 'sensor-fw', version, hw: 'sensor-v1', size: SIZE }));
      const upload = await gateway.store.beginUpload(manifestForImage(image, { name: 'sensor-fw', version, hw: ['sensor-v1'] }));
      await upload.write(0, image);
      return upload.commit();
    };
    if (!values.cold) {
      const warm = await gateway.startCampaign(await store('1.0.1'), { orderPolicy: 'ranked' });
      const done = await new Promise<{ updated: number }>((resolve) => warm.once('complete', resolve));
      if (done.updated !== DEVICES) throw new Error(`warm-up campaign updated ${done.updated} of ${DEVICES}`);
    }
    const stored = await store('1.1.0');

    const campaign = await gateway.startCampaign(stored, { orderPolicy: policy, seed });
    let t0 = 0;
    let etas: number[] = [];
    const doneAt = new Map<string, number>();
    const results: ResultMessage[] = [];
    campaign.on('order', (o) => {
      t0 = performance.now();
      etas = o.devices.map((d) => d.etaMs ?? 0);
    });
    const startedAt = new Map<string, number>();
    let order: { id: string; rank: number; etaMs?: number; startMs?: number; bps?: number; rttMs?: number }[] = [];
    campaign.on('order', (o) => { order = o.devices; });
    const transferredAt = new Map<string, number>();
    campaign.on('progress', (p) => {
      if (p.phase === 'offering' && !startedAt.has(p.id)) startedAt.set(p.id, performance.now() - t0);
      if (p.phase === 'activating' && !transferredAt.has(p.id)) transferredAt.set(p.id, performance.now() - t0);
    });
    campaign.on('result', (r) => {
      results.push(r);
      if (r.outcome === 'updated') doneAt.set(r.id, performance.now() - t0);
    });
    const complete = await new Promise<{ updated: number }>((resolve) => campaign.once('complete', resolve));
    const times = [...doneAt.values()];
    if (values.verbose) {
      for (const e of [...order].sort((a, b) => (startedAt.get(a.id) ?? 0) - (startedAt.get(b.id) ?? 0))) {
        const r = results.find((x) => x.id === e.id);
        log(`    ${policy} ${e.id} rank ${e.rank} rtt ${e.rttMs} bps ${e.bps} eta ${e.etaMs} plan ${e.startMs} start ${Math.round(startedAt.get(e.id) ?? -1)} slot ${Math.round((transferredAt.get(e.id) ?? -1) - (startedAt.get(e.id) ?? 0))} took ${r?.durationMs} done ${Math.round(doneAt.get(e.id) ?? -1)}`);
      }
    }
    // A device holds a transfer slot from its offer until its image is verified; its reboot and
    // confirmation run outside the slots. So no order can finish before the longest single update,
    // nor before the slot time of all devices spread over the slots plus the shortest reboot and
    // confirmation (the last device to leave a slot still has to reboot).
    const updated = results.filter((r) => r.outcome === 'updated');
    const slotTimes = updated.map((r) => (transferredAt.get(r.id) ?? 0) - (startedAt.get(r.id) ?? 0));
    const postTimes = updated.map((r) => (doneAt.get(r.id) ?? 0) - (transferredAt.get(r.id) ?? 0));
    const lowerBound = Math.max(
      Math.max(0, ...updated.map((r) => r.durationMs)),
      slotTimes.reduce((a, b) => a + b, 0) / concurrency + Math.min(...postTimes),
    );
    return {
      policy, concurrency, updated: complete.updated,
      meanS: round(times.reduce((a, b) => a + b, 0) / Math.max(1, times.length) / 1000),
      makespanS: round(Math.max(0, ...times) / 1000),
      lowerBoundS: round(lowerBound / 1000),
      estimatedBoundS: round(makespanLowerBound(etas, concurrency) / 1000),
    };
  } finally {
    await sims.stop(10_000);
    await gateway.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

/** Several runs of one policy as one: figures averaged, `updated` the fewest any run updated. */
function averaged(runs: readonly RunFigures[]): RunFigures {
  const avg = (pick: (f: RunFigures) => number): number => round(runs.reduce((a, f) => a + pick(f), 0) / runs.length);
  return {
    ...runs[0]!,
    updated: Math.min(...runs.map((f) => f.updated)),
    meanS: avg((f) => f.meanS),
    makespanS: avg((f) => f.makespanS),
    lowerBoundS: avg((f) => f.lowerBoundS),
    estimatedBoundS: avg((f) => f.estimatedBoundS),
  };
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

log(`bench/rollout: ${DEVICES} devices (profile mixed), image ${SIZE} B, concurrency ${CONCURRENCY}, ${REPEAT} round(s)`);
const POLICIES = values.policies.split(',') as OrderPolicy[];
for (const policy of POLICIES) {
  if (!['ranked', 'random', 'slowest-first'].includes(policy)) {
    process.stderr.write(`bench/rollout: unknown policy "${policy}" (ranked, random, slowest-first)\n`);
    process.exit(2);
  }
}
/** Each round: every policy once (random: RANDOM_RUNS seeds, averaged), the order rotated from round to round. */
const rounds: RunFigures[][] = [];
for (let round_ = 0; round_ < REPEAT; round_++) {
  const figures: RunFigures[] = [];
  for (const policy of POLICIES.map((_, i) => POLICIES[(i + round_) % POLICIES.length]!)) {
    const seeds = policy === 'random' ? Array.from({ length: RANDOM_RUNS }, (_, i) => 42 + round_ * RANDOM_RUNS + i) : [42];
    const runs: RunFigures[] = [];
    for (const seed of seeds) {
      const f = await run(policy, CONCURRENCY, seed);
      runs.push(f);
      if (seeds.length > 1) log(`  ${policy} (seed ${seed})`.padEnd(16) + ` updated ${f.updated}/${DEVICES}  mean ${f.meanS.toFixed(2)} s  makespan ${f.makespanS.toFixed(2)} s`);
    }
    const f = averaged(runs);
    figures.push(f);
    log(`  round ${round_ + 1}: ${policy.padEnd(14)} updated ${f.updated}/${DEVICES}  mean ${f.meanS.toFixed(2)} s  makespan ${f.makespanS.toFixed(2)} s  (bound from this run's durations ${f.lowerBoundS.toFixed(2)} s)`);
  }
  rounds.push(figures);
}
const sweep: RunFigures[] = [];
for (const c of SWEEP) {
  const f = await run('ranked', c);
  sweep.push(f);
  log(`  ranked @ concurrency ${String(c).padEnd(4)} mean ${f.meanS.toFixed(2)} s  makespan ${f.makespanS.toFixed(2)} s  bound ${f.lowerBoundS.toFixed(2)} s`);
}

const median = (xs: readonly number[]): number | null => {
  if (xs.length === 0) return null;
  const v = [...xs].sort((a, b) => a - b);
  const m = v.length >> 1;
  return round(v.length % 2 ? v[m]! : (v[m - 1]! + v[m]!) / 2);
};
const minMax = (xs: readonly number[]): [number, number] | null => (xs.length ? [round(Math.min(...xs)), round(Math.max(...xs))] : null);
const of = (p: OrderPolicy, pick: (f: RunFigures) => number): number[] =>
  rounds.flatMap((fs) => fs.filter((f) => f.policy === p).map(pick));
/** Per round, the ratio of two figures measured in that round. */
const perRound = (a: (fs: RunFigures[]) => number | undefined, b: (fs: RunFigures[]) => number | undefined): number[] =>
  rounds.flatMap((fs) => {
    const x = a(fs);
    const y = b(fs);
    return x !== undefined && y ? [x / y] : [];
  });
const pick = (p: OrderPolicy, f: (r: RunFigures) => number) => (fs: RunFigures[]): number | undefined => {
  const r = fs.find((x) => x.policy === p);
  return r ? f(r) : undefined;
};
const meanRatios = perRound(pick('ranked', (f) => f.meanS), pick('random', (f) => f.meanS));
const makespanRatios = perRound(pick('ranked', (f) => f.makespanS), pick('ranked', (f) => f.lowerBoundS));
const out = {
  bench: 'rollout',
  devices: DEVICES,
  image_bytes: SIZE,
  warm: !values.cold,
  concurrency: CONCURRENCY,
  random_runs: RANDOM_RUNS,
  repeat: REPEAT,
  mean_ranked_s: median(of('ranked', (f) => f.meanS)),
  mean_random_s: median(of('random', (f) => f.meanS)),
  mean_slowest_first_s: median(of('slowest-first', (f) => f.meanS)),
  makespan_ranked_s: median(of('ranked', (f) => f.makespanS)),
  makespan_random_s: median(of('random', (f) => f.makespanS)),
  makespan_slowest_first_s: median(of('slowest-first', (f) => f.makespanS)),
  lower_bound_s: median(of('ranked', (f) => f.lowerBoundS)),
  estimated_lower_bound_s: median(of('ranked', (f) => f.estimatedBoundS)),
  /** Medians over the rounds of each round's own ratio; min/max beside them. */
  mean_ratio_ranked_random: median(meanRatios),
  mean_ratio_ranked_random_min_max: minMax(meanRatios),
  makespan_ratio_ranked_bound: median(makespanRatios),
  makespan_ratio_ranked_bound_min_max: minMax(makespanRatios),
  target_mean_ratio_le_0_65: meanRatios.length ? median(meanRatios)! <= 0.65 : null,
  target_makespan_ratio_le_1_10: makespanRatios.length ? median(makespanRatios)! <= 1.1 : null,
  all_updated: rounds.every((fs) => fs.every((f) => f.updated === DEVICES)),
  sweep: sweep.map((f) => ({ concurrency: f.concurrency, mean_s: f.meanS, makespan_s: f.makespanS, lower_bound_s: f.lowerBoundS })),
};
log(`  mean ranked / random = ${out.mean_ratio_ranked_random} (median of ${REPEAT} round(s), min/max ${JSON.stringify(out.mean_ratio_ranked_random_min_max)}; target <= 0.65); makespan ranked / bound = ${out.makespan_ratio_ranked_bound} (min/max ${JSON.stringify(out.makespan_ratio_ranked_bound_min_max)}; target <= 1.10)`);
if (values.json) process.stdout.write(`${JSON.stringify(out)}\n`);
else process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
