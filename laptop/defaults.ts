import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { FwError } from '../protocol/errors.ts';
import { formatIssues } from '../protocol/schema.ts';
import { describePort, isLikelyAdapter, type PortInfo } from './ports.ts';

/**
 * Where fwpush's port and technician key come from when not given as flags (docs/operations.md
 * "fwpush: the first minute"): the flag, else the environment (FWPUSH_PORT, FWPUSH_TECH_KEY),
 * else the profile file (FWPUSH_PROFILE, default ~/.config/fwpush/profile.json), else — for the
 * port only — the one likely USB-serial adapter plugged in.
 */
const profileSchema = z.strictObject({
  port: z.string().min(1).optional(),
  techKey: z.string().min(1).optional(),
});
export type Profile = z.infer<typeof profileSchema>;

export function profilePath(env: NodeJS.ProcessEnv = process.env): string {
  return env.FWPUSH_PROFILE ?? join(env.XDG_CONFIG_HOME ?? join(homedir(), '.config'), 'fwpush', 'profile.json');
}

/** The profile, or {} when there is none; a bad one is a usage error naming the file. */
export async function readProfile(path: string): Promise<Profile> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new FwError('E_USAGE', `cannot read the fwpush profile ${path}: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new FwError('E_USAGE', `fwpush profile ${path} is not valid JSON: ${(err as Error).message}`);
  }
  const r = profileSchema.safeParse(json);
  if (!r.success) throw new FwError('E_USAGE', `fwpush profile ${path}: ${formatIssues(r.error)} (keys: port, techKey)`);
  return r.data;
}

export interface Resolved { port: string; techKey?: string; notes: string[] }

/** Fill in port and technician key; `notes` says where a value not given as a flag came from. */
export async function resolveDefaults(
  given: { port?: string; techKey?: string },
  deps: { env?: NodeJS.ProcessEnv; listPorts: () => Promise<PortInfo[]> },
): Promise<Resolved> {
  const env = deps.env ?? process.env;
  const path = profilePath(env);
  const needProfile = (given.port === undefined && !env.FWPUSH_PORT) || (given.techKey === undefined && !env.FWPUSH_TECH_KEY);
  const profile = needProfile ? await readProfile(path) : {};
  const notes: string[] = [];
  const pick = (flag: string | undefined, envName: string, key: keyof Profile): string | undefined => {
    if (flag !== undefined) return flag;
    if (env[envName]) {
      notes.push(`${key === 'port' ? 'port' : 'technician key'} ${env[envName]} (from ${envName})`);
      return env[envName];
    }
    if (profile[key] !== undefined) {
      notes.push(`${key === 'port' ? 'port' : 'technician key'} ${profile[key]} (from ${path})`);
      return profile[key];
    }
    return undefined;
  };
  const techKey = pick(given.techKey, 'FWPUSH_TECH_KEY', 'techKey');
  let port = pick(given.port, 'FWPUSH_PORT', 'port');
  if (port === undefined) {
    const likely = (await deps.listPorts()).filter(isLikelyAdapter);
    if (likely.length !== 1) {
      throw new FwError('E_USAGE', likely.length === 0
        ? 'no --port given and no USB-serial adapter found: plug it in, or give --port <tty> (fwpush ports lists the serial ports)'
        : `no --port given and ${likely.length} USB-serial adapters found (${likely.map((p) => p.path).join(', ')}): give --port <tty> (fwpush ports lists them)`);
    }
    port = likely[0]!.byId ?? likely[0]!.path;
    notes.push(`port ${port}: the only USB-serial adapter found (${describePort(likely[0]!)})`);
  }
  return { port, ...(techKey !== undefined ? { techKey } : {}), notes };
}

/**
 * A hint for a port that cannot be opened: a missing one names `fwpush ports`, a permission
 * error names the dialout group.
 */
export function portOpenHint(err: unknown, path: string): string | undefined {
  const text = `${(err as Error)?.message ?? ''} ${((err as { cause?: Error })?.cause)?.message ?? ''}`;
  if (/EACCES|Permission denied|permission/i.test(text)) {
    return `no permission to open ${path}: add your user to the dialout group (sudo usermod -aG dialout $USER, then log out and in again), or use the udev rule in packaging/udev; fwpush ports lists the serial ports`;
  }
  if (/ENOENT|No such file|cannot find|not found/i.test(text)) {
    return `${path} does not exist: is the USB-serial adapter plugged in? fwpush ports lists the serial ports on this machine`;
  }
  return undefined;
}

/** What fwpush prints when the gateway has not answered the link reset after a few seconds. */
export function waitingHint(port: string, remainingS: number): string {
  return `waiting for the gateway on ${port}: no answer yet. Likely causes: fwgate is not running with --serial on the other end of this cable; `
    + `the wrong port (fwpush ports lists them); the wrong cable (a USB-serial adapter to the gateway's serial port, TX/RX crossed; not a charge-only USB cable); `
    + `a different baud rate (--baud). Still trying for ${remainingS} s.`;
}
