/**
 * mulberry32: a small, fast, seedable 32-bit PRNG, uniform in [0, 1). Pure and deterministic:
 * the same seed gives the same sequence on every machine. Used where a run must be reproducible
 * from its seed — the gateway's `random` start order (bench/rollout), the simulator's link jitter
 * and loss, the fault soak's schedule. Not for anything secret.
 */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}
