import assert from 'node:assert/strict';
import type { DeviceRecord } from '../../../gateway/fleet.ts';
import { rollbackThresholdPassed } from '../../../gateway/rollout/campaign.ts';
import { campaignTargets, preflightCounts } from '../../../gateway/rollout/targeting.ts';
import { assignWaves, waveBounds, waveGateStops } from '../../../gateway/rollout/waves.ts';
import { parseWaves } from '../../../laptop/args.ts';
import { manifestForImage } from '../../../protocol/manifest.ts';
import { retryOutcomesOf } from '../../../protocol/uplink.ts';

const dev = (id: string, over: Partial<DeviceRecord> = {}): DeviceRecord => ({
  id, hw: 'sensor-v1', version: '1.0.0', slot: 'a', slots: { a: { state: 'confirmed', version: '1.0.0' }, b: { state: 'empty' } },
  maxChunk: 4096, busy: false, trial: false, online: true, lastSeen: 0, ...over,
});
const manifest = manifestForImage(Buffer.alloc(1024, 7), { name: 'sensor-fw', version: '1.1.0', hw: ['sensor-v1'] });

describe('targeting, pre-flight and waves (pure; docs/protocol.md §7.3.6, §7.3.7, §7.8.1)', () => {
  const fleet = [
    dev('a-1'), dev('a-2', { online: false }), dev('a-3', { busy: true }), dev('a-4', { version: '1.1.0' }),
    dev('a-5', { hw: 'other' }), dev('a-6', { floor: '2.0.0' }),
  ];

  it('pre-flight counts each exclusion, the offline and busy eligible devices, and what the targeting leaves out', () => {
    assert.deepEqual(preflightCounts(manifest, fleet, fleet, false), {
      eligibleOnline: 2, eligibleOffline: 1, notNewer: 1, otherHw: 1, belowFloor: 1, busy: 1, notTargeted: 0,
    });
    const only = campaignTargets(fleet, { only: ['a-2', 'a-1', 'ghost'] }, () => []);
    assert.deepEqual(only.map((d) => d.id), ['a-2', 'a-1'], '--only keeps its order and drops unknown ids');
    assert.deepEqual(preflightCounts(manifest, fleet, only, false), {
      eligibleOnline: 1, eligibleOffline: 1, notNewer: 0, otherHw: 0, belowFloor: 0, busy: 0, notTargeted: 4,
    });
    const groups: Record<string, string[]> = { 'a-3': ['north'], 'a-5': ['north', 'south'] };
    assert.deepEqual(campaignTargets(fleet, { group: 'north' }, (id) => groups[id] ?? []).map((d) => d.id), ['a-3', 'a-5']);
    assert.deepEqual(campaignTargets(fleet, { only: ['a-1', 'a-3'], group: 'north' }, (id) => groups[id] ?? []).map((d) => d.id), ['a-3']);
    assert.deepEqual(campaignTargets([dev('z'), dev('b')], {}, () => []).map((d) => d.id), ['b', 'z'], 'by id without --only');
  });

  it('waves: cumulative counts and percentages (rounded up), non-growing sizes dropped, the last takes the rest', () => {
    assert.deepEqual(waveBounds([{ count: 1 }, { pct: 10 }, { pct: 100 }], 20), [1, 2, 20]);
    assert.deepEqual(waveBounds([{ count: 1 }, { pct: 5 }, { pct: 50 }], 20), [1, 10, 20]);
    assert.deepEqual(waveBounds([{ count: 3 }], 10), [3, 10]);
    assert.deepEqual(waveBounds([{ count: 50 }], 10), [10]);
    assert.deepEqual(waveBounds(undefined, 7), [7]);
    assert.deepEqual([...assignWaves(['d', 'c', 'b', 'a'], [{ count: 1 }, { pct: 50 }])], [['d', 1], ['c', 2], ['b', 3], ['a', 3]]);
    assert.deepEqual(parseWaves('1,10%,100%'), [{ count: 1 }, { pct: 10 }, { pct: 100 }]);
    for (const bad of ['', '0', '1,0%', '101%', 'x', '1,,', '5%%']) assert.equal(parseWaves(bad), undefined, bad);
  });

  it('retry flags name the outcomes; none given: failed and rolled back', () => {
    assert.deepEqual(retryOutcomesOf({}), ['failed', 'rolled-back']);
    assert.deepEqual(retryOutcomesOf({ expired: true, skipped: true }), ['expired', 'skipped']);
    assert.deepEqual(retryOutcomesOf({ failed: true, rolledBack: true, expired: true, cancelled: true, skipped: true }), ['failed', 'rolled-back', 'expired', 'cancelled', 'skipped']);
  });

  it('the wave gate stops on a failure share at or above it, never on a wave with nothing finished', () => {
    assert.equal(waveGateStops({ finished: 1, failed: 1 }, 20), true);
    assert.equal(waveGateStops({ finished: 5, failed: 1 }, 20), true);
    assert.equal(waveGateStops({ finished: 6, failed: 1 }, 20), false);
    assert.equal(waveGateStops({ finished: 0, failed: 0 }, 20), false);
    assert.equal(waveGateStops({ finished: 3, failed: 3 }, 0), false, '0 = no gate');
  });

  it('the rollback threshold counts at least the minimum sample: two liars among 20 cannot halt the fleet', () => {
    // 2 of the first 2 finished rolled back: without a minimum sample that is 100 %
    assert.equal(rollbackThresholdPassed({ rolledBack: 2, finished: 2 }, 20), true);
    // 50 % of 22 targets = 11 counted: 2 x 100 < 20 x 11
    assert.equal(rollbackThresholdPassed({ rolledBack: 2, finished: 2 }, 20, 2, 11), false);
    assert.equal(rollbackThresholdPassed({ rolledBack: 2, finished: 12 }, 20, 2, 11), false);
    // a bad image: the third rollback passes 20 % of 11
    assert.equal(rollbackThresholdPassed({ rolledBack: 3, finished: 3 }, 20, 2, 11), true);
    assert.equal(rollbackThresholdPassed({ rolledBack: 1, finished: 1 }, 20, 2, 0), false, 'at least 2');
  });
});
