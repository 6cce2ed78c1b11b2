import assert from 'node:assert/strict';
import { AllPowerCutPhases } from '../../device-sim/faults.ts';
import { mulberry32 } from '../../protocol/seeded-random.ts';
import { planComponentCampaign } from './component-schedule.ts';

describe('faults: the component soak schedule', () => {
  const shape = { devices: 6, chunks: 16, links: true };
  const plan = (seed: number, n: number) => {
    const rnd = mulberry32(seed);
    return Array.from({ length: n }, (_, i) => planComponentCampaign(rnd, i + 1, shape));
  };

  it('the same seed gives the same plans; per-component faults of every phase and both components; net new in some campaigns, unchanged in others', () => {
    assert.deepEqual(plan(42, 30), plan(42, 30));
    assert.notDeepEqual(plan(42, 30), plan(43, 30));
    const plans = plan(7, 40);
    assert.equal(plans[0]!.newNet, true, 'the first release brings net');
    assert.ok(plans.some((p) => !p.newNet) && plans.slice(1).some((p) => p.newNet));
    const faults = plans.flatMap((p) => p.faults);
    const cuts = faults.flatMap((f) => (f.kind === 'power-cut' && f.component ? [f] : []));
    assert.deepEqual([...new Set(cuts.map((f) => f.phase))].sort(), [...AllPowerCutPhases].sort());
    assert.deepEqual([...new Set(cuts.map((f) => f.component))].sort(), ['app', 'net']);
    assert.ok(faults.some((f) => f.kind === 'fail-self-test-component' && f.component === 'net'));
    for (const p of plans) {
      for (let d = 0; d < shape.devices; d++) {
        const mine = p.faults.filter((f) => 'device' in f && f.device === d);
        assert.ok(mine.filter((f) => f.kind === 'power-cut').length <= 1, 'one power-cut switch per device');
        if (mine.some((f) => f.kind === 'busy')) assert.equal(mine.length, 1, 'a busy device gets no other fault');
      }
    }
  });
});
