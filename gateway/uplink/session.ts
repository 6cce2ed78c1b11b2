import { randomBytes } from 'node:crypto';
import { decodeCbor } from '../../protocol/cbor.ts';
import { describeError, isFwError, type FwError } from '../../protocol/errors.ts';
import { PROTOCOL_VERSION } from '../../protocol/limits.ts';
import { agreedKeepalive } from '../../protocol/link/keepalive.ts';
import type { Manifest } from '../../protocol/manifest.ts';
import type { KeyRing } from '../../protocol/signature.ts';
import {
  clipReasons, DATA_MESSAGE_OVERHEAD, type DenyCode, type GatewayUplinkMessage, type LaptopMessage, type PlannedMessage, type PreflightInfo,
  type RetryMessage, type Targeting,
} from '../../protocol/uplink.ts';
import { needsRequestAuth, type UplinkRequest } from '../../protocol/uplink-auth.ts';
import { TechnicianAuth } from './auth.ts';
import { ReleaseUpload, releaseLive, type ReleaseUplinkDeps } from './release-upload.ts';
import { isNoSpace, NO_SPACE } from '../disk-full.ts';
import type { MessageLink } from '../../transport/message-link.ts';
import type { GatewayConfig } from '../config.ts';
import type { Logger } from '../log.ts';
import type { ImageStore, StoredImage, Upload } from '../store.ts';

export type UplinkLink = MessageLink<LaptopMessage, GatewayUplinkMessage>;

export interface UplinkDeps {
  link: UplinkLink;
  store: ImageStore;
  config: GatewayConfig['uplink'];
  log: Logger;
  agent: string;
  /** Trusted manifest-signing keys: a request to send is granted only for a manifest one of them signed (§7.3.1). */
  keyRing: KeyRing;
  /** Development mode (security.allowUnsigned): an unsigned manifest is granted, with a warning. */
  allowUnsigned: boolean;
  /** Why a new upload with this campaign policy cannot be granted now (e.g. a `now` campaign while one runs), or undefined. */
  busyReason(request: CampaignRequest): string | undefined;
  /** What the gateway is doing now (or did in campaign `id`) and the messages that bring a late laptop up to date (§7.11). */
  campaignState(id?: string): GatewayUplinkMessage[];
  /** Pre-flight counts of an upload (§7.3.7); throws E_NO_TARGETS / E_NOT_ENOUGH_ONLINE to refuse it. */
  preflight(manifest: Manifest, request: CampaignRequest): Promise<PreflightInfo>;
  /** Cancel a campaign (§7.12.1); returns its id; throws E_UNKNOWN_CAMPAIGN. */
  cancel(id: string | undefined): string;
  /** A retry campaign (§7.12.2), created and not started; throws E_UNKNOWN_CAMPAIGN / E_NOTHING_TO_RETRY. */
  retry(req: Omit<RetryMessage, 't'>): Promise<StoredCampaign>;
  /** Resume a campaign paused between waves (§7.12.3); throws E_UNKNOWN_CAMPAIGN. */
  resume(id: string): void;
  /** A dry run (§7.12.4). */
  plan(manifest: Manifest, request: CampaignRequest): Promise<PlannedMessage>;
  /**
   * A verified image was stored: create its campaign; returns the campaign id, how to start it,
   * and, when it waits for a maintenance window, why and until when (§7.4.3).
   */
  onImageStored(image: StoredImage, request: CampaignRequest): Promise<StoredCampaign>;
  /** Releases (§7.3.9, §7.12.6): the registry and the release's campaign; absent: `release-rts` and `release-live` are denied. */
  release?: Pick<ReleaseUplinkDeps, 'releases' | 'preflight' | 'prepareRelease'>;
  /** Source of the hello challenges (§7.2.4); default crypto.randomBytes. Injected by tests. */
  randomBytes?: (n: number) => Uint8Array;
  /** Clock of the authorisation's idle lapse (§7.2.4); default Date.now. Injected by tests. */
  now?: () => number;
}

/** The campaign policy a laptop asks for in its `rts` (§7.3). */
export type CampaignRequest = Pick<Extract<LaptopMessage, { t: 'rts' }>, 'policy' | 'downgrade' | 'force'> & Targeting;

/** A campaign created for a stored image, as the laptop is told in `committed`. */
export interface StoredCampaign {
  id: string;
  start: () => void;
  queued?: NonNullable<Extract<GatewayUplinkMessage, { t: 'committed' }>['queued']>;
  supersedes?: string;
}

type State = 'idle' | 'ready' | 'receiving' | 'committing';

/**
 * The gateway's end of one laptop session (docs/protocol.md §7): hello -> request-to-send ->
 * grant/deny -> data -> commit -> verified and stored -> campaign events. One handler per
 * message type; messages are handled strictly in arrival order.
 */
export class UplinkSession {
  private state: State = 'idle';
  private upload: Upload | undefined;
  /** The release upload in progress (§7.3.9), instead of `upload`. */
  private releaseUpload: ReleaseUpload | undefined;
  private queue: Promise<void> = Promise.resolve();
  private maxFrame = 0;
  /** The campaign policy of the current upload's `rts`. */
  private request: CampaignRequest = {};
  /** The upload needs no data: the gateway already holds these bytes (§7.3.8); the manifest to adopt at commit. */
  private storedManifest: Manifest | undefined;
  /** Who this session's laptop proved to be (§7.2.4); reset by every hello and link reset. */
  private readonly auth: TechnicianAuth;
  /** Technician `auth` messages that did not authorise (metrics). */
  get authFailures(): number {
    return this.auth.failures;
  }

  constructor(private readonly deps: UplinkDeps) {
    this.auth = new TechnicianAuth(deps.config, deps.log, deps.randomBytes ?? ((n) => randomBytes(n)), deps.now ?? Date.now);
    deps.link.on('message', (msg) => {
      this.queue = this.queue.then(() => this.dispatch(msg)).catch((err: unknown) => {
        deps.log.error({ err: describeError(err) }, 'uplink handler failed');
      });
    });
    deps.link.on('invalid', (err, bytes) => {
      deps.log.warn({ err: err.message }, 'dropped invalid uplink message');
      this.queue = this.queue.then(() => this.onInvalid(err, bytes));
    });
    deps.link.on('reset', () => {
      deps.log.info('laptop connected (link reset)');
      this.queue = this.queue.then(() => this.endUpload(false));
      this.state = 'idle';
      this.auth.reset();
    });
    deps.link.on('down', () => {
      deps.log.warn('laptop stopped answering; the rollout carries on');
      this.queue = this.queue.then(() => this.endUpload(false));
      this.state = 'idle';
      this.auth.reset();
    });
  }

  /** Send an event to the laptop if one is attached; never throws. */
  notify(msg: GatewayUplinkMessage): void {
    this.send(msg).catch((err: unknown) => this.deps.log.debug({ err: describeError(err), t: msg.t }, 'could not send to laptop'));
  }

  /** Every message to the laptop goes through here: reasons are clipped to the protocol's text limit. */
  private send(msg: GatewayUplinkMessage): Promise<void> {
    return this.deps.link.send(clipReasons(msg));
  }

  /**
   * Resolves when everything sent to the laptop so far has been acknowledged by its link, or
   * after `timeoutMs`, or at once when no laptop is attached. Never rejects.
   */
  async delivered(timeoutMs: number): Promise<void> {
    if (this.deps.link.down) return;
    await this.deps.link.flush(timeoutMs).catch(() => undefined);
  }

  /** Wait until the messages received so far have been handled (tests, shutdown). */
  async settled(): Promise<void> {
    await this.queue;
  }

  async close(): Promise<void> {
    await this.queue;
    await this.endUpload(false);
  }

  private async dispatch(msg: LaptopMessage): Promise<void> {
    // every request of AUTHORISED_REQUEST_TYPES carries its own technician signature (§7.2.4)
    if (needsRequestAuth(msg.t)) {
      if (this.state === 'idle') return this.deny('state', 'send hello first');
      const unauthorised = this.auth.authorise(msg as UplinkRequest);
      if (unauthorised !== undefined) return this.deny('unauthorised', unauthorised);
    }
    switch (msg.t) {
      case 'hello': return this.onHello(msg);
      case 'auth': return this.onAuth(msg);
      case 'rts': return this.onRequestToSend(msg);
      case 'data': return this.onData(msg.off, msg.data);
      case 'commit': return this.onCommit();
      case 'status': return this.onStatus(msg.campaign);
      case 'cancel': return this.onControl('cancel', msg.campaign, async () => ({ campaign: this.deps.cancel(msg.campaign) }));
      case 'retry': return this.onControl('retry', msg.campaign, async () => {
        const { t: _t, auth: _a, ...req } = msg;
        const c = await this.deps.retry(req);
        return { campaign: c.id, start: c.start, reason: `retry of ${msg.campaign}` };
      });
      case 'resume': return this.onControl('resume', msg.campaign, async () => {
        this.deps.resume(msg.campaign);
        return { campaign: msg.campaign };
      });
      case 'plan': return this.onPlan(msg);
      case 'release-rts': return this.onReleaseRts(msg);
      case 'release-live': return this.onReleaseLive(msg);
      default: {
        const never: never = msg;
        this.deps.log.warn({ msg: never }, 'unhandled uplink message');
      }
    }
  }

  private async onHello(msg: Extract<LaptopMessage, { t: 'hello' }>): Promise<void> {
    const { config, link } = this.deps;
    if (msg.proto !== PROTOCOL_VERSION) {
      await this.deny('protocol', `laptop speaks uplink protocol ${msg.proto}, gateway speaks ${PROTOCOL_VERSION}`);
      return;
    }
    await this.endUpload(false);
    const maxFrame = Math.min(config.maxFrame, msg.maxFrame);
    const window = Math.min(config.window, msg.window);
    const keepalive = agreedKeepalive(msg.keepalive, config.keepaliveMs); // §4.11.1
    await this.send({
      t: 'hello', proto: PROTOCOL_VERSION, role: 'gateway', agent: this.deps.agent,
      maxFrame, window, maxMessage: msg.maxMessage, maxImage: config.maxImageBytes, challenge: this.auth.newChallenge(),
      ...(keepalive ? { keepalive } : {}),
      authIdleMs: config.authIdleMs,
    });
    link.configure({ maxPayload: maxFrame, window });
    if (keepalive) link.startKeepalive(keepalive, config.linkSilenceMs);
    // the upload's DATA frames come back to back: one ACK for several (§4.4)
    link.arq.configure({ ackDelayMs: config.ackDelayMs, ackEvery: config.ackEvery });
    this.maxFrame = maxFrame;
    this.state = 'ready';
    this.deps.log.info({ agent: msg.agent, maxFrame, window }, 'laptop hello');
  }

  /** The session-wide `auth` of version 1 (§7.2.4): not answered, authorises nothing; denied requests then say to upgrade fwpush. */
  private async onAuth(msg: Extract<LaptopMessage, { t: 'auth' }>): Promise<void> {
    if (this.state === 'idle') return this.deny('state', 'send hello first');
    this.auth.noteLegacyAuth(msg);
  }

  private async onRequestToSend(rts: Extract<LaptopMessage, { t: 'rts' }>): Promise<void> {
    const { log, store, config } = this.deps;
    const manifest: Manifest = rts.manifest;
    if (this.state === 'receiving' || this.state === 'committing') return this.deny('state', 'an upload is already in progress in this session');
    const { t: _t, manifest: _m, ...request } = rts;
    this.request = request;
    const busy = this.deps.busyReason(this.request);
    if (busy) return this.deny('busy', busy);
    if (manifest.size > config.maxImageBytes) {
      return this.deny('too-large', `image is ${manifest.size} bytes, this gateway accepts at most ${config.maxImageBytes}`);
    }
    const signed = this.deps.keyRing.check(manifest);
    if (!signed.ok) {
      if (signed.failure !== 'unsigned' || !this.deps.allowUnsigned) return this.deny(signed.failure, `${signed.reason}; nothing stored`);
      log.warn({ image: `${manifest.name} ${manifest.version}`, sha256: manifest.sha256 }, 'DEVELOPMENT MODE: accepting an UNSIGNED image (security.allowUnsigned)');
    }
    let preflight: PreflightInfo;
    try {
      preflight = await this.deps.preflight(manifest, this.request);
    } catch (err) {
      if (isFwError(err, 'E_NO_TARGETS')) return this.deny('no-targets', err.message);
      if (isFwError(err, 'E_NOT_ENOUGH_ONLINE')) return this.deny('not-enough-online', err.message);
      return this.deny('internal', describeError(err));
    }
    const chunk = this.maxFrame - DATA_MESSAGE_OVERHEAD;
    // the bytes are already here (verified now: a rotten copy is quarantined and uploaded afresh;
    // one the disk cannot read is kept and the request refused: try again)
    let held: boolean;
    try {
      held = store.has(manifest.sha256) && (await store.verify(manifest.sha256));
    } catch (err) {
      return this.deny('internal', `the gateway could not read its stored copy of this image (${describeError(err)}); nothing stored, try again`);
    }
    if (held) {
      this.storedManifest = manifest;
      this.state = 'receiving';
      log.info({ image: `${manifest.name} ${manifest.version}`, sha256: manifest.sha256, preflight }, 'image already stored: upload skipped');
      await this.send({ t: 'grant', sha256: manifest.sha256, offset: manifest.size, chunk, stored: true, preflight });
      return;
    }
    try {
      this.upload = await store.beginUpload(manifest);
    } catch (err) {
      const code: DenyCode = isFwError(err, 'E_IMAGE_TOO_LARGE') ? 'too-large' : 'internal';
      return this.deny(code, describeError(err));
    }
    this.state = 'receiving';
    log.info({ image: `${manifest.name} ${manifest.version}`, size: manifest.size, sha256: manifest.sha256, resumeAt: this.upload.offset, preflight }, 'upload granted');
    await this.send({ t: 'grant', sha256: manifest.sha256, offset: this.upload.offset, chunk, preflight });
  }

  /**
   * `cancel`, `retry`, `resume` (§7.12): technician-authorised like a request to send; answered
   * `accepted` (with the campaign it concerns) or `deny` with the reason.
   */
  private async onControl(request: 'cancel' | 'retry' | 'resume', named: string | undefined, act: () => Promise<{ campaign: string; start?: () => void; reason?: string }>): Promise<void> {
    // hello first and the technician's signature of this very request were checked before dispatch (§7.2.4)
    let done: { campaign: string; start?: () => void; reason?: string };
    try {
      done = await act();
    } catch (err) {
      if (isFwError(err, 'E_UNKNOWN_CAMPAIGN')) return this.deny('unknown-campaign', err.message);
      if (isFwError(err, 'E_NOTHING_TO_RETRY')) return this.deny('nothing-to-retry', err.message);
      if (isFwError(err, 'E_NO_TARGETS')) return this.deny('no-targets', err.message);
      return this.deny(request === 'retry' ? 'busy' : 'internal', describeError(err));
    }
    this.deps.log.info({ request, campaign: done.campaign, named: named ?? null }, `technician ${request}`);
    try {
      await this.send({ t: 'accepted', request, campaign: done.campaign, ...(done.reason ? { reason: done.reason } : {}) });
    } finally {
      done.start?.();
    }
  }

  private async onPlan(msg: Extract<LaptopMessage, { t: 'plan' }>): Promise<void> {
    const { t: _t, auth: _a, manifest, ...request } = msg;
    try {
      await this.send(await this.deps.plan(manifest, request));
    } catch (err) {
      if (isFwError(err, 'E_NO_TARGETS')) return this.deny('no-targets', err.message);
      return this.deny('internal', describeError(err));
    }
  }

  /** The deps of a release upload or `release-live` (§7.3.9), or undefined when this gateway has no registry. */
  private releaseDeps(): ReleaseUplinkDeps | undefined {
    const { release, store, config, log, keyRing, allowUnsigned } = this.deps;
    return release && { ...release, store, config, log, keyRing, allowUnsigned, busyReason: (r) => this.deps.busyReason(r) };
  }

  /** `release-rts` (§7.3.9): checked like an `rts`, then a `release-grant` of the component images the gateway lacks. */
  private async onReleaseRts(msg: Extract<LaptopMessage, { t: 'release-rts' }>): Promise<void> {
    if (this.state === 'receiving' || this.state === 'committing') return this.deny('state', 'an upload is already in progress in this session');
    const deps = this.releaseDeps();
    if (!deps) return this.deny('internal', 'this gateway keeps no release registry');
    const r = await ReleaseUpload.begin(deps, msg, this.maxFrame - DATA_MESSAGE_OVERHEAD);
    if ('deny' in r) return this.deny(r.deny, r.reason);
    this.releaseUpload = r.upload;
    this.state = 'receiving';
    await this.send(r.grant);
  }

  /** `release-live` (§7.12.6): answered `accepted` with the release's campaign, which then starts. */
  private async onReleaseLive(msg: Extract<LaptopMessage, { t: 'release-live' }>): Promise<void> {
    const deps = this.releaseDeps();
    if (!deps) return this.deny('internal', 'this gateway keeps no release registry');
    const r = await releaseLive(deps, msg);
    if ('deny' in r) return this.deny(r.deny, r.reason);
    this.deps.log.info({ release: `${msg.release} ${msg.version}`, campaign: r.id }, 'technician release live');
    try {
      await this.send({ t: 'accepted', request: 'release-live', campaign: r.id, reason: r.reason });
    } finally {
      r.start();
    }
  }

  private async onData(off: number, data: Uint8Array): Promise<void> {
    if (this.state === 'receiving' && this.releaseUpload) return this.onReleaseData(this.releaseUpload, off, data);
    if (this.state !== 'receiving' || !this.upload) {
      this.deps.log.warn({ off }, 'data outside an upload dropped');
      return;
    }
    try {
      await this.upload.write(off, data);
    } catch (err) {
      // disk full: the partial is removed, so the space goes back to the journals of running
      // campaigns (docs/reliability.md "Disk full"); the push starts again from 0 once space is freed
      const full = isNoSpace(err);
      this.deps.log.error({ err: describeError(err), ...(full ? { partial: 'removed' } : {}) }, full ? `upload abandoned: ${NO_SPACE}; its partial is removed` : 'upload write failed; upload abandoned');
      await this.endUpload(full);
      this.state = 'ready';
      this.notify(full
        ? { t: 'error', code: 'E_DISK_FULL', reason: `${NO_SPACE} on the gateway: upload abandoned at ${off} bytes and its partial removed; free space on the gateway and push again` }
        : { t: 'error', code: isFwError(err) ? err.code : 'E_STORE_IO', reason: describeError(err) });
    }
  }

  private async onReleaseData(upload: ReleaseUpload, off: number, data: Uint8Array): Promise<void> {
    try {
      await upload.write(off, data);
    } catch (err) {
      const full = isNoSpace(err);
      this.deps.log.error({ err: describeError(err), release: `${upload.release.release} ${upload.release.version}` }, 'release upload write failed; upload abandoned');
      await this.endUpload(full);
      this.state = 'ready';
      this.notify(full
        ? { t: 'error', code: 'E_DISK_FULL', reason: `${NO_SPACE} on the gateway: release upload abandoned at ${off} and its partials removed; free space on the gateway and push again` }
        : { t: 'error', code: isFwError(err) ? err.code : 'E_UPLINK_OFFSET', reason: describeError(err) });
    }
  }

  /** `state`, then a replay of the current (or last) campaign; live events follow as they happen. */
  private async onStatus(campaign?: string): Promise<void> {
    if (this.state === 'idle') return this.deny('state', 'send hello first');
    let msgs: GatewayUplinkMessage[];
    try {
      msgs = this.deps.campaignState(campaign);
    } catch (err) {
      return this.deny(isFwError(err, 'E_UNKNOWN_CAMPAIGN') ? 'unknown-campaign' : 'internal', describeError(err));
    }
    for (const msg of msgs) await this.send(msg);
  }

  private async onCommit(): Promise<void> {
    const { log } = this.deps;
    if (this.state === 'receiving' && this.releaseUpload) return this.onReleaseCommit(this.releaseUpload);
    if (this.state !== 'receiving' || (!this.upload && !this.storedManifest)) return this.deny('state', 'commit without an upload');
    const upload = this.upload;
    const adopt = this.storedManifest;
    this.state = 'committing';
    this.upload = undefined;
    this.storedManifest = undefined;
    const sha256 = upload?.manifest.sha256 ?? adopt!.sha256;
    let stored: StoredImage;
    try {
      stored = upload ? await upload.commit() : await this.deps.store.adoptManifest(adopt!);
    } catch (err) {
      this.state = 'ready';
      const code = isFwError(err) ? err.code : 'E_STORE_IO';
      log.warn({ err: describeError(err), sha256 }, 'upload refused: image does not verify; nothing stored');
      await this.send({ t: 'committed', ok: false, sha256, code, reason: describeError(err) });
      return;
    }
    this.state = 'ready';
    log.info({ image: `${stored.manifest.name} ${stored.manifest.version}`, sha256: stored.manifest.sha256 }, 'image verified and stored');
    let campaign: StoredCampaign;
    try {
      campaign = await this.deps.onImageStored(stored, this.request);
    } catch (err) {
      const code = isFwError(err, 'E_IMAGE_CORRUPT') ? 'E_IMAGE_CORRUPT' : 'E_UPLINK_BUSY';
      const reason = isFwError(err, 'E_IMAGE_CORRUPT') ? `stored copy corrupt: re-push the image (${describeError(err)})` : `image stored, but its campaign could not start: ${describeError(err)}`;
      log.error({ sha256: stored.manifest.sha256, err: describeError(err) }, 'campaign not started');
      await this.send({ t: 'committed', ok: false, sha256: stored.manifest.sha256, code, reason });
      return;
    }
    try {
      await this.send({
        t: 'committed', ok: true, sha256: stored.manifest.sha256, campaign: campaign.id,
        ...(campaign.queued ? { queued: campaign.queued } : {}),
        ...(campaign.supersedes ? { supersedes: campaign.supersedes } : {}),
      });
    } finally {
      campaign.start(); // the rollout runs whether or not the laptop is still there
    }
  }

  /** `commit` of a release upload (§7.3.9): `committed` with the release's digest; its campaign starts after. */
  private async onReleaseCommit(upload: ReleaseUpload): Promise<void> {
    this.state = 'committing';
    this.releaseUpload = undefined;
    const { committed, start } = await upload.commit();
    this.state = 'ready';
    try {
      await this.send(committed);
    } finally {
      start?.(); // the rollout runs whether or not the laptop is still there
    }
  }

  /**
   * A message that did not validate is dropped, but the laptop is told why: a request-to-send
   * with a bad manifest is denied (it waits for grant or deny), anything else gets an error.
   */
  private async onInvalid(err: FwError, bytes: Uint8Array | undefined): Promise<void> {
    let t: unknown;
    try {
      t = bytes ? (decodeCbor(bytes) as { t?: unknown } | null)?.t : undefined;
    } catch {
      t = undefined;
    }
    if ((t === 'rts' || t === 'release-rts') && this.state === 'ready') return this.deny('invalid-manifest', err.message);
    this.notify({ t: 'error', code: err.code, reason: err.message });
  }

  private async deny(code: DenyCode, reason: string): Promise<void> {
    this.deps.log.warn({ code, reason }, 'request denied');
    await this.send({ t: 'deny', code, reason });
  }

  private async endUpload(discard: boolean): Promise<void> {
    this.storedManifest = undefined;
    const r = this.releaseUpload;
    this.releaseUpload = undefined;
    if (r) await (discard ? r.discard() : r.abandon());
    const u = this.upload;
    this.upload = undefined;
    if (!u) return;
    try {
      if (discard) await u.discard();
      else await u.abandon();
    } catch (err) {
      this.deps.log.warn({ err: describeError(err) }, 'could not close the partial upload');
    }
  }
}
