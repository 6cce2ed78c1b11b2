import type { ReleaseManifest } from '../protocol/release.ts';
import type { CampaignOptions } from './client.ts';
import { ended, follow, type FlowDeps, type Followed } from './push.ts';

/** How a release push ended: followed like an image push's campaign, or stored deferred (no campaign). */
export type ReleasePushed = (Followed & { deferred?: undefined }) | { deferred: true; digest: string };

/**
 * Push a release (docs/protocol.md §7.3.9) and follow its campaign: `release-rts` (one
 * technician-authorised request) -> the components the gateway lacks, from their granted offsets ->
 * commit -> follow. After a lost link before the commit, a new `release-rts` whose grant says what
 * the gateway already holds; after it, the campaign is followed again as `fwpush status` does.
 * A deferred release resolves at the commit.
 */
export async function pushReleaseAndFollow(
  d: FlowDeps, release: ReleaseManifest, images: ReadonlyMap<string, Uint8Array>, options: CampaignOptions & { deferred?: boolean } = {},
): Promise<ReleasePushed> {
  let campaign: string | undefined;
  return d.session.run(() => (campaign === undefined ? 'upload' : 'follow'), async (conn, again): Promise<ReleasePushed> => {
    const { client } = conn;
    if (campaign !== undefined) return follow(client, await client.status(), campaign, d, conn);
    const grant = await client.requestRelease({ t: 'release-rts', release, ...options });
    if (again) d.notify({ event: 'upload-resumed', sha256: grant.digest, offset: grant.send.reduce((n, c) => n + c.offset, 0), size: grant.send.reduce((n, c) => n + c.size, 0) });
    await client.uploadRelease(images, grant);
    const committed = await client.commitRelease();
    if (committed.deferred || committed.campaign === undefined) return { deferred: true, digest: committed.sha256 };
    campaign = committed.campaign;
    if (committed.queued) return { campaign, complete: undefined, queued: committed.queued };
    return ended(campaign, await client.followUntilWaiting(campaign));
  });
}
