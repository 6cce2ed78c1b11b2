import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { describeError } from '../protocol/errors.ts';
import { MAX_WINDOW } from '../protocol/limits.ts';
import {
  decodeLaptopMessage, encodeUplinkMessage, type GatewayUplinkMessage, type LaptopMessage,
} from '../protocol/uplink.ts';
import { MessageLink } from '../transport/message-link.ts';
import { Broker } from './broker.ts';
import type { GatewayConfig } from './config.ts';
import { DeviceChannel } from './device-channel.ts';
import { Fleet } from './fleet.ts';
import type { Logger } from './log.ts';
import { Campaign, type CampaignDeps } from './rollout/campaign.ts';
import { ImageSource } from './rollout/image-source.ts';
import { ImageStore, type StoredImage } from './store.ts';
import { UplinkSession } from './uplink/session.ts';
import { realTimers, type Timers } from './waiter.ts';

export const GATEWAY_AGENT = 'fwgate/0.1.0';
/** Longest wait for the laptop to acknowledge the order before transfers start (it may be unplugged). */
const ORDER_DELIVERY_WAIT_MS = 2000;

/** Per-campaign options beyond the config (benchmarks compare start orders with these). */
export type CampaignOptions = Pick<CampaignDeps, 'orderPolicy' | 'seed'>;

export interface GatewayOptions {
  config: GatewayConfig;
  log: Logger;
  timers?: Timers;
  /** The laptop link: an open serial port or any Duplex (tests). */
  uplinkStream?: Duplex;
}

/**
 * The gateway process: broker + device channel + fleet registry + image store + campaigns +
 * (optionally) the serial uplink. Orchestration knows nothing about the laptop: the uplink
 * subscribes to campaign events like anyone else.
 */
export class Gateway {
  private campaign: Campaign | undefined;
  private campaignRun: Promise<unknown> | undefined;
  readonly campaigns: Campaign[] = [];
  uplink: UplinkSession | undefined;
  uplinkLink: MessageLink<LaptopMessage, GatewayUplinkMessage> | undefined;

  private constructor(
    readonly config: GatewayConfig,
    readonly log: Logger,
    readonly timers: Timers,
    readonly broker: Broker,
    readonly channel: DeviceChannel,
    readonly fleet: Fleet,
    readonly store: ImageStore,
  ) {}

  static async start(opts: GatewayOptions): Promise<Gateway> {
    const { config, log } = opts;
    const timers = opts.timers ?? realTimers;
    const store = await ImageStore.open({
      dir: join(config.dataDir, 'store'), maxImageSize: config.uplink.maxImageBytes,
      logger: (line) => log.info(line),
    });
    const broker = await Broker.start({
      host: config.broker.host, port: config.broker.port,
      maxPacketBytes: config.broker.maxPacketBytes, maxClients: config.broker.maxClients,
      logger: (line) => log.warn(line),
    });
    const channel = new DeviceChannel(broker, log.child({ part: 'devices' }), timers);
    await channel.start();
    const fleet = new Fleet(channel);
    fleet.on('status', (d) => log.debug({ device: d.id, hw: d.hw, version: d.version, slot: d.slot }, 'device status'));
    const gw = new Gateway(config, log, timers, broker, channel, fleet, store);
    if (opts.uplinkStream) gw.attachUplink(opts.uplinkStream);
    log.info({ broker: broker.url, images: store.list().length, serial: config.serial.path ?? null }, 'gateway ready');
    return gw;
  }

  /** Serve a laptop on this stream (a serial port). */
  attachUplink(stream: Duplex): void {
    const { config, log } = this;
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
    this.uplinkLink = link;
    this.uplink = new UplinkSession({
      link, store: this.store, config: config.uplink, log: log.child({ part: 'uplink' }), agent: GATEWAY_AGENT,
      busyReason: () => (this.campaign ? `campaign ${this.campaign.id} is still running (fwpush status follows it)` : undefined),
      campaignState: () => this.campaignState(),
      onImageStored: async (image) => {
        const { campaign, start } = await this.prepareCampaign(image);
        return { id: campaign.id, start };
      },
    });
  }

  /** Start a rollout of a stored image to the fleet. One campaign at a time. */
  async startCampaign(image: StoredImage, opts: CampaignOptions = {}): Promise<Campaign> {
    const prepared = await this.prepareCampaign(image, opts);
    prepared.start();
    return prepared.campaign;
  }

  /**
   * Create the campaign for a stored image and make it the active one, without running it yet:
   * the uplink first tells the laptop the image is stored, then starts it, so the laptop sees
   * `committed` before any campaign event.
   */
  async prepareCampaign(image: StoredImage, opts: CampaignOptions = {}): Promise<{ campaign: Campaign; start: () => void }> {
    if (this.campaign) throw new Error(`campaign ${this.campaign.id} is still running`);
    const id = `c-${randomBytes(4).toString('hex')}`;
    const source = new ImageSource(image.manifest, await this.store.read(image.manifest.sha256));
    const running = this.campaign as Campaign | undefined; // re-check: another start may have won during the read
    if (running) throw new Error(`campaign ${running.id} is still running`);
    const campaign = new Campaign(id, source, {
      channel: this.channel, fleet: this.fleet, config: this.config.rollout, timers: this.timers, log: this.log.child({ part: 'rollout' }),
      beforeTransfers: () => this.uplink?.delivered(ORDER_DELIVERY_WAIT_MS) ?? Promise.resolve(),
      ...opts,
    });
    this.campaign = campaign;
    this.campaigns.push(campaign);
    if (this.campaigns.length > 10) this.campaigns.shift(); // the last few, for status replays
    const forward = (msg: GatewayUplinkMessage): void => this.uplink?.notify(msg);
    campaign.on('order', forward);
    campaign.on('progress', forward);
    campaign.on('totals', forward);
    campaign.on('result', forward);
    campaign.on('complete', forward);
    let started = false;
    const start = (): void => {
      if (started) return;
      started = true;
      this.campaignRun = campaign.run()
        .catch((err: unknown) => this.log.error({ campaign: id, err: describeError(err) }, 'campaign failed'))
        .finally(() => {
          this.log.info({ campaign: id, ...this.counters() }, 'counters');
          if (this.campaign === campaign) this.campaign = undefined;
        });
    };
    return { campaign, start };
  }

  /** What was received, sent, refused and dropped, for logs and tests. */
  counters(): Record<string, unknown> {
    return {
      devices: { ...this.channel.stats },
      broker: this.broker.stats,
      uplink: this.uplinkLink ? { ...this.uplinkLink.stats, frames: this.uplinkLink.arq.stats.parser, retransmits: this.uplinkLink.arq.stats.retransmits } : null,
    };
  }

  /** `state` plus the replay of the active campaign, or of the last one when none is running. */
  campaignState(): GatewayUplinkMessage[] {
    const c = this.campaign ?? this.campaigns.at(-1);
    if (!c) return [{ t: 'state', running: false }];
    const m = c.image.manifest;
    const snap = c.snapshot();
    return [
      { t: 'state', running: c === this.campaign, campaign: c.id, image: { name: m.name, version: m.version, sha256: m.sha256 } },
      ...(snap.order ? [snap.order] : []),
      ...snap.progress,
      ...(snap.totals ? [snap.totals] : []),
      ...snap.results,
      ...(snap.complete ? [snap.complete] : []),
    ];
  }

  get activeCampaign(): Campaign | undefined {
    return this.campaign;
  }

  /** Clean shutdown: cancel the campaign, close the uplink, the devices' channel and the broker. */
  async stop(): Promise<void> {
    this.campaign?.cancel();
    await this.channel.stop();
    await this.campaignRun;
    await this.uplink?.close();
    this.uplinkLink?.close();
    this.log.info(this.counters(), 'counters at shutdown');
    await this.broker.close();
  }
}
