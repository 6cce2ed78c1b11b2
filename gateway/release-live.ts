import { FwError } from '../protocol/errors.ts';
import type { ReleaseManifest } from '../protocol/release.ts';
import type { ReleaseRegistry, StoredRelease } from './releases.ts';
import type { ImageStore } from './store.ts';

/** A release's campaign, created and not started (Gateway.prepareRelease, as prepareCampaign's). */
export interface PreparedRelease {
  id: string;
  start: () => void;
  queued?: { reason: string; nextWindowAt?: number; expiresAt?: number };
  supersedes?: string;
}

export interface GoLiveDeps<O> {
  releases: ReleaseRegistry;
  store: Pick<ImageStore, 'has'>;
  /** Create the release's campaign with these options (policy, targeting), not started. */
  prepareRelease(release: ReleaseManifest, opts: O): Promise<PreparedRelease>;
}

/**
 * The stored release of this name and version; E_UNKNOWN_RELEASE, naming what to do, when there is
 * none or one of its component images is no longer stored.
 */
export async function storedRelease(deps: Pick<GoLiveDeps<unknown>, 'releases' | 'store'>, name: string, version: string): Promise<StoredRelease> {
  const r = await deps.releases.get(name, version);
  if (!r) {
    throw new FwError('E_UNKNOWN_RELEASE', `no stored release ${name} ${version} (fwgate releases lists them; upload it with fwpush release <description> --deferred)`);
  }
  const missing = r.manifest.components.filter((c) => !deps.store.has(c.sha256)).map((c) => c.component);
  if (missing.length > 0) {
    throw new FwError('E_UNKNOWN_RELEASE', `release ${name} ${version}: the image of component ${missing.join(', ')} is no longer stored; upload the release again`);
  }
  return r;
}

/**
 * A stored release goes live (docs/operations.md "Releases"): its campaign is created, the record
 * says `live` with the campaign (durably, before the campaign starts), and live releases of the
 * same name with a lower version become `superseded`. The caller starts the campaign.
 */
export async function goLive<O>(deps: GoLiveDeps<O>, release: StoredRelease, opts: O): Promise<PreparedRelease & { superseded: StoredRelease[] }> {
  const prepared = await deps.prepareRelease(release.manifest, opts);
  await deps.releases.setState(release.digest, 'live', prepared.id);
  const superseded = await deps.releases.supersedeOlder(release.manifest);
  return { ...prepared, superseded };
}
