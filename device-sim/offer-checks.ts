import type { OfferMessage, RejectCode, VerifyCode } from '../protocol/ota.ts';
import { checkReleaseSignature } from '../protocol/release.ts';
import type { KeyRing } from '../protocol/signature.ts';
import { compareVersions } from '../protocol/version.ts';
import { APP } from './state-record.ts';

/**
 * What a device checks before it accepts an `offer` (docs/protocol.md §6.5.3, §6.15.1) and the
 * signature it checks again at `verify` (§6.7.1). Pure: the device passes what it knows.
 */
export interface OfferContext {
  hw: string;
  /** The device's components. */
  components: readonly string[];
  /** Running version of each component. */
  running: ReadonlyMap<string, string>;
  /** Highest seq of an image confirmed on the device (§6.5.7). */
  installedSeq: number;
  slotCapacity: number;
  /** Anti-rollback floor of `app` (§6.5.6). */
  securityFloor: string | undefined;
  busy: boolean;
  /** Some component runs in trial: its fallback must not be overwritten. */
  inTrial: boolean;
  pinned: KeyRing;
}

export interface Rejection {
  code: RejectCode;
  reason: string;
}

/** The component an offer is for (absent = `app`, §6.15.1). */
export function offerComponent(m: Pick<OfferMessage, 'component'>): string {
  return m.component ?? APP;
}

/** Why the device refuses `m`, in the order of the checks (§6.5.3), or null: it accepts. */
export function checkOffer(m: OfferMessage, ctx: OfferContext): Rejection | null {
  // The offer carries the signed manifest or release (§6.5.3 step 0): checked before anything is
  // accepted, downloaded or discarded, so a rogue gateway can neither force a download nor evict a staged image.
  const [badSignature, why] = checkOfferSignature(ctx.pinned, m);
  if (badSignature) return { code: 'invalid', reason: `signature: ${why}` };
  if (ctx.busy && m.force !== true) return { code: 'busy', reason: 'device is busy' };
  const component = offerComponent(m);
  const running = ctx.running.get(component);
  if (!ctx.components.includes(component) || running === undefined) return { code: 'incompatible', reason: `no component "${component}"` };
  if (!m.hw.includes(ctx.hw)) return { code: 'incompatible', reason: `hardware ${ctx.hw} is not in [${m.hw.join(', ')}]` };
  const floor = ctx.securityFloor;
  if (component === APP && floor !== undefined && compareVersions(m.version, floor) < 0) {
    return { code: 'below-floor', reason: `offered ${m.version} is below the security floor ${floor}${m.downgrade === true ? ' (downgrade or not)' : ''}` };
  }
  const of = component === APP ? '' : `${component} `;
  const cmp = compareVersions(m.version, running);
  if (cmp === 0) return { code: 'not-newer', reason: `running ${of}${running}, offered ${m.version}` };
  if (cmp < 0 && m.downgrade !== true) return { code: 'not-newer', reason: `running ${of}${running}, offered ${m.version} (older, and the offer is not a downgrade)` };
  if ((m.seq ?? 0) < ctx.installedSeq) {
    return { code: 'seq-rollback', reason: `offered seq ${m.seq ?? 0} is below the installed seq ${ctx.installedSeq} (anti-rollback)` };
  }
  if (m.size > ctx.slotCapacity) return { code: 'no-space', reason: `image of ${m.size} bytes, slot holds ${ctx.slotCapacity}` };
  if (ctx.inTrial) return { code: 'busy', reason: 'running image is in trial; confirm it first' };
  return null;
}

/**
 * The offer's signature against the pinned keys (§6.5.3 step 0, §6.7.1 step 4). With a release
 * (§6.15.1): the release's signature, and that the release lists this component with the offer's
 * name, version, size, CRC-32 and SHA-256, at the offer's seq. Otherwise the offer's own manifest
 * fields and `keyId`/`sig`. No pinned keys: no check (development behaviour).
 */
export function checkOfferSignature(pinned: KeyRing, offer: OfferMessage | null): [VerifyCode | null, string] {
  if (pinned.size === 0) return [null, ''];
  if (!offer) return ['signature', 'no offer to check the signature of'];
  const { name, version, hw, size, crc32, sha256, chunk, seq, keyId, sig, release } = offer;
  if (release !== undefined) {
    const r = checkReleaseSignature(pinned, release);
    if (!r.ok) return ['signature', `${r.failure}: ${r.reason}`];
    const component = offerComponent(offer);
    const entry = release.components.find((c) => c.component === component);
    if (entry === undefined) return ['signature', `release ${release.release} ${release.version} has no component "${component}"`];
    const differs = (['name', 'version', 'size', 'crc32', 'sha256'] as const).filter((k) => entry[k] !== offer[k]);
    if (differs.length > 0) return ['signature', `the offer's ${differs.join(', ')} differ from component "${component}" of release ${release.release} ${release.version}`];
    if ((seq ?? 0) !== (release.seq ?? 0)) return ['signature', `the offer's seq ${seq ?? 0} differs from the release's ${release.seq ?? 0}`];
    return [null, ''];
  }
  const r = pinned.check({ name, version, hw, size, crc32, sha256, chunk, seq, ...(keyId && sig ? { signature: { keyId, sig } } : {}) });
  return r.ok ? [null, ''] : ['signature', `${r.failure}: ${r.reason}`];
}
