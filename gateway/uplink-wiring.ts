/**
 * The laptop's side of the gateway on one stream (a serial port): the ARQ message link with the
 * configured timeouts (§4) and the uplink session, wired to what the gateway does for each request
 * (upload, pre-flight, cancel, retry, resume, plan, releases).
 */
import type { Duplex } from 'node:stream';
import { MAX_WINDOW } from '../protocol/limits.ts';
import type { Manifest } from '../protocol/manifest.ts';
import { releaseIdentity, type ReleaseManifest } from '../protocol/release.ts';
import type { KeyRing } from '../protocol/signature.ts';
import {
  decodeLaptopMessage, encodeUplinkMessage, type GatewayUplinkMessage, type LaptopMessage, type PlannedMessage, type PreflightInfo,
  type RetryMessage,
} from '../protocol/uplink.ts';
import { MessageLink } from '../transport/message-link.ts';
import type { GatewayConfig } from './config.ts';
import type { Logger } from './log.ts';
import type { PreparedRelease } from './release-live.ts';
import type { ReleaseRegistry } from './releases.ts';
import type { Campaign } from './rollout/campaign.ts';
import type { ImageStore, StoredImage } from './store.ts';
import { UplinkSession } from './uplink/session.ts';

type Request = Parameters<ConstructorParameters<typeof UplinkSession>[0]['preflight']>[1];

/** What the uplink asks of the gateway. */
export interface UplinkGateway {
  readonly config: GatewayConfig;
  readonly log: Logger;
  readonly store: ImageStore;
  readonly keyRing: KeyRing;
  readonly releases: ReleaseRegistry;
  busyReason(request: Request): string | undefined;
  campaignState(id?: string): GatewayUplinkMessage[];
  preflight(manifest: Manifest, request: Request, release?: ReleaseManifest): Promise<PreflightInfo>;
  cancelCampaign(id: string | undefined, by: string): Campaign;
  retryCampaign(req: Omit<RetryMessage, 't'>): Promise<{ campaign: Campaign; start: () => void; queued?: { reason: string; nextWindowAt?: number; expiresAt?: number } }>;
  resumeCampaign(id: string): Campaign;
  plan(manifest: Manifest, request: Request): Promise<PlannedMessage>;
  prepareCampaign(image: StoredImage, request: Request): Promise<{ campaign: Campaign; start: () => void; queued?: { reason: string; nextWindowAt?: number; expiresAt?: number }; supersedes?: string }>;
  releaseCampaign(release: ReleaseManifest, request: Request): Promise<PreparedRelease>;
}

export function serveUplink(gw: UplinkGateway, stream: Duplex, agent: string): { link: MessageLink<LaptopMessage, GatewayUplinkMessage>; session: UplinkSession } {
  const { config, log } = gw;
  const link = new MessageLink<LaptopMessage, GatewayUplinkMessage>(stream, {
    decode: decodeLaptopMessage,
    encode: encodeUplinkMessage,
    arq: {
      window: MAX_WINDOW,
      maxPayload: 256,
      rtoInitialMs: config.uplink.rtoInitialMs, rtoMinMs: config.uplink.rtoMinMs, rtoMaxMs: config.uplink.rtoMaxMs,
      maxRetransmits: config.uplink.maxRetransmits,
    },
  });
  link.announceReset(); // §4.11.2: a laptop still holding a session with the gateway before this one learns it is gone
  const session = new UplinkSession({
    link, store: gw.store, config: config.uplink, log: log.child({ part: 'uplink' }), agent,
    keyRing: gw.keyRing, allowUnsigned: config.security.allowUnsigned,
    busyReason: (request) => gw.busyReason(request),
    campaignState: (id) => gw.campaignState(id),
    preflight: (manifest, request) => gw.preflight(manifest, request),
    cancel: (id) => gw.cancelCampaign(id, 'cancelled by the technician (fwpush cancel)').id,
    retry: async (req) => {
      const { campaign, start, queued } = await gw.retryCampaign(req);
      return { id: campaign.id, start, ...(queued ? { queued } : {}) };
    },
    resume: (id) => {
      gw.resumeCampaign(id);
    },
    plan: (manifest, request) => gw.plan(manifest, request),
    onImageStored: async (image, request) => {
      const { campaign, start, queued, supersedes } = await gw.prepareCampaign(image, request);
      return { id: campaign.id, start, ...(queued ? { queued } : {}), ...(supersedes ? { supersedes } : {}) };
    },
    release: {
      releases: gw.releases,
      preflight: (release, request) => gw.preflight(releaseIdentity(release), request, release),
      prepareRelease: (release, request) => gw.releaseCampaign(release, request),
    },
  });
  return { link, session };
}
