import assert from 'node:assert/strict';
import type { SimEvent } from '../../device-sim/device.ts';
import type { GatewayUplinkMessage } from '../../protocol/uplink.ts';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { closeSerialPort } from '../../transport/serial-port.ts';
import { Rig, sampleImage } from '../helpers/rig.ts';
import { jsonLines, startFwpush } from '../laptop/run-fwpush.ts';

/**
 * docs/protocol.md §7.8.1 end to end: real gateway, real MQTT, simulated devices whose self-test
 * fails (fault switch `failSelfTest`), the laptop client on a real pty.
 */

const ofType = <T extends GatewayUplinkMessage['t']>(events: GatewayUplinkMessage[], t: T): Extract<GatewayUplinkMessage, { t: T }>[] =>
  events.filter((e): e is Extract<GatewayUplinkMessage, { t: T }> => e.t === t);

describe('integration: the rollback threshold halts a rollout of bad firmware', function () {
  this.timeout(120_000);
  let rig: Rig | undefined;
  afterEach(async () => {
    await rig?.stop();
    rig = undefined;
  });

  it('halts after 2 rollbacks: transfers in progress stop, devices not started are never offered the image, the laptop is told', async () => {
    rig = await Rig.start({
      devices: 8, faults: () => ({ failSelfTest: true }),
      // a long ack timeout: a stalled transfer (below) waits instead of failing on its own
      config: { rollout: { concurrency: 2, ackTimeoutMs: 60_000 } },
    });
    // The first two devices offered get the image; chunks to any later one are held back, as on a
    // stalled link, so the halt finds transfers in progress however fast this machine is.
    const offered: string[] = [];
    const channel = rig.gateway.channel;
    const send = channel.send.bind(channel);
    channel.send = async (id, msg) => {
      if (msg.t === 'offer' && !offered.includes(id)) offered.push(id);
      if (msg.t === 'chunk' && offered.indexOf(id) >= 2) return;
      return send(id, msg);
    };
    const seen = new Map<string, SimEvent[]>();
    for (const d of rig.sims.devices) d.on('event', (e) => seen.set(d.id, [...(seen.get(d.id) ?? []), e]));

    const { image, manifest } = sampleImage({ version: '1.1.0', size: 32 * 1024 });
    await rig.client.connect();
    const { campaign } = await rig.client.push(manifest, image);
    const complete = await rig.client.follow(campaign);

    const ids = rig.sims.devices.map((d) => d.id);
    const results = ofType(rig.events, 'result');
    for (const id of ids) assert.equal(results.filter((r) => r.id === id).length, 1, `${id}: exactly one result`);
    assert.equal(rig.events.at(-1)?.t, 'complete', 'completion comes last');
    assert.equal(ofType(rig.events, 'complete').length, 1);

    // the two devices that took the image rolled back, which passes 20 % of 2 finished
    const [first, second, ...later] = offered;
    const by = new Map(results.map((r) => [r.id, r]));
    for (const id of [first!, second!]) assert.deepEqual([by.get(id)?.outcome, by.get(id)?.code], ['rolled-back', 'self-test-failed'], id);
    assert.deepEqual(complete.halted, {
      code: 'rollback-threshold', reason: '2 of 2 finished devices rolled back (counted as 4: 50 % of the 8 targets), threshold 20 %', rolledBack: 2, finished: 2, thresholdPct: 20,
    });
    assert.deepEqual([complete.devices, complete.updated, complete.rolledBack, complete.failed, complete.skipped], [8, 0, 2, 0, 6]);

    // the transfers in progress were stopped before activation
    assert.equal(later.length, 2, `offered in this order: ${offered.join(', ')}`);
    for (const id of later) {
      const r = by.get(id)!;
      assert.deepEqual([r.outcome, r.code], ['skipped', 'campaign-halted'], id);
      assert.match(r.reason ?? '', /rollout stopped before this device was activated \(2 of 2 finished devices rolled back \(counted as 4: 50 % of the 8 targets\), threshold 20 %\)/);
      assert.ok(!(seen.get(id) ?? []).some((e) => e.type === 'activated'), `${id} was never activated`);
    }
    // the devices not started were never offered the image and were told why
    const notStarted = ids.filter((id) => !offered.includes(id));
    assert.equal(notStarted.length, 4);
    for (const id of notStarted) {
      const r = by.get(id)!;
      assert.deepEqual([r.outcome, r.code, r.durationMs, r.from], ['skipped', 'campaign-halted', 0, '1.0.0'], id);
      assert.match(r.reason ?? '', /rollout stopped before this device started/);
      assert.ok(!(seen.get(id) ?? []).some((e) => e.type.startsWith('offer-')), `${id} saw no offer`);
      assert.equal(rig.sims.devices.find((d) => d.id === id)!.stats.chunks, 0, `${id} received no chunk`);
    }
    // every device still runs its old image, none in trial; every last progress is final
    for (const d of rig.sims.devices) assert.deepEqual([d.running?.version, d.running?.trial], ['1.0.0', false], d.id);
    const last = new Map(ofType(rig.events, 'progress').map((p) => [p.id, p.phase]));
    for (const id of ids) assert.equal(last.get(id), by.get(id)!.outcome, id);
  });

  it('one rollback alone does not halt: the others are updated', async () => {
    rig = await Rig.start({ devices: 4, faults: (i) => (i === 0 ? { failSelfTest: true } : undefined), config: { rollout: { concurrency: 2 } } });
    const { image, manifest } = sampleImage({ version: '1.1.0', size: 16 * 1024 });
    await rig.client.connect();
    const { campaign } = await rig.client.push(manifest, image);
    const complete = await rig.client.follow(campaign);
    assert.equal(complete.halted, undefined);
    assert.deepEqual([complete.updated, complete.rolledBack], [3, 1]);
    assert.equal(ofType(rig.events, 'result').filter((r) => r.code === 'campaign-halted').length, 0);
  });

  it('fwpush reports the halt in its summary and exits with 6 (docs/operations.md)', async () => {
    rig = await Rig.start({ devices: 4, faults: () => ({ failSelfTest: true }), config: { rollout: { concurrency: 2 } } });
    rig.laptopLink.close(); // the real fwpush process takes the laptop end of the pty
    await closeSerialPort(rig.laptopPort);
    const { image, manifest } = sampleImage({ version: '1.1.0', size: 32 * 1024 });
    const imagePath = join(rig.dir, 'bad.bin');
    const manifestPath = join(rig.dir, 'bad.json');
    await writeFile(imagePath, image);
    await writeFile(manifestPath, JSON.stringify(manifest));
    const r = await startFwpush(['--port', rig.pty.b, '--tech-key', rig.techKeyPath, imagePath, '--manifest', manifestPath, '--json', '--reconnect-timeout', '0'], 90_000).exited;
    const summary = jsonLines(r.stdout).at(-1)!;
    assert.equal(summary.event, 'summary', r.stdout);
    assert.equal((summary.halted as { code?: string } | undefined)?.code, 'rollback-threshold', r.stdout);
    assert.equal(r.code, 6, `exit code 6 for a halted rollout\n${r.stdout}\n${r.stderr}`);
  });
});
