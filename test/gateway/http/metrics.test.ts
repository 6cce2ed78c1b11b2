import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { readFile } from 'node:fs/promises';
import { createMetrics, type GatewayCounters } from '../../../gateway/http/metrics.ts';
import type { CampaignSummary, StatusEvents, StatusSource } from '../../../gateway/http/status-source.ts';

function source(campaigns: CampaignSummary[]): StatusSource {
  return {
    events: new EventEmitter<StatusEvents>(),
    fleet: () => [],
    campaigns: async () => campaigns,
    campaign: async () => undefined,
    health: async () => ({ ok: true, checks: {} }),
  };
}

const COUNTERS: GatewayCounters = {
  devicesKnown: 5, devicesOnline: 3,
  broker: { connections: 4, clients: 3, rejectedClients: 1, oversizePackets: 0, clientErrors: 2, authFailures: 7, deniedPublishes: 0, deniedSubscribes: 0, rateLimited: 0 },
  devices: { sent: 10, received: 9, invalid: 1, unknownType: 1, bytesSent: 4096, chunkResends: 2 },
  uplink: { framesIn: 100, framesOut: 90, retransmits: 3, frameErrors: 1, invalidMessages: 0, authFailures: 1 },
};

const summary = (id: string, state: CampaignSummary['state']): CampaignSummary => ({ id, state, live: true, devices: 0, updated: 0, failed: 0, rolledBack: 0, skipped: 0 });

describe('metrics (prom-client)', () => {
  it('reads the gateway counters at each scrape and counts results by outcome from the events', async () => {
    const src = source([summary('c-1', 'running'), summary('c-2', 'completed'), summary('c-3', 'completed')]);
    const register = createMetrics(src, () => COUNTERS);
    src.events.emit('result', { t: 'result', campaign: 'c-1', id: 'dev-1', outcome: 'updated', code: 'ok', from: '1.0.0', to: '1.1.0', durationMs: 5, retries: 0 });
    src.events.emit('result', { t: 'result', campaign: 'c-1', id: 'dev-2', outcome: 'rolled-back', code: 'reverted', from: '1.0.0', to: '1.1.0', durationMs: 5, retries: 0 });
    const text = await register.metrics();
    for (const line of [
      'fwgate_devices_online 3', 'fwgate_devices_known 5', 'fwgate_broker_refusals_total{reason="auth"} 7', 'fwgate_auth_failures_total{side="uplink"} 1',
      'fwgate_device_bytes_sent_total 4096', 'fwgate_chunk_resends_total 2', 'fwgate_uplink_retransmits_total 3', 'fwgate_uplink_errors_total 1',
      'fwgate_device_results_total{outcome="updated"} 1', 'fwgate_device_results_total{outcome="rolled-back"} 1', 'fwgate_device_results_total{outcome="failed"} 0',
      'fwgate_campaigns{state="running"} 1', 'fwgate_campaigns{state="completed"} 2', 'fwgate_device_messages_invalid_total 2',
    ]) assert.ok(text.split('\n').includes(line), `${line}\n${text}`);
  });

  it('every fwgate_* metric the Grafana dashboard queries exists', async () => {
    const names = new Set((await createMetrics(source([]), () => COUNTERS).getMetricsAsJSON()).map((m) => m.name));
    const dashboard = await readFile(new URL('../../../packaging/grafana/fwgate-dashboard.json', import.meta.url), 'utf8');
    const used = new Set([...dashboard.matchAll(/\b(fwgate_[a-z0-9_]+)/g)].map((m) => m[1]!));
    assert.ok(used.size >= 15, `${used.size} metrics used`);
    for (const name of used) assert.ok(names.has(name), `${name} is exported (exported: ${[...names].filter((n) => n.startsWith('fwgate_')).join(', ')})`);
  });
});
