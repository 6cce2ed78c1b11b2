import { createHash, type KeyObject } from 'node:crypto';
import { access, cp, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DeviceFiles, runBootloader } from '../../device-sim/bootloader.ts';
import { DEVICE_DEFAULTS } from '../../device-sim/options.ts';
import { crc32 } from '../../protocol/crc.ts';
import { describeError } from '../../protocol/errors.ts';
import { checkDigest, parseManifest } from '../../protocol/manifest.ts';
import type { SlotName } from '../../protocol/ota.ts';
import type { ResultMessage } from '../../protocol/uplink.ts';
import { testKey } from '../helpers/keys.ts';
import { judgeDevice, storedManifests, storedReleases, type IndependentVerdict } from './independent-check.ts';

/**
 * End-of-run checks of the fault tests (docs/reliability.md "Invariants"). They read the
 * devices' and the store's FILES, not what the gateway believes:
 *
 * - bootable: the simulator's own bootloader (`runBootloader`), run on a copy of the device's
 *   folder, boots a slot whose bytes match its record (size and SHA-256). It is run twice: as
 *   the device would boot now, and as if the self-test of any pending image failed (the fallback
 *   must verify too).
 * - stored images: every `images/<sha>.bin` re-verified from disk against its manifest
 *   (size, CRC-32, SHA-256), and every image the test stored still there.
 * - accounted for: every targeted device has a final result, and its files agree with it — on
 *   the new image, confirmed, when `updated`; on its version from before the campaign, with a
 *   code and a non-empty reason, otherwise.
 */

export interface BootCheck {
  id: string;
  bootable: boolean;
  /** Why not bootable. */
  why?: string;
  /** What the bootloader would boot now (when bootable). */
  version?: string;
  sha256?: string;
  slot?: SlotName;
  /** It would boot a trial image (not yet confirmed). */
  trial?: boolean;
  /** Every component as it would boot now, `app` first (a single-image device: `app` only). */
  components?: { name: string; version: string; sha256: string; trial: boolean }[];
}

/** Boot a copy of one device's folder with the simulator's bootloader; never touches the folder itself. */
export async function bootFromFiles(id: string, deviceDir: string): Promise<BootCheck> {
  try {
    await access(join(deviceDir, 'state.json'));
  } catch {
    // runBootloader would take a blank folder for a new device and write a factory image: a
    // device that lost its slot-state record is not bootable as itself.
    return { id, bootable: false, why: 'no state.json' };
  }
  const scratch = await mkdtemp(join(tmpdir(), 'fwgate-bootcheck-'));
  try {
    const now = await bootCopy(deviceDir, join(scratch, 'now'), false);
    if (!now.ok) return { id, bootable: false, why: now.why };
    const worst = await bootCopy(deviceDir, join(scratch, 'worst'), true);
    if (!worst.ok) return { id, bootable: false, why: `if the pending image failed its self-test: ${worst.why}` };
    return { id, bootable: true, version: now.version, sha256: now.sha256, slot: now.slot, trial: now.trial, components: now.components };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

type BootCopy = { ok: true; version: string; sha256: string; slot: SlotName; trial: boolean; components: NonNullable<BootCheck['components']> } | { ok: false; why: string };

async function bootCopy(from: string, to: string, failSelfTest: boolean): Promise<BootCopy> {
  await cp(from, to, { recursive: true });
  const files = new DeviceFiles(to, DEVICE_DEFAULTS.slotCapacity);
  try {
    const rec = await files.loadState();
    if (rec === null) return { ok: false, why: 'no state.json' };
    const out = await runBootloader(files, {
      hw: rec.hw, factoryVersion: '0.0.0', imageName: 'unused', factoryImageSize: 1024, failSelfTest,
    });
    // Independent of the bootloader's own check: every booted slot's bytes match what it booted.
    for (const c of out.components) {
      const unit = c.name === 'app' ? out.record : out.record.components?.[c.name];
      const of = c.name === 'app' ? '' : ` of ${c.name}`;
      const bytes = await readFile(join(to, `${c.name === 'app' ? '' : `${c.name}-`}slot-${c.slot}.bin`));
      const size = unit?.slots[c.slot].size;
      if (bytes.length !== size) return { ok: false, why: `booted slot ${c.slot}${of} holds ${bytes.length} bytes, record says ${size}` };
      if (createHash('sha256').update(bytes).digest('hex') !== c.sha256) return { ok: false, why: `booted slot ${c.slot}${of} fails its SHA-256` };
    }
    const components = out.components.map((c) => ({ name: c.name, version: c.version, sha256: c.sha256, trial: c.trial }));
    return { ok: true, version: out.version, sha256: out.sha256, slot: out.slot, trial: out.trial, components };
  } catch (err) {
    return { ok: false, why: describeError(err) };
  }
}

export interface StoreCheck {
  /** Image files re-verified. */
  checked: number;
  /** Stored images that fail their digest check (or whose manifest is unreadable). */
  corrupted: { file: string; why: string }[];
  /** Images the test stored that are no longer in images/. */
  missing: string[];
}

/** Re-verify every stored image from disk (gateway/store.ts layout: images/<sha>.bin + .json). */
export async function checkStore(storeDir: string, expected: Iterable<string> = []): Promise<StoreCheck> {
  const dir = join(storeDir, 'images');
  const names = await readdir(dir).catch(() => [] as string[]);
  const corrupted: StoreCheck['corrupted'] = [];
  let checked = 0;
  const present = new Set<string>();
  for (const name of names) {
    const m = /^([0-9a-f]{64})\.bin$/.exec(name);
    if (!m) continue;
    const sha = m[1]!;
    present.add(sha);
    checked++;
    try {
      const manifest = parseManifest(JSON.parse(await readFile(join(dir, `${sha}.json`), 'utf8')) as unknown);
      if (manifest.sha256 !== sha) throw new Error(`manifest names ${manifest.sha256}`);
      const bytes = await readFile(join(dir, name));
      checkDigest(manifest, { size: bytes.length, crc32: crc32(bytes), sha256: createHash('sha256').update(bytes).digest('hex') });
    } catch (err) {
      corrupted.push({ file: `images/${name}`, why: describeError(err) });
    }
  }
  const missing = [...expected].filter((sha) => !present.has(sha));
  return { checked, corrupted, missing };
}

/** One targeted device of one campaign: where it started, and what the gateway reported. */
export interface Target {
  id: string;
  /** Its running version before the campaign (from the device, not the gateway). */
  before: string;
  result: ResultMessage | undefined;
  /** Final results beyond the first: a device gets exactly one. */
  extraResults?: number;
}

export interface Unaccounted {
  id: string;
  why: string;
}

/**
 * Does the device's files agree with its result? `boot` is what it would boot now.
 * Returns null when accounted for, else why not.
 */
export function accountFor(t: Target, image: { version: string; sha256: string }, boot: BootCheck): string | null {
  const r = t.result;
  if (r === undefined) return 'no final result';
  if (t.extraResults) return `${t.extraResults + 1} final results`;
  if (!boot.bootable) return `not bootable (${boot.why ?? '?'})`;
  if (r.outcome === 'updated') {
    if (boot.version !== image.version || boot.sha256 !== image.sha256) return `reported updated, but its files boot ${boot.version}`;
    if (boot.trial) return `reported updated, but ${image.version} is still in trial (not confirmed)`;
    return null;
  }
  if (!r.code || !r.reason?.trim()) return `outcome ${r.outcome} without a code and reason`;
  if (boot.version !== t.before) {
    return `reported ${r.outcome} (${r.code}: ${r.reason}), but its files boot ${boot.version}, not its previous ${t.before}`;
  }
  return null;
}

export interface InvariantReport {
  devices: Map<string, BootCheck>;
  bricked: BootCheck[];
  store: StoreCheck;
  unaccounted: Unaccounted[];
  /** Corrupted or missing stored images plus devices not accounted for. */
  lost: number;
  /** The second judge (independent-check.ts, no code shared with device-sim/), per device. */
  independent: Map<string, IndependentVerdict>;
  /** Devices both judges find bootable, but into different images. */
  disagreements: string[];
}

export interface InvariantInput {
  /** `<dataDir>` of the simulated fleet: one folder per device id. */
  devicesDir: string;
  /** Every device of the fleet (each must be bootable). */
  ids: readonly string[];
  storeDir: string;
  /** Images the test stored (each must still be there and verify). */
  storedImages?: Iterable<string>;
  /** The last campaign: its image and its targets (each must be accounted for). */
  campaign?: { image: { version: string; sha256: string }; targets: readonly Target[] };
  /** Keys the stored manifests must be signed by (default: the test vendor key the rig trusts). */
  trustedKeys?: readonly KeyObject[];
  /** The gateway's release records (`<dataDir>/releases`), vouching for component images (default: `<storeDir>/../releases`). */
  releasesDir?: string;
}

export async function checkInvariants(input: InvariantInput): Promise<InvariantReport> {
  const devices = new Map<string, BootCheck>();
  for (const id of input.ids) devices.set(id, await bootFromFiles(id, join(input.devicesDir, id)));
  const bricked = [...devices.values()].filter((d) => !d.bootable);
  const manifests = await storedManifests(input.storeDir);
  const releases = await storedReleases(input.releasesDir ?? join(input.storeDir, '..', 'releases'));
  const independent = new Map<string, IndependentVerdict>();
  const disagreements: string[] = [];
  for (const id of input.ids) {
    const v = await judgeDevice(id, join(input.devicesDir, id), manifests, input.trustedKeys ?? [testKey().publicKey], releases);
    independent.set(id, v);
    const own = devices.get(id)!;
    if (!v.bootable && own.bootable) bricked.push({ id, bootable: false, why: `independent check: ${v.why ?? '?'}` });
    else if (v.bootable && own.bootable && (v.sha256 !== own.sha256 || v.slot !== own.slot)) {
      disagreements.push(`${id}: the simulator's bootloader boots slot ${own.slot ?? '?'} (${own.version ?? '?'}), the independent check slot ${v.slot ?? '?'} (${v.version ?? '?'})`);
    }
  }
  const store = await checkStore(input.storeDir, input.storedImages);
  const unaccounted: Unaccounted[] = [];
  for (const t of input.campaign?.targets ?? []) {
    const boot = devices.get(t.id) ?? await bootFromFiles(t.id, join(input.devicesDir, t.id));
    if (!boot.bootable) continue; // counted as bricked, not twice
    const why = accountFor(t, input.campaign!.image, boot);
    if (why !== null) unaccounted.push({ id: t.id, why });
  }
  return { devices, bricked, store, unaccounted, lost: store.corrupted.length + store.missing.length + unaccounted.length, independent, disagreements };
}

/** One line per violation, for assertion messages and the soak's report. */
export function describeViolations(r: InvariantReport): string[] {
  return [
    ...r.bricked.map((d) => `bricked ${d.id}: ${d.why ?? '?'}`),
    ...r.store.corrupted.map((c) => `corrupted image ${c.file}: ${c.why}`),
    ...r.store.missing.map((sha) => `stored image ${sha.slice(0, 12)} is gone`),
    ...r.unaccounted.map((u) => `unaccounted ${u.id}: ${u.why}`),
    ...r.disagreements.map((d) => `judges disagree on ${d}`),
  ];
}
