import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Command, CommanderError } from 'commander';
import { describeError, FwError } from '../protocol/errors.ts';
import { junitXml, summaryText } from './report.ts';
import { loadRigFile } from './rig-file.ts';
import { runSuite } from './runner.ts';
import { SCENARIOS } from './scenarios/index.ts';

/**
 * The HIL runner (docs/hil.md):
 *
 *   npm run hil -- --rig hil/rigs/sim.json [--scenario happy-path ...] [--junit out.xml] [--report dir]
 *
 * Exit 0: every scenario run passed (skipped ones aside; at least one passed, or the rig's preflight
 * skipped them all); 1: a scenario failed or errored, or nothing ran; 2: bad usage or rig file.
 */
export async function main(argv: readonly string[], out: (s: string) => void = (s) => process.stdout.write(s), err: (s: string) => void = (s) => process.stderr.write(s)): Promise<number> {
  const program = new Command('hil')
    .description('Run the hardware-in-the-loop scenario suite on a rig (real boards or simulated ones)')
    .option('--rig <file>', 'rig file (JSON, docs/hil.md)')
    .option('--scenario <name>', `scenario to run (repeat; default all): ${SCENARIOS.map((s) => s.name).join(', ')}`, (v: string, prev: string[] = []) => [...prev, v])
    .option('--junit <file>', 'write a JUnit XML report here')
    .option('--report <dir>', 'report folder (default hil-report/<rig>-<time>)')
    .option('--work <dir>', 'working folder for keys, images, device files and the gateway\'s data (default: a new temporary folder)')
    .option('--list', 'list the scenarios and what each expects, and exit')
    .exitOverride()
    .configureOutput({ writeOut: out, writeErr: () => undefined })
    .allowExcessArguments(false);
  try {
    program.parse([...argv], { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError && (e.code === 'commander.helpDisplayed' || e.code === 'commander.help')) return 0;
    err(`hil: ${(e as Error).message.replace(/^error: /, '')}\n`);
    return 2;
  }
  const o = program.opts<{ rig?: string; scenario?: string[]; junit?: string; report?: string; work?: string; list?: boolean }>();
  if (o.list) {
    for (const s of SCENARIOS) out(`${s.name}: ${s.title}\n${s.expects.map((e) => `    expects: ${e}\n`).join('')}`);
    return 0;
  }
  if (o.rig === undefined) {
    err('hil: --rig <file> is required (the simulated rig: hil/rigs/sim.json)\n');
    return 2;
  }
  const unknown = (o.scenario ?? []).filter((n) => !SCENARIOS.some((s) => s.name === n));
  if (unknown.length) {
    err(`hil: --scenario: no scenario ${unknown.map((n) => `"${n}"`).join(', ')} (there are: ${SCENARIOS.map((s) => s.name).join(', ')})\n`);
    return 2;
  }
  let rig;
  try {
    rig = await loadRigFile(o.rig);
  } catch (e) {
    err(`hil: ${describeError(e)}\n`);
    return 2;
  }
  const scenarios = o.scenario ? SCENARIOS.filter((s) => o.scenario!.includes(s.name)) : SCENARIOS;
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const reportDir = resolve(o.report ?? join('hil-report', `${rig.file.name}-${stamp}`));
  const workDir = o.work ? resolve(o.work) : await mkdtemp(join(tmpdir(), 'fwgate-hil-'));
  err(`hil: rig ${rig.path}; ${scenarios.length} scenario(s); report ${reportDir}; work ${workDir}\n`);
  const result = await runSuite(rig, { scenarios, workDir, reportDir, log: (l) => err(`hil: ${l}\n`) });
  out(summaryText(result, reportDir));
  if (o.junit) {
    try {
      await writeFile(resolve(o.junit), junitXml(result));
      err(`hil: JUnit report ${resolve(o.junit)}\n`);
    } catch (e) {
      err(`hil: cannot write ${o.junit}: ${(e as Error).message}\n`);
      return 1;
    }
  }
  return result.ok ? 0 : 1;
}

const entry = process.argv[1] ?? '';
if (entry.endsWith('hil/cli.ts') || entry.endsWith('hil/cli.js')) {
  main(process.argv.slice(2)).then((code) => process.exit(code), (e: unknown) => {
    process.stderr.write(`hil: ${e instanceof FwError ? describeError(e) : String((e as Error).stack ?? e)}\n`);
    process.exit(1);
  });
}
