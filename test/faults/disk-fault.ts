import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Campaign } from '../../gateway/rollout/campaign.ts';
import { parseJournal } from '../../gateway/rollout/journal.ts';
import { mulberry32 } from '../../protocol/seeded-random.ts';
import type { Rig } from '../helpers/rig.ts';
import { fillDisk } from '../helpers/tmpfs.ts';
import type { ArmedFault } from './harness.ts';

/**
 * ENOSPC at each durable step of a campaign (issue 17.4), for the seeded soak: the gateway's data
 * directory is a small file system of its own (test/helpers/tmpfs.ts: a loop-mounted ext4 with
 * 1 KiB blocks, root only), filled to the last byte just before the step's journal record is
 * written, and freed once the campaign has paused on it (seen in the status replay: `error`
 * E_DISK_FULL) or after `holdMs`. The fault fired when the pause was seen.
 */
export const DurableSteps = ['order', 'activating', 'result', 'complete'] as const;
export type DurableStep = (typeof DurableSteps)[number];

export interface DiskFullSpec { kind: 'disk-full'; step: DurableStep; holdMs: number }

/** The gateway's fault of campaign `index` (its own PRNG stream, so the device faults of a seed stay as they were): a disk-full one campaign in three. */
export function planGatewayFault(seed: number, index: number): DiskFullSpec | undefined {
  const rnd = mulberry32((seed ^ 0x5eed_d15c) + index * 7919);
  if (rnd() >= 1 / 3) return undefined;
  return { kind: 'disk-full', step: DurableSteps[Math.floor(rnd() * DurableSteps.length)]!, holdMs: 300 + Math.floor(rnd() * 1200) };
}

export function describeDiskFull(f: DiskFullSpec): string {
  return `gateway disk full before the ${f.step} record, freed ${f.holdMs}ms after the pause`;
}

/** Arm a disk-full on a campaign not started yet. `disk` undefined (not root): never fires. */
export function armDiskFull(rig: Rig, spec: DiskFullSpec, campaign: Campaign, disk: string | undefined, targets: number): ArmedFault {
  const armed: ArmedFault = { spec, fired: false, disarm: () => undefined };
  if (!disk) return armed;
  let filler: string | undefined;
  let poll: NodeJS.Timeout | undefined;
  let hold: NodeJS.Timeout | undefined;
  const free = (): void => {
    clearInterval(poll);
    clearTimeout(hold);
    if (filler) rmSync(filler, { force: true });
    filler = undefined;
  };
  const fill = (): void => {
    if (filler) return;
    filler = fillDisk(disk, `filler-${campaign.id}`);
    const paused = (): boolean => rig.gateway.campaignState().some((m) => m.t === 'error' && m.code === 'E_DISK_FULL' && m.reason.includes(campaign.id));
    poll = setInterval(() => {
      if (!paused()) return;
      armed.fired = true;
      clearInterval(poll);
      hold = setTimeout(free, spec.holdMs);
    }, 20);
    hold = setTimeout(free, 10_000); // never paused (the record fit the last block's slack): give the space back
  };
  const offs: (() => void)[] = [];
  const on = <E extends 'progress' | 'result'>(ev: E, fn: (m: Parameters<Campaign['emit']>[1]) => void): void => {
    campaign.on(ev, fn as never);
    offs.push(() => campaign.off(ev, fn as never));
  };
  let results = 0;
  switch (spec.step) {
    case 'order': fill(); break; // before the campaign starts: the order is the next record
    case 'activating': on('progress', (m) => { if ((m as { phase?: string }).phase === 'verifying') fill(); }); break;
    case 'result': on('progress', (m) => { if ((m as { phase?: string }).phase === 'confirming') fill(); }); break;
    case 'complete': on('result', () => { if (++results === targets - 1) fill(); }); break;
    default: {
      const never: never = spec.step;
      throw new Error(`unknown step ${String(never)}`);
    }
  }
  armed.disarm = () => {
    for (const off of offs.splice(0)) off();
    free();
  };
  return armed;
}

/**
 * The durable-before-effect check, from files: every device that acted on `activate` in this
 * campaign (the simulator's `activated` events) has an `activating` record in the journal, and the
 * journal ends with the completion. One line per violation.
 */
export async function checkJournal(rig: Rig, campaignId: string, activated: ReadonlySet<string>): Promise<string[]> {
  const path = join(rig.gatewayDir, 'journal', `${campaignId}.jsonl`);
  const read = (): ReturnType<typeof parseJournal>['state'] => parseJournal(readFileSync(path, 'utf8'), path).state;
  let state;
  try {
    // records the disk refused are written by the gateway's next retry (rollout.journalRetryMs) once space is back
    state = read();
    for (let i = 0; i < 100 && !state.complete; i++) {
      await new Promise((r) => setTimeout(r, 50));
      state = read();
    }
  } catch (err) {
    return [`journal ${campaignId}: unreadable (${String(err)})`];
  }
  const problems: string[] = [];
  for (const id of activated) if (!state.activating.has(id)) problems.push(`${id} activated without a durable activating record in ${campaignId}`);
  if (!state.complete) problems.push(`journal ${campaignId} has no completion`);
  if (state.corruptLines.length > 0) problems.push(`journal ${campaignId} has bad lines ${state.corruptLines.join(', ')}`);
  return problems;
}

/** Whether the campaign's journal file holds an `activating` record for the device right now (read synchronously). */
export function activatingOnDisk(rig: Rig, campaignId: string, id: string): boolean {
  const path = join(rig.gatewayDir, 'journal', `${campaignId}.jsonl`);
  try {
    return parseJournal(readFileSync(path, 'utf8'), path).state.activating.has(id);
  } catch {
    return false;
  }
}
