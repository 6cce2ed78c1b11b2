import { createHash, createPublicKey, sign, type KeyObject } from 'node:crypto';
import semver from 'semver';
import { z } from 'zod';
import { encodeCbor } from './cbor.ts';
import { MAX_CHUNK_SIZE, MAX_COMPONENTS, MAX_HW_MODELS, MAX_IMAGE_SIZE, MAX_NAME_LENGTH, MIN_CHUNK_SIZE } from './limits.ts';
import { keyIdHex, signatureHex, type Manifest } from './manifest.ts';
import { parseWith, sha256Hex, u32 } from './schema.ts';
import { keyIdOf, type KeyRing, type SignatureCheck } from './signature.ts';
import { isValidVersion } from './version.ts';

/**
 * Release manifests (docs/protocol.md §5.5): one signed document for a release of several
 * components (an application core, a radio core, the update agent, ...), each with its own image,
 * version and `requires` constraints on the other components. Pure: no I/O.
 */

/** Domain-separation string of a release signature (§5.5.3), distinct from a manifest's. */
export const RELEASE_SIGNATURE_DOMAIN = 'fwgate-release-v1';

/** The component a single-image device (and an offer without `component`) stands for (§6.3.3). */
export const DEFAULT_COMPONENT = 'app';

const componentNameRe = /^[a-z][a-z0-9-]{0,31}$/;
/** A component name: lowercase letters, digits and "-", starting with a letter, at most 32. */
export const componentName = z.string().regex(componentNameRe, 'must be 1-32 lowercase letters, digits or "-", starting with a letter');
const imageName = z.string().min(1).max(MAX_NAME_LENGTH).regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'letters, digits, ".", "_" or "-"');
const version = z.string().max(MAX_NAME_LENGTH).refine(isValidVersion, 'must be a semantic version such as 1.2.3');
/** A semver range as node-semver reads it (`>=1.5.0`, `^1.5.0`, `>=1.5.0 <2.0.0`, `1.5.x || 2.x`). */
export const versionRange = z.string().min(1).max(MAX_NAME_LENGTH)
  .refine((r) => semver.validRange(r, { loose: false }) !== null, 'must be a semver range such as ">=1.5.0" or "^1.5.0"');

export const releaseComponentSchema = z.strictObject({
  /** Which part of the device this image is for (`app`, `net`, `agent`, ...). */
  component: componentName,
  /** The image's own name (as in a single manifest, §5.1). */
  name: imageName,
  version,
  size: u32.min(1).max(MAX_IMAGE_SIZE),
  crc32: u32,
  sha256: sha256Hex,
  /** Constraints on the device's other components once this one runs: component → semver range. */
  requires: z.record(componentName, versionRange).optional()
    .refine((r) => r === undefined || Object.keys(r).length <= MAX_COMPONENTS, `at most ${MAX_COMPONENTS} constraints`),
  /** The device's update agent: installed, booted and confirmed in its own step before the rest (§6.15.4). */
  agent: z.literal(true).optional(),
});
export type ReleaseComponent = z.infer<typeof releaseComponentSchema>;

export const releaseManifestSchema = z.strictObject({
  /** Release name, e.g. "sensor-release". */
  release: imageName,
  version,
  hw: z.array(imageName).min(1).max(MAX_HW_MODELS),
  /** Chunk size for every component's transfer. */
  chunk: z.number().int().min(MIN_CHUNK_SIZE).max(MAX_CHUNK_SIZE),
  seq: u32.optional(),
  components: z.array(releaseComponentSchema).min(1).max(MAX_COMPONENTS),
  signature: z.strictObject({ keyId: keyIdHex, sig: signatureHex }).optional(),
}).superRefine((r, ctx) => {
  const names = r.components.map((c) => c.component);
  names.forEach((n, i) => {
    if (names.indexOf(n) !== i) ctx.addIssue({ code: 'custom', path: ['components', i, 'component'], message: `component "${n}" is listed twice` });
  });
  if (r.components.filter((c) => c.agent).length > 1) ctx.addIssue({ code: 'custom', path: ['components'], message: 'at most one component may be the agent' });
  r.components.forEach((c, i) => {
    for (const dep of Object.keys(c.requires ?? {})) {
      if (dep === c.component) ctx.addIssue({ code: 'custom', path: ['components', i, 'requires', dep], message: 'a component cannot require itself' });
    }
  });
});
export type ReleaseManifest = z.infer<typeof releaseManifestSchema>;

/** Validate an untrusted release manifest (a file, the wire, a store record). Throws E_MANIFEST_INVALID naming the field. */
export function parseReleaseManifest(value: unknown): ReleaseManifest {
  return parseWith(releaseManifestSchema, value, 'E_MANIFEST_INVALID', 'release manifest');
}

/**
 * The bytes a release signature covers (§5.5.3): the CBOR encoding (§1.4) of
 * ["fwgate-release-v1", release, version, hw, chunk, seq, components], each component
 * [component, name, version, size, crc32, sha256, requires, agent] with `requires` as
 * [[component, range], ...] sorted by component name and `agent` a boolean.
 */
export function releaseSignedBytes(r: ReleaseManifest): Uint8Array {
  return encodeCbor([
    RELEASE_SIGNATURE_DOMAIN, r.release, r.version, [...r.hw], r.chunk, r.seq ?? 0,
    r.components.map((c) => [
      c.component, c.name, c.version, c.size, c.crc32, c.sha256,
      Object.entries(c.requires ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
      c.agent === true,
    ]),
  ]);
}

/** A release's identity (§5.5.4): SHA-256 over its signed bytes, lowercase hex. */
export function releaseDigest(r: ReleaseManifest): string {
  return createHash('sha256').update(releaseSignedBytes(r)).digest('hex');
}

/** The release with `signature` set (any earlier one replaced). */
export function signRelease(r: ReleaseManifest, privateKey: KeyObject): ReleaseManifest {
  const { signature: _old, ...rest } = r;
  const sig = sign(null, releaseSignedBytes(rest), privateKey).toString('hex');
  return { ...rest, signature: { keyId: keyIdOf(createPublicKey(privateKey)), sig } };
}

/** A release's signature against a key ring (§5.5.3; the failures of §5.4.3). */
export function checkReleaseSignature(ring: KeyRing, r: ReleaseManifest): SignatureCheck {
  return ring.checkBytes(releaseSignedBytes(r), r.signature, 'release manifest');
}

/**
 * The single-image manifest of one component (§5.5.5): what the component's upload (`rts`) and
 * its `offer` carry. Unsigned: the release's signature covers it.
 */
export function componentManifest(r: ReleaseManifest, c: ReleaseComponent): Manifest {
  return {
    name: c.name, version: c.version, hw: [...r.hw], size: c.size, crc32: c.crc32, sha256: c.sha256, chunk: r.chunk,
    ...(r.seq !== undefined ? { seq: r.seq } : {}),
  };
}

/**
 * The manifest that stands for the whole release where one image is expected (campaign records,
 * `order.image`, history): the release's name and version, its digest as `sha256`, the sum of the
 * component sizes as `size` (§5.5.4). Never offered to a device.
 */
export function releaseIdentity(r: ReleaseManifest): Manifest {
  const size = r.components.reduce((n, c) => n + c.size, 0);
  return {
    name: r.release, version: r.version, hw: [...r.hw], size: Math.min(size, 0xffff_ffff), crc32: 0, sha256: releaseDigest(r), chunk: r.chunk,
    ...(r.seq !== undefined ? { seq: r.seq } : {}),
  };
}

/** One unmet `requires` (§5.5.6): which component requires what, and what the device would run. */
export interface UnmetRequirement {
  component: string;
  requires: string;
  range: string;
  /** The version the device would run (absent: it has no such component). */
  have?: string;
}

/**
 * Check `requires` over the set of component versions a device would run after an update (§5.5.6):
 * for every component in `installed` (the components this update installs, with their constraints),
 * each constraint must hold on `running` (component → version after the update). Empty: all met.
 */
export function unmetRequirements(installed: readonly Pick<ReleaseComponent, 'component' | 'requires'>[], running: ReadonlyMap<string, string>): UnmetRequirement[] {
  const out: UnmetRequirement[] = [];
  for (const c of installed) {
    for (const [dep, range] of Object.entries(c.requires ?? {})) {
      const have = running.get(dep);
      if (have === undefined || !semver.satisfies(have, range, { loose: false, includePrerelease: true })) {
        out.push({ component: c.component, requires: dep, range, ...(have !== undefined ? { have } : {}) });
      }
    }
  }
  return out;
}

/** "app requires net >=1.5.0 (device runs net 1.4.0)" */
export function describeUnmet(u: UnmetRequirement): string {
  return `${u.component} requires ${u.requires} ${u.range} (${u.have === undefined ? `the device has no ${u.requires} component` : `it would run ${u.requires} ${u.have}`})`;
}

/** Whether `v` satisfies `range` (the rule of §5.5.6). */
export function satisfiesRange(v: string, range: string): boolean {
  return semver.satisfies(v, range, { loose: false, includePrerelease: true });
}
