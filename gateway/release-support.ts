/**
 * What the gateway checks and gathers before a release campaign (§6.15): the release is trusted
 * (signature, or allowUnsigned) and every component image is held; the other held releases a
 * device's missing dependency may be taken from (§5.5.6); the reader of component images, each
 * verified when a device first needs it.
 */
import { FwError } from '../protocol/errors.ts';
import type { Manifest } from '../protocol/manifest.ts';
import { releaseDigest, releaseIdentity, type ReleaseManifest } from '../protocol/release.ts';
import type { KeyRing } from '../protocol/signature.ts';
import type { DeviceRecord } from './fleet.ts';
import type { ReleaseRegistry } from './releases.ts';
import { selectForRelease } from './rollout/release-plan.ts';
import type { ReleaseDeps } from './rollout/release-rollout.ts';
import { ImageSource } from './rollout/image-source.ts';
import type { ImageStore } from './store.ts';
import { releaseDistrust } from './trust.ts';

export class ReleaseSupport {
  constructor(private readonly deps: { keyRing: KeyRing; allowUnsigned: boolean; store: ImageStore; releases: () => ReleaseRegistry }) {}

  /** The release's identity manifest, once it is trusted and every component image is in the store; else E_MANIFEST_SIGNATURE / E_IMAGE_NOT_FOUND. */
  identity(release: ReleaseManifest): Manifest {
    const distrust = releaseDistrust(this.deps.keyRing, this.deps.allowUnsigned, release);
    if (distrust !== undefined) throw new FwError('E_MANIFEST_SIGNATURE', `release ${release.release} ${release.version}: ${distrust}`);
    const missing = release.components.filter((c) => !this.deps.store.get(c.sha256));
    if (missing.length > 0) {
      throw new FwError('E_IMAGE_NOT_FOUND', `release ${release.release} ${release.version}: the gateway does not hold component ${missing.map((c) => `${c.component} (${c.sha256.slice(0, 12)}…)`).join(', ')}; upload the release again`);
    }
    return releaseIdentity(release);
  }

  /** What a release campaign needs beyond its manifest: the other held (trusted, complete) releases and the image reader. */
  async campaignDeps(release: ReleaseManifest): Promise<ReleaseDeps> {
    const digest = releaseDigest(release);
    const { keyRing, allowUnsigned, store } = this.deps;
    const others = (await this.deps.releases().list()).map((r) => r.manifest);
    const held = others.filter((r) => releaseDigest(r) !== digest && releaseDistrust(keyRing, allowUnsigned, r) === undefined
      && r.components.every((c) => store.get(c.sha256) !== undefined));
    return {
      manifest: release, held,
      loadImage: async (m) => new ImageSource(m, await store.read(m.sha256)),
    };
  }

  /** The pre-flight's per-device selection of a release (§7.3.7 with §5.5.6), unmetDependency among them. */
  async selector(release: ReleaseManifest, downgrade: boolean): Promise<(targets: readonly DeviceRecord[]) => ReturnType<typeof selectForRelease>> {
    const { held } = await this.campaignDeps(release);
    return (targets) => selectForRelease(release, targets, held, { downgrade });
  }
}
