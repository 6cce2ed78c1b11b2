import type { WaveSize } from './uplink.ts';

/**
 * `--waves 1,10%,100%` (fwpush, fwgate release live; docs/protocol.md §7.3.6) as wave sizes; undefined for a malformed list (the caller names the flag). */
export function parseWaves(text: string): WaveSize[] | undefined {
  const parts = text.split(',').map((p) => p.trim());
  if (parts.length > 16 || parts.some((p) => p === '')) return undefined;
  const out: WaveSize[] = [];
  for (const p of parts) {
    const pct = /^(\d{1,3})%$/.exec(p);
    if (pct) {
      const v = Number(pct[1]);
      if (v < 1 || v > 100) return undefined;
      out.push({ pct: v });
    } else if (/^\d{1,7}$/.test(p) && Number(p) >= 1) {
      out.push({ count: Number(p) });
    } else {
      return undefined;
    }
  }
  return out;
}
