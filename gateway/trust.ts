import type { Manifest } from '../protocol/manifest.ts';
import { checkReleaseSignature, type ReleaseManifest } from '../protocol/release.ts';
import type { KeyRing } from '../protocol/signature.ts';
import type { Logger } from './log.ts';

/** Whether the gateway may use a manifest or release it holds, by its signature (docs/security.md "The gateway's own disk"). */

/** Why a release manifest must not be used (its signature), or undefined (§5.5.3). */
export function releaseDistrust(ring: KeyRing, allowUnsigned: boolean, r: ReleaseManifest): string | undefined {
  const c = checkReleaseSignature(ring, r);
  if (c.ok || (c.failure === 'unsigned' && allowUnsigned)) return undefined;
  return c.reason;
}

/** Why a manifest read from disk must not be used (its signature), or undefined (docs/security.md "The gateway's own disk"). */
export function manifestDistrust(ring: KeyRing, allowUnsigned: boolean, m: Manifest): string | undefined {
  const r = ring.check(m);
  if (r.ok || (r.failure === 'unsigned' && allowUnsigned)) return undefined;
  return r.reason;
}

/** Say at start-up which keys are trusted, and loudly when unsigned images are accepted (development mode). */
export function logSecurity(ring: KeyRing, allowUnsigned: boolean, log: Logger): void {
  if (allowUnsigned) {
    log.warn({ allowUnsigned: true, trustedKeys: ring.keyIds }, 'DEVELOPMENT MODE: security.allowUnsigned is on — UNSIGNED FIRMWARE IMAGES ARE ACCEPTED; never use this on a real site');
  } else if (ring.size === 0) {
    log.warn('no trusted signing keys (security.trustedKeys, --trusted-key): every upload will be denied');
  } else {
    log.info({ trustedKeys: ring.keyIds }, 'signed images only');
  }
}
