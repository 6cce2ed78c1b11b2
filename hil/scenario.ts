import type { LaptopEvent, LaptopRunResult } from './laptop.ts';
import type { FleetDevice, PushImage, RigRuntime } from './rig.ts';

/** One thing a scenario checked from the outside, with what it saw. */
export interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

/**
 * A scenario of the HIL suite (docs/hil.md "Scenarios"): the same code runs on real boards and on
 * the simulated rig. It states what it expects, drives the rig (pushes, power, cable, gateway)
 * timed from the gateway's own events, and checks the outcome only from the outside: the
 * versions the devices report to the gateway, the gateway's results, fwpush's exit code.
 */
export interface Scenario {
  name: string;
  title: string;
  /** What must hold at the end, in words (printed in the report). */
  expects: string[];
  /** Why this rig cannot run it (the scenario is skipped), or undefined. */
  unsupported?(rig: RigRuntime): string | undefined;
  run(ctx: ScenarioContext): Promise<void>;
}

/** What a scenario works with: the rig, and where its checks and notes go. */
export class ScenarioContext {
  readonly checks: Check[] = [];
  readonly notes: string[] = [];
  constructor(readonly rig: RigRuntime) {}

  check(name: string, ok: boolean, detail = ''): boolean {
    this.checks.push({ name, ok, detail });
    return ok;
  }

  note(text: string): void {
    this.notes.push(text);
  }

  get ok(): boolean {
    return this.checks.length > 0 && this.checks.every((c) => c.ok);
  }
}

/** fwpush's exit codes (laptop/render.ts EXIT), by name, for the report. */
const EXIT_NAMES: Record<number, string> = { 0: 'ok', 1: 'devices failed', 2: 'usage', 3: 'nothing to update', 4: 'refused', 5: 'link', 6: 'halted' };
export const exitName = (code: number | null): string => (code === null ? 'killed' : `${code} (${EXIT_NAMES[code] ?? '?'})`);

export type Expected = { outcome: 'updated' } | { outcome: 'rolled-back' | 'skipped' | 'failed'; codes?: string[] } | { outcome: 'not-updated' };

/** The final `result` of every device in `events` (the last one per device), and how many each got. */
export function resultsOf(events: LaptopEvent[]): Map<string, { last: LaptopEvent; count: number }> {
  const out = new Map<string, { last: LaptopEvent; count: number }>();
  for (const e of events) {
    if (e.event !== 'result' || typeof e.id !== 'string') continue;
    const seen = out.get(e.id);
    out.set(e.id, { last: e, count: (seen?.count ?? 0) + 1 });
  }
  return out;
}

/**
 * The checks every rollout ends with: fwpush's exit code, exactly one result per rig device
 * with the expected outcome, `complete` after the last result.
 */
export function checkRollout(ctx: ScenarioContext, run: LaptopRunResult, expect: { exit: number | number[]; results: (id: string) => Expected }): void {
  const exits = Array.isArray(expect.exit) ? expect.exit : [expect.exit];
  ctx.check(`fwpush exits ${exits.map(exitName).join(' or ')}`, run.code !== null && exits.includes(run.code), `exit ${exitName(run.code)}${run.code !== 0 && run.stderr.trim() ? `; stderr: ${run.stderr.trim().split('\n').slice(-2).join(' | ')}` : ''}`);
  const results = resultsOf(run.events);
  for (const d of ctx.rig.devices) {
    const r = results.get(d.id);
    const want = expect.results(d.id);
    if (!r) {
      ctx.check(`${d.id}: one final result`, false, 'no result');
      continue;
    }
    ctx.check(`${d.id}: one final result`, r.count === 1, `${r.count} results`);
    const outcome = String(r.last.outcome);
    const code = String(r.last.code);
    const ok = want.outcome === 'not-updated' ? outcome !== 'updated'
      : outcome === want.outcome && (!('codes' in want) || want.codes === undefined || want.codes.includes(code));
    ctx.check(`${d.id}: result ${want.outcome === 'not-updated' ? 'not updated' : want.outcome}${'codes' in want && want.codes ? ` (${want.codes.join('|')})` : ''}`, ok,
      `${outcome} (${code})${r.last.reason ? `: ${String(r.last.reason)}` : ''}, retries ${String(r.last.retries)}`);
  }
  const complete = run.events.findIndex((e) => e.event === 'complete');
  const lastResult = run.events.map((e) => e.event).lastIndexOf('result');
  ctx.check('complete comes after the last result', complete >= 0 && complete > lastResult, complete < 0 ? 'no complete event' : `complete at line ${complete}, last result at ${lastResult}`);
}

/** Every rig device online at the gateway and reporting `version(id)`. */
export async function checkVersions(ctx: ScenarioContext, version: (id: string) => string): Promise<FleetDevice[]> {
  const fleet = await ctx.rig.waitOnline(ctx.rig.devices.map((d) => d.id), ctx.rig.timeouts.bootMs).catch(async (err: unknown) => {
    ctx.note(`not every device came back online: ${(err as Error).message}`);
    return ctx.rig.fleet();
  });
  for (const d of ctx.rig.devices) {
    const f = fleet.find((x) => x.id === d.id);
    ctx.check(`${d.id}: reports ${version(d.id)}`, f?.online === true && f.version === version(d.id), f ? `reports ${f.version}, ${f.online ? 'online' : 'offline'}` : 'unknown to the gateway');
  }
  return fleet;
}

/** The order event came before the first chunk went to any device. */
export function checkOrderFirst(ctx: ScenarioContext, events: LaptopEvent[]): void {
  const order = events.findIndex((e) => e.event === 'order');
  const transfer = events.findIndex((e) => e.event === 'progress' && e.phase === 'transferring');
  ctx.check('order before the first transfer', order >= 0 && (transfer < 0 || order < transfer), `order at line ${order}, first transferring at ${transfer}`);
}

/** The ids in the order the gateway announced. */
export function orderOf(events: LaptopEvent[]): string[] {
  const order = events.find((e) => e.event === 'order');
  return order ? (order.devices as { id: string }[]).map((d) => d.id) : [];
}

/** Versions of the rig's devices now, to compare after a rollout that must not change them. */
export async function versionsNow(ctx: ScenarioContext): Promise<Map<string, string>> {
  return new Map((await ctx.rig.fleet()).map((f) => [f.id, f.version]));
}

export type { PushImage };
