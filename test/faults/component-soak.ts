import { join } from 'node:path';
import type { SimEvent } from '../../device-sim/device.ts';
import { BUILTIN_PROFILES } from '../../device-sim/profiles.ts';
import { componentManifest, parseReleaseManifest, satisfiesRange, signRelease, type ReleaseManifest } from '../../protocol/release.ts';
import { mulberry32 } from '../../protocol/seeded-random.ts';
import type { Outcome } from '../../protocol/uplink.ts';
import { componentImage, type ComponentImage } from '../device-sim/component-helpers.ts';
import { testKey } from '../helpers/keys.ts';
import { Rig } from '../helpers/rig.ts';
import { mountSmallExt4, type SmallDisk } from '../helpers/tmpfs.ts';
import { planComponentCampaign, SOAK_COMPONENTS } from './component-schedule.ts';
import { activatingOnDisk, armDiskFull, checkJournal, describeDiskFull, planGatewayFault } from './disk-fault.ts';
import {
  FAULT_CONFIG, FAULT_DEVICE, armFault, describeFault, devicesDir, runReleaseCampaign, settleFleet, storeDir, storeImage,
  type ArmedFault, type CampaignRun,
} from './harness.ts';
import type { BootedUnit, IndependentVerdict } from './independent-check.ts';
import { checkInvariants, describeViolations, type InvariantReport } from './invariants.ts';
import type { SoakShape } from './schedule.ts';
import { summaryLine, type SoakFigures, type SoakOptions } from './soak.ts';

/**
 * The component soak (runSoak({ components: true }), docs/reliability.md "The component soak"):
 * every device has the components app and net; campaign n is a signed release `sensor-release`
 * 1.n.0 whose app is new and whose net is new in some campaigns and the previous release's bytes in
 * others, app requiring that net (`requires: { net: ">=<net version>" }`), rolled out as a release
 * campaign (§6.15). Faults: the single-image soak's plus per-component ones (component-schedule.ts).
 *
 * After every campaign, and after the final power cut, every device is judged from its files by both
 * judges (invariants.ts): bootable, now and in the worst case; and the SET invariant: it runs all
 * components of one release, or its factory set, never a new app with a net it does not accept;
 * accounted for: `updated` ⇒ the release's images, confirmed; otherwise its set from before. The set
 * invariant is also checked on every boot the simulator reports during a campaign (trial boots too).
 */

/** One release of the soak: its manifest and the images of its components. */
interface SoakRelease {
  manifest: ReleaseManifest;
  images: Map<string, ComponentImage>;
}

/** Digests by component: a set as it runs, or as a release or the factory defines it. */
type SetDigests = ReadonlyMap<string, string>;

const APP_BYTES = 16 * 1024;
const NET_BYTES = 8 * 1024;
const CHUNK = 1024;

function buildRelease(index: number, net: ComponentImage): SoakRelease {
  const version = `1.${index}.0`;
  const app = componentImage('app', version, { size: APP_BYTES });
  const entry = (c: ComponentImage, requires?: Record<string, string>): ReleaseManifest['components'][number] => ({
    component: c.component, name: c.manifest.name, version: c.manifest.version, size: c.manifest.size, crc32: c.manifest.crc32, sha256: c.manifest.sha256,
    ...(requires ? { requires } : {}),
  });
  const manifest = signRelease(parseReleaseManifest({
    release: 'sensor-release', version, hw: ['sensor-v1'], chunk: CHUNK, seq: index,
    components: [entry(app, { net: `>=${net.manifest.version}` }), entry(net)],
  }), testKey().privateKey);
  return { manifest, images: new Map([['app', app], ['net', net]]) };
}

const digestsOf = (set: Record<string, BootedUnit> | undefined): Map<string, string> =>
  new Map(Object.entries(set ?? {}).map(([c, u]) => [c, u.sha256]));

const sameSet = (a: SetDigests, b: SetDigests): boolean => a.size === b.size && [...a].every(([c, sha]) => b.get(c) === sha);

const describeSet = (set: Record<string, BootedUnit>): string =>
  SOAK_COMPONENTS.map((c) => `${c} ${set[c]?.version ?? '-'}${set[c]?.trial ? ' (trial)' : ''}`).join(', ');

/**
 * The SET invariant for one booted set: it is the whole set of one release or the device's factory
 * set. A new app with a net it requires newer is named as such; any other mix as a mixed set.
 */
export function setViolation(set: Record<string, BootedUnit>, releases: readonly SoakRelease[], factory: SetDigests): string | null {
  const run = digestsOf(set);
  if (sameSet(run, factory)) return null;
  if (releases.some((r) => sameSet(run, new Map([...r.images].map(([c, i]) => [c, i.manifest.sha256]))))) return null;
  const appFrom = releases.find((r) => r.images.get('app')!.manifest.sha256 === run.get('app'));
  const needs = appFrom?.manifest.components.find((c) => c.component === 'app')?.requires?.net;
  const net = set.net?.version;
  if (needs !== undefined && (net === undefined || !satisfiesRange(net, needs))) {
    return `runs app ${set.app!.version} (release ${appFrom!.manifest.version}, requires net ${needs}) with net ${net ?? '(none)'}`;
  }
  return `runs a mixed set (${describeSet(set)}) that is no release's and not its factory set`;
}

/** Does the device's set agree with its result? Null when accounted for. */
function accountForSet(
  result: CampaignRun['targets'][number], release: SoakRelease, before: SetDigests, v: IndependentVerdict,
): string | null {
  const r = result.result;
  if (r === undefined) return 'no final result';
  if (result.extraResults) return `${result.extraResults + 1} final results`;
  if (!v.bootable || !v.components) return null; // counted as bricked
  const run = digestsOf(v.components);
  if (r.outcome === 'updated') {
    const want = new Map([...release.images].map(([c, i]) => [c, i.manifest.sha256]));
    if (!sameSet(run, want)) return `reported updated, but its files boot ${describeSet(v.components)}`;
    const trial = Object.entries(v.components).filter(([, u]) => u.trial).map(([c]) => c);
    if (trial.length > 0) return `reported updated, but ${trial.join(', ')} still in trial (not confirmed)`;
    return null;
  }
  if (!r.code || !r.reason?.trim()) return `outcome ${r.outcome} without a code and reason`;
  if (!sameSet(run, before)) return `reported ${r.outcome} (${r.code}: ${r.reason}), but its files boot ${describeSet(v.components)}, not its previous set`;
  return null;
}

/** Set violations of every device of a report: now and in the worst case, by both judges. */
function setViolations(report: InvariantReport, ids: readonly string[], releases: readonly SoakRelease[], factory: ReadonlyMap<string, SetDigests>): string[] {
  const out: string[] = [];
  for (const id of ids) {
    const v = report.independent.get(id);
    const own = report.devices.get(id);
    const f = factory.get(id)!;
    const sets: [string, Record<string, BootedUnit> | undefined][] = [
      ['now', v?.components], ['if the pending set failed its self-test', v?.worst],
      ["by the simulator's bootloader", own?.components ? Object.fromEntries(own.components.map((c) => [c.name, { slot: 'a', signed: false, ...c }])) : undefined],
    ];
    for (const [when, set] of sets) {
      if (!set) continue; // not bootable: counted as bricked
      const why = setViolation(set, releases, f);
      if (why !== null) out.push(`inconsistent set on ${id} (${when}): ${why}`);
    }
  }
  return out;
}

export async function runComponentSoak(opts: SoakOptions): Promise<SoakFigures> {
  const t0 = Date.now();
  const log = opts.log ?? (() => undefined);
  const devices = opts.devices ?? 8;
  const shape: SoakShape = { devices, chunks: Math.ceil(APP_BYTES / CHUNK), links: true };
  const maxCampaigns = opts.maxCampaigns ?? Math.ceil(opts.faults / 4) + 20;
  const rnd = mulberry32(opts.seed);
  const outcomes: Record<Outcome, number> = { updated: 0, 'rolled-back': 0, failed: 0, skipped: 0, cancelled: 0, superseded: 0, expired: 0 };
  const byKind: SoakFigures['byKind'] = {};
  const problems: string[] = [];
  const bricked = new Set<string>();
  const storedShas = new Set<string>();
  const releases: SoakRelease[] = [];
  const componentPowerCuts = { scheduled: 0, fired: 0 };
  let lost = 0;
  let scheduled = 0;
  let injected = 0;
  let campaigns = 0;

  const disk: SmallDisk | undefined = opts.diskFull === false ? undefined : mountSmallExt4(32 * 1024);
  if (!disk) log('disk-full faults cannot fire: the small file system needs root (loop-mounted ext4)');
  const rig = await Rig.start({
    devices, config: { ...FAULT_CONFIG, rollout: { ...FAULT_CONFIG.rollout, journalRetryMs: 200 } },
    device: { ...FAULT_DEVICE, components: [...SOAK_COMPONENTS] },
    ...(disk ? { gatewayDir: join(disk.dir, 'gateway') } : {}),
    profiles: () => BUILTIN_PROFILES.lan,
  });
  const ids = rig.sims.devices.map((d) => d.id);
  const judge = (): Promise<InvariantReport> => checkInvariants({
    devicesDir: devicesDir(rig), ids, storeDir: storeDir(rig), storedImages: storedShas, releasesDir: join(rig.gatewayDir, 'releases'),
  });
  try {
    // the factory sets, from the files: what a device that was never updated runs
    await settleFleet(rig, 15_000);
    const start = await judge();
    const factory = new Map<string, SetDigests>();
    for (const id of ids) {
      const v = start.independent.get(id);
      if (!v?.components || !SOAK_COMPONENTS.every((c) => v.components![c])) throw new Error(`${id} does not start with a bootable app and net: ${v?.why ?? JSON.stringify(v?.components)}`);
      factory.set(id, digestsOf(v.components));
    }
    let before = new Map(factory);
    let net: ComponentImage | undefined;

    while (injected < opts.faults && campaigns < maxCampaigns) {
      campaigns++;
      const plan = planComponentCampaign(rnd, campaigns, shape);
      if (plan.newNet || !net) net = componentImage('net', `1.${campaigns}.0`, { size: NET_BYTES });
      const release = buildRelease(campaigns, net);
      releases.push(release);
      const gwFault = planGatewayFault(opts.seed, campaigns);
      const head = `campaign ${plan.index} ${plan.version} (net ${net.manifest.version}${plan.newNet ? ', new' : ', unchanged'})`;
      if (opts.verbose) {
        log(`${head} schedule: ${[...plan.faults.map((f) => describeFault(f, 'device' in f ? ids[f.device] : undefined)), ...(gwFault ? [describeDiskFull(gwFault)] : [])].join('; ') || '(none)'}`);
      }
      for (const c of release.manifest.components) {
        storedShas.add(c.sha256);
        if (!rig.gateway.store.get(c.sha256)) await storeImage(rig, release.images.get(c.component)!.image, componentManifest(release.manifest, c));
      }
      await rig.gateway.releases.put(release.manifest, 'live');

      const armed: ArmedFault[] = [];
      const activated = new Set<string>();
      const early: string[] = []; // activate before its record; inconsistent sets booted
      let campaignId = '';
      const onActivated = (d: (typeof rig.sims.devices)[number]) => (e: SimEvent): void => {
        // every boot, trial boots included, starts a consistent set (as the device reports it booted)
        if (e.type === 'booted' && e.components) {
          const why = setViolation(Object.fromEntries(e.components.map((c) => [c.name, { ...c, signed: false }])), releases, factory.get(d.id)!);
          if (why !== null) early.push(`${d.id} booted an inconsistent set: ${why}`);
        }
        if (e.type !== 'activated') return;
        activated.add(d.id);
        if (campaignId && !activatingOnDisk(rig, campaignId, d.id)) early.push(`${d.id} acted on activate before its activating record was written`);
      };
      const listeners = rig.sims.devices.map((d) => [d, onActivated(d)] as const);
      for (const [d, fn] of listeners) d.on('event', fn);
      let run: CampaignRun;
      try {
        run = await runReleaseCampaign(rig, release.manifest, {
          timeoutMs: opts.campaignTimeoutMs ?? 60_000,
          arm: (c) => {
            campaignId = c.id;
            for (const f of plan.faults) armed.push(armFault(rig, f, { size: APP_BYTES }));
            if (gwFault) armed.push(armDiskFull(rig, gwFault, c, disk?.dir, ids.length));
          },
        });
      } finally {
        for (const a of armed) a.disarm();
        for (const [d, fn] of listeners) d.off('event', fn);
      }
      await settleFleet(rig, 15_000);
      const report = await judge();
      for (const b of report.bricked) bricked.add(b.id);
      const unaccounted: string[] = [];
      for (const t of run.targets) {
        const why = accountForSet(t, release, before.get(t.id)!, report.independent.get(t.id)!);
        if (why !== null) unaccounted.push(`unaccounted ${t.id}: ${why}`);
      }
      lost += unaccounted.length + report.store.corrupted.length + report.store.missing.length;
      const violations = [
        ...describeViolations(report), ...unaccounted, ...setViolations(report, ids, releases, factory), ...early,
        ...(await checkJournal(rig, run.id, activated)),
      ].map((v) => `${head}: ${v}`);
      if (run.timedOut) violations.push(`${head}: did not complete within its bound; cancelled`);

      let fired = 0;
      for (const a of armed) {
        const k = (byKind[a.spec.kind] ??= { scheduled: 0, fired: 0 });
        k.scheduled++;
        const cut = a.spec.kind === 'power-cut' && a.spec.component !== undefined;
        if (cut) componentPowerCuts.scheduled++;
        if (a.fired) {
          k.fired++;
          fired++;
          if (cut) componentPowerCuts.fired++;
        }
      }
      scheduled += armed.length;
      injected += fired;
      const counts: Record<Outcome, number> = { updated: 0, 'rolled-back': 0, failed: 0, skipped: 0, cancelled: 0, superseded: 0, expired: 0 };
      for (const t of run.targets) if (t.result) counts[t.result.outcome]++;
      for (const o of Object.keys(counts) as Outcome[]) outcomes[o] += counts[o];
      const touched = new Set(plan.faults.flatMap((f) => ('device' in f && typeof f.device === 'number' ? [ids[f.device]] : ids)));
      for (const t of run.targets) {
        if (touched.has(t.id) || t.result?.outcome === 'updated') continue;
        violations.push(`${head}: ${t.id} had no fault, yet ended ${t.result ? `${t.result.outcome} ${t.result.code}` : 'without a result'}`);
      }
      problems.push(...violations);
      before = new Map(ids.map((id) => [id, digestsOf(report.independent.get(id)?.components)]));

      log(`${head}: ${fired}/${armed.length} faults fired (total ${injected}/${opts.faults}); `
        + `updated ${counts.updated}, rolled-back ${counts['rolled-back']}, failed ${counts.failed}, skipped ${counts.skipped}; ${(run.ms / 1000).toFixed(1)} s`);
      if (opts.verbose) {
        for (const a of armed) log(`  ${a.fired ? 'fired    ' : 'not fired'} ${describeFault(a.spec, 'device' in a.spec ? ids[a.spec.device] : undefined)}`);
        for (const t of run.targets) {
          const r = t.result;
          const v = report.independent.get(t.id);
          log(`  ${t.id}: ${r ? `${r.outcome} ${r.code}${r.reason ? ` (${r.reason})` : ''}, retries ${r.retries}` : 'no result'}; runs ${v?.components ? describeSet(v.components) : 'nothing bootable'}`);
        }
      }
      for (const v of violations) log(`  VIOLATION ${v}`);
    }
    if (injected < opts.faults) problems.push(`only ${injected} of ${opts.faults} faults fired in ${campaigns} campaigns`);

    // The last word: cut every device's power (unflushed writes lost) and judge its files.
    for (const d of rig.sims.devices) d.powerCut({ restart: false });
    await rig.sims.stop();
    const final = await judge();
    for (const b of final.bricked) bricked.add(b.id);
    lost += final.store.corrupted.length + final.store.missing.length;
    const endViolations = [...describeViolations(final), ...setViolations(final, ids, releases, factory)].map((v) => `after the final power cut: ${v}`);
    problems.push(...endViolations);
    for (const v of endViolations) log(`  VIOLATION ${v}`);
  } finally {
    await rig.stop();
    disk?.unmount();
  }

  const figures = {
    seed: opts.seed, devices, campaigns, scheduled, injected, byKind, componentPowerCuts,
    bricked: bricked.size, lost,
    updated: outcomes.updated, rolledBack: outcomes['rolled-back'], failed: outcomes.failed, skipped: outcomes.skipped,
    problems, ms: Date.now() - t0,
  };
  return { ...figures, summary: summaryLine(figures) };
}
