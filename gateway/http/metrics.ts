import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import { Outcomes } from '../../protocol/uplink.ts';
import type { CampaignState, StatusSource } from './status-source.ts';

/** Cumulative counters kept by the gateway's parts, read at each scrape. */
export interface GatewayCounters {
  devicesKnown: number;
  devicesOnline: number;
  broker: {
    connections: number; clients: number; rejectedClients: number; oversizePackets: number; clientErrors: number;
    authFailures: number; deniedPublishes: number; deniedSubscribes: number; rateLimited: number;
  };
  devices: { sent: number; received: number; invalid: number; unknownType: number; bytesSent: number; chunkResends: number };
  /** The serial uplink, when one is attached. */
  uplink?: { framesIn: number; framesOut: number; retransmits: number; frameErrors: number; invalidMessages: number; authFailures: number };
}

const CAMPAIGN_STATES: CampaignState[] = ['queued', 'running', 'waiting', 'completed', 'halted', 'cancelled', 'unfinished'];

/**
 * The Prometheus metrics (docs/operations.md "Metrics"), all named fwgate_*: gauges and counters
 * read from the gateway's own counters at each scrape, per-device results counted from the
 * source's events, and prom-client's process and event-loop metrics.
 */
export function createMetrics(source: StatusSource, counters: () => GatewayCounters): Registry {
  const register = new Registry();
  collectDefaultMetrics({ register, prefix: 'fwgate_' });
  const gauge = (name: string, help: string, read: (c: GatewayCounters) => number): void => {
    new Gauge({ name, help, registers: [register], collect() { this.set(read(counters())); } });
  };
  /** A counter whose value is kept elsewhere: set to it at each scrape. */
  const counter = (name: string, help: string, read: (c: GatewayCounters) => number | undefined): void => {
    new Counter({
      name, help, registers: [register],
      collect() {
        const v = read(counters());
        this.reset();
        if (v !== undefined) this.inc(v);
      },
    });
  };
  gauge('fwgate_devices_known', 'Devices in the fleet report (every device ever seen)', (c) => c.devicesKnown);
  gauge('fwgate_devices_online', 'Devices connected to the broker that have reported their status', (c) => c.devicesOnline);
  gauge('fwgate_broker_connections', 'TCP connections open to the broker', (c) => c.broker.connections);
  gauge('fwgate_broker_clients', 'MQTT clients connected to the broker', (c) => c.broker.clients);
  new Counter({
    name: 'fwgate_broker_refusals_total', help: 'Connections, publishes and subscriptions the broker refused, by reason', labelNames: ['reason'], registers: [register],
    collect() {
      const b = counters().broker;
      this.reset();
      const reasons: [string, number][] = [
        ['client-cap', b.rejectedClients], ['oversize', b.oversizePackets], ['client-error', b.clientErrors], ['auth', b.authFailures],
        ['publish-denied', b.deniedPublishes], ['subscribe-denied', b.deniedSubscribes], ['rate-limit', b.rateLimited],
      ];
      for (const [reason, n] of reasons) this.inc({ reason }, n);
    },
  });
  new Counter({
    name: 'fwgate_auth_failures_total', help: 'Failed authentications: devices at the broker, technicians on the uplink', labelNames: ['side'], registers: [register],
    collect() {
      const c = counters();
      this.reset();
      this.inc({ side: 'broker' }, c.broker.authFailures);
      this.inc({ side: 'uplink' }, c.uplink?.authFailures ?? 0);
    },
  });
  counter('fwgate_device_messages_sent_total', 'Messages published to devices', (c) => c.devices.sent);
  counter('fwgate_device_messages_received_total', 'Valid messages received from devices', (c) => c.devices.received);
  counter('fwgate_device_messages_invalid_total', 'Messages from devices dropped as invalid or of an unknown type', (c) => c.devices.invalid + c.devices.unknownType);
  counter('fwgate_device_bytes_sent_total', 'Bytes of messages published to devices', (c) => c.devices.bytesSent);
  counter('fwgate_chunk_resends_total', 'Image chunks sent again to a device within the same transfer', (c) => c.devices.chunkResends);
  counter('fwgate_uplink_frames_received_total', 'Serial uplink frames received', (c) => c.uplink?.framesIn);
  counter('fwgate_uplink_frames_sent_total', 'Serial uplink frames sent', (c) => c.uplink?.framesOut);
  counter('fwgate_uplink_retransmits_total', 'Serial uplink DATA frames retransmitted', (c) => c.uplink?.retransmits);
  counter('fwgate_uplink_errors_total', 'Serial uplink frames dropped (COBS, CRC, length) and invalid messages', (c) => c.uplink && c.uplink.frameErrors + c.uplink.invalidMessages);

  const results = new Counter({ name: 'fwgate_device_results_total', help: 'Per-device campaign results, by outcome', labelNames: ['outcome'], registers: [register] });
  for (const outcome of Outcomes) results.inc({ outcome }, 0);
  source.events.on('result', (r) => results.inc({ outcome: r.outcome }));
  new Gauge({
    name: 'fwgate_campaigns', help: 'Campaigns by state (live ones and the history in the journals)', labelNames: ['state'], registers: [register],
    async collect() {
      const list = await source.campaigns();
      for (const state of CAMPAIGN_STATES) this.set({ state }, list.filter((c) => c.state === state).length);
    },
  });
  return register;
}
