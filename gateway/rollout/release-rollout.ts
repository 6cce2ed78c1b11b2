import type { Manifest } from '../../protocol/manifest.ts';
import type { ReleaseManifest } from '../../protocol/release.ts';
import type { CompleteMessage, ExcludedEntry, OrderEntry, ResultMessage } from '../../protocol/uplink.ts';
import type { DeviceRecord } from '../fleet.ts';
import type { SessionPart } from './device-session.ts';
import type { ImageSource } from './image-source.ts';
import { orderFields, planDevice, selectForRelease, type DeviceReleasePlan, type ReleaseSelection } from './release-plan.ts';

/** What a release campaign is given (Gateway.prepareRelease). */
export interface ReleaseDeps {
  manifest: ReleaseManifest;
  /** Other signed releases whose images the gateway holds: providers for unmet `requires` (§5.5.6). */
  held: readonly ReleaseManifest[];
  /** A component image read back from the store, verified (SHA-256) before any device gets a byte. */
  loadImage(m: Manifest): Promise<ImageSource>;
}

/**
 * The release side of a campaign (§6.15, §7.5.9): per-device selection of components, the order's
 * component fields, the images each session gets, the completion's component counts. The campaign
 * calls it where a single-image campaign uses the manifest directly.
 */
export class ReleaseRollout {
  private readonly planned = new Map<string, DeviceReleasePlan>();
  private readonly images = new Map<string, Promise<ImageSource>>();

  constructor(private readonly deps: ReleaseDeps, private readonly downgrade: boolean) {}

  get manifest(): ReleaseManifest {
    return this.deps.manifest;
  }

  /** selectDevices for the release: eligible (online), excluded with the device's code. */
  select(devices: readonly DeviceRecord[]): ReleaseSelection {
    const s = selectForRelease(this.deps.manifest, devices, this.deps.held, { downgrade: this.downgrade });
    for (const [id, p] of s.plans) this.planned.set(id, p);
    return s;
  }

  /** An order entry with the components the device gets and the bytes saved (§7.5.9). */
  entry<E extends Pick<OrderEntry, 'id'>>(e: E): E & Pick<OrderEntry, 'components' | 'savedBytes'> {
    const p = this.planned.get(e.id);
    return p ? { ...e, ...orderFields(p) } : e;
  }

  /**
   * The parts of a device's update, planned again from its record now (it may have changed since
   * the order: a device that checked in later, or was updated by another campaign), with their
   * images; or why it gets nothing now.
   */
  async partsFor(device: DeviceRecord): Promise<{ parts: SessionPart[]; kept: string[] } | { excluded: Omit<ExcludedEntry, 'id'> }> {
    const p = planDevice(this.deps.manifest, device, this.deps.held, { downgrade: this.downgrade });
    if (!('parts' in p)) return { excluded: p };
    const parts: SessionPart[] = [];
    for (const x of p.parts) {
      parts.push({ component: x.component, image: await this.image(x.manifest), release: x.release, agent: x.agent });
    }
    return { parts, kept: p.skipped };
  }

  private image(m: Manifest): Promise<ImageSource> {
    let img = this.images.get(m.sha256);
    if (!img) {
      img = this.deps.loadImage(m);
      img.catch(() => this.images.delete(m.sha256)); // a failed read is tried again by the next device
      this.images.set(m.sha256, img);
    }
    return img;
  }

  /**
   * Components sent to the updated devices and components they already ran (§7.8.3), from their
   * results (`components`, `kept`): a campaign resumed after a restart counts the journaled ones too.
   */
  completeFields(results: readonly ResultMessage[]): Pick<CompleteMessage, 'componentsSent' | 'componentsSkipped'> {
    let sent = 0;
    let skipped = 0;
    for (const r of results) {
      if (r.outcome !== 'updated') continue;
      sent += r.components?.length ?? 0;
      skipped += r.kept?.length ?? 0;
    }
    return { componentsSent: sent, componentsSkipped: skipped };
  }
}
