import assert from 'node:assert/strict';
import { ReconnectGrace } from '../../../gateway/reconnect-grace.ts';
import { campaignRig, openGate, T0 } from './campaign-rig.ts';

/**
 * A campaign created right after a gateway restart (docs/operations.md "Restarts"): before it
 * selects its devices it waits — up to rollout.reconnectGraceMs from the gateway's start — for the
 * devices that were connected before the restart, so they are measured, ranked and updated with
 * the others instead of waiting for a later check-in. Fake clock; the grace is the gateway's.
 */
const HOUR = 3_600_000;

describe('campaign: right after a restart, it waits for the devices connected before it (fake clock)', () => {
  it('devices that come back within the grace are measured and ranked: nobody is left waiting for a check-in', async () => {
    let grace: ReconnectGrace | undefined;
    const rig = campaignRig({
      ids: ['d1', 'd2', 'd3'], offline: ['d2', 'd3'],
      deps: ({ timers, fleet }) => {
        grace = new ReconnectGrace(['d1', 'd2', 'd3'], fleet, timers, 15_000);
        return { checkIn: { expiresAt: T0 + HOUR }, gate: openGate(timers), reconnects: (signal) => grace!.wait(signal) };
      },
    });
    rig.timers.setTimeout(() => rig.site.checkIn('d2'), 2000);
    rig.timers.setTimeout(() => rig.site.checkIn('d3'), 4000);
    const complete = await rig.finish();
    const order = rig.orders[0]!;
    assert.equal(rig.site.sent.find((s) => s.msg.t === 'ping')?.at, T0 + 4000, 'the first probe once the last one is back, not before');
    assert.deepEqual(order.devices.map((d) => d.id).sort(), ['d1', 'd2', 'd3']);
    for (const d of order.devices) assert.ok(d.etaMs !== undefined, `${d.id} was measured and ranked`);
    assert.deepEqual(rig.waiting, [], 'nobody waits for a check-in');
    assert.deepEqual([complete.updated, complete.devices], [3, 3]);
  });

  it('a device not back when the grace ends waits for its check-in, as any offline device', async () => {
    let grace: ReconnectGrace | undefined;
    const rig = campaignRig({
      ids: ['d1', 'd2'], offline: ['d2'],
      deps: ({ timers, fleet }) => {
        grace = new ReconnectGrace(['d1', 'd2'], fleet, timers, 15_000);
        return { checkIn: { expiresAt: T0 + HOUR }, gate: openGate(timers), reconnects: (signal) => grace!.wait(signal) };
      },
    });
    await rig.until(() => rig.orders.length > 0);
    assert.equal(rig.timers.now(), T0 + 15_000, 'the order after the grace');
    assert.deepEqual(rig.orders[0]!.devices.map((d) => [d.id, d.etaMs === undefined]), [['d1', false], ['d2', true]]);
    await rig.until(() => rig.waiting.length > 0);
    assert.deepEqual(rig.waiting[0]!.devices, [{ id: 'd2', reason: 'offline: waits for its check-in' }]);
  });

  it('a cancel during the wait ends it at once: every device ends cancelled, nobody is probed', async () => {
    let grace: ReconnectGrace | undefined;
    const rig = campaignRig({
      ids: ['d1', 'd2'], offline: ['d2'],
      deps: ({ timers, fleet }) => {
        grace = new ReconnectGrace(['d2'], fleet, timers, 15_000);
        return { checkIn: { expiresAt: T0 + HOUR }, gate: openGate(timers), reconnects: (signal) => grace!.wait(signal) };
      },
    });
    rig.timers.setTimeout(() => rig.campaign.cancelByUser('by the technician'), 1000);
    const complete = await rig.finish();
    assert.ok(complete.durationMs <= 1000, `ended at the cancel: ${complete.durationMs} ms`);
    assert.deepEqual(rig.site.sent.filter((s) => s.msg.t === 'ping' || s.msg.t === 'offer'), []);
    assert.deepEqual(rig.states.at(-1)?.state, 'cancelled');
  });

  it('a resumed campaign does not wait for it (its devices each get rollout.offlineWaitMs instead)', async () => {
    let called = 0;
    const rig = campaignRig({
      ids: ['d1'],
      deps: () => ({
        reconnects: async () => { called++; },
        resume: {
          id: 'c-1', sha256: 'a'.repeat(64), startedAt: T0 - 1000, activating: new Set(), held: new Map(), results: new Map(), records: 2, tornBytes: 0, corruptLines: [],
          order: { t: 'order', campaign: 'c-1', image: { name: 'fw', version: '1.1.0', sha256: 'a'.repeat(64) }, devices: [{ id: 'd1', rank: 1, from: '1.0.0' }], excluded: [] },
        },
      }),
    });
    await rig.finish();
    assert.equal(called, 0);
    const fresh = campaignRig({ ids: ['d1'], deps: () => ({ reconnects: async () => { called++; } }) });
    await fresh.finish();
    assert.equal(called, 1, 'a new campaign asks once');
  });
});
