#!/usr/bin/env node
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ROOT } from './lib/processes.ts';

/**
 * Mutation testing (StrykerJS) of one or more module sets, each a config `stryker.<name>.config.mjs`
 * at the root writing its JSON report to reports/mutation/<name>.json:
 *
 *   tsx scripts/mutation.ts security [core …] [--json] [--report-only]
 *
 * Runs Stryker for each set (incremental: unchanged mutants are reused), then prints a summary per
 * module and, with --json, a last line {"score": S, "killed": K, "survived": V, "modules": [...]}
 * over all sets. --report-only reads the existing reports without running Stryker. The score is
 * Stryker's: (killed + timeout) / (killed + timeout + survived + no coverage); exit 1 when a set's
 * run failed, 0 otherwise (the threshold is for the reader: docs/security.md).
 */

interface Mutant { id: string; mutatorName: string; replacement?: string; status: string; location: { start: { line: number; column: number } } }
interface Report { files: Record<string, { mutants: Mutant[] }> }

interface ModuleFigures { module: string; score: number; killed: number; survived: number; timeout: number; noCoverage: number; mutants: number }

const DETECTED = new Set(['Killed', 'Timeout']);
const UNDETECTED = new Set(['Survived', 'NoCoverage']);

export function figures(module: string, mutants: readonly Mutant[]): ModuleFigures {
  const count = (s: string): number => mutants.filter((m) => m.status === s).length;
  const detected = mutants.filter((m) => DETECTED.has(m.status)).length;
  const valid = detected + mutants.filter((m) => UNDETECTED.has(m.status)).length;
  return {
    module, score: valid === 0 ? 1 : round(detected / valid), killed: count('Killed'), survived: count('Survived'),
    timeout: count('Timeout'), noCoverage: count('NoCoverage'), mutants: mutants.length,
  };
}

const round = (x: number): number => Math.round(x * 10_000) / 10_000;

function runStryker(name: string): Promise<number> {
  const config = `stryker.${name}.config.mjs`;
  if (!existsSync(join(ROOT, config))) throw new Error(`no ${config} at the project root`);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(ROOT, 'node_modules/@stryker-mutator/core/bin/stryker.js'), 'run', config], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
    child.once('error', reject);
    child.once('exit', (code) => resolve(code ?? 1));
  });
}

/** The files of the config's `mutate` list (a line range `file:1-9` counts as the file). */
async function mutatedFiles(name: string): Promise<Set<string>> {
  const config = (await import(pathToFileURL(join(ROOT, `stryker.${name}.config.mjs`)).href) as { default: { mutate?: string[] } }).default;
  return new Set((config.mutate ?? []).map((m) => m.replace(/:\d.*$/, '')));
}

function readReport(name: string): Report {
  const path = join(ROOT, 'reports', 'mutation', `${name}.json`);
  if (!existsSync(path)) throw new Error(`no report ${relative(ROOT, path)}: run without --report-only first`);
  return JSON.parse(readFileSync(path, 'utf8')) as Report;
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const json = args.includes('--json');
  const reportOnly = args.includes('--report-only');
  const names = args.filter((a) => !a.startsWith('--'));
  if (names.length === 0) {
    process.stderr.write('usage: tsx scripts/mutation.ts <set> [<set> …] [--json] [--report-only]   (a set is stryker.<set>.config.mjs)\n');
    return 2;
  }
  let failed = false;
  const modules: ModuleFigures[] = [];
  const survivors: string[] = [];
  for (const name of names) {
    if (!reportOnly && (await runStryker(name)) !== 0) failed = true;
    const report = readReport(name);
    // the set's modules now: an incremental report may still hold files the config no longer mutates
    const mutate = await mutatedFiles(name);
    for (const [file, { mutants }] of Object.entries(report.files).sort(([a], [b]) => a.localeCompare(b))) {
      const module = relative(ROOT, join(ROOT, file));
      if (!mutate.has(module)) continue;
      modules.push(figures(module, mutants));
      for (const m of mutants.filter((x) => UNDETECTED.has(x.status))) {
        survivors.push(`${module}:${m.location.start.line}:${m.location.start.column} ${m.status} ${m.mutatorName}${m.replacement ? ` -> ${m.replacement.replace(/\s+/g, ' ').slice(0, 80)}` : ''}`);
      }
    }
  }
  const sum = (k: keyof Omit<ModuleFigures, 'module' | 'score'>): number => modules.reduce((n, m) => n + m[k], 0);
  const detected = sum('killed') + sum('timeout');
  const valid = detected + sum('survived') + sum('noCoverage');
  const score = valid === 0 ? 1 : round(detected / valid);
  const pad = (s: string, n: number): string => s.padEnd(n);
  process.stdout.write(`\nmutation score by module (${names.join(', ')}):\n`);
  for (const m of modules) {
    process.stdout.write(`  ${pad(m.module, 34)} ${m.score.toFixed(3)}  killed ${m.killed}, timeout ${m.timeout}, survived ${m.survived}, no coverage ${m.noCoverage}\n`);
  }
  process.stdout.write(`  ${pad('total', 34)} ${score.toFixed(3)}  killed ${sum('killed')}, timeout ${sum('timeout')}, survived ${sum('survived')}, no coverage ${sum('noCoverage')}\n`);
  if (survivors.length > 0) process.stdout.write(`undetected mutants:\n${survivors.map((s) => `  ${s}`).join('\n')}\n`);
  if (json) {
    process.stdout.write(`${JSON.stringify({ score, killed: sum('killed') + sum('timeout'), survived: sum('survived') + sum('noCoverage'), modules: modules.map((m) => ({ module: m.module, score: m.score, killed: m.killed + m.timeout, survived: m.survived + m.noCoverage })) })}\n`);
  }
  return failed ? 1 : 0;
}

process.exitCode = await main();
