import type { WaveSize } from '../../protocol/uplink.ts';

/**
 * Staged waves (docs/protocol.md §7.3.6, docs/operations.md "Waves"): pure helpers. A campaign's
 * targets are split into waves of cumulative sizes, each a count of the targets or a percentage of
 * them; the first is the canary. Membership follows the target order (the laptop's `--only` order,
 * else device id), so the same targets give the same waves after a restart.
 */

/** Cumulative target counts per wave: increasing, at least 1, the last always every target. */
export function waveBounds(sizes: readonly WaveSize[] | undefined, targets: number): number[] {
  if (!sizes || sizes.length === 0 || targets === 0) return [targets];
  const out: number[] = [];
  for (const s of sizes) {
    const n = 'count' in s ? s.count : Math.ceil((s.pct * targets) / 100);
    const bound = Math.min(targets, Math.max(1, n));
    if (bound > (out.at(-1) ?? 0)) out.push(bound);
  }
  if ((out.at(-1) ?? 0) < targets) out.push(targets);
  return out;
}

/** Wave number (1-based) of each target, in target order. */
export function assignWaves(ids: readonly string[], sizes: readonly WaveSize[] | undefined): Map<string, number> {
  const bounds = waveBounds(sizes, ids.length);
  const waves = new Map<string, number>();
  let w = 0;
  ids.forEach((id, i) => {
    while (i >= bounds[w]!) w++;
    waves.set(id, w + 1);
  });
  return waves;
}

/**
 * Whether a finished wave stops the campaign (pure): its failed and rolled-back devices are at
 * least `gatePct` % of its finished ones (updated, failed, rolled back). A wave in which no device
 * finished (all offline or busy) does not stop it.
 */
export function waveGateStops(counts: { finished: number; failed: number }, gatePct: number): boolean {
  return counts.finished > 0 && gatePct > 0 && counts.failed * 100 >= gatePct * counts.finished;
}
