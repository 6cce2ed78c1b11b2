import { readFile } from 'node:fs/promises';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The parts of a V8 .cpuprofile (written by `node --cpu-prof`) that self time needs. */
interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
  samples: number[];
  timeDeltas: number[];
}

export interface Hotspot {
  /** `name (file:line)`, the file relative to root. */
  fn: string;
  selfMs: number;
  /** Share of the busy samples (idle and the profiler's own excluded). */
  share: number;
}

const NOT_BUSY = new Set(['(idle)', '(program)', '(garbage collector)']);

/**
 * The top functions by self time of a .cpuprofile, functions of the same name and place summed
 * over their call sites. `(garbage collector)` and `(program)` are listed apart from the busy
 * share but reported: GC time matters in a fan-out.
 */
export async function topSelfTime(path: string, root: string, top = 5): Promise<{ hotspots: Hotspot[]; busyMs: number; gcMs: number; programMs: number }> {
  const prof = JSON.parse(await readFile(path, 'utf8')) as CpuProfile;
  const byId = new Map(prof.nodes.map((n) => [n.id, n.callFrame]));
  const self = new Map<string, number>();
  for (let i = 0; i < prof.samples.length; i++) {
    const f = byId.get(prof.samples[i]!);
    if (!f) continue;
    const file = f.url.startsWith('file://') ? relative(root, fileURLToPath(f.url)) : f.url;
    const key = NOT_BUSY.has(f.functionName) ? f.functionName : `${f.functionName || '(anonymous)'} (${file || 'native'}:${f.lineNumber + 1})`;
    self.set(key, (self.get(key) ?? 0) + (prof.timeDeltas[i] ?? 0) / 1000);
  }
  const gcMs = self.get('(garbage collector)') ?? 0;
  const programMs = self.get('(program)') ?? 0;
  const busy = [...self].filter(([k]) => !NOT_BUSY.has(k));
  const busyMs = busy.reduce((a, [, v]) => a + v, 0) + gcMs;
  const hotspots = busy.sort((a, b) => b[1] - a[1]).slice(0, top)
    .map(([fn, ms]) => ({ fn, selfMs: Math.round(ms), share: Math.round((ms / busyMs) * 1000) / 1000 }));
  return { hotspots, busyMs: Math.round(busyMs), gcMs: Math.round(gcMs), programMs: Math.round(programMs) };
}
