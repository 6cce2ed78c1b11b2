import { createHash, randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { readFile, rename, stat, writeFile } from 'node:fs/promises';
import { z } from 'zod';
import { FwError } from '../protocol/errors.ts';
import { formatIssues } from '../protocol/schema.ts';
import { isValidDeviceId } from '../protocol/topics.ts';
import type { ScryptLimiter } from './auth-guard.ts';
import type { LoginCache } from './login-cache.ts';

/**
 * Per-device MQTT credentials (docs/protocol.md §6.1.8, docs/operations.md "Device credentials").
 *
 * The device list (`broker.devicesFile`) is a JSON array of `{ "id": "<device id>", "scrypt":
 * "<PHC string>" }`; the PHC string carries the scrypt cost with the salt and the key:
 * `$scrypt$ln=14,r=8,p=1$<salt, base64>$<key, base64>` (ln = log2 N; base64 without padding).
 * Passwords are never stored. Verification runs scrypt with the entry's own parameters and compares
 * keys with timingSafeEqual; an unknown id is checked against a dummy entry, so the answer takes
 * the same time whether the id exists or not.
 */

export interface ScryptParams {
  /** log2 of the CPU/memory cost N. */
  ln: number;
  r: number;
  p: number;
}

/** N = 2^14, r = 8, p = 1: 16 MiB and some 50 ms per check (the scrypt paper's interactive setting). */
export const DEFAULT_SCRYPT: ScryptParams = { ln: 14, r: 8, p: 1 };
const KEY_BYTES = 32;
const SALT_BYTES = 16;
const PHC = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/]{16,})\$([A-Za-z0-9+/]{32,})$/;
/** Bounds on what a file may ask for: ln 10..20 (at most 1 GiB with r = 8), r 1..32, p 1..16. */
const LIMITS = { ln: [10, 20], r: [1, 32], p: [1, 16] } as const;

export interface DeviceEntry {
  id: string;
  scrypt: string;
  /** Groups a campaign can target (`fwpush --group`, docs/operations.md "Targeting and waves"). */
  groups?: string[];
  /** `fwgate device disable`: refused at CONNECT, kept in the list and in the fleet report. */
  disabled?: boolean;
}

const entrySchema = z.strictObject({
  id: z.string().refine(isValidDeviceId, 'must be a valid device id'),
  scrypt: z.string().refine((s) => parsePhc(s) !== null, 'must be "$scrypt$ln=..,r=..,p=..$<salt>$<key>" (fwgate device add writes it)'),
  groups: z.array(z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'a group name: letters, digits, ".", "_" or "-", at most 64')).max(32).optional(),
  disabled: z.boolean().optional(),
});
const fileSchema = z.array(entrySchema).superRefine((list, ctx) => {
  const seen = new Set<string>();
  list.forEach((e, i) => {
    if (seen.has(e.id)) ctx.addIssue({ code: 'custom', path: [i, 'id'], message: `device ${e.id} is listed twice` });
    seen.add(e.id);
  });
});

interface Parsed { params: ScryptParams; salt: Buffer; key: Buffer }

function parsePhc(s: string): Parsed | null {
  const m = PHC.exec(s);
  if (!m) return null;
  const params = { ln: Number(m[1]), r: Number(m[2]), p: Number(m[3]) };
  for (const k of ['ln', 'r', 'p'] as const) if (params[k] < LIMITS[k][0] || params[k] > LIMITS[k][1]) return null;
  return { params, salt: Buffer.from(m[4]!, 'base64'), key: Buffer.from(m[5]!, 'base64') };
}

function derive(password: string, salt: Buffer, params: ScryptParams, keyLen: number): Promise<Buffer> {
  const N = 2 ** params.ln;
  const opts: ScryptOptions = { N, r: params.r, p: params.p, maxmem: 256 * N * params.r + 1024 * 1024 };
  return new Promise((resolve, reject) => scrypt(password, salt, keyLen, opts, (err, key) => (err ? reject(err) : resolve(key))));
}

/** The PHC string of `password` with a fresh random salt. */
export async function hashPassword(password: string, params: ScryptParams = DEFAULT_SCRYPT): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const key = await derive(password, salt, params, KEY_BYTES);
  const b64 = (b: Buffer): string => b.toString('base64').replace(/=+$/, '');
  return `$scrypt$ln=${params.ln},r=${params.r},p=${params.p}$${b64(salt)}$${b64(key)}`;
}

/** Whether `password` matches the PHC string (constant-time key comparison). */
export async function checkPassword(password: string, phc: string): Promise<boolean> {
  const parsed = parsePhc(phc);
  if (!parsed) return false;
  const key = await derive(password, parsed.salt, parsed.params, parsed.key.length);
  return timingSafeEqual(key, parsed.key);
}

/** A random password for a device: 24 bytes, base64url (32 characters). */
export function generatePassword(): string {
  return randomBytes(24).toString('base64url');
}

/** Read and validate a device list; a missing file is E_CONFIG. */
export async function readDevicesFile(path: string): Promise<DeviceEntry[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (cause) {
    throw new FwError('E_CONFIG', `cannot read device list ${path}: ${(cause as Error).message}`, { cause });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new FwError('E_CONFIG', `device list ${path} is not valid JSON: ${(cause as Error).message}`, { cause });
  }
  const r = fileSchema.safeParse(json);
  if (!r.success) throw new FwError('E_CONFIG', `device list ${path}: ${formatIssues(r.error)}`);
  return r.data;
}

/** Write a device list atomically (temp file + rename), readable by the owner only. */
export async function writeDevicesFile(path: string, entries: readonly DeviceEntry[]): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(entries, null, 2)}\n`, { mode: 0o600 });
  await rename(tmp, path);
}

/** Add or replace one device's entry in the list at `path` (created when missing). */
export async function setDevicePassword(path: string, id: string, password: string, params: ScryptParams = DEFAULT_SCRYPT, groups?: readonly string[]): Promise<'added' | 'replaced'> {
  if (!isValidDeviceId(id)) throw new FwError('E_USAGE', `"${id}" is not a valid device id`);
  let entries: DeviceEntry[] = [];
  try {
    await stat(path);
    entries = await readDevicesFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const at = entries.findIndex((e) => e.id === id);
  // groups given replace the entry's; none given keep what it had; a new password does not
  // re-enable a disabled device (`fwgate device enable` does)
  const keep = groups ?? (at >= 0 ? entries[at]!.groups : undefined);
  const entry: DeviceEntry = {
    id, scrypt: await hashPassword(password, params), ...(keep && keep.length > 0 ? { groups: [...new Set(keep)] } : {}),
    ...(entries[at]?.disabled ? { disabled: true } : {}),
  };
  if (entry.groups) fileSchema.element.parse(entry);
  if (at >= 0) entries[at] = entry;
  else entries.push(entry);
  await writeDevicesFile(path, entries);
  return at >= 0 ? 'replaced' : 'added';
}

export type CredentialCheck = 'ok' | 'bad-password' | 'unknown-device' | 'disabled';

/** Change the list at `path` with `fn` (read, validated, written atomically); a missing file is E_CONFIG. */
export async function updateDevicesFile(path: string, fn: (entries: DeviceEntry[]) => DeviceEntry[]): Promise<void> {
  await writeDevicesFile(path, fn(await readDevicesFile(path)));
}

/**
 * The device list in memory, as the broker's authenticator. Re-read when the file's inode, mtime or size
 * changes (checked at most once a second), so `fwgate device add` takes effect without a restart;
 * a file that became invalid keeps the last good list (and is logged).
 *
 * A successful check is remembered as SHA-256(salt || password) for the entry, so a device that
 * reconnects (after every reboot) costs no second scrypt; a changed entry forgets it. With a
 * LoginCache (gateway/login-cache.ts) that memory survives a restart too.
 */
export class DeviceCredentials {
  #entries = new Map<string, Parsed & { phc: string; verified?: Buffer; disabled?: boolean }>();
  #stamp = '';
  #checkedAt = 0;
  #reloading: Promise<boolean> | undefined;
  readonly #dummy: Promise<Parsed>;

  private constructor(
    readonly path: string,
    private readonly log: (line: string) => void,
    private readonly now: () => number,
    private readonly limiter: ScryptLimiter | undefined,
    private readonly logins: LoginCache | undefined,
  ) {
    this.#dummy = hashPassword(generatePassword()).then((phc) => parsePhc(phc)!);
  }

  /** `limiter`: every scrypt of a check (the dummy one too) runs through it (gateway/auth-guard.ts). */
  static async open(path: string, opts: { log?: (line: string) => void; now?: () => number; limiter?: ScryptLimiter; logins?: LoginCache } = {}): Promise<DeviceCredentials> {
    const c = new DeviceCredentials(path, opts.log ?? (() => undefined), opts.now ?? Date.now, opts.limiter, opts.logins);
    await c.#load(true);
    return c;
  }

  get size(): number {
    return this.#entries.size;
  }

  has(id: string): boolean {
    return this.#entries.has(id);
  }

  /** Write the verified logins still pending (at the broker's close). */
  async close(): Promise<void> {
    await this.logins?.close();
  }

  /** Listed and disabled (as of the last read of the file). */
  disabled(id: string): boolean {
    return this.#entries.get(id)?.disabled === true;
  }

  /** Check a device's password; a failure re-reads a changed file first, so a device just added gets in. */
  async check(id: string, password: string): Promise<CredentialCheck> {
    await this.#maybeReload(false);
    const r = await this.#check(id, password);
    return r !== 'ok' && (await this.#maybeReload(true)) ? this.#check(id, password) : r;
  }

  /**
   * Whether this password is the one the device last logged in with, from memory: no scrypt
   * (a device locked out by someone else's failures on its id still gets in, gateway/auth-guard.ts).
   */
  cached(id: string, password: string): boolean {
    const e = this.#entries.get(id);
    if (!e?.verified) return false;
    return timingSafeEqual(createHash('sha256').update(e.salt).update(password).digest(), e.verified);
  }

  #derive(password: string, p: Parsed): Promise<Buffer> {
    const run = (): Promise<Buffer> => derive(password, p.salt, p.params, p.key.length);
    return this.limiter ? this.limiter.run(run) : run();
  }

  async #check(id: string, password: string): Promise<CredentialCheck> {
    const e = this.#entries.get(id);
    if (!e) {
      // the same scrypt as for a listed device: an unknown id takes as long as a wrong password
      const dummy = await this.#dummy;
      timingSafeEqual(await this.#derive(password, dummy), dummy.key);
      return 'unknown-device';
    }
    if (e.disabled) return 'disabled';
    const quick = createHash('sha256').update(e.salt).update(password).digest();
    if (e.verified && timingSafeEqual(quick, e.verified)) return 'ok';
    const key = await this.#derive(password, e);
    if (!timingSafeEqual(key, e.key)) return 'bad-password';
    if (this.#entries.get(id) === e) {
      e.verified = quick;
      this.logins?.set(id, e.phc, password, quick);
    }
    return 'ok';
  }

  /** Re-read the file if it changed (at most one stat a second unless forced); true when the list changed. */
  #maybeReload(force: boolean): Promise<boolean> {
    if (!force && this.now() - this.#checkedAt < 1000) return Promise.resolve(false);
    this.#checkedAt = this.now();
    this.#reloading ??= this.#load(false).finally(() => {
      this.#reloading = undefined;
    });
    return this.#reloading;
  }

  async #load(first: boolean): Promise<boolean> {
    try {
      const st = await stat(this.path);
      // the inode too: `fwgate device add` replaces the file (rename), and two writes within one
      // coarse clock tick can leave the same mtime and, with hashes of one length, the same size
      const stamp = `${st.ino}:${st.mtimeMs}:${st.size}`;
      if (stamp === this.#stamp) return false;
      const list = await readDevicesFile(this.path);
      const next = new Map<string, Parsed & { phc: string; verified?: Buffer; disabled?: boolean }>();
      for (const { id, scrypt: phc, disabled } of list) {
        const old = this.#entries.get(id);
        const kept = old && old.phc === phc ? old : { ...parsePhc(phc)!, phc, ...withVerified(this.logins?.get(id, phc)) };
        next.set(id, { ...kept, disabled: disabled === true });
      }
      this.#entries = next;
      this.#stamp = stamp;
      if (!first) this.log(`broker: device list ${this.path} reloaded: ${next.size} device(s)`);
      return true;
    } catch (err) {
      if (first) throw err instanceof FwError ? err : new FwError('E_CONFIG', `cannot read device list ${this.path}`, { cause: err });
      this.log(`broker: device list ${this.path} not reloaded, keeping ${this.#entries.size} device(s): ${(err as Error).message}`);
      return false;
    }
  }
}

/** `{ verified }` when a kept login is known for the entry. */
function withVerified(verified: Buffer | undefined): { verified?: Buffer } {
  return verified ? { verified } : {};
}
