import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { runSoak, SOAK_FAULT_KINDS } from './soak.ts';
import { runRestartSoak } from './restart-soak.ts';

/**
 * `npm run test:faults -- --seed S --faults N [--devices D] [--restarts R] [--components] [--verbose]`: the seeded
 * random soak (with --components: of multi-component devices, test/faults/component-soak.ts), then R gateway restarts under fwpush with real processes (test/faults/restart-soak.ts;
 * docs/reliability.md). Prints a line per campaign and the summary line; exit 1 when a
 * device was bricked or anything was lost, 2 on a usage error.
 */

const USAGE = `usage: npm run test:faults -- [--seed S] [--faults N] [--devices D] [--restarts R] [--components] [--verbose]

  --seed S      PRNG seed, integer 0..4294967295 (default: a random one, printed)
  --faults N    run campaigns until at least N faults have fired, 1..100000 (default 200)
  --devices D   simulated devices, 2..64 (default 8)
  --restarts R  then R rounds of fwgate killed and restarted under fwpush (real processes), 0..1000 (default 3)
  --components  devices with components app and net, each campaign a signed release (app new, net new
                or unchanged, app requiring it); adds per-component faults and the set invariant
  --verbose     print each campaign's fault schedule, which faults fired and every device's result
  --help        this text

Faults drawn: ${SOAK_FAULT_KINDS.join(', ')}, disk-full (root), gateway restart under fwpush (--restarts).
Reproduce a failing run with the same --seed, --faults and --devices.`;

export interface SoakArgs {
  seed: number;
  faults: number;
  devices: number;
  verbose: boolean;
  /** The component soak (runSoak({ components: true })). */
  components: boolean;
  /** Rounds of the gateway restart under fwpush (real processes) after the soak. */
  restarts: number;
}

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export function parseSoakArgs(argv: readonly string[], randomSeed: () => number): SoakArgs | 'help' {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        seed: { type: 'string' }, faults: { type: 'string' }, devices: { type: 'string' }, restarts: { type: 'string' },
        verbose: { type: 'boolean', short: 'v' }, components: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
      },
      strict: true, allowPositionals: false,
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (values.help) return 'help';
  const int = (flag: string, text: string | undefined, lo: number, hi: number, dflt: number): number => {
    if (text === undefined) return dflt;
    if (!/^\d+$/.test(text.trim())) throw new UsageError(`--${flag} must be an integer ${lo}..${hi}, got "${text}"`);
    const n = Number(text);
    if (!Number.isSafeInteger(n) || n < lo || n > hi) throw new UsageError(`--${flag} must be an integer ${lo}..${hi}, got "${text}"`);
    return n;
  };
  return {
    seed: int('seed', values.seed, 0, 0xffff_ffff, randomSeed()),
    faults: int('faults', values.faults, 1, 100_000, 200),
    devices: int('devices', values.devices, 2, 64, 8),
    verbose: values.verbose === true,
    components: values.components === true,
    restarts: int('restarts', values.restarts, 0, 1000, 3),
  };
}

async function main(): Promise<number> {
  let args: SoakArgs | 'help';
  try {
    args = parseSoakArgs(process.argv.slice(2), () => Math.floor(Math.random() * 0x1_0000_0000));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`test:faults: ${err.message}\n\n${USAGE}\n`);
    return 2;
  }
  if (args === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const { seed, faults, devices, verbose, restarts, components } = args;
  const flags = `--seed ${seed} --faults ${faults} --devices ${devices}${components ? ' --components' : ''}`;
  const t = (): string => new Date().toISOString().slice(11, 23);
  process.stdout.write(`${t()} soak: seed ${seed}, at least ${faults} faults, ${devices} devices${components ? ' with components app and net' : ''} (reproduce: npm run test:faults -- ${flags})\n`);
  const f = await runSoak({ seed, faults, devices, verbose, components, log: (line) => process.stdout.write(`${t()} ${line}\n`) });
  const kinds = [
    ...Object.entries(f.byKind).map(([k, v]) => `${k} ${v.fired}/${v.scheduled}`),
    ...(f.componentPowerCuts ? [`of the power cuts, limited to a component's step ${f.componentPowerCuts.fired}/${f.componentPowerCuts.scheduled}`] : []),
  ].join(', ');
  process.stdout.write(`${t()} ${f.campaigns} campaigns in ${(f.ms / 1000).toFixed(1)} s; fired/scheduled by kind: ${kinds}; skipped ${f.skipped}\n`);
  for (const p of f.problems) process.stdout.write(`PROBLEM ${p}\n`);
  process.stdout.write(`${f.summary}\n`);
  if (f.bricked !== 0 || f.lost !== 0 || f.problems.length > 0) {
    process.stdout.write(`FAILED: reproduce with npm run test:faults -- ${flags} --verbose\n`);
    return 1;
  }
  if (restarts > 0) {
    const r = await runRestartSoak({ seed, rounds: restarts, log: (line) => process.stdout.write(`${t()} ${line}\n`) });
    for (const p of r.problems) process.stdout.write(`PROBLEM ${p}\n`);
    process.stdout.write(`gateway restarts under fwpush: ${r.restarts} in ${r.rounds} rounds, problems ${r.problems.length}\n`);
    if (r.problems.length > 0) {
      process.stdout.write(`FAILED: reproduce with npm run test:faults -- --seed ${seed} --faults 1 --restarts ${restarts}\n`);
      return 1;
    }
  }
  return 0;
}

// Run only as a script (mocha loads every .ts of test/faults when given the folder).
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().then((code) => { process.exitCode = code; }, (err: unknown) => {
    process.stderr.write(`test:faults: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    process.exitCode = 1;
  });
}
