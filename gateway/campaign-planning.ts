/**
 * Before a campaign exists: which known devices a targeting reaches (--only, --group from the
 * device list's groups), the pre-flight counts an upload is granted or refused on (§7.3.7), and the
 * dry run that measures and ranks without storing or updating anything (§7.12.4).
 */
import { describeError, FwError } from '../protocol/errors.ts';
import type { Manifest } from '../protocol/manifest.ts';
import type { ReleaseManifest } from '../protocol/release.ts';
import type { PlannedMessage, PreflightInfo, Targeting } from '../protocol/uplink.ts';
import type { GatewayConfig } from './config.ts';
import { readDevicesFile } from './device-auth.ts';
import type { DeviceChannel } from './device-channel.ts';
import type { FleetStore } from './fleet-store.ts';
import type { Fleet } from './fleet.ts';
import type { Logger } from './log.ts';
import type { ReleaseSupport } from './release-support.ts';
import { Campaign } from './rollout/campaign.ts';
import { campaignTargets, preflightCounts } from './rollout/targeting.ts';
import type { Timers } from './waiter.ts';

export interface PlanningOptions extends Targeting {
  downgrade?: boolean;
  /** The campaign's policy as the gateway resolves it: --require-online applies to `now` only. */
  policy: 'now' | 'window';
}

export class CampaignPlanning {
  /** Device groups from the device list (broker.devicesFile), read when a targeting names a group. */
  private groups = new Map<string, string[]>();

  constructor(private readonly deps: {
    config: GatewayConfig; log: Logger; timers: Timers; channel: DeviceChannel; fleet: Fleet; fleetStore: FleetStore; releaseSupport: ReleaseSupport;
  }) {}

  /** The known devices a campaign with this targeting would reach (docs/operations.md "Targeting and waves"). */
  async targetsFor(t: Targeting): Promise<ReturnType<typeof campaignTargets>> {
    if (t.group !== undefined) await this.loadGroups();
    return campaignTargets(this.deps.fleet.list(), t, (id) => this.groups.get(id) ?? []);
  }

  /** The device ids fixed at creation when the laptop narrowed the targets (--only, --group); undefined: every device known when it runs. */
  async targetIds(t: Targeting): Promise<string[] | undefined> {
    return t.only || t.group !== undefined ? (await this.targetsFor(t)).map((d) => d.id) : undefined;
  }

  /** Device groups from the device list (broker.devicesFile); none without one. */
  private async loadGroups(): Promise<void> {
    const file = this.deps.config.broker.devicesFile;
    if (!file) return;
    try {
      this.groups = new Map((await readDevicesFile(file)).map((e) => [e.id, e.groups ?? []]));
    } catch (err) {
      this.deps.log.warn({ file, err: describeError(err) }, 'device list unreadable: device groups unknown');
    }
  }

  /**
   * The pre-flight counts of an upload with this targeting (§7.3.7); throws E_NO_TARGETS when
   * --only/--group leave no known device, and E_NOT_ENOUGH_ONLINE below `requireOnline`.
   */
  async preflight(manifest: Manifest, opts: PlanningOptions, release?: ReleaseManifest): Promise<PreflightInfo> {
    const { fleet, fleetStore, releaseSupport } = this.deps;
    const targets = await this.targetsFor(opts);
    const select = release ? await releaseSupport.selector(release, opts.downgrade ?? false) : undefined;
    if ((opts.only || opts.group !== undefined) && targets.length === 0) {
      throw new FwError('E_NO_TARGETS', `no known device matches ${opts.only ? `--only ${opts.only.join(',')}` : ''}${opts.group !== undefined ? ` --group ${opts.group}` : ''} (fwgate device list, fwgate report)`);
    }
    const counts = preflightCounts(manifest, fleet.list(), targets, opts.downgrade ?? false, select);
    const confirmedSeq = Math.max(0, ...targets.filter((d) => manifest.hw.includes(d.hw)).map((d) => fleetStore.get(d.id)?.confirmedSeq ?? 0));
    if (confirmedSeq > 0) counts.confirmedSeq = confirmedSeq;
    if (opts.requireOnline !== undefined && opts.policy === 'now' && counts.eligibleOnline < opts.requireOnline) {
      throw new FwError('E_NOT_ENOUGH_ONLINE', `${counts.eligibleOnline} eligible device(s) online, --require-online asks for ${opts.requireOnline}; nothing stored`);
    }
    return counts;
  }

  /** A dry run (§7.12.4): measure and rank as an upload of this manifest would, without storing or updating anything. */
  async plan(manifest: Manifest, opts: PlanningOptions & { waves?: Targeting['waves'] }): Promise<PlannedMessage> {
    const { channel, fleet, config, timers, log } = this.deps;
    const preflight = await this.preflight(manifest, { ...opts, requireOnline: undefined });
    const targets = await this.targetIds(opts);
    const order = await Campaign.dryRun(manifest, {
      channel, fleet, config: config.rollout, timers, log: log.child({ part: 'plan' }),
      downgrade: opts.downgrade ?? false, ...(targets ? { targets } : {}), ...(opts.waves ? { waves: opts.waves } : {}), checkIn: { expiresAt: Infinity },
    });
    const etaMs = order.devices.reduce((m, d) => Math.max(m, (d.startMs ?? 0) + (d.etaMs ?? 0)), 0);
    return {
      t: 'planned', image: order.image, devices: order.devices, excluded: order.excluded,
      ...(order.excludedMore !== undefined ? { excludedMore: order.excludedMore } : {}), preflight,
      ...(order.devices.some((d) => d.etaMs !== undefined) ? { etaMs: Math.round(etaMs || 0) } : {}),
    };
  }
}
