import { createHash, createPublicKey, verify, type KeyObject } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * A second judge of the fault tests' outcome (issue 22, item 4), written from docs/protocol.md
 * alone: it shares no code with device-sim/ (nor with protocol/ or gateway/), so a bug there
 * cannot make both judges agree on a wrong verdict. From a device's own files — `state.json`
 * (the slot-state record) and `slot-a.bin` / `slot-b.bin` — it decides which slot the §6.9.2 boot
 * rules boot, then checks that slot's bytes: size and SHA-256 against the slot record, and, when
 * the image is one the gateway stored (`images/<sha>.json` of the store), size and SHA-256 against
 * that manifest and the manifest's Ed25519 signature (§5.4.1 signed bytes, rebuilt here with a
 * minimal CBOR writer) against the trusted keys. It also boots the worst case: a pending image
 * that fails its self-test must leave a slot that passes the same checks.
 */

export interface IndependentVerdict {
  id: string;
  bootable: boolean;
  why?: string;
  slot?: 'a' | 'b';
  version?: string;
  sha256?: string;
  /** The booted image's manifest was found in the store and its signature verified. */
  signed?: boolean;
}

interface Slot { state?: unknown; version?: unknown; sha256?: unknown; size?: unknown }
interface Record_ { active?: unknown; slots?: { a?: Slot; b?: Slot } }
interface StoredManifest { name: string; version: string; hw: string[]; size: number; crc32: number; sha256: string; chunk: number; seq?: number; signature?: { keyId: string; sig: string } }

const SIGNING_DOMAIN = 'fwgate-manifest-v1';

/** The stored manifests of a store folder, by SHA-256 (unreadable ones are left out: the store check reports them). */
export async function storedManifests(storeDir: string): Promise<Map<string, StoredManifest>> {
  const out = new Map<string, StoredManifest>();
  const dir = join(storeDir, 'images');
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const m = /^([0-9a-f]{64})\.json$/.exec(name);
    if (!m) continue;
    try {
      const man = JSON.parse(await readFile(join(dir, name), 'utf8')) as StoredManifest;
      if (man.sha256 === m[1]) out.set(man.sha256, man);
    } catch {
      // not a manifest
    }
  }
  return out;
}

/** Judge one device folder. `keys`: the trusted Ed25519 public keys. */
export async function judgeDevice(id: string, dir: string, manifests: Map<string, StoredManifest>, keys: readonly KeyObject[]): Promise<IndependentVerdict> {
  let rec: Record_;
  try {
    rec = JSON.parse(await readFile(join(dir, 'state.json'), 'utf8')) as Record_;
  } catch (err) {
    return { id, bootable: false, why: `state.json unreadable: ${(err as Error).message}` };
  }
  const slots = rec.slots;
  if (!slots?.a || !slots.b || (rec.active !== 'a' && rec.active !== 'b')) return { id, bootable: false, why: 'state.json lacks slots or active' };
  const now = await boot(dir, rec, manifests, keys, false);
  if (!now.bootable) return { id, ...now };
  const worst = await boot(dir, rec, manifests, keys, true);
  if (!worst.bootable) return { id, bootable: false, why: `if the pending image failed its self-test: ${worst.why ?? '?'}` };
  return { id, ...now };
}

/** §6.9.2: trial -> revert; pending -> one trial boot (unless it fails); else the active confirmed slot, else the other. */
async function boot(dir: string, rec: Record_, manifests: Map<string, StoredManifest>, keys: readonly KeyObject[], selfTestFails: boolean): Promise<Omit<IndependentVerdict, 'id'>> {
  const state = { a: String(rec.slots!.a!.state), b: String(rec.slots!.b!.state) };
  let active = rec.active as 'a' | 'b';
  const other = (s: 'a' | 'b'): 'a' | 'b' => (s === 'a' ? 'b' : 'a');
  let reverted = false;
  for (const s of ['a', 'b'] as const) {
    if (state[s] === 'trial') {
      state[s] = 'bad';
      active = other(s);
      reverted = true;
    }
  }
  const pending = (['a', 'b'] as const).find((s) => state[s] === 'pending');
  const reasons: string[] = [];
  if (pending && !reverted) {
    const check = await checkSlot(dir, pending, rec.slots![pending]!, manifests, keys);
    if (check.ok && !selfTestFails) return { bootable: true, slot: pending, version: check.version, sha256: check.sha256, signed: check.signed };
    reasons.push(`pending slot ${pending}: ${check.ok ? 'self-test failed' : check.why}`);
    state[pending] = 'bad';
    active = other(pending);
  }
  for (const s of [active, other(active)]) {
    if (state[s] !== 'confirmed') continue;
    const check = await checkSlot(dir, s, rec.slots![s]!, manifests, keys);
    if (check.ok) return { bootable: true, slot: s, version: check.version, sha256: check.sha256, signed: check.signed };
    reasons.push(`confirmed slot ${s}: ${check.why}`);
  }
  return { bootable: false, why: `no slot boots (${reasons.join('; ') || 'no confirmed slot'})` };
}

type SlotCheck = { ok: true; version: string; sha256: string; signed: boolean } | { ok: false; why: string };

async function checkSlot(dir: string, slot: 'a' | 'b', r: Slot, manifests: Map<string, StoredManifest>, keys: readonly KeyObject[]): Promise<SlotCheck> {
  if (typeof r.sha256 !== 'string' || typeof r.size !== 'number' || typeof r.version !== 'string') return { ok: false, why: 'slot record incomplete' };
  let bytes: Buffer;
  try {
    bytes = await readFile(join(dir, `slot-${slot}.bin`));
  } catch (err) {
    return { ok: false, why: `slot-${slot}.bin unreadable: ${(err as Error).message}` };
  }
  if (bytes.length !== r.size) return { ok: false, why: `slot-${slot}.bin holds ${bytes.length} bytes, its record says ${r.size}` };
  const sha = createHash('sha256').update(bytes).digest('hex');
  if (sha !== r.sha256) return { ok: false, why: `slot-${slot}.bin has SHA-256 ${sha.slice(0, 12)}, its record says ${r.sha256.slice(0, 12)}` };
  const m = manifests.get(sha);
  if (!m) return { ok: true, version: r.version, sha256: sha, signed: false }; // not a stored image (a factory image)
  if (m.size !== bytes.length) return { ok: false, why: `slot-${slot}.bin: ${bytes.length} bytes, the manifest says ${m.size}` };
  if (m.version !== r.version) return { ok: false, why: `slot ${slot} records version ${r.version}, its manifest says ${m.version}` };
  if (!m.signature) return { ok: false, why: `the manifest of slot ${slot}'s image is unsigned` };
  const key = keys.find((k) => keyId(k) === m.signature!.keyId);
  if (!key) return { ok: false, why: `slot ${slot}'s manifest is signed by an untrusted key ${m.signature.keyId}` };
  if (!verify(null, signedBytes(m), key, Buffer.from(m.signature.sig, 'hex'))) return { ok: false, why: `slot ${slot}'s manifest signature does not verify` };
  return { ok: true, version: r.version, sha256: sha, signed: true };
}

/** §5.4.2: first 16 hex digits of the SHA-256 of the raw 32-byte public key (the SPKI DER's last 32 bytes). */
function keyId(k: KeyObject): string {
  const der = (k.type === 'private' ? createPublicKey(k) : k).export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(der.subarray(der.length - 32)).digest('hex').slice(0, 16);
}

/** §5.4.1: CBOR of ["fwgate-manifest-v1", name, version, hw, size, crc32, sha256, chunk, seq]. */
export function signedBytes(m: StoredManifest): Buffer {
  return cbor([SIGNING_DOMAIN, m.name, m.version, m.hw, m.size, m.crc32, m.sha256, m.chunk, m.seq ?? 0]);
}

/** Definite-length, shortest-form CBOR of unsigned integers, text and arrays (RFC 8949 §3, §4.2.1). */
function cbor(v: unknown): Buffer {
  const head = (major: number, n: number): Buffer => {
    if (n < 24) return Buffer.from([(major << 5) | n]);
    if (n < 0x100) return Buffer.from([(major << 5) | 24, n]);
    if (n < 0x10000) return Buffer.from([(major << 5) | 25, n >> 8, n & 0xff]);
    const b = Buffer.alloc(5);
    b[0] = (major << 5) | 26;
    b.writeUInt32BE(n, 1);
    return b;
  };
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffff_ffff) return head(0, v);
  if (typeof v === 'string') {
    const t = Buffer.from(v, 'utf8');
    return Buffer.concat([head(3, t.length), t]);
  }
  if (Array.isArray(v)) return Buffer.concat([head(4, v.length), ...v.map(cbor)]);
  throw new Error(`cannot encode ${JSON.stringify(v)}`);
}
