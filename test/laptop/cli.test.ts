import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeSampleImage } from '../../firmware-samples/image-format.ts';
import { closeSerialPort } from '../../transport/serial-port.ts';
import { Rig } from '../helpers/rig.ts';
import { startFwpush as start, type FwpushRun as Run } from './run-fwpush.ts';

const fwpush = (args: string[]): Run['exited'] => start(args).exited;

describe('fwpush against a real gateway: status, push, busy (pty, MQTT, simulated devices)', function () {
  this.timeout(120_000);
  let rig: Rig;
  let port: string;
  let image: string;

  before(async () => {
    rig = await Rig.start({ devices: 3 });
    // fwpush opens the laptop end itself, as a technician's laptop would
    rig.laptopLink.close();
    await closeSerialPort(rig.laptopPort);
    port = rig.pty.b;
    image = join(rig.dir, 'sensor-fw-1.1.0.bin');
    await writeFile(image, makeSampleImage({ name: 'sensor-fw', version: '1.1.0', hw: 'sensor-v1', size: 64 * 1024 }));
  });
  after(async () => {
    await rig?.stop();
  });

  it('status on a gateway that has run no campaign: "gateway idle: no campaign", exit 0', async () => {
    const r = await fwpush(['--port', port, 'status']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^gateway idle: no campaign$/m);
  });

  it('push without a terminal: a line per phase change, the results table, the summary, exit 0', async () => {
    const r = await fwpush(['--port', port, '--tech-key', rig.techKeyPath, image, '--name', 'sensor-fw', '--version', '1.1.0', '--hw', 'sensor-v1']);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.doesNotMatch(r.stdout, /\x1b\[/, 'no terminal control sequences in a pipe');
    assert.match(r.stdout, /^ {2}transferring dev-\d+$/m);
    assert.match(r.stdout, /^ {2}confirming {3}dev-\d+$/m);
    assert.match(r.stdout, /^Results for sensor-fw 1\.1\.0 \(campaign c-[0-9a-f]+\), in rollout order:$/m);
    assert.equal(r.stdout.match(/^ +[123] {2}dev-\d+ +updated +1\.0\.0 +1\.1\.0 /gm)?.length, 3);
    assert.match(r.stdout, /^Done: 3\/3 targeted devices updated/m);
  });

  it('status after the campaign: its replay and the same summary and exit code as the push', async () => {
    const r = await fwpush(['--port', port, 'status']);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /^Last campaign c-[0-9a-f]+ \(sensor-fw 1\.1\.0\) has finished; its results:$/m);
    assert.match(r.stdout, /^Rollout order for sensor-fw 1\.1\.0/m);
    assert.equal(r.stdout.match(/^ +[123] {2}dev-\d+ +updated /gm)?.length, 3);
    assert.match(r.stdout, /^Done: 3\/3 targeted devices updated/m);
  });

  it('status --json: the state line, the replay (totals included), the summary last', async () => {
    const r = await fwpush(['--port', port, 'status', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const state = lines.find((l) => l.event === 'state');
    assert.ok(state, 'a state line');
    assert.equal(state.running, false);
    assert.ok(lines.indexOf(state) < lines.findIndex((l) => l.event === 'order'), 'state comes before the replay');
    for (const e of ['order', 'progress', 'totals', 'result', 'complete']) assert.ok(lines.some((l) => l.event === e), e);
    const summary = lines.at(-1)!;
    assert.equal(summary.event, 'summary');
    assert.equal(summary.ok, true);
    assert.equal(summary.updated, 3);
    assert.equal(summary.campaign, state.campaign);
    assert.deepEqual((summary.image as { name: string }).name, 'sensor-fw');
  });

  it('status while a campaign runs follows it live to its end; nothing to update -> exit 3', async () => {
    const stored = rig.gateway.store.list()[0]!;
    const prepared = await rig.gateway.prepareCampaign(stored); // active, held until status is following it
    const run = start(['--port', port, 'status']);
    await run.saw(/is running; following it/);
    prepared.start(); // every device already runs 1.1.0
    const r = await run.exited;
    assert.equal(r.code, 3, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, new RegExp(`^Campaign ${prepared.campaign.id} \\(sensor-fw 1\\.1\\.0\\) is running; following it$`, 'm'));
    assert.match(r.stdout, /^Not updated \(3\):$/m);
    assert.equal(r.stdout.match(/^ +- {2}dev-\d+ +skipped +1\.1\.0 +- +- +0 {2}not-newer: /gm)?.length, 3);
    assert.match(r.stdout, /^no device needed sensor-fw 1\.1\.0: 3 skipped \(not-newer\)$/m);
  });

  it('a push while a campaign runs is refused: the gateway\'s reason, the status hint, exit 4', async () => {
    const stored = rig.gateway.store.list()[0]!;
    await rig.gateway.prepareCampaign(stored); // made the active campaign, not started
    const r = await fwpush(['--port', port, '--tech-key', rig.techKeyPath, image, '--name', 'sensor-fw', '--version', '1.1.0', '--hw', 'sensor-v1']);
    assert.equal(r.code, 4, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stderr, /gateway refused the upload \(busy\): campaign c-[0-9a-f]+ is still running/);
    assert.match(r.stderr, new RegExp(`run \`fwpush --port ${port.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} status\` to follow it`));
  });
});
