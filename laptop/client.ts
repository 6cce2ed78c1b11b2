import { EventEmitter } from 'node:events';
import { FwError } from '../protocol/errors.ts';
import { MAX_FRAME_PAYLOAD, MAX_UPLINK_MESSAGE, PROTOCOL_VERSION } from '../protocol/limits.ts';
import type { Manifest } from '../protocol/manifest.ts';
import type {
  CampaignPolicy, CompleteMessage, GatewayUplinkMessage, HelloMessage, LaptopMessage, PlannedMessage, RetryMessage, RtsMessage, Targeting, WaitingMessage,
} from '../protocol/uplink.ts';
import { signChallenge, signRequest, type TechnicianKey, type UplinkRequest } from '../protocol/uplink-auth.ts';
import type { MessageLink } from '../transport/message-link.ts';
import { laptopSettings } from './settings.ts';
import { uploadChunk } from './upload-chunk.ts';

export type LaptopLink = MessageLink<GatewayUplinkMessage, LaptopMessage>;

export interface ClientOptions {
  agent: string;
  maxFrame: number;
  window: number;
  /** Longest wait for a reply to hello, request-to-send or commit. */
  replyTimeoutMs: number;
  /** Longest silence from the gateway while following a campaign. */
  idleTimeoutMs: number;
  /** Answers the gateway's hello challenge with `auth` (§7.2.4); without it only `status` is allowed. */
  techKey?: TechnicianKey;
  /** Keepalive interval offered in hello (§4.11.1; 0: none) and the silence after which the link counts as lost. */
  keepaliveMs?: number;
  linkSilenceMs?: number;
}

export const defaultClientOptions: ClientOptions = Object.freeze({
  agent: 'fwpush/0.1.0',
  maxFrame: laptopSettings.maxFrame,
  window: laptopSettings.window,
  replyTimeoutMs: laptopSettings.replyTimeoutMs,
  idleTimeoutMs: laptopSettings.idleTimeoutMs,
  keepaliveMs: laptopSettings.keepaliveMs,
  linkSilenceMs: laptopSettings.linkSilenceMs,
});

type Msg<T extends GatewayUplinkMessage['t']> = Extract<GatewayUplinkMessage, { t: T }>;
type Msg2<T extends LaptopMessage['t']> = Extract<LaptopMessage, { t: T }>;
export type { RetryMessage };

/** The gateway's answer to a request to send: where to continue and in what chunks (§7.3). */
export type Grant = Msg<'grant'>;

/**
 * How the campaign of a push runs (§7.3.5). Each field goes into `rts` only when set; an absent
 * one leaves the gateway's default (policy: `window` when maintenance windows are configured, else
 * `now`; no downgrade; busy devices deferred, never forced).
 */
export interface CampaignOptions extends Targeting {
  policy?: CampaignPolicy;
  downgrade?: boolean;
  force?: boolean;
}

/** A successful `committed` (§7.4.3): the campaign was created, started or queued (`queued`, §7.4.5). */
export type Committed = Msg<'committed'> & { ok: true; campaign: string };

/** The request to send for a manifest: the options that are set, and no other key (§1.4.8: no undefined). */
export function rtsFor(manifest: Manifest, options: CampaignOptions = {}): RtsMessage {
  return { t: 'rts', manifest, ...defined(options) };
}

/** The fields that are set (§1.4.8: no undefined on the wire). */
function defined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** `error` codes that report one dropped message, not a failed upload (docs/protocol.md §7.9.1). */
const DROPPED_MESSAGE_CODES: ReadonlySet<string> = new Set(['E_CBOR', 'E_MESSAGE_INVALID', 'E_MESSAGE_TYPE', 'E_MESSAGE_TOO_LONG']);

/**
 * The laptop's end of the uplink (docs/protocol.md §7): connect, push an image, follow its
 * campaign. Every gateway message is also re-emitted as 'event' for rendering.
 */
export class UplinkClient extends EventEmitter<{
  event: [GatewayUplinkMessage];
  upload: [sent: number, total: number, resumedAt: number];
}> {
  private readonly backlog: GatewayUplinkMessage[] = [];
  private wake: (() => void) | undefined;
  /** The link was closed (its port closed or failed, or close() was called): nothing more will arrive. */
  private closed = false;
  /** The hellos were exchanged: from then on a peer RESET means the gateway's session is gone. */
  private connected = false;
  /** The gateway reset the link after the hellos (§4.11.2: it restarted): this session is over. */
  private peerReset: FwError | undefined;
  /** This session's challenge and request counter (§7.2.4); set by each hello exchange. */
  private session: { challenge: Uint8Array | undefined; authIdleMs: number | undefined; n: number; lastAt: number } | undefined;

  constructor(private readonly link: LaptopLink, private readonly opts: ClientOptions = defaultClientOptions) {
    super();
    link.once('closed', () => {
      this.closed = true;
      this.wake?.();
    });
    link.on('reset', () => {
      if (!this.connected) return;
      this.peerReset ??= new FwError('E_LINK_RESET', 'the gateway reset the link: it restarted, or another laptop took the line');
      this.wake?.();
    });
    link.on('message', (m) => {
      this.emit('event', m);
      this.backlog.push(m);
      this.wake?.();
    });
  }

  /**
   * Reset the link and exchange hellos; applies the negotiated frame size and window, and
   * authenticates with the technician key, if one is set, against this hello's challenge.
   */
  async connect(): Promise<HelloMessage> {
    await this.link.open();
    return this.exchangeHellos();
  }

  /** Send hello and take the gateway's: a new session with a new challenge (§7.2, §7.2.4). */
  private async exchangeHellos(): Promise<HelloMessage> {
    await this.link.send({
      t: 'hello', proto: PROTOCOL_VERSION, role: 'laptop', agent: this.opts.agent,
      maxFrame: Math.min(this.opts.maxFrame, MAX_FRAME_PAYLOAD), window: this.opts.window, maxMessage: MAX_UPLINK_MESSAGE,
      ...(this.opts.keepaliveMs ? { keepalive: this.opts.keepaliveMs } : {}),
    });
    const hello = await this.next((m): m is Msg<'hello'> | Msg<'deny'> => m.t === 'hello' || m.t === 'deny', this.opts.replyTimeoutMs, 'the gateway hello');
    if (hello.t === 'deny') throw new FwError('E_UPLINK_PROTOCOL', `gateway refused the session (${hello.code}): ${hello.reason}`);
    if (hello.proto !== PROTOCOL_VERSION) {
      throw new FwError('E_UPLINK_PROTOCOL', `gateway speaks uplink protocol ${hello.proto}, this fwpush speaks ${PROTOCOL_VERSION}`);
    }
    this.link.configure({ maxPayload: hello.maxFrame, window: hello.window });
    // §4.11.1: keepalives only when both offered (an older gateway answers without `keepalive`)
    if (hello.keepalive && this.opts.keepaliveMs) this.link.startKeepalive(hello.keepalive, this.opts.linkSilenceMs ?? laptopSettings.linkSilenceMs);
    this.connected = true;
    this.session = { challenge: hello.challenge, authIdleMs: hello.authIdleMs, n: 0, lastAt: Date.now() };
    // A gateway of the previous version (no authIdleMs in its hello) knows only the session-wide auth (§7.2.4, version 1).
    if (hello.challenge && hello.authIdleMs === undefined && this.opts.techKey) await this.link.send(signChallenge(this.opts.techKey, hello.challenge));
    return hello;
  }

  /**
   * The request with the technician's `auth` (§7.2.4): signed over the session challenge, the
   * next counter and its content. Before a request that comes more than half the gateway's
   * authIdleMs after the last one, a new hello fetches a fresh challenge. Unchanged without a
   * technician key or towards a gateway of the previous version.
   */
  async authorised<M extends LaptopMessage & UplinkRequest>(msg: M): Promise<M> {
    const key = this.opts.techKey;
    if (key === undefined || this.session === undefined) return msg;
    if (this.session.authIdleMs !== undefined && Date.now() - this.session.lastAt > this.session.authIdleMs / 2) await this.exchangeHellos();
    const { challenge, authIdleMs } = this.session;
    if (challenge === undefined || authIdleMs === undefined) return msg;
    this.session.n += 1;
    this.session.lastAt = Date.now();
    return signRequest(key, challenge, this.session.n, msg);
  }

  /**
   * Request to send, upload from the granted offset, commit. Resolves with the campaign id (and
   * the whole `committed`, which says whether it is queued) once the gateway has verified and
   * stored the image; rejects with the gateway's reason otherwise.
   */
  async push(manifest: Manifest, image: Uint8Array, options: CampaignOptions = {}): Promise<{ campaign: string; resumedAt: number; committed: Committed }> {
    const grant = await this.requestToSend(manifest, options);
    await this.upload(image, grant);
    const committed = await this.commit();
    return { campaign: committed.campaign, resumedAt: grant.offset, committed };
  }

  /**
   * Ask to send this image (§7.3). Resolves with the grant, whose offset is what the gateway
   * already holds of it (keyed by its digest); rejects on a deny, its code in `details.deny`.
   */
  async requestToSend(manifest: Manifest, options: CampaignOptions = {}): Promise<Grant> {
    await this.link.send(await this.authorised(rtsFor(manifest, options)));
    const reply = await this.next((m): m is Msg<'grant'> | Msg<'deny'> => m.t === 'grant' || m.t === 'deny', this.opts.replyTimeoutMs, 'grant or deny');
    if (reply.t === 'deny') {
      throw new FwError('E_UPLINK_STATE', `gateway refused the upload (${reply.code}): ${reply.reason}`, { details: { deny: reply.code } });
    }
    if (reply.sha256 !== manifest.sha256 || reply.offset > manifest.size) {
      throw new FwError('E_UPLINK_PROTOCOL', `grant does not match the request (sha256 ${reply.sha256}, offset ${reply.offset})`);
    }
    return reply;
  }

  /** Send the image from the granted offset in `data` messages of at most the granted chunk (sized by uploadChunk), emitting 'upload' as it goes. */
  async upload(image: Uint8Array, grant: Grant): Promise<void> {
    const resumedAt = grant.offset;
    for (let off = resumedAt; off < image.length;) {
      // larger messages once the line is known to be fast (laptop/upload-chunk.ts)
      const data = image.subarray(off, Math.min(off + uploadChunk(grant.chunk, this.link.arq.lineMsPerByte), image.length));
      // While the link is down, sends are dropped (MessageLink): stop instead of sending into the void.
      if (this.link.down) throw new FwError('E_LINK_TIMEOUT', `the gateway stopped acknowledging the upload at ${off} of ${image.length} bytes`);
      if (this.peerReset) throw this.peerReset;
      await this.link.send({ t: 'data', off, data });
      off += data.length;
      this.emit('upload', off, image.length, resumedAt);
      this.throwIfGatewayError();
    }
    if (resumedAt >= image.length) this.emit('upload', image.length, image.length, resumedAt);
  }

  /**
   * Commit the upload (§7.4): resolves with the gateway's `committed` once the image is verified
   * and stored; its campaign has started, or waits for a maintenance window (`queued`, §7.4.5).
   */
  async commit(): Promise<Committed> {
    await this.link.send({ t: 'commit' });
    const c = await this.next((m): m is Msg<'committed'> | Msg<'error'> => m.t === 'committed' || (m.t === 'error' && !DROPPED_MESSAGE_CODES.has(m.code)), this.opts.replyTimeoutMs, 'the commit result');
    if (c.t === 'error') throw new FwError('E_UPLINK_STATE', `gateway reported an error during upload (${c.code}): ${c.reason}`);
    if (!c.ok || !c.campaign) {
      throw new FwError(c.code === 'E_IMAGE_SHA256' || c.code === 'E_IMAGE_CRC' || c.code === 'E_IMAGE_SIZE' ? c.code : 'E_UPLINK_STATE',
        `gateway refused the image (${c.code ?? 'no code'}): ${c.reason ?? 'no reason given'}`);
    }
    return { ...c, ok: true, campaign: c.campaign };
  }

  /**
   * Ask what the gateway is doing (§7.11). Resolves with its `state`; the replay of the current or
   * last campaign follows as ordinary events, and live events after it. Follow the campaign with
   * follow() when `state.campaign` is set.
   */
  /** `status` (§7.11): resolves with the gateway's `state` once the `fleet` report that follows it has arrived too. */
  async status(campaign?: string): Promise<Msg<'state'>> {
    await this.link.send({ t: 'status', ...(campaign !== undefined ? { campaign } : {}) });
    if (campaign !== undefined) {
      const r = await this.next((m): m is Msg<'state'> | Msg<'deny'> => m.t === 'state' || m.t === 'deny', this.opts.replyTimeoutMs, 'the gateway state');
      if (r.t === 'deny') throw new FwError('E_UPLINK_STATE', `gateway refused status --campaign ${campaign} (${r.code}): ${r.reason}`, { details: { deny: r.code } });
      await this.next((m): m is Msg<'fleet'> => m.t === 'fleet', this.opts.replyTimeoutMs, 'the fleet report');
      return r;
    }
    const state = await this.next((m): m is Msg<'state'> => m.t === 'state', this.opts.replyTimeoutMs, 'the gateway state');
    await this.next((m): m is Msg<'fleet'> => m.t === 'fleet', this.opts.replyTimeoutMs, 'the fleet report');
    return state;
  }

  /**
   * Follow a campaign's events until it completes; bounded by the gateway's silence
   * (`idleTimeoutMs`, or shorter, e.g. to read the replay of a finished campaign).
   */
  async follow(campaign: string, idleTimeoutMs = this.opts.idleTimeoutMs): Promise<CompleteMessage> {
    return this.next((m): m is Msg<'complete'> => m.t === 'complete' && m.campaign === campaign, idleTimeoutMs, 'campaign completion', true);
  }

  /**
   * Follow a campaign until it completes, or until it has done what it can now and only devices
   * waiting for their check-in are left (`waiting`, §7.6.4): the gateway carries on without the
   * laptop. A `waiting` that only says the campaign paused between waves ends it too.
   */
  async followUntilWaiting(campaign: string, idleTimeoutMs = this.opts.idleTimeoutMs): Promise<CompleteMessage | WaitingMessage> {
    return this.next((m): m is Msg<'complete'> | Msg<'waiting'> => (m.t === 'complete' || m.t === 'waiting') && m.campaign === campaign, idleTimeoutMs, 'campaign completion', true);
  }

  /** `cancel`, `retry`, `resume`, `release-live` (§7.12): resolves with the gateway's `accepted`; rejects with its deny. */
  async control(msg: Msg2<'cancel'> | Msg2<'retry'> | Msg2<'resume'> | Msg2<'release-live'>): Promise<Msg<'accepted'>> {
    await this.link.send(await this.authorised(defined(msg) as typeof msg));
    const r = await this.next((m): m is Msg<'accepted'> | Msg<'deny'> => m.t === 'accepted' || m.t === 'deny', this.opts.replyTimeoutMs, `the answer to ${msg.t}`);
    if (r.t === 'deny') throw new FwError('E_UPLINK_STATE', `gateway refused ${msg.t} (${r.code}): ${r.reason}`, { details: { deny: r.code } });
    return r;
  }

  /**
   * Ask to send a release (§7.3.9). Resolves with the `release-grant` (the component images the
   * gateway lacks, each with its resume offset); rejects on a deny, its code in `details.deny`.
   */
  async requestRelease(msg: Msg2<'release-rts'>): Promise<Msg<'release-grant'>> {
    await this.link.send(await this.authorised(defined(msg) as typeof msg));
    const reply = await this.next((m): m is Msg<'release-grant'> | Msg<'deny'> => m.t === 'release-grant' || m.t === 'deny', this.opts.replyTimeoutMs, 'release grant or deny');
    if (reply.t === 'deny') {
      throw new FwError('E_UPLINK_STATE', `gateway refused the release (${reply.code}): ${reply.reason}`, { details: { deny: reply.code } });
    }
    return reply;
  }

  /**
   * Send the granted component images (§7.3.9): their bytes laid end to end in the grant's order,
   * each from its resume offset, in `data` messages that never cross from one image into the next.
   * `images` maps each granted component to its bytes. Emits 'upload' over the granted bytes.
   */
  async uploadRelease(images: ReadonlyMap<string, Uint8Array>, grant: Msg<'release-grant'>): Promise<void> {
    const total = grant.send.reduce((n, c) => n + c.size, 0);
    const resumedAt = grant.send.reduce((n, c) => n + c.offset, 0);
    let base = 0;
    let sent = resumedAt;
    for (const c of grant.send) {
      const image = images.get(c.component);
      if (!image || image.length !== c.size) throw new FwError('E_UPLINK_PROTOCOL', `release grant names component ${c.component} of ${c.size} bytes, which this release does not have`);
      for (let off = c.offset; off < image.length;) {
        const data = image.subarray(off, Math.min(off + uploadChunk(grant.chunk, this.link.arq.lineMsPerByte), image.length));
        if (this.link.down) throw new FwError('E_LINK_TIMEOUT', `the gateway stopped acknowledging the upload at ${sent} of ${total} bytes`);
        if (this.peerReset) throw this.peerReset;
        await this.link.send({ t: 'data', off: base + off, data });
        off += data.length;
        sent += data.length;
        this.emit('upload', sent, total, resumedAt);
        this.throwIfGatewayError();
      }
      base += c.size;
    }
    if (resumedAt >= total) this.emit('upload', total, total, resumedAt);
  }

  /** Commit a release upload (§7.3.9): the `committed`, with a campaign or `deferred`. */
  async commitRelease(): Promise<Msg<'committed'> & { ok: true }> {
    await this.link.send({ t: 'commit' });
    const c = await this.next((m): m is Msg<'committed'> | Msg<'error'> => m.t === 'committed' || (m.t === 'error' && !DROPPED_MESSAGE_CODES.has(m.code)), this.opts.replyTimeoutMs, 'the commit result');
    if (c.t === 'error') throw new FwError('E_UPLINK_STATE', `gateway reported an error during upload (${c.code}): ${c.reason}`);
    if (!c.ok || (!c.campaign && !c.deferred)) throw new FwError('E_UPLINK_STATE', `gateway refused the release (${c.code ?? 'no code'}): ${c.reason ?? 'no reason given'}`);
    return { ...c, ok: true };
  }

  /** A dry run (§7.12.4): the order an upload of this manifest would get now. */
  async plan(manifest: Manifest, options: CampaignOptions = {}): Promise<PlannedMessage> {
    const { policy: _p, force: _f, ...rest } = options;
    await this.link.send(await this.authorised({ t: 'plan', manifest, ...defined(rest) }));
    // the gateway measures every link first: as long as a campaign's probe phase may take
    const r = await this.next((m): m is Msg<'planned'> | Msg<'deny'> => m.t === 'planned' || m.t === 'deny', Math.max(this.opts.replyTimeoutMs, this.opts.idleTimeoutMs), 'the plan');
    if (r.t === 'deny') throw new FwError('E_UPLINK_STATE', `gateway refused the plan (${r.code}): ${r.reason}`, { details: { deny: r.code } });
    return r;
  }

  private throwIfGatewayError(): void {
    const i = this.backlog.findIndex((m) => (m.t === 'error' && !DROPPED_MESSAGE_CODES.has(m.code)) || m.t === 'deny');
    if (i < 0) return;
    const m = this.backlog[i] as Msg<'error'> | Msg<'deny'>;
    this.backlog.splice(i, 1);
    throw new FwError('E_UPLINK_STATE', `gateway stopped the upload (${m.code}): ${m.reason}`);
  }

  /**
   * The next gateway message that matches, taking it out of the backlog. With `idle`, the
   * timeout restarts whenever any message arrives (the gateway is alive and working).
   */
  private async next<R extends GatewayUplinkMessage>(match: (m: GatewayUplinkMessage) => m is R, timeoutMs: number, what: string, idle = false): Promise<R> {
    let deadline = Date.now() + timeoutMs;
    for (;;) {
      for (let i = 0; i < this.backlog.length; i++) {
        const m = this.backlog[i]!;
        if (match(m)) {
          this.backlog.splice(0, i + 1); // earlier messages were already emitted as events
          return m;
        }
      }
      if (idle && this.backlog.length > 0) {
        deadline = Date.now() + timeoutMs; // the gateway is alive; what we skipped was already emitted
        this.backlog.length = 0;
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new FwError('E_LINK_TIMEOUT', `no ${what} from the gateway within ${timeoutMs} ms`);
      if (this.peerReset) throw this.peerReset;
      if (this.closed) throw new FwError('E_LINK_CLOSED', `the link closed while waiting for ${what}`);
      if (this.link.down) throw new FwError('E_LINK_TIMEOUT', `the gateway stopped answering while waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(t);
          this.link.off('down', done);
          this.link.off('closed', done);
          this.wake = undefined;
          resolve();
        };
        const t = setTimeout(done, left);
        this.link.once('down', done);
        this.link.once('closed', done);
        this.wake = done;
      });
    }
  }
}
