import assert from 'node:assert/strict';
import { readFile, rm, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadRigFile, type LoadedRig } from '../../hil/rig-file.ts';
import { runSuite } from '../../hil/runner.ts';
import { SCENARIOS } from '../../hil/scenarios/index.ts';
import { buildDeviceC } from '../../scripts/lib/device-c.ts';

/**
 * The HIL suite on a simulated rig of C devices (hil/rigs/sim-c.json with three of its boards):
 * every board one `fwdevice` process (device-c's POSIX port) on its own files, powered on by
 * `hil/sim-device.ts on --c`, powered off by SIGKILL; fwgate its own process; the laptop's cable
 * an emulated UART between socat pty pairs. The same scenario code as `npm run hil`; the full
 * suite is `npm run hil -- --rig hil/rigs/sim-c.json`.
 */
describe('hil: a short run on the simulated rig of C devices (fwdevice per board, power cuts by SIGKILL)', function () {
  this.timeout(300_000);
  let dir: string;
  before(async () => {
    await buildDeviceC();
    dir = await mkdtemp(join(tmpdir(), 'fwgate-hil-c-test-'));
  });
  after(async () => { await rm(dir, { recursive: true, force: true }); });

  it('happy path, power cut during the transfer, bad image rolled back, gateway restarted mid-campaign: all pass on C boards', async () => {
    const sim = await loadRigFile('hil/rigs/sim-c.json');
    const rig: LoadedRig = { ...sim, file: { ...sim.file, devices: sim.file.devices.slice(1) } };
    const names = ['happy-path', 'power-cut-transfer', 'bad-image', 'gateway-restart'];
    const reportDir = join(dir, 'report');
    const result = await runSuite(rig, { scenarios: SCENARIOS.filter((s) => names.includes(s.name)), workDir: join(dir, 'work'), reportDir });
    const failures = result.scenarios.filter((s) => s.status !== 'passed')
      .map((s) => `${s.name}: ${s.status} ${s.reason ?? ''} ${s.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}`).join('; ')} ${s.notes.join('; ')}`);
    assert.deepEqual(failures, [], failures.join('\n'));
    assert.deepEqual(result.scenarios.map((s) => s.name), names);
    const cut = result.scenarios.find((s) => s.name === 'power-cut-transfer')!;
    assert.ok(cut.checks.some((c) => c.name === 'power cut while transferring' && c.ok), JSON.stringify(cut.checks));
    // the boards were C devices: their consoles are fwdevice's, each shows its confirmation, and
    // the bad image was reverted by the C boot rules
    const consoles = await Promise.all(rig.file.devices.map((d) => readFile(join(reportDir, 'happy-path', `console-${d.id}.log`), 'utf8')));
    assert.ok(consoles.every((c) => c.includes('"type":"confirmed"')), 'every console shows its confirmation');
    const bad = await Promise.all(rig.file.devices.map((d) => readFile(join(reportDir, 'bad-image', `console-${d.id}.log`), 'utf8')));
    // (the campaign may halt at the rollback threshold before every board has tried the image)
    assert.ok(bad.some((c) => /"type":"booted"[^\n]*"reverted":true,"reason":"self-test failed"/.test(c)), 'a board reverted the bad image by its C boot rules');
    assert.ok(rig.file.devices.every((d) => d.power.on.includes('on --c')), 'C boards');
    assert.equal(result.ok, true);
  });
});
