import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { describeError } from '../protocol/errors.ts';
import { MAX_WINDOW } from '../protocol/limits.ts';
import {
  decodeLaptopMessage, encodeUplinkMessage, type GatewayUplinkMessage, type LaptopMessage, type ResultMessage,
} from '../protocol/uplink.ts';
import { MessageLink } from '../transport/message-link.ts';
import { Broker } from './broker.ts';
import type { GatewayConfig } from './config.ts';
import { DeviceChannel } from './device-channel.ts';
import { Fleet } from './fleet.ts';
import type { Logger } from './log.ts';
import { Campaign, type CampaignDeps } from './rollout/campaign.ts';
import { ImageSource } from './rollout/image-source.ts';
import { CampaignJournal, findUnfinished, journalDir, type JournalRecord, type UnfinishedCampaign } from './rollout/journal.ts';
import { ImageStore, type StoredImage } from './store.ts';
import { UplinkSession } from './uplink/session.ts';
import { realTimers, type Timers } from './waiter.ts';

export const GATEWAY_AGENT = 'fwgate/0.1.0';

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
  private readonly journals = new Map<Campaign, CampaignJournal>();
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
    private readonly journalDir: string,
  ) {}

  static async start(opts: GatewayOptions): Promise<Gateway> {
    const { config, log } = opts;
    const timers = opts.timers ?? realTimers;
    const store = await ImageStore.open({
      dir: join(config.dataDir, 'store'), maxImageSize: config.uplink.maxImageBytes, syncEveryBytes: config.uplink.partialSyncBytes,
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
    const gw = new Gateway(config, log, timers, broker, channel, fleet, store, await journalDir(config.dataDir));
    if (opts.uplinkStream) gw.attachUplink(opts.uplinkStream);
    await gw.resumeUnfinished();
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
  async prepareCampaign(image: StoredImage, opts: CampaignOptions = {}, resume?: UnfinishedCampaign): Promise<{ campaign: Campaign; start: () => void }> {
    if (this.campaign) throw new Error(`campaign ${this.campaign.id} is still running`);
    const id = resume?.state.id ?? `c-${randomBytes(4).toString('hex')}`;
    const source = new ImageSource(image.manifest, await this.store.read(image.manifest.sha256));
    const running = this.campaign as Campaign | undefined; // re-check: another start may have won during the read
    if (running) throw new Error(`campaign ${running.id} is still running`);
    const campaign = new Campaign(id, source, {
      channel: this.channel, fleet: this.fleet, config: this.config.rollout, timers: this.timers, log: this.log.child({ part: 'rollout' }),
      beforeTransfers: () => this.uplink?.delivered(this.config.uplink.orderDeliveryWaitMs) ?? Promise.resolve(),
      ...opts,
      ...(resume ? { resume: resume.state } : {}),
    });
    this.campaign = campaign;
    this.campaigns.push(campaign);
    if (this.campaigns.length > 10) this.campaigns.shift(); // the last few, for status replays
    this.journalCampaign(campaign, resume
      ? CampaignJournal.reopen(resume.path, resume.validBytes)
      : CampaignJournal.create(this.journalDir, id, image.manifest.sha256));
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

  /**
   * After a restart (a crash, `kill -9`, a power cut, or a clean stop mid-campaign): resume the
   * newest campaign whose journal has no completion. Older unfinished ones (there should be none:
   * one campaign runs at a time) and one whose image is no longer stored are closed in their
   * journal with what they had, and logged.
   */
  private async resumeUnfinished(): Promise<void> {
    const unfinished = findUnfinished(this.journalDir, (msg) => this.log.warn(msg));
    const newest = unfinished.pop();
    for (const u of unfinished) this.closeJournal(u, 'a newer campaign was started after it');
    if (!newest) return;
    const image = this.store.get(newest.state.sha256);
    if (!image) {
      this.closeJournal(newest, `its image ${newest.state.sha256} is no longer in the store`);
      return;
    }
    const { campaign, start } = await this.prepareCampaign(image, {}, newest);
    this.log.info({ campaign: campaign.id, image: image.manifest.version, results: newest.state.results.size, records: newest.state.records }, 'resuming an unfinished campaign');
    start();
  }

  /** Write the completion of a campaign that will not resume, from the results its journal has. */
  private closeJournal(u: UnfinishedCampaign, why: string): void {
    const results = [...u.state.results.values()];
    const count = (o: ResultMessage['outcome']): number => results.filter((r) => r.outcome === o).length;
    const journal = CampaignJournal.reopen(u.path, u.validBytes);
    try {
      journal.append({
        r: 'complete',
        complete: { t: 'complete', campaign: u.state.id, devices: results.length, updated: count('updated'), failed: count('failed'), rolledBack: count('rolled-back'), skipped: count('skipped'), durationMs: Math.max(0, Date.now() - u.state.startedAt) },
      });
    } finally {
      journal.close();
    }
    this.log.error({ campaign: u.state.id, results: results.length }, `unfinished campaign not resumed: ${why}; closed with the results it had`);
  }

  /**
   * Record the campaign's steps in its journal (docs/reliability.md): the order, each device's
   * activation before it is sent (the `activating` phase is reported synchronously, before the
   * `activate` message goes out), how much of the image a device holds (at most every eighth of
   * the image), results and the completion. Appends are durable when they return.
   */
  private journalCampaign(campaign: Campaign, journal: CampaignJournal): void {
    this.journals.set(campaign, journal);
    const step = Math.max(1, Math.ceil(campaign.image.size / 8));
    const heldAt = new Map<string, number>();
    const append = (rec: JournalRecord): void => {
      if (this.journals.get(campaign) !== journal) return; // detached at shutdown: the campaign resumes at the next start
      try {
        journal.append(rec);
      } catch (err) {
        this.log.error({ campaign: campaign.id, err: describeError(err), record: rec.r }, 'campaign journal append failed');
      }
    };
    campaign.on('order', (order) => append({ r: 'order', order }));
    campaign.on('progress', (p) => {
      if (p.phase === 'activating') append({ r: 'activating', id: p.id });
      else if (p.phase === 'transferring' && p.bytes - (heldAt.get(p.id) ?? 0) >= step) {
        heldAt.set(p.id, p.bytes);
        append({ r: 'held', id: p.id, bytes: p.bytes });
      }
    });
    campaign.on('result', (result) => append({ r: 'result', result }));
    campaign.on('complete', (complete) => {
      append({ r: 'complete', complete });
      journal.close();
      this.journals.delete(campaign);
    });
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

  /**
   * Clean shutdown: detach the campaign's journal (so the campaign resumes at the next start, as
   * after a crash), cancel the campaign, close the uplink, the devices' channel and the broker.
   */
  async stop(): Promise<void> {
    for (const j of this.journals.values()) j.close();
    this.journals.clear();
    this.campaign?.cancel();
    await this.channel.stop();
    await this.campaignRun;
    await this.uplink?.close();
    this.uplinkLink?.close();
    this.log.info(this.counters(), 'counters at shutdown');
    await this.broker.close();
  }
}
