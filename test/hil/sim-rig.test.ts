import assert from 'node:assert/strict';
import { readdir, readFile, rm, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { junitXml } from '../../hil/report.ts';
import { loadRigFile, type LoadedRig } from '../../hil/rig-file.ts';
import { runSuite } from '../../hil/runner.ts';
import { SCENARIOS } from '../../hil/scenarios/index.ts';

/**
 * A short run of the HIL suite on the simulated rig (hil/rigs/sim.json with three of its boards):
 * the same scenario code as `npm run hil`, every board its own fwsim process (power off =
 * SIGKILL), fwgate its own process, the laptop's cable an emulated UART between socat pty pairs.
 * The full suite is `npm run hil -- --rig hil/rigs/sim.json`.
 */
describe('hil: a short run on the simulated rig (real processes, ptys, power cuts by SIGKILL)', function () {
  this.timeout(300_000);
  let dir: string;
  before(async () => { dir = await mkdtemp(join(tmpdir(), 'fwgate-hil-test-')); });
  after(async () => { await rm(dir, { recursive: true, force: true }); });

  it('happy path, power cut during the transfer, bad image rolled back, gateway restarted mid-campaign, laptop unplugged mid-upload: all pass, with consoles, timelines and JUnit', async () => {
    const sim = await loadRigFile('hil/rigs/sim.json');
    const rig: LoadedRig = { ...sim, file: { ...sim.file, devices: sim.file.devices.slice(1) } };
    const names = ['happy-path', 'power-cut-transfer', 'bad-image', 'gateway-restart', 'laptop-unplug'];
    const reportDir = join(dir, 'report');
    const result = await runSuite(rig, { scenarios: SCENARIOS.filter((s) => names.includes(s.name)), workDir: join(dir, 'work'), reportDir });
    const failures = result.scenarios.filter((s) => s.status !== 'passed')
      .map((s) => `${s.name}: ${s.status} ${s.reason ?? ''} ${s.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}`).join('; ')} ${s.notes.join('; ')}`);
    assert.deepEqual(failures, [], failures.join('\n'));
    assert.deepEqual(result.scenarios.map((s) => s.name), names);
    assert.equal(result.ok, true);
    for (const s of result.scenarios) assert.ok(s.checks.length >= 10, `${s.name} checked ${s.checks.length} things`);

    // the power cut landed on a device mid-transfer, and that device still ended updated
    const cut = result.scenarios.find((s) => s.name === 'power-cut-transfer')!;
    assert.ok(cut.checks.some((c) => c.name === 'power cut while transferring' && c.ok), JSON.stringify(cut.checks));
    // the simulated cable was really pulled mid-upload (its processes killed) and fwpush resumed part-way
    const unplug = result.scenarios.find((s) => s.name === 'laptop-unplug')!;
    for (const name of ['cable pulled mid-upload', 'fwpush saw the link lost', 'fwpush reconnected', 'upload resumed part-way']) {
      assert.ok(unplug.checks.some((c) => c.name === name && c.ok), `${name}: ${JSON.stringify(unplug.checks)}`);
    }

    // the report folder: summary, gateway log, per scenario consoles and per-device timelines
    const files = await readdir(join(reportDir, 'power-cut-transfer'));
    for (const d of rig.file.devices) assert.ok(files.includes(`console-${d.id}.log`) && files.includes(`timeline-${d.id}.txt`), files.join(', '));
    const timeline = await readFile(join(reportDir, 'power-cut-transfer', 'timeline.txt'), 'utf8');
    assert.match(timeline, /power off \(rig\)[\s\S]*power on \(rig\)/);
    const consoles = await Promise.all(rig.file.devices.map((d) => readFile(join(reportDir, 'happy-path', `console-${d.id}.log`), 'utf8')));
    assert.ok(consoles.every((c) => c.includes('"type":"confirmed"')), 'every console shows its confirmation');
    assert.equal(JSON.parse(await readFile(join(reportDir, 'summary.json'), 'utf8')).ok, true);
    const xml = junitXml(result);
    assert.match(xml, /tests="5" failures="0" errors="0" skipped="0"/);
    await writeFile(join(dir, 'junit.xml'), xml);
  });
});
