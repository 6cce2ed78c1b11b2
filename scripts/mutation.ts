/**
 * Mutation testing (StrykerJS) of one or more configurations: `tsx scripts/mutation.ts <name>...
 * [--json] [--report-only] [--group g]...` runs `stryker.<name>.config.mjs` (security: issue 18's
 * modules; core: protocol, rollout, windows, store) and prints the score per module, all sets
 * together.
 * A config that exports `groups` (stryker.core.config.mjs) is run one group at a time
 * (STRYKER_GROUP), so each module's mutants meet its own unit tests; the groups' JSON reports are
 * then merged. `--report-only` reads the last reports without running Stryker. Incremental mode
 * lives in the configs: a rerun only tests what changed.
 *
 * With `--json` the last line is `{"score": S, "killed": K, "survived": V, "modules": [...]}`,
 * S = (killed + timeout) / (killed + timeout + survived + no coverage), as Stryker counts it
 * (mutants that do not compile or crash the runner are not in it).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ROOT } from './lib/processes.ts';

interface MutantJson { status: string }
interface ReportJson { files: Record<string, { mutants: MutantJson[] }> }
interface ModuleScore { file: string; score: number; killed: number; timeout: number; survived: number; noCoverage: number; errors: number }

const args = process.argv.slice(2);
const names = args.filter((a, i) => !a.startsWith('--') && args[i - 1] !== '--group');
const json = args.includes('--json');
const reportOnly = args.includes('--report-only');
const only = args.flatMap((a, i) => (args[i - 1] === '--group' ? [a] : []));
if (names.length === 0) {
  console.error('usage: tsx scripts/mutation.ts <config name, e.g. core or security>... [--json] [--report-only] [--group <group>]...');
  process.exit(2);
}
const reports: string[] = [];
for (const name of names) {
const configPath = join(ROOT, `stryker.${name}.config.mjs`);
if (!existsSync(configPath)) {
  console.error(`${configPath}: no such Stryker config`);
  process.exit(2);
}

delete process.env.STRYKER_GROUP;
const mod = (await import(pathToFileURL(configPath).href)) as { default: { jsonReporter?: { fileName?: string } }; groups?: Record<string, unknown> };
const groups = mod.groups ? Object.keys(mod.groups).filter((g) => only.length === 0 || only.includes(g)) : [undefined];
const unknown = only.filter((g) => !mod.groups || !(g in mod.groups));
if (unknown.length > 0) {
  console.error(`unknown group(s) ${unknown.join(', ')}; ${name} has ${Object.keys(mod.groups ?? {}).join(', ') || 'none'}`);
  process.exit(2);
}

for (const group of groups) {
  const env: NodeJS.ProcessEnv = { ...process.env, ...(group ? { STRYKER_GROUP: group } : {}) };
  // mocha 12 ships lib/cli/*.cjs, which @stryker-mutator/mocha-runner requires without an extension
  env.NODE_OPTIONS = `${env.NODE_OPTIONS ?? ''} --require ${join(ROOT, 'scripts/lib/mocha-cjs-resolve.cjs')}`.trim();
  // the config reads STRYKER_GROUP when it is evaluated: a fresh instance per group gives that group's report path
  if (group) process.env.STRYKER_GROUP = group;
  const cfg = ((await import(`${pathToFileURL(configPath).href}?group=${group ?? ''}`)) as typeof mod).default;
  delete process.env.STRYKER_GROUP;
  const report = join(ROOT, cfg.jsonReporter?.fileName ?? 'reports/mutation/mutation.json');
  if (!reportOnly) {
    console.error(`mutation: ${name}${group ? ` / ${group}` : ''}`);
    const r = spawnSync(process.execPath, [join(ROOT, 'node_modules/@stryker-mutator/core/bin/stryker.js'), 'run', configPath], { cwd: ROOT, env, stdio: ['ignore', 'inherit', 'inherit'] });
    if (r.status !== 0) {
      console.error(`stryker exited with ${r.status ?? r.signal}`);
      process.exit(1);
    }
  }
  if (existsSync(report)) reports.push(report);
  else console.error(`no report at ${report}${reportOnly ? ' (run without --report-only first)' : ''}`);
}
}

if (reports.length === 0) {
  console.error('mutation: no report to score (nothing was measured); run without --report-only');
  process.exit(1);
}
const modules = new Map<string, ModuleScore>();
for (const path of reports) {
  const r = JSON.parse(readFileSync(path, 'utf8')) as ReportJson;
  for (const [file, f] of Object.entries(r.files)) {
    const m: ModuleScore = { file, score: 0, killed: 0, timeout: 0, survived: 0, noCoverage: 0, errors: 0 };
    for (const { status } of f.mutants) {
      if (status === 'Killed') m.killed++;
      else if (status === 'Timeout') m.timeout++;
      else if (status === 'Survived') m.survived++;
      else if (status === 'NoCoverage') m.noCoverage++;
      else m.errors++;
    }
    modules.set(file, m); // a file in two groups' reports: the later group's run counts
  }
}
const list = [...modules.values()].sort((a, b) => a.file.localeCompare(b.file));
const ratio = (m: Omit<ModuleScore, 'file' | 'score' | 'errors'>): number => {
  const valid = m.killed + m.timeout + m.survived + m.noCoverage;
  return valid === 0 ? 1 : Math.round(((m.killed + m.timeout) / valid) * 10_000) / 10_000;
};
for (const m of list) m.score = ratio(m);
const total = list.reduce((a, m) => ({ killed: a.killed + m.killed, timeout: a.timeout + m.timeout, survived: a.survived + m.survived, noCoverage: a.noCoverage + m.noCoverage }), { killed: 0, timeout: 0, survived: 0, noCoverage: 0 });

for (const m of list) console.log(`${m.file.padEnd(40)} ${(m.score * 100).toFixed(1).padStart(6)} %  killed ${m.killed + m.timeout}, survived ${m.survived}, no coverage ${m.noCoverage}`);
console.log(`${'all'.padEnd(40)} ${(ratio(total) * 100).toFixed(1).padStart(6)} %`);
if (json) {
  console.log(JSON.stringify({ score: ratio(total), killed: total.killed + total.timeout, survived: total.survived + total.noCoverage, modules: list }));
}
