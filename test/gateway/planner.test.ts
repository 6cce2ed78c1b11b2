import assert from 'node:assert/strict';
import type { DeviceRecord } from '../../gateway/fleet.ts';
import {
  chunkWindowFor, deviceTimeMs, estimateTransferMs, learnDeviceMsPerMiB, linkTimeMs, makespanLowerBound, planStarts, rankDevices, selectDevices,
} from '../../gateway/rollout/planner.ts';
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

describe('planner: downgrades and the anti-rollback floor (§6.5.6)', () => {
  it('with the downgrade option a newer device is eligible too; the same version never is', () => {
    const devices = [device('older'), device('same', { version: '1.2.0' }), device('newer', { version: '1.10.0' }), device('newer-offline', { version: '2.0.0', online: false })];
    const without = selectDevices(manifest, devices);
    assert.deepEqual(without.eligible.map((d) => d.id), ['older']);
    assert.match(without.excluded.find((x) => x.id === 'newer')!.reason, /newer than 1\.2\.0.*downgrade/);

    const plan = selectDevices(manifest, devices, { downgrade: true });
    assert.deepEqual(plan.eligible.map((d) => d.id), ['older', 'newer']);
    assert.deepEqual(plan.excluded.map((x) => [x.id, x.code]), [['same', 'not-newer'], ['newer-offline', 'offline']]);
    assert.match(plan.excluded[0]!.reason, /already runs 1\.2\.0/);
  });

  it('excludes a device whose status reports a floor above the image as below-floor, downgrade or not', () => {
    const devices = [
      device('floor-above', { version: '1.4.0', floor: '1.3.0' }),
      device('floor-above-older', { version: '1.0.0', floor: '1.2.1' }),
      device('floor-equal', { version: '1.4.0', floor: '1.2.0' }),
      device('floor-below', { version: '1.1.0', floor: '1.0.0' }),
      device('no-floor', { version: '1.4.0' }),
    ];
    for (const downgrade of [false, true]) {
      const plan = selectDevices(manifest, devices, { downgrade });
      const why = Object.fromEntries(plan.excluded.map((x) => [x.id, x.code]));
      assert.equal(why['floor-above'], 'below-floor');
      assert.equal(why['floor-above-older'], 'below-floor', 'the floor is checked before the version');
      assert.ok(plan.eligible.some((d) => d.id === 'floor-below'));
      const reason = plan.excluded.find((x) => x.id === 'floor-above')!.reason;
      assert.match(reason, /1\.2\.0.*security floor 1\.3\.0/);
      assert.equal(plan.excluded.find((x) => x.id === 'floor-above')!.version, '1.4.0');
      // at the floor is not below it: a downgrade to exactly the floor is allowed
      assert.equal(plan.eligible.some((d) => d.id === 'floor-equal'), downgrade);
      assert.equal(plan.eligible.some((d) => d.id === 'no-floor'), downgrade);
    }
  });
});

const bounds = { min: 2, max: 32 };
const link = (rttMs: number, bps?: number): DeviceRecord['link'] => ({ rttMs, jitterMs: 1, measuredAt: 0, ...(bps ? { bps } : {}) });

describe('planner: ranking fastest first', () => {
  it('orders by expected transfer time from measured throughput and RTT, ties by id, unmeasured last', () => {
    const order = rankDevices(manifest, [
      device('slow', { link: link(80, 50_000) }),
      device('unmeasured'),
      device('fast-b', { link: link(5, 2_000_000) }),
      device('fast-a', { link: link(5, 2_000_000) }),
      device('mid', { link: link(20, 500_000) }),
      device('low-rtt-thin-pipe', { link: link(2, 100_000) }),
    ], bounds);
    assert.deepEqual(order.map((o) => o.id), ['fast-a', 'fast-b', 'mid', 'low-rtt-thin-pipe', 'slow', 'unmeasured']);
    assert.deepEqual(order.map((o) => o.rank), [1, 2, 3, 4, 5, 6]);
    assert.equal(order[5]!.etaMs, undefined);
    assert.equal(order[0]!.bps, 2_000_000);
    assert.ok(order[0]!.etaMs! < order[4]!.etaMs!);
  });

  it('estimates size / throughput plus four round trips, limited by what the window allows per round trip', () => {
    // 64 KiB at 65536 B/s = 1000 ms, + 4 x 10 ms
    assert.equal(estimateTransferMs(manifest, device('d', { link: link(10, 65_536) }), bounds), 1040);
    // a window of at most 2 x 4 KiB per 100 ms round trip caps the rate at 81920 B/s whatever the link
    assert.equal(estimateTransferMs(manifest, device('d', { link: link(100, 10_000_000) }), { min: 2, max: 2 }), 1200);
    // RTT alone: the window per round trip
    assert.equal(estimateTransferMs(manifest, device('d', { link: link(10) }), { min: 2, max: 8 }), 60);
  });
});

describe('planner: device time (what the link does not explain, §7.5.3)', () => {
  const mib = { ...manifest, size: 1024 * 1024 };

  it('adds the device time per MiB, scaled to the image: the device\'s own figure, else the configured estimate', () => {
    const d = device('d', { link: link(10, 1_048_576) });
    // 1 MiB at 1 MiB/s = 1000 ms, + 4 x 10 ms
    assert.equal(linkTimeMs(mib, d, bounds), 1040);
    assert.equal(estimateTransferMs(mib, d, bounds), 1040, 'nothing measured, nothing configured: link time only');
    assert.equal(estimateTransferMs(mib, d, { ...bounds, deviceMsPerMiB: 800, rebootMs: 300 }), 1040 + 800 + 300);
    const learned = device('d', { link: link(10, 1_048_576), deviceMsPerMiB: 1400, rebootMs: 450 });
    assert.equal(estimateTransferMs(mib, learned, { ...bounds, deviceMsPerMiB: 800, rebootMs: 300 }), 1040 + 1400 + 450, 'the measured figures win');
    // 64 KiB is 1/16 MiB: 1400 / 16
    assert.equal(deviceTimeMs(manifest.size, learned, bounds), 87.5);
    assert.equal(estimateTransferMs(manifest, learned, bounds), Math.round(linkTimeMs(manifest, learned, bounds)! + 87.5 + 450));
  });

  it('learns it from a slot time: the part beyond the link time, per MiB, averaged with the previous figure, never negative', () => {
    // 256 KiB held the slot 400 ms of which the link explains 50: 350 ms per 1/4 MiB
    assert.equal(learnDeviceMsPerMiB(undefined, 400, 50, 256 * 1024), 1400);
    assert.equal(learnDeviceMsPerMiB(1000, 400, 50, 256 * 1024), 1200);
    assert.equal(learnDeviceMsPerMiB(undefined, 30, 50, 256 * 1024), 0, 'faster than the link estimate: no device time');
    assert.equal(learnDeviceMsPerMiB(600, 30, 50, 256 * 1024), 300);
  });

  it('with device time in the slot times, the start plan keeps the real makespan near its bound; without, it does not', () => {
    // 2 slots; 6 devices on a fast link whose update is all device time (400 ms), one slow link
    // (2 s of link time + the same 400 ms). 64 KiB image: 400 ms = 6400 ms per MiB.
    const perMiB = 6400;
    const fleet = [
      ...Array.from({ length: 6 }, (_, i) => device(`fast${i}`, { link: link(1, 50_000_000) })),
      device('slow', { link: link(5, 33_000) }),
    ];
    const trueSlot = (id: string): number => linkTimeMs(manifest, fleet.find((d) => d.id === id)!, bounds)! + 400;
    const realMakespan = (b: typeof bounds & { deviceMsPerMiB?: number }): number => {
      const ranked = rankDevices(manifest, fleet, b);
      const plan = planStarts(ranked, 2, { slotMs: (e) => e.etaMs ?? 0 });
      return Math.max(...planStartsInOrder(plan.map((e) => ({ etaMs: trueSlot(e.id) })), 2));
    };
    const bound = makespanLowerBound(fleet.map((d) => trueSlot(d.id)), 2);
    const blind = realMakespan(bounds);
    const informed = realMakespan({ ...bounds, deviceMsPerMiB: perMiB });
    assert.ok(blind > 1.15 * bound, `without device time the slow device starts last: ${blind} vs bound ${bound}`);
    assert.ok(informed <= 1.15 * bound, `with device time: ${informed} vs bound ${bound}`);
  });
});

describe('planner: chunk window from the bandwidth-delay product', () => {
  it('keeps two round trips of data in flight, within bounds', () => {
    // 1 MB/s x 50 ms = 50 KB; x2 / 4 KiB = 25 chunks
    assert.equal(chunkWindowFor(link(50, 1_000_000), 4096, bounds), 25);
    assert.equal(chunkWindowFor(link(1, 100_000), 4096, bounds), 2, 'at least the minimum');
    assert.equal(chunkWindowFor(link(200, 10_000_000), 4096, bounds), 32, 'at most the maximum');
    assert.equal(chunkWindowFor(link(20), 4096, bounds), 32, 'without throughput: the maximum');
  });
});

describe('planner: start plan under a concurrency limit', () => {
  const entry = (id: string, etaMs: number, rank: number) => ({ id, rank, from: '1.0.0', etaMs });

  it('starts fastest first when nothing is slow enough to stretch the tail', () => {
    const ranked = [entry('a', 10, 1), entry('b', 11, 2), entry('c', 12, 3), entry('d', 13, 4)];
    const plan = planStarts(ranked, 2);
    assert.deepEqual(plan.map((e) => e.id), ['a', 'b', 'c', 'd']);
    assert.deepEqual(plan.map((e) => e.startMs), [0, 0, 10, 11]);
  });

  it('starts a slow device early enough that it does not finish last by a wide margin', () => {
    // 8 fast devices of 10 s and one of 60 s on 2 slots: started last it would end at 100 s;
    // the lower bound is max(60, 140 / 2) = 70 s.
    const ranked = [...Array.from({ length: 8 }, (_, i) => entry(`f${i}`, 10_000, i + 1)), entry('slow', 60_000, 9)];
    const plan = planStarts(ranked, 2);
    const makespan = Math.max(...plan.map((e) => e.startMs! + e.etaMs!));
    assert.ok(makespan <= 1.15 * makespanLowerBound(ranked.map((e) => e.etaMs), 2), `makespan ${makespan}`);
    assert.ok(plan.findIndex((e) => e.id === 'slow') < 8, 'the slow device does not start last');
    // the fast devices still go in rank order
    assert.deepEqual(plan.filter((e) => e.id !== 'slow').map((e) => e.id), ranked.slice(0, 8).map((e) => e.id));
  });

  it('with enough slots every device starts at once', () => {
    const plan = planStarts([entry('a', 5, 1), entry('b', 50, 2)], 8);
    assert.deepEqual(plan.map((e) => e.startMs), [0, 0]);
  });

  it('keeps the plan within 15% of the bound with many slow devices, and the mean well below slowest-first', () => {
    // a mixed fleet: 25 fast (1.5 s), 12 medium (3 s), 13 slow (4.5..6 s), 8 slots
    const etas = [...Array.from({ length: 25 }, () => 1500), ...Array.from({ length: 12 }, () => 3000), ...Array.from({ length: 13 }, (_, i) => 4500 + i * 120)];
    const ranked = etas.map((etaMs, i) => entry(`d${String(i).padStart(2, '0')}`, etaMs, i + 1));
    const plan = planStarts(ranked, 8);
    const ends = plan.map((e) => e.startMs! + e.etaMs!);
    const bound = makespanLowerBound(etas, 8);
    assert.ok(Math.max(...ends) <= 1.15 * bound, `makespan ${Math.max(...ends)} vs bound ${bound}`);
    const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
    const slowestFirst = planStartsInOrder([...ranked].reverse(), 8);
    assert.ok(mean(ends) < 0.8 * mean(slowestFirst), `mean ${mean(ends)} vs slowest-first ${mean(slowestFirst)}`);
  });
});

describe('planner: balanced start plan', () => {
  const entry = (id: string, etaMs: number, rank: number) => ({ id, rank, from: '1.0.0', etaMs });
  const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

  it('keeps the mean near fastest-first and the makespan near the bound (a 50-device mixed fleet on 8 slots)', () => {
    // the bench fleet's shape: 12 lan (0.5 s), 13 wifi-good (0.6 s), 12 wifi-poor (2.4 s), 13 cellular (3.4 s)
    const etas = [...Array(12).fill(500), ...Array(13).fill(600), ...Array(12).fill(2400), ...Array(13).fill(3400)] as number[];
    const ranked = etas.map((etaMs, i) => entry(`d${String(i).padStart(2, '0')}`, etaMs, i + 1));
    const plan = planStarts(ranked, 8);
    const ends = plan.map((e) => e.startMs! + e.etaMs!);
    const fastestFirst = planStartsInOrder(ranked, 8);
    assert.ok(Math.max(...fastestFirst) > 1.15 * makespanLowerBound(etas, 8), 'fastest first alone misses the makespan target here');
    assert.ok(Math.max(...ends) <= 1.05 * makespanLowerBound(etas, 8), `makespan ${Math.max(...ends)} vs bound ${makespanLowerBound(etas, 8)}`);
    assert.ok(mean(ends) <= 1.03 * mean(fastestFirst), `mean ${mean(ends)} vs fastest-first ${mean(fastestFirst)}`);
    // the sequence reproduces the plan under list scheduling, and every device is in it once
    assert.deepEqual(planStartsInOrder(plan, 8), ends);
    assert.deepEqual(plan.map((e) => e.id).sort(), ranked.map((e) => e.id));
  });

  it('puts devices without an estimate last, in rank order', () => {
    const ranked = [entry('a', 100, 1), entry('b', 900, 2), entry('c', 1000, 3), { id: 'x', rank: 4, from: '1.0.0' }, { id: 'y', rank: 5, from: '1.0.0' }];
    const plan = planStarts(ranked, 2);
    assert.deepEqual(plan.slice(-2).map((e) => e.id), ['x', 'y']);
  });
});

/** End times of list scheduling in the given order (a baseline for the tests). */
function planStartsInOrder(entries: { etaMs?: number }[], slots: number): number[] {
  const free = new Array<number>(slots).fill(0);
  return entries.map((e) => {
    const i = free.indexOf(Math.min(...free));
    free[i] = free[i]! + (e.etaMs ?? 0);
    return free[i]!;
  });
}
