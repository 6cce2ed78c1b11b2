import assert from 'node:assert/strict';
import { join } from 'node:path';
import { FLEET_FILE, readFleetFile } from '../../gateway/fleet-store.ts';
import { Gateway } from '../../gateway/gateway.ts';
import { silentLogger } from '../../gateway/log.ts';
import type { FleetMessage } from '../../protocol/uplink.ts';
import { Rig, sampleImage } from '../helpers/rig.ts';
import { waitUntil } from '../helpers/wait.ts';

describe('integration: the fleet report over the serial link and across a gateway restart', function () {
  this.timeout(120_000);
  let rig: Rig | undefined;
  let restarted: Gateway | undefined;
  afterEach(async () => {
    await restarted?.stop();
    restarted = undefined;
    await rig?.stop();
    rig = undefined;
  });

  it('after a rollout, `status` answers state, then fleet (new versions, last results), then the replay; the file survives a restart', async () => {
    rig = await Rig.start({ devices: 3 });
    const ids = rig.sims.devices.map((d) => d.id).sort();
    const { image, manifest } = sampleImage({ version: '1.1.0', size: 32 * 1024 });
    await rig.client.connect();
    const { campaign } = await rig.client.push(manifest, image);
    await rig.client.follow(campaign);

    const before = rig.events.length;
    const state = await rig.client.status();
    assert.equal(state.campaign, campaign);
    await waitUntil(() => rig!.events.slice(before).some((e) => e.t === 'complete'), 20_000, 'the replay of the campaign');
    const answer = rig.events.slice(before);
    assert.deepEqual(answer.slice(0, 3).map((e) => e.t), ['state', 'fleet', 'order'], 'fleet right after state, before the replay (§7.11.1)');
    const fleet = answer[1] as FleetMessage;
    assert.equal(fleet.more, undefined);
    assert.deepEqual(fleet.devices.map((d) => d.id), ids, 'every device, sorted by id');
    for (const d of fleet.devices) {
      assert.deepEqual([d.hw, d.version, d.online], ['sensor-v1', '1.1.0', true], d.id);
      assert.deepEqual(d.lastResult && { ...d.lastResult, at: undefined }, { campaign, outcome: 'updated', code: 'ok', version: '1.1.0', at: undefined }, d.id);
      assert.ok(d.lastCheckIn <= fleet.now && fleet.now - d.lastCheckIn < 120_000, `${d.id} checked in during the test`);
      assert.ok(fleet.now - d.lastResult!.at < 120_000 && d.lastResult!.at <= fleet.now, `${d.id} result received during the test`);
    }

    // a clean stop writes the file (every device offline: the gateway no longer sees them)
    const { config } = rig.gateway;
    await rig.gateway.stop();
    const file = await readFleetFile(join(config.dataDir, FLEET_FILE));
    assert.ok(file, 'fleet.json written');
    assert.deepEqual(file.devices.map((d) => [d.id, d.version, d.online, d.lastResult?.outcome, d.lastResult?.campaign]),
      ids.map((id) => [id, '1.1.0', false, 'updated', campaign]));

    // a new gateway on the same data directory reports them, offline until they report to it
    restarted = await Gateway.start({ config, log: silentLogger() });
    const [idle, report] = restarted.campaignState();
    assert.deepEqual(idle, { t: 'state', running: false });
    assert.equal(report?.t, 'fleet');
    const loaded = (report as FleetMessage).devices;
    assert.deepEqual(loaded.map((d) => [d.id, d.version, d.online, d.lastResult?.code, d.lastResult?.version]), ids.map((id) => [id, '1.1.0', false, 'ok', '1.1.0']));
    loaded.forEach((d, i) => assert.ok(d.lastCheckIn >= fleet.devices[i]!.lastCheckIn && d.lastCheckIn <= Date.now(), `${d.id}: its last check-in is kept`));
  });
});
