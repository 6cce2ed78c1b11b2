import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { describeError } from '../protocol/errors.ts';
import {
  type CompleteMessage, type GatewayUplinkMessage, type LaptopMessage, type PlannedMessage,
  type PreflightInfo, type ResultMessage, type RetryMessage, type Targeting,
} from '../protocol/uplink.ts';
import { FwError } from '../protocol/errors.ts';
import type { Manifest } from '../protocol/manifest.ts';
import type { ReleaseManifest } from '../protocol/release.ts';
import { logSecurity, manifestDistrust } from './trust.ts';

export { manifestDistrust, releaseDistrust } from './trust.ts';
import { TokenBucket } from './rollout/bandwidth.ts';
import { Slots } from './rollout/slots.ts';
import { campaignState } from './campaign-state.ts';
import { readCampaignJournal, retryPlan, type JournalState } from './campaign-retry.ts';
import { serveControl, type ControlRequest } from './control.ts';
import type { MessageLink } from '../transport/message-link.ts';
import { Broker } from './broker.ts';
import { brokerLogger, logPresence } from './broker-log.ts';
import { brokerOptions } from './broker-setup.ts';
import type { GatewayConfig } from './config.ts';
import { DeviceChannel } from './device-channel.ts';
import { FleetStore } from './fleet-store.ts';
import { Fleet, type DeviceRecord } from './fleet.ts';
import type { Logger } from './log.ts';
import { Campaign, type CampaignDeps } from './rollout/campaign.ts';
import { windowGate, type WindowGate } from './rollout/gate.ts';
import { pendingTasks } from './rollout/pending-tasks.ts';
import { ImageSource } from './rollout/image-source.ts';
import { acquirePidFile, type PidFile } from './pid-file.ts';
import { pruneJournals } from './retention.ts';
import { resumeUnfinished } from './restart-resume.ts';
import { CampaignJournal, journalDir, type UnfinishedCampaign } from './rollout/journal.ts';
import { ImageStore, type StoredImage } from './store.ts';
import type { UplinkSession } from './uplink/session.ts';
import { serveUplink } from './uplink-wiring.ts';
import { ReconnectGrace } from './reconnect-grace.ts';
import { ReleaseSupport } from './release-support.ts';
import { CampaignPlanning } from './campaign-planning.ts';
import { CampaignRecorder } from './campaign-recorder.ts';
import { ReleaseRegistry } from './releases.ts';
import { goLive, storedRelease, type PreparedRelease } from './release-live.ts';
import { KeyRing, parsePublicKey } from '../protocol/signature.ts';
import { realTimers, type Timers } from './waiter.ts';
import { MaintenanceWindows, nodeCronStarts, type Clock as WallClock } from './windows.ts';
import { watchClockJumps } from './clock-jump.ts';

export const GATEWAY_AGENT = 'fwgate/0.1.0';

/** `now`: the technician is present, run at once; `window`: wait for a maintenance window (§7.3). */
export type CampaignPolicy = 'now' | 'window';

/**
 * Per-campaign options beyond the config: the policy a laptop asks for in its `rts`, and (for
 * benchmarks) the start order.
 */
export type CampaignOptions = Pick<CampaignDeps, 'orderPolicy' | 'seed'> & Targeting & {
  policy?: CampaignPolicy; force?: boolean; downgrade?: boolean;
  /** A retry (§7.12.2): the campaign it repeats; its `only` names the devices. */
  retryOf?: string;
};

/** A created campaign, not started yet, and what the laptop is told about it in `committed`. */
export interface PreparedCampaign {
  campaign: Campaign;
  start: () => void;
  queued?: { reason: string; nextWindowAt?: number; expiresAt?: number };
  supersedes?: string;
}

export interface GatewayOptions {
  config: GatewayConfig;
  log: Logger;
  timers?: Timers;
  /** Wall clock of the maintenance windows (tests inject a fake one); default the real one. */
  wallClock?: WallClock;
  /** Monotonic time for noticing wall-clock steps (tests with a wall clock of their own); default timers.now. */
  monotonic?: () => number;
  /** The laptop link: an open serial port or any Duplex (tests). */
  uplinkStream?: Duplex;
}

/**
 * The gateway process: broker + device channel + fleet registry + image store + campaigns +
 * (optionally) the serial uplink. Orchestration knows nothing about the laptop: the uplink
 * subscribes to campaign events like anyone else.
 */
export class Gateway {
  /** The campaign whose devices are being updated in order (one at a time). */
  private sweeping: Campaign | undefined;
  /** Created and started, waiting for the sweeping one or for a window. */
  private queue: { campaign: Campaign; policy: CampaignPolicy }[] = [];
  /** Campaigns not complete yet (queued, sweeping, or waiting for their devices' check-ins). */
  private readonly live = new Set<Campaign>();
  /** Live campaigns with policy `now`. */
  private readonly nowCampaigns = new Set<Campaign>();
  private readonly runs = new Set<Promise<unknown>>();
  /** One concurrency limit and one site bandwidth cap across every campaign. */
  private readonly slots: Slots;
  private readonly bandwidth: TokenBucket | undefined;
  private stopping = false;
  readonly campaigns: Campaign[] = [];
  /** The campaigns' journals and the laptop's messages in their order (gateway/campaign-recorder.ts). */
  private readonly recorder: CampaignRecorder;
  uplink: UplinkSession | undefined;
  private controlServer: { close(): Promise<void> } | undefined;
  /** Typed events for subscribers at the edges (HTTP status page, metrics): each campaign as it is created. */
  readonly events = new EventEmitter<{ campaign: [Campaign] }>();
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
    /** The maintenance windows of the config (none: `window` campaigns would never wait). */
    readonly windows: MaintenanceWindows,
    private readonly gate: WindowGate,
    /** The fleet report, kept in <dataDir>/fleet.json across restarts. */
    readonly fleetStore: FleetStore,
  ) {
    this.keyRing = new KeyRing(config.security.trustedKeys.map((k) => parsePublicKey(k.publicKey)));
    this.releaseSupport = new ReleaseSupport({ keyRing: this.keyRing, allowUnsigned: config.security.allowUnsigned, store, releases: () => this.releases });
    this.planning = new CampaignPlanning({ config, log, timers, channel, fleet, fleetStore, releaseSupport: this.releaseSupport });
    this.slots = new Slots(config.rollout.concurrency);
    this.bandwidth = config.rollout.siteBps > 0 ? new TokenBucket(config.rollout.siteBps, timers) : undefined;
    this.reconnectGrace = new ReconnectGrace(fleetStore.connectedAtLastStop, fleet, timers, config.rollout.reconnectGraceMs, log.child({ part: 'rollout' }));
    this.recorder = new CampaignRecorder({ config, timers, log, uplink: () => this.uplink, onClosed: () => this.pruneJournals() });
    fleet.on('status', (d) => this.sendTasks(d));
    gate.onChange((open) => {
      log.info({ open, ...(open ? { endsAt: gate.endsAt() } : { nextOpenAt: gate.nextOpenAt() }) }, open ? 'maintenance window open' : 'maintenance window closed');
      if (open) this.schedule();
    });
  }

  /** The release registry (<dataDir>/releases, docs/operations.md "Releases"). */
  releases!: ReleaseRegistry;

  /** The trusted manifest-signing keys of the config (docs/protocol.md §5.4, §7.3.1). */
  readonly keyRing: KeyRing;
  private readonly releaseSupport: ReleaseSupport;
  private readonly planning: CampaignPlanning;
  /** Right after the start: new campaigns wait a while for the devices connected before it (reconnect-grace.ts). */
  private readonly reconnectGrace: ReconnectGrace;

  static async start(opts: GatewayOptions): Promise<Gateway> {
    const { config, log } = opts;
    const timers = opts.timers ?? realTimers;
    const pidFile = acquirePidFile(config.dataDir, 'gateway'); // refuses while another live process holds the data directory
    const ring = new KeyRing(config.security.trustedKeys.map((k) => parsePublicKey(k.publicKey)));
    const releases = await ReleaseRegistry.open({
      dir: join(config.dataDir, 'releases'), keyRing: ring, allowUnsigned: config.security.allowUnsigned,
      report: (r) => log.error({ file: r.file, reason: r.reason }, 'release record does not verify: skipped (move it away, or upload the release again)'),
    });
    const store = await ImageStore.open({
      dir: join(config.dataDir, 'store'), maxImageSize: config.uplink.maxImageBytes, syncEveryBytes: config.uplink.partialSyncBytes,
      logger: (line) => log.info(line),
      // the disk is not trusted either: a stored manifest must verify as an upload's would (§7.3.1)
      // a component image is covered by its verified release's signature (§5.5.5)
      checkManifest: (m) => (releases.covers(m) ? undefined : manifestDistrust(ring, config.security.allowUnsigned, m)),
    });
    const fleetStore = await FleetStore.open({ dataDir: config.dataDir, timers, log: log.child({ part: 'fleet' }) });
    const broker = await Broker.start(await brokerOptions(config, brokerLogger(log.child({ part: 'broker' }))));
    const channel = new DeviceChannel(broker, log.child({ part: 'devices' }), timers);
    await channel.start();
    const fleet = new Fleet(channel);
    logPresence(fleet, log.child({ part: 'devices' }));
    fleetStore.attach(fleet);
    fleet.on('status', (d) => log.debug({ device: d.id, hw: d.hw, version: d.version, slot: d.slot }, 'device status'));
    const wallClock = opts.wallClock ?? { now: () => Date.now(), setTimeout: timers.setTimeout, clearTimeout: timers.clearTimeout };
    // node-cron fires the starts on the system clock; an injected (test) clock has only its timers
    const windows = new MaintenanceWindows(config.windows.list, wallClock, opts.wallClock ? undefined : nodeCronStarts);
    windows.start();
    // issue 17.7: a wall-clock step re-checks the windows (an injected wall clock steps only if the test gives a monotonic one)
    watchClockJumps(windows, wallClock, opts.monotonic ?? (opts.wallClock ? () => wallClock.now() : () => timers.now()), config.windows, log);
    const gw = new Gateway(config, log, timers, broker, channel, fleet, store, await journalDir(config.dataDir), windows, windowGate(windows, wallClock), fleetStore);
    gw.pidFile = pidFile;
    gw.releases = releases;
    gw.pruneJournals();
    logSecurity(gw.keyRing, config.security.allowUnsigned, log);
    if (opts.uplinkStream) gw.attachUplink(opts.uplinkStream);
    await resumeUnfinished({
      journalDir: gw.journalDir, store, keyRing: gw.keyRing, config, log, closed: gw.closedAtStart,
      prepareCampaign: (image, u) => gw.prepareCampaign(image, {}, u),
      prepareRelease: (release, u) => gw.prepareRelease(release, {}, u),
    });
    try {
      gw.controlServer = await serveControl(config.dataDir, (r) => gw.control(r), (line) => log.info(line));
    } catch (err) {
      log.warn({ err: describeError(err) }, 'control socket not available: fwgate campaign cancel/retry/resume will not reach this gateway');
    }
    log.info({ broker: broker.url, images: store.list().length, serial: config.serial.path ?? null }, 'gateway ready');
    return gw;
  }

  /** Where the campaign journals live (<dataDir>/journal). */
  get journalPath(): string {
    return this.journalDir;
  }

  /** Serve a laptop on this stream (a serial port). */
  attachUplink(stream: Duplex): void {
    const { link, session } = serveUplink(this, stream, GATEWAY_AGENT);
    this.uplinkLink = link;
    this.uplink = session;
  }

  /** Start a rollout of a stored image to the fleet (queued behind a running one, or for a window). */
  async startCampaign(image: StoredImage, opts: CampaignOptions = {}): Promise<Campaign> {
    const prepared = await this.prepareCampaign(image, opts);
    prepared.start();
    return prepared.campaign;
  }

  /** `now` unless asked for, or maintenance windows are configured and nothing was asked. */
  private policyOf(request: CampaignOptions): CampaignPolicy {
    return request.policy ?? (this.windows.configured ? 'window' : 'now');
  }

  /**
   * Why an upload with this policy would be refused now: a `now` upload while a campaign sweeps,
   * or while a `now` campaign is created and about to (the technician would wait behind it).
   */
  busyReason(request: CampaignOptions): string | undefined {
    if (this.policyOf(request) !== 'now') return undefined;
    const blocking = this.sweeping ?? [...this.live].find((c) => this.nowCampaigns.has(c) && !c.started);
    if (!blocking) return undefined;
    return `campaign ${blocking.id} is still running (fwpush status follows it; an upload for a maintenance window is queued instead)`;
  }

  /**
   * Create the campaign for a stored image, without running it yet: the uplink first tells the
   * laptop the image is stored, then starts it, so the laptop sees `committed` before any campaign
   * event. `start()` queues it: campaigns sweep one at a time (a campaign waiting only for its
   * devices' check-ins does not hold the next one back), a `window` campaign only while a
   * maintenance window is open (or `rollout.downloadEarly`). A `window` campaign supersedes a
   * queued one that has not started for the same hardware models.
   */
  async prepareCampaign(image: StoredImage, opts: CampaignOptions = {}, resume?: UnfinishedCampaign, release?: ReleaseManifest): Promise<PreparedCampaign> {
    const policy = resume?.state.policy?.mode ?? this.policyOf(opts);
    const busy = resume ? undefined : this.busyReason({ ...opts, policy });
    if (busy) throw new Error(busy);
    const id = resume?.state.id ?? `c-${randomBytes(4).toString('hex')}`;
    // read back from disk: verified (SHA-256) before any device gets a byte of it (a release's
    // component images: each when a device first needs it)
    const source = new ImageSource(image.manifest, release ? Buffer.alloc(0) : await this.store.read(image.manifest.sha256));
    const releaseDeps = release ? await this.releaseSupport.campaignDeps(release) : undefined;
    const busyNow = resume ? undefined : this.busyReason({ ...opts, policy }); // re-check: another start may have won during the read
    if (busyNow) throw new Error(busyNow);
    const force = resume?.state.policy?.force ?? opts.force ?? false;
    const downgrade = resume?.state.policy?.downgrade ?? opts.downgrade ?? false;
    const expiresAt = resume?.state.policy?.expiresAt ?? this.gate.now() + this.config.rollout.campaignExpiryMs;
    const windowed = policy === 'window';
    // fixed at creation when the laptop narrowed them (or a retry): else every device known when it runs
    const targets = resume ? resume.state.targets : opts.only || opts.group !== undefined ? (await this.planning.targetIds(opts)) : undefined;
    const waves = resume ? resume.state.waves : opts.waves;
    const waveGate = resume ? resume.state.waveGate : opts.waveGate;
    const wavePause = resume ? resume.state.wavePause : opts.wavePause;
    const campaign: Campaign = new Campaign(id, source, {
      channel: this.channel, fleet: this.fleet, config: this.config.rollout, timers: this.timers, log: this.log.child({ part: 'rollout' }),
      // the order is durable and handed to the uplink (it waits for its record) before any transfer
      beforeTransfers: async (): Promise<void> => {
        await this.recorder.durableFor(campaign);
        await this.recorder.flushed;
        await this.uplink?.delivered(this.config.uplink.orderDeliveryWaitMs);
      },
      durable: (): Promise<void> => this.recorder.durableFor(campaign),
      reconnects: (signal) => this.reconnectGrace.wait(signal),
      ...(opts.orderPolicy ? { orderPolicy: opts.orderPolicy } : {}),
      ...(opts.seed !== undefined ? { seed: opts.seed } : {}),
      downgrade,
      force,
      slots: this.slots,
      ...(this.bandwidth ? { bandwidth: this.bandwidth } : {}),
      ...(targets ? { targets } : {}),
      ...(waves ? { waves } : {}),
      ...(waveGate !== undefined ? { waveGatePct: waveGate } : {}),
      ...(wavePause ? { wavePause } : {}),
      isSuspect: (devId: string) => this.fleetStore.isSuspect(devId),
      // offline and busy devices wait for their check-in until the expiry, in every policy
      checkIn: { expiresAt, force },
      ...(windowed ? { gate: this.gate, downloadEarly: this.config.rollout.downloadEarly } : {}),
      ...(resume ? { resume: resume.state } : {}),
      ...(releaseDeps ? { release: releaseDeps } : {}),
    });
    const superseded = windowed && !resume ? this.queue.filter((q) => q.policy === 'window' && q.campaign.image.manifest.hw.some((hw) => image.manifest.hw.includes(hw))) : [];
    this.campaigns.push(campaign);
    if (this.campaigns.length > 10) this.campaigns.shift(); // the last few, for status replays
    this.live.add(campaign);
    this.events.emit('campaign', campaign);
    if (policy === 'now') this.nowCampaigns.add(campaign);
    campaign.once('complete', () => {
      this.live.delete(campaign);
      this.nowCampaigns.delete(campaign);
    });
    // order, result and complete go to the laptop from the recorder, once their record is durable
    this.recorder.record(campaign, resume
      ? CampaignJournal.reopen(resume.path, resume.validBytes)
      : CampaignJournal.create(this.journalDir, id, image.manifest.sha256, Date.now(), { mode: policy, force, downgrade, expiresAt }, {
        manifest: image.manifest,
        ...(release ? { release } : {}),
        ...(targets ? { targets } : {}), ...(waves ? { waves } : {}), ...(waveGate !== undefined ? { waveGate } : {}), ...(wavePause ? { wavePause } : {}),
        ...(opts.retryOf ? { retryOf: opts.retryOf } : {}),
      }));
    campaign.on('progress', (m) => this.recorder.forward(m));
    campaign.on('totals', (m) => this.recorder.forward(m));
    campaign.on('waiting', (m) => this.recorder.forward(m));
    this.recordResults(campaign, resume?.state.results.values());
    for (const old of superseded) this.supersede(old.campaign, campaign);
    if (!resume) this.supersedePending(campaign, targets);
    let started = false;
    const start = (): void => {
      if (started) return;
      started = true;
      this.queue.push({ campaign, policy });
      this.schedule();
    };
    const waits = windowed && !this.gate.isOpen() && !this.config.rollout.downloadEarly;
    const queuedBehind = windowed ? this.sweeping : undefined;
    const queued = waits
      ? { reason: 'waits for the next maintenance window', ...(this.gate.nextOpenAt() !== undefined ? { nextWindowAt: this.gate.nextOpenAt()! } : {}), expiresAt }
      : queuedBehind ? { reason: `queued behind campaign ${queuedBehind.id}`, expiresAt } : undefined;
    return { campaign, start, ...(queued ? { queued } : {}), ...(superseded[0] ? { supersedes: superseded[0].campaign.id } : {}) };
  }

  /**
   * Create the campaign of a signed release (§6.15), not started yet: the same contract as
   * prepareCampaign. Every component image must be in the store (verified when a device first
   * needs it); each device gets the components it lacks (gateway/rollout/release-plan.ts).
   */
  async prepareRelease(release: ReleaseManifest, opts: CampaignOptions = {}, resume?: UnfinishedCampaign): Promise<PreparedCampaign> {
    const identity = this.releaseSupport.identity(release);
    return this.prepareCampaign({ manifest: identity, path: '', storedAt: new Date().toISOString() }, opts, resume, release);
  }

  /** prepareRelease as the uplink and the control socket take it (release-live.ts PreparedRelease). */
  async releaseCampaign(release: ReleaseManifest, opts: CampaignOptions): Promise<PreparedRelease> {
    const { campaign, start, queued, supersedes } = await this.prepareRelease(release, opts);
    return { id: campaign.id, start, ...(queued ? { queued } : {}), ...(supersedes ? { supersedes } : {}) };
  }

  /**
   * The pre-flight counts of an upload with this targeting (§7.3.7); throws E_NO_TARGETS when
   * --only/--group leave no known device, and E_NOT_ENOUGH_ONLINE below `requireOnline`.
   */
  async preflight(manifest: Manifest, opts: CampaignOptions, release?: ReleaseManifest): Promise<PreflightInfo> {
    return this.planning.preflight(manifest, { ...opts, policy: this.policyOf(opts) }, release);
  }

  /** A newer campaign for a device takes over the device's pending task in older live campaigns of the same image name (§7.12.5). */
  private supersedePending(by: Campaign, targets: readonly string[] | undefined): void {
    const scope = targets ? new Set(targets) : undefined;
    for (const old of this.live) {
      if (old === by || old.image.manifest.name !== by.image.manifest.name) continue;
      for (const id of old.waitingIds()) {
        if (scope && !scope.has(id)) continue;
        if (old.supersedeDevice(id, by.id)) this.log.info({ campaign: old.id, device: id, by: by.id }, 'pending task superseded by a newer campaign');
      }
    }
  }

  /** The live campaign with this id, else the sweeping or newest live one when no id is given. */
  private liveCampaign(id: string | undefined): Campaign | undefined {
    if (id === undefined) return this.sweeping ?? [...this.live].at(-1);
    return [...this.live].find((c) => c.id === id);
  }

  /**
   * Cancel a campaign (§7.12.1): queued ones end at once without touching a device; a running or
   * waiting one stops as Campaign.cancelByUser says. E_UNKNOWN_CAMPAIGN when no live campaign has
   * that id (a finished one cannot be cancelled).
   */
  cancelCampaign(id: string | undefined, by: string): Campaign {
    const c = this.liveCampaign(id);
    if (!c) throw new FwError('E_UNKNOWN_CAMPAIGN', id ? `no live campaign ${id} (finished campaigns cannot be cancelled; fwgate campaigns lists them)` : 'no live campaign to cancel');
    if (!c.cancelByUser(by)) throw new FwError('E_UNKNOWN_CAMPAIGN', `campaign ${c.id} is already cancelled or complete`);
    const queued = this.queue.findIndex((q) => q.campaign === c);
    if (queued >= 0) {
      // not started: run it now outside the sweep, every device ends cancelled without a probe
      this.queue.splice(queued, 1);
      const run = c.run().catch((err: unknown) => this.log.error({ campaign: c.id, err: describeError(err) }, 'campaign failed')).finally(() => this.runs.delete(run));
      this.runs.add(run);
    }
    return c;
  }

  /** A request from the host's control socket (`fwgate campaign cancel|retry|resume`); returns the campaign id. */
  async control(r: ControlRequest): Promise<string> {
    switch (r.op) {
      case 'cancel': return this.cancelCampaign(r.campaign, 'cancelled by the operator (fwgate campaign cancel)').id;
      case 'resume': return this.resumeCampaign(r.campaign).id;
      case 'release-live': {
        const { op: _op, release, version, ...opts } = r;
        const live = await goLive({ releases: this.releases, store: this.store, prepareRelease: (m, o) => this.releaseCampaign(m, o) }, await storedRelease({ releases: this.releases, store: this.store }, release, version), opts);
        live.start();
        return live.id;
      }
      case 'retry': {
        const { op: _op, ...req } = r;
        const prepared = await this.retryCampaign(req);
        prepared.start();
        return prepared.campaign.id;
      }
      default: {
        const never: never = r;
        throw new FwError('E_USAGE', `unknown control request ${JSON.stringify(never)}`);
      }
    }
  }

  /** Go on with the next wave of a campaign paused between waves (§7.12.3). */
  resumeCampaign(id: string): Campaign {
    const c = this.liveCampaign(id);
    if (!c || !c.resumeWaves()) throw new FwError('E_UNKNOWN_CAMPAIGN', `campaign ${id} is not paused between waves`);
    return c;
  }

  /**
   * A new campaign from a stored campaign's manifest for its devices whose result is one of
   * `outcomes` (§7.12.2): no upload. E_UNKNOWN_CAMPAIGN for an unknown id, E_NOTHING_TO_RETRY
   * when no device matches.
   */
  async retryCampaign(req: Omit<RetryMessage, 't'>): Promise<PreparedCampaign> {
    const plan = retryPlan(this.readJournal(req.campaign), req, this.store);
    return 'release' in plan ? this.prepareRelease(plan.release, plan.opts) : this.prepareCampaign(plan.image, plan.opts);
  }

  /** A campaign's journal state by id (finished or not). E_UNKNOWN_CAMPAIGN when there is none. */
  readJournal(id: string): JournalState {
    return readCampaignJournal(this.journalDir, id);
  }

  /** A dry run (§7.12.4): measure and rank as an upload of this manifest would, without storing or updating anything. */
  async plan(manifest: Manifest, opts: CampaignOptions): Promise<PlannedMessage> {
    return this.planning.plan(manifest, { ...opts, policy: this.policyOf(opts) });
  }


  /**
   * Start the next queued campaign when none is sweeping: the first that may run now (a `now`
   * campaign always; a `window` one while the gate is open or with downloadEarly). Called when a
   * campaign is queued, when one has swept or ended, and when a window opens.
   */
  private schedule(): void {
    if (this.sweeping || this.stopping) return;
    const i = this.queue.findIndex((q) => q.policy === 'now' || this.gate.isOpen() || this.config.rollout.downloadEarly);
    if (i < 0) return;
    const campaign = this.queue.splice(i, 1)[0]!.campaign;
    this.sweeping = campaign;
    const swept = (): void => {
      if (this.sweeping === campaign) this.sweeping = undefined;
      this.schedule();
    };
    campaign.once('swept', swept);
    const run = campaign.run()
      .catch((err: unknown) => this.log.error({ campaign: campaign.id, err: describeError(err) }, 'campaign failed'))
      .finally(() => {
        this.log.info({ campaign: campaign.id, ...this.counters() }, 'counters');
        this.runs.delete(run);
        campaign.off('swept', swept);
        swept();
      });
    this.runs.add(run);
  }

  /** A newer upload for the same hardware models replaces a queued campaign that has not started. */
  private supersede(old: Campaign, by: Campaign): void {
    this.queue = this.queue.filter((q) => q.campaign !== old);
    this.live.delete(old);
    const complete: CompleteMessage = { t: 'complete', campaign: old.id, devices: 0, updated: 0, failed: 0, rolledBack: 0, skipped: 0, durationMs: 0 };
    this.recorder.closeWith(old, complete);
    this.log.warn({ campaign: old.id, by: by.id, image: old.image.manifest.version, newer: by.image.manifest.version }, 'queued campaign superseded by a newer upload for the same hardware');
  }

  /** §6.14.1: a device that reports `status` is told the live campaigns that still have an update for it (rollout/pending-tasks.ts). */
  private sendTasks(device: DeviceRecord): void {
    const notBefore = this.gate.windowed && !this.gate.isOpen() ? this.gate.nextOpenAt() : undefined;
    const tasks = pendingTasks(this.live, device, notBefore);
    if (tasks.length === 0) return;
    this.channel.send(device.id, { t: 'tasks', tasks }).catch((err: unknown) => this.log.warn({ device: device.id, err: describeError(err) }, 'tasks not sent'));
  }

  /** Campaigns closed at start-up without running (§7.8.2): the last one is what `status` replays when nothing else ran since. */
  private readonly closedAtStart: CompleteMessage[] = [];

  /**
   * Each result becomes the device's last result in the fleet report. A resumed campaign does not
   * announce the results its journal had: they fill in what the fleet file lacks (a crash within
   * a second of them).
   */
  private recordResults(campaign: Campaign, journaled: Iterable<ResultMessage> = []): void {
    this.fleetStore.fillResults(journaled);
    campaign.on('result', (r) => this.fleetStore.noteResult(r, campaign.image.manifest.seq));
  }

  /** What was received, sent, refused and dropped, for logs and tests. */
  counters(): Record<string, unknown> {
    return {
      devices: { ...this.channel.stats },
      broker: this.broker.stats,
      uplink: this.uplinkLink ? { ...this.uplinkLink.stats, frames: this.uplinkLink.arq.stats.parser, retransmits: this.uplinkLink.arq.stats.retransmits } : null,
    };
  }

  /**
   * `state` plus the replay of the sweeping campaign, else of the newest live one, else of the
   * last one; `state.queued` lists the campaigns waiting to start.
   */
  campaignState(id?: string): GatewayUplinkMessage[] {
    return campaignState({
      campaigns: this.campaigns, live: this.live, queue: this.queue, sweeping: this.sweeping, closedAtStart: this.closedAtStart,
      gate: this.gate, fleetStore: this.fleetStore, recorder: this.recorder, journalRetryMs: this.config.rollout.journalRetryMs,
      readJournal: (j) => this.readJournal(j),
    }, id);
  }

  /** `<dataDir>/fwgate.pid`, held from start to a clean stop (gateway/pid-file.ts). */
  private pidFile: PidFile | undefined;

  /** Campaign retention (storage.keepCampaigns): remove the journals of ended campaigns beyond it. At start-up; call after a campaign ends. */
  pruneJournals(now = Date.now()): void {
    const removed = pruneJournals(this.journalDir, this.config.storage.keepCampaigns, now, { warn: (msg) => this.log.warn(msg) });
    if (removed.length > 0) this.log.info({ removed: removed.map((r) => r.id), keep: this.config.storage.keepCampaigns }, 'retention: removed the journals of old campaigns');
  }

  /** The campaign being swept, else the newest one not complete. */
  get activeCampaign(): Campaign | undefined {
    return this.sweeping ?? [...this.live].at(-1);
  }

  /**
   * Clean shutdown: detach the campaign's journal (so the campaign resumes at the next start, as
   * after a crash), cancel the campaign, close the uplink, the devices' channel and the broker.
   */
  async stop(): Promise<void> {
    this.stopping = true;
    this.reconnectGrace.close();
    await this.controlServer?.close();
    await this.fleetStore.close(); // the last write; the cancellations below are no device's result
    this.recorder.detachAll();
    for (const c of this.live) c.cancel();
    this.windows.stop();
    await this.channel.stop();
    await Promise.all(this.runs);
    await this.uplink?.close();
    this.uplinkLink?.close();
    this.log.info(this.counters(), 'counters at shutdown');
    await this.broker.close();
    this.pidFile?.release();
  }
}
