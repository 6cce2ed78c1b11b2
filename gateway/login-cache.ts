import { createHash } from 'node:crypto';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { z } from 'zod';
import { describeError } from '../protocol/errors.ts';

/**
 * Verified device logins kept across gateway restarts (docs/security.md "Reconnect storms"): for a
 * device whose password was verified with scrypt, the fast verifier the broker already keeps in
 * memory — SHA-256(salt || password), salt from the device's list entry — is written to
 * `<dataDir>/verified-logins.json` (mode 0600), tied to the SHA-256 of the list entry's hash so that
 * a changed password forgets it. After a restart the fleet then reconnects without 5,000 scrypt runs.
 *
 * Only passwords of at least MIN_PERSISTED_PASSWORD characters are kept (fwgate's own are 32
 * characters of 24 random bytes): a fast verifier of such a password resists an offline search as
 * well as scrypt would, which a short, chosen password would not. The file is a cache: a missing,
 * unreadable or invalid one is reported and ignored (the logins are verified with scrypt again),
 * never fatal; losing a write costs one scrypt per device.
 */

/** Shortest password whose verifier is kept on disk (24 random bytes in base64url are 32). */
export const MIN_PERSISTED_PASSWORD = 22;

const fileSchema = z.strictObject({
  format: z.literal(1),
  logins: z.record(z.string().min(1).max(64), z.strictObject({
    /** SHA-256 of the device list entry's PHC string, hex. */
    entry: z.string().regex(/^[0-9a-f]{64}$/),
    /** SHA-256(salt || password), hex. */
    verified: z.string().regex(/^[0-9a-f]{64}$/),
  })),
});

const fingerprint = (phc: string): string => createHash('sha256').update(phc).digest('hex');

export class LoginCache {
  #logins = new Map<string, { entry: string; verified: string }>();
  #timer: NodeJS.Timeout | undefined;
  #saving: Promise<void> = Promise.resolve();

  private constructor(readonly path: string, private readonly log: (line: string) => void, private readonly saveDelayMs: number) {}

  /** Read the file (missing: empty; unreadable or invalid: reported, empty). */
  static async open(path: string, opts: { log?: (line: string) => void; saveDelayMs?: number } = {}): Promise<LoginCache> {
    const c = new LoginCache(path, opts.log ?? (() => undefined), opts.saveDelayMs ?? 1000);
    let text: string | undefined;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') c.log(`broker: verified logins ${path} not read (${describeError(err)}); every device's password is checked with scrypt again`);
    }
    if (text !== undefined) {
      let parsed: z.infer<typeof fileSchema> | undefined;
      try {
        const r = fileSchema.safeParse(JSON.parse(text));
        if (r.success) parsed = r.data;
      } catch {
        parsed = undefined;
      }
      if (parsed) c.#logins = new Map(Object.entries(parsed.logins));
      else c.log(`broker: verified logins ${path} is not a valid file; ignored (rewritten at the next login), passwords are checked with scrypt again`);
    }
    return c;
  }

  get size(): number {
    return this.#logins.size;
  }

  /** The kept verifier of this device for this list entry, if any. */
  get(id: string, phc: string): Buffer | undefined {
    const l = this.#logins.get(id);
    return l && l.entry === fingerprint(phc) ? Buffer.from(l.verified, 'hex') : undefined;
  }

  /** Keep a verified login (a short password is not kept, and forgets an older one); written shortly after. */
  set(id: string, phc: string, password: string, verified: Buffer): void {
    const had = this.#logins.delete(id);
    if (password.length >= MIN_PERSISTED_PASSWORD) this.#logins.set(id, { entry: fingerprint(phc), verified: verified.toString('hex') });
    else if (!had) return;
    this.#schedule();
  }

  #schedule(): void {
    if (this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.flush();
    }, this.saveDelayMs);
    this.#timer.unref();
  }

  /** Write now what is kept (temp file 0600, rename); errors are reported, not thrown. */
  flush(): Promise<void> {
    if (this.#timer) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    const text = `${JSON.stringify({ format: 1, logins: Object.fromEntries(this.#logins) })}\n`;
    this.#saving = this.#saving.then(async () => {
      const tmp = `${this.path}.tmp-${process.pid}`;
      try {
        await writeFile(tmp, text, { mode: 0o600 });
        await rename(tmp, this.path);
      } catch (err) {
        this.log(`broker: verified logins not written to ${this.path}: ${describeError(err)}`);
      }
    });
    return this.#saving;
  }

  /** Stop: write what is pending. */
  async close(): Promise<void> {
    if (this.#timer) await this.flush();
    await this.#saving;
  }
}
