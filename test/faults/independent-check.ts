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
 *
 * Multi-component devices (§6.15): every `components.<c>` of state.json with its `<c>-slot-{a,b}.bin`
 * is judged the same way, the set booting together (one trial component reverts them all); a
 * component image's stored manifest is unsigned (§5.5.5), so it must be listed for that component by
 * a stored release record (`<dataDir>/releases/*.json`) whose signature verifies over the §5.5.3
 * signed bytes, rebuilt here with the same minimal CBOR writer.
 */

export interface IndependentVerdict {
  id: string;
  bootable: boolean;
  why?: string;
  /** `app` as booted (a single-image device's one image). */
  slot?: 'a' | 'b';
  version?: string;
  sha256?: string;
  /** The booted image's manifest was found in the store and its signature verified. */
  signed?: boolean;
  /** Every component as booted now, `app` included (a single-image device: `app` only). */
  components?: Record<string, BootedUnit>;
  /** Every component as booted if the pending set failed its self-test (the worst case). */
  worst?: Record<string, BootedUnit>;
}

/** One component as this judge boots it. */
export interface BootedUnit {
  slot: 'a' | 'b';
  version: string;
  sha256: string;
  /** Its manifest, or a release naming it, was found and its signature verified; false: not a stored image (factory). */
  signed: boolean;
  /** It boots a pending image (a trial boot). */
  trial: boolean;
}

interface Slot { state?: unknown; version?: unknown; sha256?: unknown; size?: unknown }
interface Unit { active?: unknown; slots?: { a?: Slot; b?: Slot } }
interface Record_ extends Unit { components?: Record<string, Unit> }
interface StoredManifest { name: string; version: string; hw: string[]; size: number; crc32: number; sha256: string; chunk: number; seq?: number; signature?: { keyId: string; sig: string } }
interface ReleaseComponent_ { component: string; name: string; version: string; size: number; crc32: number; sha256: string; requires?: Record<string, string>; agent?: boolean }
/** A release manifest as stored in `<dataDir>/releases/<digest>.json` (`manifest` of the record, §5.5). */
export interface StoredRelease_ { release: string; version: string; hw: string[]; chunk: number; seq?: number; components: ReleaseComponent_[]; signature?: { keyId: string; sig: string } }

const SIGNING_DOMAIN = 'fwgate-manifest-v1';
const RELEASE_DOMAIN = 'fwgate-release-v1';

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

/**
 * The stored release records of a gateway (`<dataDir>/releases/<digest>.json`), kept only when the
 * file's name is the SHA-256 of the release's §5.5.3 signed bytes (§5.5.4); unreadable ones are left out.
 */
export async function storedReleases(releasesDir: string): Promise<StoredRelease_[]> {
  const out: StoredRelease_[] = [];
  for (const name of await readdir(releasesDir).catch(() => [] as string[])) {
    const m = /^([0-9a-f]{64})\.json$/.exec(name);
    if (!m) continue;
    try {
      const rec = JSON.parse(await readFile(join(releasesDir, name), 'utf8')) as { manifest?: StoredRelease_ };
      const r = rec.manifest;
      if (!r || !Array.isArray(r.components)) continue;
      if (createHash('sha256').update(releaseSignedBytes(r)).digest('hex') === m[1]) out.push(r);
    } catch {
      // not a release record
    }
  }
  return out;
}

/** What a judge needs beyond the device's folder: the stored manifests and releases, and the trusted keys. */
export interface Evidence {
  manifests: Map<string, StoredManifest>;
  releases: readonly StoredRelease_[];
  keys: readonly KeyObject[];
}

/** Judge one device folder. `keys`: the trusted Ed25519 public keys; `releases`: the gateway's stored releases. */
export async function judgeDevice(
  id: string, dir: string, manifests: Map<string, StoredManifest>, keys: readonly KeyObject[], releases: readonly StoredRelease_[] = [],
): Promise<IndependentVerdict> {
  let rec: Record_;
  try {
    rec = JSON.parse(await readFile(join(dir, 'state.json'), 'utf8')) as Record_;
  } catch (err) {
    return { id, bootable: false, why: `state.json unreadable: ${(err as Error).message}` };
  }
  // `app` is the record's top level (slot-a.bin / slot-b.bin); every other component is
  // `components.<c>` of the record with its own `<c>-slot-a.bin` / `<c>-slot-b.bin` (§6.15).
  const units: UnitRef[] = [{ name: 'app', prefix: '', unit: rec }];
  for (const [name, unit] of Object.entries(rec.components ?? {})) units.push({ name, prefix: `${name}-`, unit });
  for (const u of units) {
    const slots = u.unit.slots;
    if (!slots?.a || !slots.b || (u.unit.active !== 'a' && u.unit.active !== 'b')) return { id, bootable: false, why: `state.json lacks slots or active${u.name === 'app' ? '' : ` of ${u.name}`}` };
  }
  const ev: Evidence = { manifests, releases, keys };
  const now = await boot(dir, units, ev, false);
  if (!now.ok) return { id, bootable: false, why: now.why };
  const worst = await boot(dir, units, ev, true);
  if (!worst.ok) return { id, bootable: false, why: `if the pending image failed its self-test: ${worst.why}` };
  const app = now.set.app!;
  return { id, bootable: true, slot: app.slot, version: app.version, sha256: app.sha256, signed: app.signed, components: now.set, worst: worst.set };
}

interface UnitRef { name: string; prefix: string; unit: Unit }
type SetBoot = { ok: true; set: Record<string, BootedUnit> } | { ok: false; why: string };

/**
 * §6.9.2 over a set (§6.15.3): any component in trial -> every trial component reverts (and no
 * pending one boots); else the pending components boot once, together, and if any fails its check
 * or self-test all of them revert; every other component boots its active confirmed slot, else the other.
 */
async function boot(dir: string, units: readonly UnitRef[], ev: Evidence, selfTestFails: boolean): Promise<SetBoot> {
  const other = (s: 'a' | 'b'): 'a' | 'b' => (s === 'a' ? 'b' : 'a');
  const state = new Map(units.map((u) => [u.name, { a: String(u.unit.slots!.a!.state), b: String(u.unit.slots!.b!.state), active: u.unit.active as 'a' | 'b' }]));
  let reverted = false;
  for (const st of state.values()) {
    for (const s of ['a', 'b'] as const) {
      if (st[s] === 'trial') {
        st[s] = 'bad';
        st.active = other(s);
        reverted = true;
      }
    }
  }
  const set: Record<string, BootedUnit> = {};
  const reasons: string[] = [];
  const pending = units.flatMap((u) => {
    const s = (['a', 'b'] as const).find((x) => state.get(u.name)![x] === 'pending');
    return s === undefined ? [] : [{ u, s }];
  });
  if (pending.length > 0 && !reverted) {
    let failed: string | undefined;
    const booted: Record<string, BootedUnit> = {};
    for (const { u, s } of pending) {
      const check = await checkSlot(dir, u, s, ev);
      if (!check.ok) failed = `pending slot ${s}${of(u)}: ${check.why}`;
      else if (selfTestFails) failed = `pending slot ${s}${of(u)}: self-test failed`;
      else booted[u.name] = { slot: s, version: check.version, sha256: check.sha256, signed: check.signed, trial: true };
      if (failed) break;
    }
    if (failed === undefined) Object.assign(set, booted);
    else {
      reasons.push(failed);
      for (const { u, s } of pending) {
        const st = state.get(u.name)!;
        st[s] = 'bad';
        st.active = other(s);
      }
    }
  }
  for (const u of units) {
    if (set[u.name]) continue;
    const st = state.get(u.name)!;
    let ok = false;
    for (const s of [st.active, other(st.active)]) {
      if (st[s] !== 'confirmed') continue;
      const check = await checkSlot(dir, u, s, ev);
      if (check.ok) {
        set[u.name] = { slot: s, version: check.version, sha256: check.sha256, signed: check.signed, trial: false };
        ok = true;
        break;
      }
      reasons.push(`confirmed slot ${s}${of(u)}: ${check.why}`);
    }
    if (!ok) return { ok: false, why: `no slot boots${of(u)} (${reasons.join('; ') || 'no confirmed slot'})` };
  }
  return { ok: true, set };
}

const of = (u: UnitRef): string => (u.name === 'app' ? '' : ` of ${u.name}`);

type SlotCheck = { ok: true; version: string; sha256: string; signed: boolean } | { ok: false; why: string };

async function checkSlot(dir: string, u: UnitRef, slot: 'a' | 'b', ev: Evidence): Promise<SlotCheck> {
  const r = u.unit.slots![slot]!;
  const file = `${u.prefix}slot-${slot}.bin`;
  if (typeof r.sha256 !== 'string' || typeof r.size !== 'number' || typeof r.version !== 'string') return { ok: false, why: 'slot record incomplete' };
  let bytes: Buffer;
  try {
    bytes = await readFile(join(dir, file));
  } catch (err) {
    return { ok: false, why: `${file} unreadable: ${(err as Error).message}` };
  }
  if (bytes.length !== r.size) return { ok: false, why: `${file} holds ${bytes.length} bytes, its record says ${r.size}` };
  const sha = createHash('sha256').update(bytes).digest('hex');
  if (sha !== r.sha256) return { ok: false, why: `${file} has SHA-256 ${sha.slice(0, 12)}, its record says ${r.sha256.slice(0, 12)}` };
  const m = ev.manifests.get(sha);
  if (!m) return { ok: true, version: r.version, sha256: sha, signed: false }; // not a stored image (a factory image)
  if (m.size !== bytes.length) return { ok: false, why: `${file}: ${bytes.length} bytes, the manifest says ${m.size}` };
  if (m.version !== r.version) return { ok: false, why: `slot ${slot}${of(u)} records version ${r.version}, its manifest says ${m.version}` };
  if (m.signature) {
    const key = ev.keys.find((k) => keyId(k) === m.signature!.keyId);
    if (!key) return { ok: false, why: `slot ${slot}${of(u)}'s manifest is signed by an untrusted key ${m.signature.keyId}` };
    if (!verify(null, signedBytes(m), key, Buffer.from(m.signature.sig, 'hex'))) return { ok: false, why: `slot ${slot}${of(u)}'s manifest signature does not verify` };
    return { ok: true, version: r.version, sha256: sha, signed: true };
  }
  // §5.5.5: a component image's own manifest is unsigned; a signed release listing it for this component vouches for it
  const why: string[] = [];
  for (const rel of ev.releases) {
    const c = rel.components.find((x) => x.sha256 === sha && x.component === u.name);
    if (!c) continue;
    if (c.size !== bytes.length || c.version !== r.version) {
      why.push(`release ${rel.release} ${rel.version} lists it as ${c.version}, ${c.size} bytes`);
      continue;
    }
    const key = rel.signature ? ev.keys.find((k) => keyId(k) === rel.signature!.keyId) : undefined;
    if (!rel.signature || !key) {
      why.push(`release ${rel.release} ${rel.version} is ${rel.signature ? `signed by an untrusted key ${rel.signature.keyId}` : 'unsigned'}`);
      continue;
    }
    if (!verify(null, releaseSignedBytes(rel), key, Buffer.from(rel.signature.sig, 'hex'))) {
      why.push(`release ${rel.release} ${rel.version}: signature does not verify`);
      continue;
    }
    return { ok: true, version: r.version, sha256: sha, signed: true };
  }
  return { ok: false, why: `the manifest of slot ${slot}${of(u)}'s image is unsigned and no stored signed release vouches for it${why.length ? ` (${why.join('; ')})` : ''}` };
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

/**
 * §5.5.3: CBOR of ["fwgate-release-v1", release, version, hw, chunk, seq, components], each component
 * [component, name, version, size, crc32, sha256, requires, agent], `requires` as [[component, range], ...]
 * sorted by component name, `agent` a boolean.
 */
export function releaseSignedBytes(r: StoredRelease_): Buffer {
  return cbor([
    RELEASE_DOMAIN, r.release, r.version, r.hw, r.chunk, r.seq ?? 0,
    r.components.map((c) => [
      c.component, c.name, c.version, c.size, c.crc32, c.sha256,
      Object.entries(c.requires ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
      c.agent === true,
    ]),
  ]);
}

/** Definite-length, shortest-form CBOR of unsigned integers, booleans, text and arrays (RFC 8949 §3, §4.2.1). */
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
  if (v === true || v === false) return Buffer.from([v ? 0xf5 : 0xf4]);
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffff_ffff) return head(0, v);
  if (typeof v === 'string') {
    const t = Buffer.from(v, 'utf8');
    return Buffer.concat([head(3, t.length), t]);
  }
  if (Array.isArray(v)) return Buffer.concat([head(4, v.length), ...v.map(cbor)]);
  throw new Error(`cannot encode ${JSON.stringify(v)}`);
}
