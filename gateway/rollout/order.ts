import { encodeCbor } from '../../protocol/cbor.ts';
import { MAX_ORDER_ENTRIES, MAX_UPLINK_MESSAGE } from '../../protocol/limits.ts';
import { mulberry32 } from '../../protocol/seeded-random.ts';
import type { OrderEntry, OrderMessage } from '../../protocol/uplink.ts';
import type { LinkRecord } from '../fleet.ts';
import { planStarts } from './planner.ts';

/** Start order: `ranked` (fastest first with tail protection, what operators get), or `random` / `slowest-first` — baselines for bench/rollout only. */
export type OrderPolicy = 'ranked' | 'random' | 'slowest-first';

/**
 * Keep an order message within the uplink limits (docs/protocol.md §7.5): excluded entries beyond
 * what fits are left out and counted in `excludedMore`; each of those devices still gets its result.
 */
export function fitOrder(order: OrderMessage): OrderMessage {
  const budget = Math.floor(MAX_UPLINK_MESSAGE * 0.9);
  let keep = Math.min(order.excluded.length, Math.max(0, MAX_ORDER_ENTRIES - order.devices.length));
  const build = (n: number): OrderMessage => ({
    ...order, excluded: order.excluded.slice(0, n), ...(n < order.excluded.length ? { excludedMore: order.excluded.length - n } : {}),
  });
  let fitted = build(keep);
  while (keep > 0 && encodeCbor(fitted).length > budget) {
    keep = Math.floor(keep / 2);
    fitted = build(keep);
  }
  return fitted;
}

/** The start sequence for a policy; baselines keep the ranks but start in another order. */
export function startOrder(
  ranked: readonly OrderEntry[], slots: number, policy: OrderPolicy, seed: number, slotMs: (e: OrderEntry) => number,
): OrderEntry[] {
  if (policy === 'ranked') return planStarts(ranked, slots, { slotMs });
  const seq = policy === 'slowest-first' ? [...ranked].reverse() : shuffle(ranked, seed);
  // planned starts for this sequence: each goes to the slot that frees first
  const free = Array.from({ length: Math.max(1, Math.min(slots, seq.length)) }, () => 0);
  return seq.map((e) => {
    const i = free.indexOf(Math.min(...free));
    const startMs = free[i]!;
    free[i] = startMs + slotMs(e);
    return { ...e, startMs: Math.round(startMs) };
  });
}

/** Deterministic Fisher-Yates shuffle (mulberry32). */
function shuffle<T>(items: readonly T[], seed: number): T[] {
  const out = [...items];
  const rnd = mulberry32(seed);
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}


/**
 * Whether a device's link figures can stand for a new measurement (§7.5.2): round trip and
 * throughput both measured at most `maxAgeMs` ago (wall clock); never with `maxAgeMs` 0.
 */
export function recentLink(link: LinkRecord | undefined, maxAgeMs: number, now: number): boolean {
  if (!link || maxAgeMs <= 0 || link.bps === undefined || link.bpsMeasuredAt === undefined) return false;
  return now - link.measuredAt <= maxAgeMs && now - link.bpsMeasuredAt <= maxAgeMs && link.measuredAt <= now && link.bpsMeasuredAt <= now;
}
