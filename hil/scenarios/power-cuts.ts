import { describeError } from '../../protocol/errors.ts';
import type { LaptopEvent } from '../laptop.ts';
import { checkRollout, checkVersions, orderOf, resultsOf, type Scenario, type ScenarioContext } from '../scenario.ts';

type CutPhase = 'transferring' | 'activating' | 'rebooting' | 'confirming';

/**
 * Power cut of one device at a phase the gateway reports (its `progress` events on the laptop):
 * the cut is made the moment the event arrives, so where it lands is as close as the rig's
 * power switch allows; the report says which phase the device was in and what came next.
 * The device is the last in the announced order (the slowest link: its phases last longest).
 */
function powerCut(name: string, phase: CutPhase, title: string, landing: string): Scenario {
  return {
    name,
    title,
    expects: [
      `the cut lands while the gateway reports the device ${phase}${phase === 'transferring' ? ' (part of the image sent)' : ''}`,
      landing,
      'fwpush exits 0; each device: one result, updated; each reports the new version',
    ],
    async run(ctx) {
      const image = await ctx.rig.image('good');
      let victim: string | undefined;
      let cut: Promise<void> | undefined;
      let cutAt: LaptopEvent | undefined;
      const trigger = (e: LaptopEvent): void => {
        if (victim === undefined && e.event === 'order') victim = orderOf([e]).at(-1);
        if (cut || victim === undefined || e.event !== 'progress' || e.id !== victim || e.phase !== phase) return;
        if (phase === 'transferring' && !(Number(e.bytes) > 0 && Number(e.bytes) < Number(e.total))) return;
        cutAt = e;
        const d = ctx.rig.devices.find((x) => x.id === victim)!;
        cut = ctx.rig.powerCut(d).catch((err: unknown) => {
          ctx.check(`${d.id}: power cut commands`, false, describeError(err));
        });
      };
      const run = await ctx.rig.push(image, ['--now'], trigger).exited;
      await cut;
      if (!ctx.check(`power cut while ${phase}`, cutAt !== undefined, cutAt ? `${victim} at +${cutAt.at} ms` : `${victim ?? 'no device'} was never reported ${phase}${phase === 'transferring' ? ' part-way' : ''} (too fast for this rig's timing?)`)) {
        checkRollout(ctx, run, { exit: 0, results: () => ({ outcome: 'updated' }) });
        return;
      }
      landed(ctx, run.events, victim!, cutAt!);
      checkRollout(ctx, run, { exit: 0, results: () => ({ outcome: 'updated' }) });
      const r = resultsOf(run.events).get(victim!);
      ctx.note(`${victim}: ${r ? `${String(r.last.outcome)} after ${String(r.last.retries)} retries` : 'no result'}`);
      await checkVersions(ctx, () => image.version);
    },
  };
}

/** Report what the victim's next phases were after the cut (where it really landed). */
function landed(ctx: ScenarioContext, events: LaptopEvent[], victim: string, cutAt: LaptopEvent): void {
  const after = events.filter((e) => e.id === victim && e.at >= cutAt.at && e !== cutAt && (e.event === 'progress' || e.event === 'result'));
  const phases: string[] = [];
  for (const e of after) {
    const p = e.event === 'result' ? `result ${String(e.outcome)}` : String(e.phase);
    if (phases.at(-1) !== p) phases.push(p);
  }
  ctx.note(`${victim} cut at +${cutAt.at} ms while ${String(cutAt.phase)}; then: ${phases.slice(0, 8).join(' -> ') || '(nothing)'}`);
}

export const powerCutTransfer = powerCut('power-cut-transfer', 'transferring', 'Power cut during the transfer',
  'the transfer resumes from what the device holds after it is back (or restarts if it lost it)');
export const powerCutActivation = powerCut('power-cut-activation', 'activating', 'Power cut during activation',
  'the device comes back on its old or its new slot, never bricked; the gateway asks before activating again');
export const powerCutFirstBoot = powerCut('power-cut-first-boot', 'rebooting', 'Power cut during the first boot of the new image',
  'the bootloader reverts or retries the trial; the gateway updates the device in the end');
export const powerCutBeforeConfirm = powerCut('power-cut-before-confirm', 'confirming', 'Power cut after the trial boot, before the confirmation',
  'a trial not confirmed reverts at the next boot and is retried; one already confirmed stays');
