import { BUILTIN_PROFILES } from '../../device-sim/profiles.ts';
import type { Outcome } from '../../protocol/uplink.ts';
import { Rig, sampleImage } from '../helpers/rig.ts';
import {
  FAULT_CONFIG, FAULT_DEVICE, armFault, describeFault, devicesDir, runCampaign, settleFleet, storeDir, storeImage,
  type ArmedFault, type FaultKind,
} from './harness.ts';
import { checkInvariants, describeViolations } from './invariants.ts';
import { mulberry32 } from '../../protocol/seeded-random.ts';
import { FAULT_WEIGHTS, planCampaign, type SoakShape } from './schedule.ts';
import { activatingOnDisk, armDiskFull, checkJournal, describeDiskFull, planGatewayFault } from './disk-fault.ts';
import { mountSmallExt4, type SmallDisk } from '../helpers/tmpfs.ts';
import { join } from 'node:path';
import { runComponentSoak } from './component-soak.ts';

/**
 * The seeded random soak (docs/reliability.md): campaigns v1.1.0, v1.2.0, ... to one fleet,
 * each with a fresh set of faults drawn from the seed, until `faults` faults have actually
 * fired. After every campaign the fleet settles and the invariants are checked from the files;
 * at the end every device loses power abruptly and its files must still boot a verified image.
 *
 * Gateway kill -9 + restart is proven with real processes (test/e2e/gateway-crash.test.ts):
 * a gateway in this process cannot die without cleanup. `gateway-kill` is a FaultKind with no
 * weight in FAULT_WEIGHTS and armFault refuses it. To add it here: (1) run the gateway of the
 * Rig as a child process with a `restartGateway()` that SIGKILLs it and starts a new one on the
 * same dataDir and broker port, (2) give `gateway-kill` a weight and a case in armFault calling it
 * `delayMs` after the campaign starts, (3) in runCampaign follow the resumed campaign (same id)
 * from the new gateway's log instead of the old one's `complete` event.
 */

export interface SoakOptions {
  seed: number;
  /** Stop once at least this many faults have fired. */
  faults: number;
  devices?: number;
  imageBytes?: number;
  chunk?: number;
  /** Safety bound on campaigns (default: enough for `faults` with room to spare). */
  maxCampaigns?: number;
  /** Bound on one campaign, ms. */
  campaignTimeoutMs?: number;
  /** Print each campaign's schedule, which faults fired, and each device's result. */
  verbose?: boolean;
  /**
   * The gateway's data directory on a small file system of its own, filled before durable steps
   * (disk-full faults, test/faults/disk-fault.ts). Default: when root (a loop-mounted ext4);
   * otherwise the disk-full faults are scheduled but cannot fire.
   */
  diskFull?: boolean;
  /**
   * Multi-component devices (app and net) and signed release campaigns instead of single images,
   * with per-component faults and the set invariant (test/faults/component-soak.ts).
   */
  components?: boolean;
  log?: (line: string) => void;
}

export interface SoakFigures {
  seed: number;
  devices: number;
  campaigns: number;
  /** Faults scheduled and faults that fired (a fault armed for a step the device never reached does not fire). */
  scheduled: number;
  injected: number;
  byKind: Partial<Record<FaultKind, { scheduled: number; fired: number }>>;
  /** The component soak: power cuts limited to one component's step (counted in byKind['power-cut'] too). */
  componentPowerCuts?: { scheduled: number; fired: number };
  /** Devices whose files would not boot a verified image (after any campaign, or after the final power cut). */
  bricked: number;
  /** Stored images corrupted or gone, plus device results not accounted for by the devices' files. */
  lost: number;
  /** Final results over all campaigns, one per device per campaign. */
  updated: number;
  rolledBack: number;
  failed: number;
  skipped: number;
  /** Every violation found, one line each. */
  problems: string[];
  ms: number;
  summary: string;
}

export function summaryLine(f: Pick<SoakFigures, 'injected' | 'bricked' | 'lost' | 'updated' | 'rolledBack' | 'failed'>): string {
  return `faults: ${f.injected} injected, bricked ${f.bricked}, lost ${f.lost}, updated ${f.updated}, rolled-back ${f.rolledBack}, failed ${f.failed}`;
}

export async function runSoak(opts: SoakOptions): Promise<SoakFigures> {
  if (opts.components) return runComponentSoak(opts);
  const t0 = Date.now();
  const log = opts.log ?? (() => undefined);
  const devices = opts.devices ?? 8;
  const size = opts.imageBytes ?? 16 * 1024;
  const chunk = opts.chunk ?? 1024;
  const shape: SoakShape = { devices, chunks: Math.ceil(size / chunk), links: true };
  const maxCampaigns = opts.maxCampaigns ?? Math.ceil(opts.faults / 4) + 20;
  const rnd = mulberry32(opts.seed);
  const outcomes: Record<Outcome, number> = { updated: 0, 'rolled-back': 0, failed: 0, skipped: 0, cancelled: 0, superseded: 0, expired: 0 };
  const byKind: SoakFigures['byKind'] = {};
  const problems: string[] = [];
  const bricked = new Set<string>();
  const storedShas: string[] = [];
  let lost = 0;
  let scheduled = 0;
  let injected = 0;
  let campaigns = 0;

  const disk: SmallDisk | undefined = opts.diskFull === false ? undefined : mountSmallExt4(32 * 1024);
  if (!disk) log('disk-full faults cannot fire: the small file system needs root (loop-mounted ext4)');
  const rig = await Rig.start({
    devices, config: { ...FAULT_CONFIG, rollout: { ...FAULT_CONFIG.rollout, journalRetryMs: 200 } }, device: FAULT_DEVICE,
    ...(disk ? { gatewayDir: join(disk.dir, 'gateway') } : {}),
    // Every device behind its own loopback link proxy, so link outages can be injected.
    profiles: () => BUILTIN_PROFILES.lan,
  });
  const ids = rig.sims.devices.map((d) => d.id);
  try {
    while (injected < opts.faults && campaigns < maxCampaigns) {
      campaigns++;
      const plan = planCampaign(rnd, campaigns, shape);
      const gwFault = planGatewayFault(opts.seed, campaigns);
      if (opts.verbose) {
        log(`campaign ${plan.index} ${plan.version} schedule: ${[...plan.faults.map((f) => describeFault(f, 'device' in f ? ids[f.device] : undefined)), ...(gwFault ? [describeDiskFull(gwFault)] : [])].join('; ') || '(none)'}`);
      }
      const { image, manifest } = sampleImage({ version: plan.version, size, chunk });
      const stored = await storeImage(rig, image, manifest);
      storedShas.push(manifest.sha256);
      const armed: ArmedFault[] = [];
      // who acted on `activate` in this campaign: each must have its durable `activating` record
      const activated = new Set<string>();
      const early: string[] = [];
      let campaignId = '';
      const onActivated = (d: (typeof rig.sims.devices)[number]) => (e: { type: string }): void => {
        if (e.type !== 'activated') return;
        activated.add(d.id);
        // at the moment the device acts on `activate`, its record is on disk already
        if (campaignId && !activatingOnDisk(rig, campaignId, d.id)) early.push(`${d.id} acted on activate before its activating record was written`);
      };
      const listeners = rig.sims.devices.map((d) => [d, onActivated(d)] as const);
      for (const [d, fn] of listeners) d.on('event', fn);
      let run: Awaited<ReturnType<typeof runCampaign>>;
      try {
        run = await runCampaign(rig, stored, {
          timeoutMs: opts.campaignTimeoutMs ?? 60_000,
          arm: (c) => {
            campaignId = c.id;
            for (const f of plan.faults) armed.push(armFault(rig, f, manifest));
            if (gwFault) armed.push(armDiskFull(rig, gwFault, c, disk?.dir, ids.length));
          },
        });
      } finally {
        for (const a of armed) a.disarm();
        for (const [d, fn] of listeners) d.off('event', fn);
      }
      const unsettled = await settleFleet(rig, 15_000);
      const report = await checkInvariants({
        devicesDir: devicesDir(rig), ids, storeDir: storeDir(rig), campaign: { image: run.image, targets: run.targets },
      });
      for (const b of report.bricked) bricked.add(b.id);
      lost += report.unaccounted.length;
      const violations = [...describeViolations(report), ...early, ...(await checkJournal(rig, run.id, activated))].map((v) => `campaign ${plan.index} ${plan.version}: ${v}`);
      if (run.timedOut) violations.push(`campaign ${plan.index} ${plan.version}: did not complete within its bound; cancelled`);
      problems.push(...violations);

      let fired = 0;
      for (const a of armed) {
        const k = (byKind[a.spec.kind] ??= { scheduled: 0, fired: 0 });
        k.scheduled++;
        if (a.fired) {
          k.fired++;
          fired++;
        }
      }
      scheduled += armed.length;
      injected += fired;
      const counts: Record<Outcome, number> = { updated: 0, 'rolled-back': 0, failed: 0, skipped: 0, cancelled: 0, superseded: 0, expired: 0 };
      for (const t of run.targets) if (t.result) counts[t.result.outcome]++;
      for (const o of Object.keys(counts) as Outcome[]) outcomes[o] += counts[o];
      // Progress, device by device: one that no fault was planned for must be updated (a fault without a device hits all).
      const touched = new Set(plan.faults.flatMap((f) => ('device' in f && typeof f.device === 'number' ? [ids[f.device]] : ids)));
      for (const t of run.targets) {
        if (touched.has(t.id) || t.result?.outcome === 'updated') continue;
        const v = `campaign ${plan.index} ${plan.version}: ${t.id} had no fault, yet ended ${t.result ? `${t.result.outcome} ${t.result.code}` : 'without a result'}`;
        violations.push(v);
        problems.push(v);
      }

      log(`campaign ${plan.index} ${plan.version}: ${fired}/${armed.length} faults fired (total ${injected}/${opts.faults}); `
        + `updated ${counts.updated}, rolled-back ${counts['rolled-back']}, failed ${counts.failed}, skipped ${counts.skipped}; `
        + `${(run.ms / 1000).toFixed(1)} s${unsettled.length ? `; unsettled: ${unsettled.map((u) => `${u.id} ${u.why}`).join(', ')}` : ''}`);
      if (opts.verbose) {
        for (const a of armed) log(`  ${a.fired ? 'fired    ' : 'not fired'} ${describeFault(a.spec, 'device' in a.spec ? ids[a.spec.device] : undefined)}`);
        for (const t of run.targets) {
          const r = t.result;
          log(`  ${t.id} (was ${t.before}): ${r ? `${r.outcome} ${r.code}${r.reason ? ` (${r.reason})` : ''}, retries ${r.retries}` : 'no result'}`);
        }
      }
      for (const v of violations) log(`  VIOLATION ${v}`);
    }
    if (injected < opts.faults) problems.push(`only ${injected} of ${opts.faults} faults fired in ${campaigns} campaigns`);

    // The last word: cut every device's power (unflushed writes lost) and boot its files.
    for (const d of rig.sims.devices) d.powerCut({ restart: false });
    await rig.sims.stop();
    const final = await checkInvariants({ devicesDir: devicesDir(rig), ids, storeDir: storeDir(rig), storedImages: storedShas });
    for (const b of final.bricked) bricked.add(b.id);
    lost += final.store.corrupted.length + final.store.missing.length;
    const endViolations = describeViolations(final).map((v) => `after the final power cut: ${v}`);
    problems.push(...endViolations);
    for (const v of endViolations) log(`  VIOLATION ${v}`);
  } finally {
    await rig.stop();
    disk?.unmount();
  }

  const figures = {
    seed: opts.seed, devices, campaigns, scheduled, injected, byKind,
    bricked: bricked.size, lost,
    updated: outcomes.updated, rolledBack: outcomes['rolled-back'], failed: outcomes.failed, skipped: outcomes.skipped,
    problems, ms: Date.now() - t0,
  };
  return { ...figures, summary: summaryLine(figures) };
}

/** Fault kinds the soak draws from, for usage texts and docs. */
export const SOAK_FAULT_KINDS = Object.keys(FAULT_WEIGHTS);
