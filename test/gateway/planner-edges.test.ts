import assert from 'node:assert/strict';
import type { DeviceRecord } from '../../gateway/fleet.ts';
import { chunkWindowFor, planStarts, rankDevices, selectDevices } from '../../gateway/rollout/planner.ts';
import type { Manifest } from '../../protocol/manifest.ts';

/**
 * The planner at its edges (planner.ts, docs/protocol.md §7.5): a floor the device reports that is
 * not a version, the exclusion text, ties in the ranking, what an order entry carries, and the
 * start plan at exactly its tolerance and with devices that have no estimate.
 */

const manifest: Manifest = { name: 'fw', version: '1.2.0', hw: ['hw'], size: 64 * 1024, crc32: 1, sha256: 'a'.repeat(64), chunk: 4096 };
const bounds = { min: 2, max: 32 };
function device(id: string, over: Partial<DeviceRecord> = {}): DeviceRecord {
  return {
    id, hw: 'hw', version: '1.0.0', slot: 'a', slots: { a: { state: 'confirmed', version: '1.0.0' }, b: { state: 'empty' } },
    maxChunk: 16384, busy: false, trial: false, online: true, lastSeen: 0, ...over,
  };
}

describe('planner edges: eligibility', () => {
  it('a floor that is not a version counts as no floor', () => {
    const plan = selectDevices(manifest, [device('odd-floor', { floor: 'factory' }), device('floor-ok', { floor: '1.0.0' })]);
    assert.deepEqual(plan.eligible.map((d) => d.id), ['odd-floor', 'floor-ok']);
  });

  it('an offline device is excluded as offline, with its version', () => {
    const plan = selectDevices(manifest, [device('gone', { online: false, version: '1.1.0' })]);
    assert.deepEqual(plan.excluded, [{ id: 'gone', code: 'offline', reason: 'device is offline', version: '1.1.0' }]);
  });
});

describe('planner edges: ranking', () => {
  it('devices with the same figures, and devices without any, go in device-id order', () => {
    const link = { rttMs: 20, bps: 1_000_000, jitterMs: 1, measuredAt: 0 };
    const order = rankDevices(manifest, [device('d3', { link }), device('x2'), device('d1', { link }), device('x1'), device('d2', { link })], bounds);
    assert.deepEqual(order.map((e) => e.id), ['d1', 'd2', 'd3', 'x1', 'x2']);
    assert.deepEqual(order.map((e) => e.rank), [1, 2, 3, 4, 5]);
  });

  it('an entry carries the device\'s round trip and throughput when measured, and its estimate only when there is one', () => {
    const order = rankDevices(manifest, [
      device('m', { link: { rttMs: 20, bps: 1_000_000, jitterMs: 1, measuredAt: 0 } }), device('r', { link: { rttMs: 30, jitterMs: 1, measuredAt: 0 } }), device('n', { version: '1.1.0' }),
    ], bounds);
    const [measured, rttOnly, none] = ['m', 'r', 'n'].map((id) => order.find((e) => e.id === id));
    assert.deepEqual(Object.keys(measured!).sort(), ['bps', 'etaMs', 'from', 'id', 'rank', 'rttMs']);
    assert.deepEqual([measured!.rttMs, measured!.bps], [20, 1_000_000]);
    assert.deepEqual(Object.keys(rttOnly!).sort(), ['etaMs', 'from', 'id', 'rank', 'rttMs']);
    assert.equal(rttOnly!.rttMs, 30);
    assert.deepEqual(none, { id: 'n', rank: 3, from: '1.1.0' }, 'last: no estimate');
  });

  it('the chunk window of a device never measured is the most allowed', () => {
    assert.equal(chunkWindowFor(undefined, 4096, bounds), 32);
  });
});

describe('planner edges: the start plan', () => {
  const entry = (id: string, etaMs: number, rank: number) => ({ id, rank, from: '1.0.0', etaMs });
  // on 2 slots fastest first ends at 5 s; the bound is max(4, 8 / 2) = 4 s
  const ranked = [entry('a', 1000, 1), entry('b', 3000, 2), entry('c', 4000, 3)];

  it('fastest first is kept when its makespan is exactly the tolerance above the bound', () => {
    const plan = planStarts(ranked, 2, { tolerance: 0.25 });
    assert.deepEqual(plan.map((e) => [e.id, e.startMs]), [['a', 0], ['b', 0], ['c', 1000]]);
  });

  it('beyond it the plan is balanced: the longest starts at once, devices starting together in rank order', () => {
    const plan = planStarts(ranked, 2, { tolerance: 0.2 });
    assert.deepEqual(plan.map((e) => [e.id, e.startMs]), [['a', 0], ['c', 0], ['b', 1000]]);
  });

  it('devices without an estimate follow a balanced plan once each, in rank order', () => {
    const plan = planStarts([...ranked, { id: 'x', rank: 4, from: '1.0.0' }, { id: 'y', rank: 5, from: '1.0.0' }], 2, { tolerance: 0.2 });
    assert.deepEqual(plan.map((e) => e.id), ['a', 'c', 'b', 'x', 'y']);
  });

  it('within a slot the shorter slot time goes first, even when ranked later (slotMs: the transfer part only)', () => {
    const slot: Record<string, number> = { r1: 5000, r2: 5000, r3: 1000, r4: 5000 };
    const ranked4 = ['r1', 'r2', 'r3', 'r4'].map((id, i) => entry(id, 1000 * (i + 1), i + 1));
    const plan = planStarts(ranked4, 2, { tolerance: 0, slotMs: (e) => slot[e.id]! });
    assert.deepEqual(plan.map((e) => [e.id, e.startMs]), [['r1', 0], ['r3', 0], ['r2', 1000], ['r4', 5000]]);
  });

  it('devices of equal slot time take their places in rank order', () => {
    // two slow devices of equal time, ranked before a fast one only by id; balanced on 2 slots
    const plan = planStarts([entry('f', 1000, 1), entry('s1', 5000, 2), entry('s2', 5000, 3), entry('m', 2000, 4)], 2, { tolerance: 0 });
    const slow = plan.filter((e) => e.etaMs === 5000).map((e) => e.id);
    assert.deepEqual(slow, ['s1', 's2']);
    const at = (id: string): number => plan.find((e) => e.id === id)!.startMs!;
    assert.ok(at('s1') <= at('s2'), `s1 at ${at('s1')}, s2 at ${at('s2')}`);
  });
});
