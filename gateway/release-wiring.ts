import { FwError } from '../protocol/errors.ts';
import type { Manifest } from '../protocol/manifest.ts';
import { componentManifest, DEFAULT_COMPONENT, type ReleaseComponent, type ReleaseManifest } from '../protocol/release.ts';
import type { CampaignOptions, PreparedCampaign } from './gateway.ts';
import type { PreparedRelease } from './release-live.ts';
import type { ImageStore, StoredImage } from './store.ts';

/**
 * Glue between the gateway and the release upload (relup, issue 20) until the multi-component
 * rollout lands: PLACEHOLDER. The lead's `Gateway.prepareRelease(release, opts)` replaces
 * `prepareReleaseFallback` (which runs an ordinary campaign of the release's `app` component, so a
 * single-image fleet can be updated from a release meanwhile) and the release pre-flight.
 */

/** The component that stands for the release where only one image can be handled: `app`, else the first. */
export function mainComponent(release: ReleaseManifest): ReleaseComponent {
  return release.components.find((c) => c.component === DEFAULT_COMPONENT) ?? release.components[0]!;
}

/** The manifest a release's pre-flight counts with (§7.3.7): its main component's. */
export function releasePreflightManifest(release: ReleaseManifest): Manifest {
  return componentManifest(release, mainComponent(release));
}

/** A prepared campaign as the release flow takes it (wire the lead's `prepareRelease` with this: `asPreparedRelease(await gw.prepareRelease(r, o))`). */
export function asPreparedRelease(p: PreparedCampaign): PreparedRelease {
  return { id: p.campaign.id, start: p.start, ...(p.queued ? { queued: p.queued } : {}), ...(p.supersedes ? { supersedes: p.supersedes } : {}) };
}

/** PLACEHOLDER for Gateway.prepareRelease: a campaign of the release's main component image, stored in `store`. */
export async function prepareReleaseFallback(
  gw: { store: Pick<ImageStore, 'get'>; prepareCampaign(image: StoredImage, opts: CampaignOptions): Promise<PreparedCampaign> },
  release: ReleaseManifest, opts: CampaignOptions,
): Promise<PreparedRelease> {
  const main = mainComponent(release);
  const image = gw.store.get(main.sha256);
  if (!image) throw new FwError('E_IMAGE_NOT_FOUND', `release ${release.release} ${release.version}: the image of component ${main.component} is not stored`);
  return asPreparedRelease(await gw.prepareCampaign({ ...image, manifest: componentManifest(release, main) }, opts));
}
