import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describeError } from '../protocol/errors.ts';
import type { LoadedRig } from './rig-file.ts';
import { RigRuntime } from './rig.ts';
import { ScenarioContext, type Check, type Scenario } from './scenario.ts';

export type ScenarioStatus = 'passed' | 'failed' | 'skipped' | 'error';

export interface ScenarioResult {
  name: string;
  title: string;
  expects: string[];
  status: ScenarioStatus;
  checks: Check[];
  notes: string[];
  durationMs: number;
  /** Why it was skipped, or the error that stopped it. */
  reason?: string;
  /** Its folder in the report: consoles, timelines. */
  dir: string;
}

export interface SuiteResult {
  rig: string;
  startedAt: string;
  durationMs: number;
  scenarios: ScenarioResult[];
  /** Set-up of the rig failed: nothing ran. */
  setUpError?: string;
  /** The rig's preflight said it cannot run here (why): every scenario skipped. */
  skipped?: string;
  ok: boolean;
}

export interface SuiteOptions {
  scenarios: readonly Scenario[];
  /** Runtime files (keys, images, devices, the gateway's data). */
  workDir: string;
  /** The report folder: summary.json, gateway.log, one folder per scenario. */
  reportDir: string;
  log?: (line: string) => void;
}

/**
 * Run scenarios on a rig, one after another (docs/hil.md): set the rig up, and before each
 * scenario make sure every board is powered and online; each scenario gets its own report folder
 * with the consoles and the timeline of gateway events per device. Never throws for a scenario:
 * what went wrong is in its result.
 */
export async function runSuite(rig: LoadedRig, opts: SuiteOptions): Promise<SuiteResult> {
  const log = opts.log ?? (() => undefined);
  const started = Date.now();
  const runtime = new RigRuntime(rig, opts.workDir, opts.reportDir, log);
  const results: ScenarioResult[] = [];
  let setUpError: string | undefined;
  const notHere = await runtime.preflight();
  if (notHere !== undefined) {
    log(`rig preflight: this rig cannot run here, every scenario skipped: ${notHere}`);
  } else {
    try {
      await runtime.setUp();
    } catch (err) {
      setUpError = describeError(err);
      log(`rig set-up failed: ${setUpError}`);
    }
  }
  for (const s of opts.scenarios) {
    const dir = join(opts.reportDir, s.name);
    await mkdir(dir, { recursive: true });
    const base = { name: s.name, title: s.title, expects: s.expects, dir };
    if (notHere !== undefined) {
      results.push({ ...base, status: 'skipped', checks: [], notes: [], durationMs: 0, reason: `rig preflight: ${notHere}` });
      continue;
    }
    if (setUpError !== undefined) {
      results.push({ ...base, status: 'error', checks: [], notes: [], durationMs: 0, reason: `rig set-up failed: ${setUpError}` });
      continue;
    }
    const unsupported = s.unsupported?.(runtime);
    if (unsupported !== undefined) {
      log(`${s.name}: skipped (${unsupported})`);
      results.push({ ...base, status: 'skipped', checks: [], notes: [], durationMs: 0, reason: unsupported });
      continue;
    }
    log(`${s.name}: ${s.title}`);
    results.push(await runScenario(runtime, s, base));
    const r = results.at(-1)!;
    log(`${s.name}: ${r.status.toUpperCase()} in ${(r.durationMs / 1000).toFixed(1)} s${r.reason ? ` (${r.reason})` : ''}`);
  }
  if (notHere === undefined) await runtime.tearDown().catch((err: unknown) => log(`rig tear-down: ${describeError(err)}`));
  const result: SuiteResult = {
    rig: rig.file.name, startedAt: new Date(started).toISOString(), durationMs: Date.now() - started, scenarios: results,
    ...(setUpError !== undefined ? { setUpError } : {}),
    ...(notHere !== undefined ? { skipped: notHere } : {}),
    // a rig whose preflight says it cannot run here is skipped, not failed (docs/hil.md)
    ok: setUpError === undefined && results.every((r) => r.status === 'passed' || r.status === 'skipped') && (notHere !== undefined || results.some((r) => r.status === 'passed')),
  };
  await writeFile(join(opts.reportDir, 'summary.json'), `${JSON.stringify(result, null, 2)}\n`);
  return result;
}

async function runScenario(runtime: RigRuntime, s: Scenario, base: Pick<ScenarioResult, 'name' | 'title' | 'expects' | 'dir'>): Promise<ScenarioResult> {
  const ctx = new ScenarioContext(runtime);
  const started = Date.now();
  const timeline: { at: number; who: string; text: string }[] = [];
  let reason: string | undefined;
  try {
    // every board powered and online at the gateway before the scenario starts
    await Promise.all(runtime.devices.map((d) => runtime.power(d, 'on')));
    await runtime.waitOnline(runtime.devices.map((d) => d.id), runtime.timeouts.bootMs);
    await runtime.beginScenario(base.dir, (who, text) => timeline.push({ at: runtime.now(), who, text }));
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`did not finish within ${runtime.timeouts.scenarioMs} ms (timeouts.scenarioMs)`)), runtime.timeouts.scenarioMs);
    });
    try {
      await Promise.race([s.run(ctx), bound]);
    } finally {
      clearTimeout(timer);
    }
  } catch (err) {
    reason = describeError(err);
  } finally {
    await runtime.endScenario().catch(() => undefined);
  }
  await writeTimelines(base.dir, timeline, runtime.devices.map((d) => d.id));
  const status: ScenarioStatus = reason !== undefined ? 'error' : ctx.ok ? 'passed' : 'failed';
  return { ...base, status, checks: ctx.checks, notes: ctx.notes, durationMs: Date.now() - started, ...(reason !== undefined ? { reason } : {}) };
}

/** timeline.txt (everything) and timeline-<device>.txt (its events and the rig's actions on it). */
async function writeTimelines(dir: string, timeline: { at: number; who: string; text: string }[], ids: string[]): Promise<void> {
  const line = (e: { at: number; who: string; text: string }): string => `+${(e.at / 1000).toFixed(3).padStart(8)} s  ${e.who.padEnd(12)} ${e.text}`;
  await writeFile(join(dir, 'timeline.txt'), timeline.map(line).join('\n') + (timeline.length ? '\n' : ''));
  await Promise.all(ids.map((id) => {
    const own = timeline.filter((e) => e.who === id);
    return writeFile(join(dir, `timeline-${id}.txt`), own.map(line).join('\n') + (own.length ? '\n' : ''));
  }));
}
