import assert from 'node:assert/strict';
import { campaignRig, openGate, T0 } from './campaign-rig.ts';

/**
 * Staged waves (docs/protocol.md §7.3.6, docs/operations.md "Waves"): a wave's devices start only
 * once the wave before it has no device ready or running; a finished wave whose failure share
 * reaches the wave gate (default rollout.rollbackThreshold) halts the campaign; with wavePause the
 * campaign pauses before each next wave until resumeWaves().
 */
const waves = [{ count: 1 }, { pct: 100 }];

describe('campaign: staged waves (fake clock, §7.3.6)', () => {
  it('the canary wave runs alone; the next wave starts once it has finished; the order carries each wave', async () => {
    const rig = campaignRig({ ids: ['d1', 'd2', 'd3'], rollout: { concurrency: 3 }, deps: () => ({ waves }) });
    const complete = await rig.finish();
    assert.deepEqual(rig.orders[0]!.devices.map((d) => [d.id, d.rank, d.wave]), [['d1', 1, 1], ['d2', 2, 2], ['d3', 3, 2]]);
    const confirmed = rig.site.sent.find((s) => s.id === 'd1' && s.msg.t === 'confirm')!;
    for (const id of ['d2', 'd3']) {
      const offer = rig.site.sent.find((s) => s.id === id && s.msg.t === 'offer')!;
      assert.ok(rig.site.sent.indexOf(offer) > rig.site.sent.indexOf(confirmed), `${id} offered after the canary confirmed`);
    }
    assert.deepEqual(rig.states, [{ state: 'running', wave: 1 }, { state: 'running', wave: 2 }, { state: 'completed' }]);
    assert.equal(complete.updated, 3);
  });

  it('the wave gate halts the campaign after a wave whose failure share reaches it; later waves never start', async () => {
    // wave 1: d1 and d2, one of them rolled back: 50 % reaches a gate of 50 %
    const rig = campaignRig({
      ids: ['d1', 'd2', 'd3', 'd4'], roles: { d1: 'revert' }, rollout: { concurrency: 2 },
      deps: () => ({ waves: [{ count: 2 }, { pct: 100 }], waveGatePct: 50 }),
    });
    const complete = await rig.finish();
    const reason = 'wave 1: 1 of 2 finished devices failed or rolled back, wave gate 50 %';
    assert.deepEqual(complete.halted, { code: 'wave-gate', reason, rolledBack: 1, finished: 2, thresholdPct: 50 });
    for (const id of ['d3', 'd4']) {
      assert.deepEqual(rig.result(id), {
        t: 'result', campaign: 'c-1', id, outcome: 'skipped', code: 'campaign-halted', reason: `rollout stopped before this device started (${reason})`,
        from: '1.0.0', to: '1.1.0', durationMs: 0, retries: 0,
      });
      assert.equal(rig.site.count(id, 'offer'), 0);
    }
    assert.deepEqual([complete.updated, complete.rolledBack, complete.skipped], [1, 1, 2]);
    assert.deepEqual(rig.states.at(-1), { state: 'halted', reason });
    assert.equal(rig.states.some((s) => s.wave === 2), false, 'wave 2 never began');
  });

  it('below the wave gate the next wave goes on; the gate defaults to rollout.rollbackThreshold', async () => {
    const below = campaignRig({
      ids: ['d1', 'd2', 'd3', 'd4'], roles: { d1: 'revert' }, rollout: { concurrency: 2 },
      deps: () => ({ waves: [{ count: 2 }, { pct: 100 }], waveGatePct: 51 }),
    });
    const c1 = await below.finish();
    assert.equal(c1.halted, undefined);
    assert.deepEqual([c1.updated, c1.rolledBack], [3, 1]);

    const byThreshold = campaignRig({
      ids: ['d1', 'd2', 'd3', 'd4'], roles: { d1: 'revert' }, rollout: { concurrency: 2, rollbackThreshold: 50 },
      deps: () => ({ waves: [{ count: 2 }, { pct: 100 }] }),
    });
    const c2 = await byThreshold.finish();
    assert.equal(c2.halted?.code, 'wave-gate');
    assert.equal(c2.halted?.thresholdPct, 50);

    const off = campaignRig({
      ids: ['d1', 'd2', 'd3'], roles: { d1: 'revert' }, rollout: { rollbackThreshold: 0 }, deps: () => ({ waves }),
    });
    const c3 = await off.finish();
    assert.equal(c3.halted, undefined, 'a threshold of 0: no gate');
    assert.equal(c3.updated, 2);
  });

  it('with wavePause the campaign pauses before the next wave until resumeWaves()', async () => {
    const rig = campaignRig({ ids: ['d1', 'd2', 'd3'], deps: () => ({ waves, wavePause: true }) });
    assert.equal(rig.campaign.paused, false);
    assert.equal(rig.campaign.resumeWaves(), false, 'not paused');
    await rig.until(() => rig.campaign.paused);
    assert.equal(rig.result('d1').outcome, 'updated');
    assert.deepEqual(rig.states.at(-1), { state: 'paused', wave: 2 });
    assert.deepEqual(rig.waiting.at(-1), { t: 'waiting', campaign: 'c-1', pending: 0, devices: [], pausedBeforeWave: 2 });
    assert.equal(rig.events.at(-1), 'swept', 'paused: the next campaign may start');
    const t = rig.timers.now();
    await rig.until(() => rig.timers.now() > t + 3_600_000).catch(() => undefined);
    assert.equal(rig.site.count('d2', 'offer') + rig.site.count('d3', 'offer'), 0, 'nothing starts while paused');
    assert.equal(rig.campaign.resumeWaves(), true);
    assert.equal(rig.campaign.paused, false);
    assert.deepEqual(rig.states.at(-1), { state: 'running', wave: 2 });
    const complete = await rig.finish();
    assert.equal(complete.updated, 3);
  });

  it('a cancel while paused ends the later waves cancelled', async () => {
    const rig = campaignRig({ ids: ['d1', 'd2', 'd3'], deps: () => ({ waves, wavePause: true }) });
    await rig.until(() => rig.campaign.paused);
    rig.campaign.cancelByUser('enough');
    assert.equal(rig.campaign.paused, false);
    assert.equal(rig.campaign.resumeWaves(), false);
    const complete = await rig.finish();
    assert.deepEqual([complete.updated, complete.cancelled], [1, 2]);
    assert.equal(rig.result('d2').reason, 'campaign cancelled before this device started (enough)');
  });

  it('an offline device keeps its wave (target order); the next wave does not wait for it, and it is updated when it checks in', async () => {
    const rig = campaignRig({
      ids: ['d1', 'd2', 'd3', 'd4'], offline: ['d2'], rollout: { concurrency: 2 },
      deps: ({ timers }) => ({ waves: [{ count: 2 }, { pct: 100 }], checkIn: { expiresAt: T0 + 3_600_000 }, gate: openGate(timers) }),
    });
    await rig.until(() => rig.waiting.length > 0);
    assert.deepEqual(rig.orders[0]!.devices.map((d) => [d.id, d.rank, d.wave]), [['d1', 1, 1], ['d2', 2, 1], ['d3', 3, 2], ['d4', 4, 2]]);
    assert.deepEqual(['d1', 'd3', 'd4'].map((id) => rig.result(id).outcome), ['updated', 'updated', 'updated']);
    assert.deepEqual(rig.waiting.at(-1)!.devices, [{ id: 'd2', reason: 'offline: waits for its check-in' }]);
    rig.site.checkIn('d2');
    const complete = await rig.finish();
    assert.equal(complete.updated, 4);
  });
});
