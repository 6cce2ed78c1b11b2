import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { FwError, describeError } from '../protocol/errors.ts';
import { linkProfileSchema, parseLinkProfile, type LinkProfile } from './link.ts';

/**
 * Link profiles for simulated devices (docs/device-sim.md "Link profiles"): four built-ins,
 * `mixed` (the four spread over a fleet), and JSON profile files.
 *
 * Figures are chosen so a 256 KiB image takes visibly different times — link time (bytes / cap,
 * a round trip, expected stalls) about 0 on lan, 0.15 s on wifi-good, 1.5 s on wifi-poor and 2.5 s
 * on cellular — while a 50-device `mixed` rollout at concurrency 8 still takes seconds.
 */
export const BUILTIN_PROFILE_NAMES = ['lan', 'wifi-good', 'wifi-poor', 'cellular'] as const;
export type BuiltinProfileName = (typeof BUILTIN_PROFILE_NAMES)[number];

/** Built-ins, fastest first. */
export const BUILTIN_PROFILES: Readonly<Record<BuiltinProfileName, LinkProfile>> = Object.freeze({
  'lan': parseLinkProfile({ name: 'lan', latencyMs: 1, jitterMs: 0, downBps: 0, upBps: 0, lossPct: 0 }),
  'wifi-good': parseLinkProfile({ name: 'wifi-good', latencyMs: 8, jitterMs: 2, downBps: 2_000_000, upBps: 1_000_000, lossPct: 0 }),
  'wifi-poor': parseLinkProfile({ name: 'wifi-poor', latencyMs: 40, jitterMs: 15, downBps: 250_000, upBps: 100_000, lossPct: 1 }),
  'cellular': parseLinkProfile({
    name: 'cellular', latencyMs: 70, jitterMs: 20, downBps: 120_000, upBps: 40_000, lossPct: 0.5,
    outage: { everyMs: 30_000, forMs: 300 },
  }),
});

/** `mixed`: device index i gets MIXED_PATTERN[i % 8]; every 4 consecutive devices from 0 or 4 cover all four. */
export const MIXED_PATTERN: readonly BuiltinProfileName[] = Object.freeze([
  'wifi-good', 'cellular', 'lan', 'wifi-poor', 'cellular', 'lan', 'wifi-poor', 'wifi-good',
]);
export const MIXED = 'mixed';

export function isBuiltinProfileName(name: string): name is BuiltinProfileName {
  return (BUILTIN_PROFILE_NAMES as readonly string[]).includes(name);
}

/** The profile `mixed` gives the device at 0-based `index`. */
export function mixedProfile(index: number): LinkProfile {
  return BUILTIN_PROFILES[MIXED_PATTERN[index % MIXED_PATTERN.length]!];
}

const NAMES_HINT = `${[...BUILTIN_PROFILE_NAMES, MIXED].join(', ')}, or a JSON profile file`;

/** A built-in by name, or `mixed` for the device at `index`; unknown names are E_CONFIG. */
export function profileByName(name: string, index = 0): LinkProfile {
  if (isBuiltinProfileName(name)) return BUILTIN_PROFILES[name];
  if (name === MIXED) return mixedProfile(index);
  throw new FwError('E_CONFIG', `unknown profile "${name}" (expected ${NAMES_HINT})`);
}

// ---------------------------------------------------------------- profile files

const nameRef = z.string().refine((s) => isBuiltinProfileName(s) || s === MIXED, {
  error: (i) => `unknown profile "${String(i.input)}" (expected ${[...BUILTIN_PROFILE_NAMES, MIXED].join(', ')})`,
});
/** An object entry: every field optional; missing ones come from `base` (a built-in) or are 0 / unlimited. */
const objectRef = linkProfileSchema.partial().extend({ base: z.enum(BUILTIN_PROFILE_NAMES).optional() }).strict();
type Entry = z.infer<typeof nameRef> | z.infer<typeof objectRef>;

/** The shape of a profile file (entries are checked one by one, so errors name the entry's field). */
const fileObjectSchema = z.strictObject({
  /** Profile of devices not listed in `devices`; without it they connect directly. */
  default: z.unknown().optional(),
  /** Key: a device id, or a 0-based fleet index ("0" is the first device). */
  devices: z.record(z.string(), z.unknown()).default({}),
});
/** Entry i is for the device at index i; a shorter list repeats. */
const fileArraySchema = z.array(z.unknown()).min(1);

export type ProfileEntry = string | (Partial<LinkProfile> & { base?: BuiltinProfileName });
export type ProfileFile = { default?: ProfileEntry; devices?: Record<string, ProfileEntry> } | ProfileEntry[];

function issues(error: z.ZodError, path: readonly (string | number)[]): string {
  return error.issues
    .slice(0, 5)
    .map((i) => {
      const full = [...path, ...i.path.map(String)];
      return `${full.length ? full.join('.') : '(root)'}: ${i.message}`;
    })
    .join('; ');
}

function parsePart<T>(schema: z.ZodType<T>, value: unknown, path: readonly (string | number)[], what: string): T {
  const r = schema.safeParse(value);
  if (!r.success) throw new FwError('E_CONFIG', `${what}: ${issues(r.error, path)}`);
  return r.data;
}

function checkEntry(v: unknown, path: readonly (string | number)[], what: string): Entry {
  if (typeof v === 'string') return parsePart(nameRef, v, path, what);
  if (typeof v === 'object' && v !== null && !Array.isArray(v)) return parsePart(objectRef, v, path, what);
  throw new FwError('E_CONFIG', `${what}: ${path.join('.') || '(root)'}: must be a profile name or a profile object`);
}

function fromEntry(e: Entry, index: number, where: string): LinkProfile {
  if (typeof e === 'string') return profileByName(e, index);
  const { base, ...fields } = e;
  const start = base ? BUILTIN_PROFILES[base] : { name: 'custom', latencyMs: 0, jitterMs: 0, downBps: 0, upBps: 0, lossPct: 0 };
  return parseLinkProfile({ ...start, ...fields }, where);
}

/**
 * Profiles for `ids` (fleet order) from a parsed profile file. Devices without an entry and
 * without a default are left out (direct connection). Errors are E_CONFIG naming the field.
 */
export function profilesFromFile(json: unknown, ids: readonly string[], what = 'profile file'): Map<string, LinkProfile> {
  const out = new Map<string, LinkProfile>();
  if (Array.isArray(json)) {
    const list = parsePart(fileArraySchema, json, [], what).map((v, i) => checkEntry(v, [i], what));
    ids.forEach((id, i) => out.set(id, fromEntry(list[i % list.length]!, i, `${what}: ${i % list.length}`)));
    return out;
  }
  if (typeof json !== 'object' || json === null) {
    throw new FwError('E_CONFIG', `${what}: (root): must be an object {default?, devices?} or a non-empty array of profiles`);
  }
  const spec = parsePart(fileObjectSchema, json, [], what);
  const dflt = spec.default === undefined ? undefined : checkEntry(spec.default, ['default'], what);
  const byKey = new Map(Object.entries(spec.devices).map(([k, v]) => [k, checkEntry(v, ['devices', k], what)]));
  for (const key of byKey.keys()) {
    const known = /^\d+$/.test(key) ? Number(key) < ids.length : ids.includes(key);
    if (!known) throw new FwError('E_CONFIG', `${what}: devices.${key}: no such device in this fleet (${ids[0] ?? '-'}..${ids.at(-1) ?? '-'}, or index 0..${ids.length - 1})`);
  }
  ids.forEach((id, i) => {
    const key = byKey.has(id) ? id : byKey.has(String(i)) ? String(i) : undefined;
    if (key !== undefined) out.set(id, fromEntry(byKey.get(key)!, i, `${what}: devices.${key}`));
    else if (dflt !== undefined) out.set(id, fromEntry(dflt, i, `${what}: default`));
  });
  return out;
}

function isName(spec: string): boolean {
  return isBuiltinProfileName(spec) || spec === MIXED;
}

function fromText(text: string, ids: readonly string[], path: string): Map<string, LinkProfile> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new FwError('E_CONFIG', `profile file ${path}: not JSON: ${describeError(err)}`, { cause: err });
  }
  return profilesFromFile(json, ids, `profile file ${path}`);
}

function notFound(spec: string, err: unknown): FwError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT' && !/[/\\]|\.json$/i.test(spec)) {
    return new FwError('E_CONFIG', `unknown profile "${spec}" (expected ${NAMES_HINT})`, { cause: err });
  }
  return new FwError('E_CONFIG', `profile file ${spec}: ${describeError(err)}`, { cause: err });
}

/**
 * `spec` is a built-in name, `mixed`, or the path of a JSON profile file; `ids` are the fleet's
 * device ids in order. Returns the profile of each device that has one.
 */
export async function resolveProfiles(spec: string, ids: readonly string[]): Promise<Map<string, LinkProfile>> {
  if (isName(spec)) return resolveNamedProfiles(spec, ids);
  let text: string;
  try {
    text = await readFile(spec, 'utf8');
  } catch (err) {
    throw notFound(spec, err);
  }
  return fromText(text, ids, spec);
}

/** Same as resolveProfiles, synchronously (the CLI validates its flags before anything starts). */
export function resolveProfilesSync(spec: string, ids: readonly string[]): Map<string, LinkProfile> {
  if (isName(spec)) return resolveNamedProfiles(spec, ids);
  let text: string;
  try {
    text = readFileSync(spec, 'utf8');
  } catch (err) {
    throw notFound(spec, err);
  }
  return fromText(text, ids, spec);
}

/** A built-in name or `mixed` for every device in `ids`. */
export function resolveNamedProfiles(name: string, ids: readonly string[]): Map<string, LinkProfile> {
  return new Map(ids.map((id, i) => [id, profileByName(name, i)]));
}

/** One-line summary: "wifi-poor: 40±15 ms, down 250 kB/s, up 100 kB/s, loss 1%". */
export function describeProfile(p: LinkProfile): string {
  const rate = (bps: number): string => (bps === 0 ? 'unlimited' : bps >= 1_000_000 ? `${bps / 1_000_000} MB/s` : `${bps / 1000} kB/s`);
  const parts = [
    `${p.latencyMs}${p.jitterMs ? `±${p.jitterMs}` : ''} ms`,
    `down ${rate(p.downBps)}`,
    `up ${rate(p.upBps)}`,
    ...(p.lossPct ? [`loss ${p.lossPct}%`] : []),
    ...(p.outage ? [`outage ${p.outage.forMs} ms every ${p.outage.everyMs / 1000} s`] : []),
  ];
  return `${p.name}: ${parts.join(', ')}`;
}
