import { PowerCutPhases } from '../../device-sim/faults.ts';
import type { FaultKind, FaultSpec, Trigger } from './harness.ts';
import { mulberry32 } from '../../protocol/seeded-random.ts';

/**
 * The soak's fault schedule: a pure function of the seed, the campaign number and the shape of
 * the run (devices, chunks per image). It never looks at what happened in the run, so the same
 * seed always gives the same schedule (the timing of what follows can still vary a little: real
 * sockets, real timers).
 */


export interface SoakShape {
  devices: number;
  /** Chunks per image (bounds corrupt-chunk k and link-drop n). */
  chunks: number;
  /** Devices sit behind link proxies, so link outages can be injected. */
  links: boolean;
}

export interface CampaignPlan {
  /** 1-based. */
  index: number;
  version: string;
  faults: FaultSpec[];
}

/** Relative weights of the device faults. `gateway-kill` has none until the gateway resumes journaled campaigns. */
export const FAULT_WEIGHTS: Readonly<Record<Exclude<FaultKind, 'gateway-kill' | 'disk-full' | 'fail-self-test-component'>, number>> = {
  'power-cut': 30, 'power-cut-now': 12, 'corrupt-chunk': 14, 'link-drop': 14, 'link-outage': 14, busy: 6, 'fail-self-test': 10,
};

/** Faults per device per campaign: 0, 1, 2 or 3 with these probabilities. */
const PER_DEVICE = [0.15, 0.45, 0.3, 0.1];

/** The faults of campaign `index`, drawn from `rnd` (which advances by the same amount for the same shape). */
export function planCampaign(rnd: () => number, index: number, shape: SoakShape): CampaignPlan {
  const kinds = (Object.keys(FAULT_WEIGHTS) as (keyof typeof FAULT_WEIGHTS)[]).filter((k) => shape.links || k !== 'link-outage');
  const faults: FaultSpec[] = [];
  const int = (lo: number, hi: number): number => lo + Math.floor(rnd() * (hi - lo + 1));
  const fraction = (): number => Math.round((0.1 + 0.8 * rnd()) * 100) / 100;
  const trigger = (): Trigger => (rnd() < 0.5 ? { afterAcceptMs: int(0, 800) } : { atFraction: fraction() });
  for (let device = 0; device < shape.devices; device++) {
    const count = pick(rnd, PER_DEVICE);
    const chosen = new Set<string>();
    for (let n = 0; n < count; n++) {
      const kind = kinds[pick(rnd, kinds.map((k) => FAULT_WEIGHTS[k]))]!;
      // One fault of a kind per device and campaign (a switch holds one value); a busy device
      // takes no offer, so busy goes alone.
      if (chosen.has(kind) || chosen.has('busy') || (kind === 'busy' && chosen.size > 0)) continue;
      chosen.add(kind);
      switch (kind) {
        case 'power-cut': {
          const phase = PowerCutPhases[int(0, PowerCutPhases.length - 1)]!;
          const at = phase === 'chunk-write' && rnd() < 0.75 ? fraction() : 0;
          faults.push({ kind, device, phase, ...(at > 0 ? { atFraction: at } : {}) });
          break;
        }
        case 'power-cut-now': faults.push({ kind, device, when: trigger() }); break;
        case 'corrupt-chunk': faults.push({ kind, device, k: int(1, shape.chunks) }); break;
        case 'link-drop': faults.push({ kind, device, n: int(1, shape.chunks) }); break;
        case 'link-outage': faults.push({ kind, device, when: trigger(), forMs: int(200, 1500) }); break;
        case 'busy': faults.push({ kind, device }); break;
        case 'fail-self-test': faults.push({ kind, device }); break;
        default: {
          const never: never = kind;
          throw new Error(`unknown fault kind ${String(never)}`);
        }
      }
    }
  }
  return { index, version: `1.${index}.0`, faults };
}

/** The first `campaigns` plans of a seed (what `--verbose` prints, campaign by campaign). */
export function planSoak(seed: number, campaigns: number, shape: SoakShape): CampaignPlan[] {
  const rnd = mulberry32(seed);
  return Array.from({ length: campaigns }, (_, i) => planCampaign(rnd, i + 1, shape));
}

/** Index drawn with probability proportional to its weight. */
function pick(rnd: () => number, weights: readonly number[]): number {
  const total = weights.reduce((a, b) => a + b, 0);
  let x = rnd() * total;
  for (let i = 0; i < weights.length; i++) {
    x -= weights[i]!;
    if (x < 0) return i;
  }
  return weights.length - 1;
}
