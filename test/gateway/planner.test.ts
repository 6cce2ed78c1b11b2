import assert from 'node:assert/strict';
import type { DeviceRecord } from '../../gateway/fleet.ts';
import { estimateTransferMs, rankDevices, selectDevices } from '../../gateway/rollout/planner.ts';
import type { Manifest } from '../../protocol/manifest.ts';

const manifest: Manifest = { name: 'fw', version: '1.2.0', hw: ['sensor-v1', 'sensor-v1b'], size: 64 * 1024, crc32: 1, sha256: 'a'.repeat(64), chunk: 4096 };

function device(id: string, over: Partial<DeviceRecord> = {}): DeviceRecord {
  return {
    id, hw: 'sensor-v1', version: '1.0.0', slot: 'a',
    slots: { a: { state: 'confirmed', version: '1.0.0' }, b: { state: 'empty' } },
    maxChunk: 16384, busy: false, trial: false, online: true, lastSeen: 0, ...over,
  };
}

describe('planner: eligibility (semver, hardware model, presence)', () => {
  it('targets older versions of a listed model and excludes the rest with a reason', () => {
    const plan = selectDevices(manifest, [
      device('older'),
      device('prerelease', { version: '1.2.0-rc.1' }),
      device('same', { version: '1.2.0' }),
      device('newer', { version: '1.10.0' }),
      device('other-hw', { hw: 'sensor-v2' }),
      device('second-model', { hw: 'sensor-v1b', version: '1.1.9' }),
      device('offline', { online: false }),
    ]);
    assert.deepEqual(plan.eligible.map((d) => d.id), ['older', 'prerelease', 'second-model']);
    const why = Object.fromEntries(plan.excluded.map((x) => [x.id, x.code]));
    assert.deepEqual(why, { same: 'not-newer', newer: 'not-newer', 'other-hw': 'incompatible-hw', offline: 'offline' });
    const hwReason = plan.excluded.find((x) => x.id === 'other-hw')!.reason;
    assert.match(hwReason, /sensor-v2/);
    assert.match(hwReason, /sensor-v1, sensor-v1b/);
    assert.match(plan.excluded.find((x) => x.id === 'newer')!.reason, /1\.10\.0.*1\.2\.0/);
  });
});

describe('planner: ranking fastest first', () => {
  it('orders by expected transfer time from measured RTT, ties by id, unmeasured last', () => {
    const order = rankDevices(manifest, [
      device('slow', { link: { rttMs: 80, jitterMs: 1, measuredAt: 0 } }),
      device('unmeasured'),
      device('fast-b', { link: { rttMs: 5, jitterMs: 1, measuredAt: 0 } }),
      device('fast-a', { link: { rttMs: 5, jitterMs: 1, measuredAt: 0 } }),
      device('mid', { link: { rttMs: 20, jitterMs: 1, measuredAt: 0 } }),
    ], 8);
    assert.deepEqual(order.map((o) => o.id), ['fast-a', 'fast-b', 'mid', 'slow', 'unmeasured']);
    assert.deepEqual(order.map((o) => o.rank), [1, 2, 3, 4, 5]);
    assert.equal(order[4]!.etaMs, undefined);
    assert.ok(order[0]!.etaMs! < order[3]!.etaMs!);
  });

  it('estimates one round trip per window of chunks plus the control exchanges', () => {
    // 64 KiB in 4 KiB chunks = 16 chunks = 2 windows of 8, + 4 control round trips
    assert.equal(estimateTransferMs(manifest, device('d', { link: { rttMs: 10, jitterMs: 0, measuredAt: 0 } }), 8), 60);
    // a device with a smaller max chunk needs more rounds
    assert.equal(estimateTransferMs(manifest, device('d', { maxChunk: 1024, link: { rttMs: 10, jitterMs: 0, measuredAt: 0 } }), 8), 120);
  });
});
