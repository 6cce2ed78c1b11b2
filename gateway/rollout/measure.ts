import type { OrderMessage } from '../../protocol/uplink.ts';
import type { GatewayConfig } from '../config.ts';
import type { DeviceChannel } from '../device-channel.ts';
import type { DeviceRecord, Fleet } from '../fleet.ts';
import type { Logger } from '../log.ts';
import type { Timers } from '../waiter.ts';
import { recentLink } from './order.ts';
import { measureRtt, measureThroughput } from './probe.ts';
import { forEachLimited } from './slots.ts';

export interface MeasureDeps {
  fleet: Fleet;
  channel: DeviceChannel;
  config: GatewayConfig['rollout'];
  timers: Timers;
  log: Logger;
  /** A device's measurement starts (`probing`), or it answered no ping (`skipped`). */
  onPhase: (id: string, phase: 'probing' | 'skipped') => void;
}

/**
 * Measure the eligible devices before a campaign (docs/protocol.md §7.5.2), `probeConcurrency`
 * at a time: RTT by pings, then throughput by a probe burst, into the fleet's link records (a
 * figure from the device's last whole transfer stands while the probe agrees with it within
 * `probeTransferFactor`, §6.4.4). A
 * device measured recently enough (`probeMaxAgeMs`) gets one ping. One that answers no ping is
 * pushed onto `excluded` as offline; one whose burst fails is kept, ranked on its round trip.
 * Resolves with the reachable devices.
 */
export async function measureLinks(eligible: readonly DeviceRecord[], excluded: OrderMessage['excluded'], deps: MeasureDeps): Promise<DeviceRecord[]> {
  const { fleet, channel, config, timers } = deps;
  const reachable: DeviceRecord[] = [];
  await forEachLimited(eligible, config.probeConcurrency, async (d) => {
    deps.onPhase(d.id, 'probing');
    // figures measured recently enough (a campaign right after another): one ping, no new measurement
    const recent = recentLink(fleet.get(d.id)?.link, config.probeMaxAgeMs, Date.now());
    let rttMs = 0;
    try {
      const rtt = await measureRtt(channel, d.id, recent ? 1 : config.probePings, config.pingTimeoutMs, timers);
      if (recent) {
        reachable.push(d);
        return;
      }
      fleet.updateLink(d.id, { rttMs: rtt.rttMs, jitterMs: rtt.jitterMs, measuredAt: Date.now() });
      rttMs = rtt.rttMs;
    } catch (err) {
      excluded.push({ id: d.id, code: 'offline', reason: `no answer to ping: ${(err as Error).message}`, version: d.version });
      deps.onPhase(d.id, 'skipped');
      return;
    }
    try {
      const count = Math.max(2, Math.ceil(config.probeBytes / config.probeChunkBytes));
      const tp = await measureThroughput(channel, d.id, { count, size: config.probeChunkBytes, timeoutMs: config.probeTimeoutMs, bursts: config.probeBursts, rttMs }, timers);
      // what the last whole transfer achieved says more than a short burst, unless they disagree by more than probeTransferFactor
      const prev = fleet.get(d.id)?.link;
      const agrees = prev?.bpsSource === 'transfer' && prev.bps !== undefined && prev.bps > 0
        && tp.bps <= prev.bps * config.probeTransferFactor && tp.bps * config.probeTransferFactor >= prev.bps;
      fleet.updateLink(d.id, agrees ? { bpsMeasuredAt: Date.now() } : { bps: tp.bps, bpsSource: 'probe', bpsMeasuredAt: Date.now() });
    } catch (err) {
      // Ranked on its round trip alone (an older throughput figure, if any, stays).
      deps.log.warn({ device: d.id, err: (err as Error).message }, 'throughput probe failed');
    }
    reachable.push(d);
  });
  return reachable;
}
