import { randomBytes } from 'node:crypto';
import { decodeCbor } from '../../protocol/cbor.ts';
import { describeError, isFwError, type FwError } from '../../protocol/errors.ts';
import { PROTOCOL_VERSION } from '../../protocol/limits.ts';
import type { Manifest } from '../../protocol/manifest.ts';
import type { KeyRing } from '../../protocol/signature.ts';
import {
  clipReasons, DATA_MESSAGE_OVERHEAD, type DenyCode, type GatewayUplinkMessage, type LaptopMessage,
} from '../../protocol/uplink.ts';
import { needsRequestAuth, type UplinkRequest } from '../../protocol/uplink-auth.ts';
import { TechnicianAuth } from './auth.ts';
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
  /** What the gateway is doing now and the messages that bring a late laptop up to date (§7.11). */
  campaignState(): GatewayUplinkMessage[];
  /**
   * A verified image was stored: create its campaign; returns the campaign id, how to start it,
   * and, when it waits for a maintenance window, why and until when (§7.4.3).
   */
  onImageStored(image: StoredImage, request: CampaignRequest): Promise<StoredCampaign>;
  /** Source of the hello challenges (§7.2.4); default crypto.randomBytes. Injected by tests. */
  randomBytes?: (n: number) => Uint8Array;
  /** Clock of the authorisation's idle lapse (§7.2.4); default Date.now. Injected by tests. */
  now?: () => number;
}

/** The campaign policy a laptop asks for in its `rts` (§7.3). */
export type CampaignRequest = Pick<Extract<LaptopMessage, { t: 'rts' }>, 'policy' | 'downgrade' | 'force'>;

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
  private queue: Promise<void> = Promise.resolve();
  private maxFrame = 0;
  /** The campaign policy of the current upload's `rts`. */
  private request: CampaignRequest = {};
  /** Who this session's laptop proved to be (§7.2.4); reset by every hello and link reset. */
  private readonly auth: TechnicianAuth;

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
      case 'status': return this.onStatus();
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
    await this.send({
      t: 'hello', proto: PROTOCOL_VERSION, role: 'gateway', agent: this.deps.agent,
      maxFrame, window, maxMessage: msg.maxMessage, maxImage: config.maxImageBytes, challenge: this.auth.newChallenge(),
      authIdleMs: config.authIdleMs,
    });
    link.configure({ maxPayload: maxFrame, window });
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
    this.request = {
      ...(rts.policy !== undefined ? { policy: rts.policy } : {}),
      ...(rts.downgrade !== undefined ? { downgrade: rts.downgrade } : {}),
      ...(rts.force !== undefined ? { force: rts.force } : {}),
    };
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
    try {
      this.upload = await store.beginUpload(manifest);
    } catch (err) {
      const code: DenyCode = isFwError(err, 'E_IMAGE_TOO_LARGE') ? 'too-large' : 'internal';
      return this.deny(code, describeError(err));
    }
    this.state = 'receiving';
    const chunk = this.maxFrame - DATA_MESSAGE_OVERHEAD;
    log.info({ image: `${manifest.name} ${manifest.version}`, size: manifest.size, sha256: manifest.sha256, resumeAt: this.upload.offset }, 'upload granted');
    await this.send({ t: 'grant', sha256: manifest.sha256, offset: this.upload.offset, chunk });
  }

  private async onData(off: number, data: Uint8Array): Promise<void> {
    if (this.state !== 'receiving' || !this.upload) {
      this.deps.log.warn({ off }, 'data outside an upload dropped');
      return;
    }
    try {
      await this.upload.write(off, data);
    } catch (err) {
      this.deps.log.error({ err: describeError(err) }, 'upload write failed; upload abandoned');
      await this.endUpload(false);
      this.state = 'ready';
      this.notify({ t: 'error', code: isFwError(err) ? err.code : 'E_STORE_IO', reason: describeError(err) });
    }
  }

  /** `state`, then a replay of the current (or last) campaign; live events follow as they happen. */
  private async onStatus(): Promise<void> {
    if (this.state === 'idle') return this.deny('state', 'send hello first');
    for (const msg of this.deps.campaignState()) await this.send(msg);
  }

  private async onCommit(): Promise<void> {
    const { link, log } = this.deps;
    if (this.state !== 'receiving' || !this.upload) return this.deny('state', 'commit without an upload');
    const upload = this.upload;
    this.state = 'committing';
    this.upload = undefined;
    let stored: StoredImage;
    try {
      stored = await upload.commit();
    } catch (err) {
      this.state = 'ready';
      const code = isFwError(err) ? err.code : 'E_STORE_IO';
      log.warn({ err: describeError(err), sha256: upload.manifest.sha256 }, 'upload refused: image does not verify; nothing stored');
      await this.send({ t: 'committed', ok: false, sha256: upload.manifest.sha256, code, reason: describeError(err) });
      return;
    }
    this.state = 'ready';
    log.info({ image: `${stored.manifest.name} ${stored.manifest.version}`, sha256: stored.manifest.sha256 }, 'image verified and stored');
    let campaign: StoredCampaign;
    try {
      campaign = await this.deps.onImageStored(stored, this.request);
    } catch (err) {
      await this.send({ t: 'committed', ok: false, sha256: stored.manifest.sha256, code: 'E_UPLINK_BUSY', reason: `image stored, but its campaign could not start: ${describeError(err)}` });
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
    if (t === 'rts' && this.state === 'ready') return this.deny('invalid-manifest', err.message);
    this.notify({ t: 'error', code: err.code, reason: err.message });
  }

  private async deny(code: DenyCode, reason: string): Promise<void> {
    this.deps.log.warn({ code, reason }, 'request denied');
    await this.send({ t: 'deny', code, reason });
  }

  private async endUpload(discard: boolean): Promise<void> {
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
