import { AllPowerCutPhases } from '../../device-sim/faults.ts';
import type { FaultSpec } from './harness.ts';
import { planCampaign, type CampaignPlan, type SoakShape } from './schedule.ts';

/**
 * The component soak's schedule (runSoak({ components: true }), docs/reliability.md): a pure
 * function of the seed's PRNG, the campaign number and the shape. Each campaign is a release of
 * `app` (always new) and `net` (new in some campaigns, the previous release's bytes in others);
 * its faults are the single-image soak's (planCampaign) plus, per device, sometimes one fault of a
 * component: a power cut limited to a step of `app` or `net` (any phase, `verification` included),
 * or a failed self-test of `net`.
 */

/** The components of every soak device, `app` first. */
export const SOAK_COMPONENTS = ['app', 'net'] as const;

/** Chance that a device gets one component fault on top of its planCampaign faults. */
const COMPONENT_FAULT = 0.4;
/** Of those, the share of component power cuts (the rest: a failed self-test of net). */
const COMPONENT_POWER_CUT = 0.7;
/** Chance that a campaign after the first brings a new net. */
const NEW_NET = 0.5;

export interface ComponentCampaignPlan extends CampaignPlan {
  /** This release brings a new net; otherwise its net is the previous release's (same bytes). */
  newNet: boolean;
}

export function planComponentCampaign(rnd: () => number, index: number, shape: SoakShape): ComponentCampaignPlan {
  const base = planCampaign(rnd, index, shape);
  const newNet = index === 1 || rnd() < NEW_NET;
  const faults: FaultSpec[] = [...base.faults];
  for (let device = 0; device < shape.devices; device++) {
    if (rnd() >= COMPONENT_FAULT) continue;
    const mine = base.faults.filter((f) => 'device' in f && f.device === device).map((f) => f.kind);
    if (rnd() < COMPONENT_POWER_CUT) {
      const phase = AllPowerCutPhases[Math.floor(rnd() * AllPowerCutPhases.length)]!;
      const component = SOAK_COMPONENTS[Math.floor(rnd() * SOAK_COMPONENTS.length)]!;
      // the device's powerCutAt switch holds one value; a busy device takes no offer
      if (mine.includes('power-cut') || mine.includes('busy')) continue;
      faults.push({ kind: 'power-cut', device, phase, component });
    } else {
      if (mine.includes('busy')) continue;
      faults.push({ kind: 'fail-self-test-component', device, component: 'net' });
    }
  }
  return { ...base, faults, newNet };
}
