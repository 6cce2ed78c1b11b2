import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { mulberry32 } from '../../protocol/seeded-random.ts';
import { bootedSlot, imagePush, makeSite, simEvents, startDevices, startFwpush, startGateway, type GatewayProc, type Site } from '../e2e/site.ts';

/**
 * Gateway restarts under fwpush (issue 17.3), seeded, with real processes: fwgate, fwsim and
 * fwpush on a socat pty cable that outlives them. Each round pushes the next version with fwpush,
 * SIGKILLs fwgate at a point drawn from the seed — mid-upload (once the gateway holds a fraction
 * of the image) or while fwpush follows the campaign (after the k-th device event of a kind) —
 * keeps it down for a drawn time and starts it again on the same data directory. Checked from
 * the outside: fwpush noticed the lost link and exits 0, its summary says every device updated,
 * every device boots the round's version, confirmed, from its own files, and acted on `activate`
 * once in the round.
 */
export interface RestartSoakOptions {
  seed: number;
  rounds: number;
  devices?: number;
  log?: (line: string) => void;
}

export interface RestartPlan {
  round: number;
  version: string;
  imageBytes: number;
  /** Where the kill lands. */
  at: { phase: 'upload'; fraction: number } | { phase: 'follow'; event: 'offer-accepted' | 'transfer-complete' | 'activated' | 'confirmed'; nth: number };
  downMs: number;
}

export function planRestart(seed: number, round: number, devices: number): RestartPlan {
  const rnd = mulberry32((seed ^ 0x7e57_a7) + round * 104_729);
  const imageBytes = (4 + Math.floor(rnd() * 9)) * 1024 * 1024; // 4..12 MiB: the upload takes a while on a pty
  const upload = rnd() < 0.5;
  const events = ['offer-accepted', 'transfer-complete', 'activated', 'confirmed'] as const;
  const at: RestartPlan['at'] = upload
    ? { phase: 'upload', fraction: Math.round((0.1 + 0.7 * rnd()) * 100) / 100 }
    : { phase: 'follow', event: events[Math.floor(rnd() * events.length)]!, nth: 1 + Math.floor(rnd() * devices) };
  return { round, version: `2.${round}.0`, imageBytes, at, downMs: Math.floor(rnd() * 3000) };
}

export function describeRestart(p: RestartPlan): string {
  const where = p.at.phase === 'upload' ? `mid-upload at ${Math.round(p.at.fraction * 100)}%` : `while following, at the ${p.at.nth}. ${p.at.event}`;
  return `round ${p.round} ${p.version} (${(p.imageBytes / 1048576).toFixed(0)} MiB): kill -9 ${where}, down ${p.downMs} ms`;
}

export async function runRestartSoak(o: RestartSoakOptions): Promise<{ rounds: number; restarts: number; problems: string[] }> {
  const log = o.log ?? (() => undefined);
  const devices = o.devices ?? 4;
  const problems: string[] = [];
  let restarts = 0;
  const site: Site = await makeSite('fwgate-restart-soak-', { rollout: { concurrency: devices } });
  try {
    let gw: GatewayProc = startGateway(['--serial', site.pty.a, ...site.gwArgs]);
    const stopGw = (): Promise<unknown> => gw.proc.stop(3000);
    site.procs.push({ stop: () => stopGw() });
    await gw.proc.waitForLine(/^fwgate ready/, 30_000);
    const sim = await startDevices(site, devices, ['--reconnect-delay', '50', '--reconnect-max', '250']);
    for (let round = 1; round <= o.rounds; round++) {
      const plan = planRestart(o.seed, round, devices);
      log(describeRestart(plan));
      const from = sim.lines.length;
      const { sha256, args } = await imagePush(site, plan.version, plan.imageBytes);
      const push = startFwpush(args);
      const fail = (why: string): void => {
        problems.push(`round ${round} ${plan.version}: ${why}`);
      };
      // the kill point
      const at = plan.at;
      let reached = true;
      if (at.phase === 'upload') {
        const partial = join(site.gwArgs[3]!, 'store', 'partial', `${sha256}.part`);
        const target = Math.floor(at.fraction * plan.imageBytes);
        const deadline = Date.now() + 120_000;
        for (;;) {
          const size = await stat(partial).then((s) => s.size, () => 0);
          if (size >= target) break;
          if (push.child.exitCode !== null || Date.now() > deadline) {
            reached = false;
            break;
          }
          await new Promise((r) => setTimeout(r, 5));
        }
      } else {
        reached = await sim.waitForLine(() => simEvents(sim, from).filter((e) => e.type === at.event).length >= at.nth, 120_000).then(() => true, () => false);
      }
      if (reached && push.child.exitCode === null) {
        gw.proc.child.kill('SIGKILL');
        await gw.proc.exited;
        restarts++;
        await new Promise((r) => setTimeout(r, plan.downMs));
        gw = startGateway(['--serial', site.pty.a, ...site.gwArgs]);
        await gw.proc.waitForLine(/^fwgate ready/, 30_000).catch(() => fail('the gateway did not come back'));
      } else {
        log(`  round ${round}: the kill point was not reached before fwpush ended (no restart this round)`);
      }
      const timer = setTimeout(() => push.child.kill('SIGKILL'), 240_000);
      const code = await push.exited;
      clearTimeout(timer);
      const lost = push.events.find((e) => e.event === 'link-lost');
      const complete = push.events.find((e) => e.event === 'complete');
      if (code !== 0) fail(`fwpush exited ${code}: ${push.stdout().split('\n').slice(-4).join(' | ')}`);
      if (reached && !lost) fail('fwpush did not notice the restart (no link-lost)');
      if (complete?.updated !== devices) fail(`the campaign's completion says ${String(complete?.updated)} of ${devices} updated`);
      // every device on the round's version, confirmed, from its own files; one activation each
      await sim.waitForLine(() => simEvents(sim, from).filter((e) => e.type === 'confirmed').length >= devices, 30_000).catch(() => undefined);
      for (let i = 0; i < devices; i++) {
        const b = await bootedSlot(site, i);
        if (b.version !== plan.version || b.state !== 'confirmed') fail(`device ${i} boots ${String(b.version)} (${String(b.state)}) from its files`);
      }
      const acts = simEvents(sim, from).filter((e) => e.type === 'activated');
      const twice = [...new Set(acts.map((e) => e.id))].filter((id) => acts.filter((e) => e.id === id).length > 1);
      if (twice.length > 0) fail(`activated more than once: ${twice.join(', ')}`);
      log(`  round ${round}: fwpush exit ${code}${lost ? `, link lost (${String(lost.code)}) and reconnected` : ''}; updated ${String(complete?.updated)}/${devices}`);
    }
  } finally {
    await site.close();
  }
  return { rounds: o.rounds, restarts, problems };
}
