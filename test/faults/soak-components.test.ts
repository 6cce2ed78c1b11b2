import assert from 'node:assert/strict';
import { runSoak } from './soak.ts';

/**
 * The component soak, sized for CI (docs/reliability.md "The component soak"): devices with app and
 * net, each campaign a signed release (app new, net new or unchanged, app requiring that net), at
 * least 100 faults (per-component ones included) on 6 devices. A failure prints the reproduction command.
 */
const SEED = 20_261_207;
const FAULTS = 100;
const DEVICES = 6;

describe('faults: seeded random soak of multi-component devices (release campaigns)', function () {
  this.timeout(150_000);

  it(`seed ${SEED}: at least ${FAULTS} faults, every device bootable and on a consistent set, nothing lost, every device accounted for`, async () => {
    const lines: string[] = [];
    // disk-full faults run in `npm run test:faults -- --components` (root); left out here like soak.test.ts
    const f = await runSoak({ seed: SEED, faults: FAULTS, devices: DEVICES, components: true, diskFull: false, log: (l) => lines.push(l) });
    console.log(`      ${f.summary} (seed ${SEED}, ${f.campaigns} campaigns, ${(f.ms / 1000).toFixed(1)} s)`);
    const repro = `reproduce: npm run test:faults -- --seed ${SEED} --faults ${FAULTS} --devices ${DEVICES} --components --restarts 0 --verbose\n${lines.join('\n')}`;
    assert.deepEqual(f.problems, [], repro);
    assert.equal(f.bricked, 0, repro);
    assert.equal(f.lost, 0, repro);
    assert.ok(f.injected >= FAULTS, `${f.injected} faults fired`);
    assert.equal(f.updated + f.rolledBack + f.failed + f.skipped, f.campaigns * DEVICES, repro);
    assert.ok(f.updated > 0, 'devices do get updated under faults');
    // the per-component faults did strike: a power cut in a component's step, a failed self-test of net
    assert.ok((f.byKind['fail-self-test-component']?.fired ?? 0) > 0, JSON.stringify(f.byKind));
    assert.ok((f.componentPowerCuts?.fired ?? 0) > 0, JSON.stringify(f.componentPowerCuts));
    assert.ok(f.rolledBack > 0, 'some sets were reverted');
  });
});
