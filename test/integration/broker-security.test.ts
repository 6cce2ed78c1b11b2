import assert from 'node:assert/strict';
import mqtt, { type MqttClient } from 'mqtt';
import { setDevicePassword } from '../../gateway/device-auth.ts';
import { encodeDeviceMessage, type StatusMessage } from '../../protocol/ota.ts';
import { topics } from '../../protocol/topics.ts';
import { TEST_SCRYPT } from '../helpers/devices.ts';
import { Rig } from '../helpers/rig.ts';
import { waitUntil } from '../helpers/wait.ts';

/** The whole site with broker authentication on (the Rig's default): a device cannot pose as another (docs/protocol.md §6.1.8). */
describe('integration: broker access with the gateway', function () {
  this.timeout(60_000);
  let rig: Rig | undefined;
  const clients: MqttClient[] = [];
  afterEach(async () => {
    for (const c of clients.splice(0)) c.end(true);
    await rig?.stop();
    rig = undefined;
  });

  it('an authenticated device cannot spoof another\'s status, retained or not; the fleet record is unchanged', async () => {
    rig = await Rig.start({ devices: 2 });
    const file = rig.gateway.config.broker.devicesFile!;
    assert.ok(file, 'the rig runs with a device list');
    // a sim device's own password is refused for another id, and no password at all is refused
    await assert.rejects(mqtt.connectAsync(rig.gateway.broker.url, { protocolVersion: 4, clientId: 'dev-002', reconnectPeriod: 0 }, false),
      (err: { code?: number }) => err.code === 5);

    await setDevicePassword(file, 'mallory', 'mallory-pw', TEST_SCRYPT);
    const before = { ...rig.gateway.fleet.get('dev-001')! };
    const real: StatusMessage = rig.sims.get('dev-001')!.status()!;
    const spoof = Buffer.from(encodeDeviceMessage({ ...real, version: '9.9.9' }));
    for (const [topic, retain] of [[topics.up('dev-001'), false], [topics.up('dev-001'), true], [topics.up('mallory'), true], [topics.down('dev-001'), false]] as const) {
      const m = await mqtt.connectAsync(rig.gateway.broker.url, { protocolVersion: 4, clientId: 'mallory', username: 'mallory', password: 'mallory-pw', reconnectPeriod: 0 }, false);
      m.on('error', () => undefined);
      clients.push(m);
      const closed = new Promise<void>((resolve) => m.once('close', () => resolve()));
      m.publish(topic, spoof, { qos: 1, retain });
      await closed;
    }
    const stats = rig.gateway.counters().broker as { deniedPublishes: number; authFailures: number };
    assert.equal(stats.deniedPublishes, 4);
    assert.equal(stats.authFailures, 1);
    await waitUntil(() => rig!.gateway.fleet.online().length === 2, 5000, 'both devices still online');
    const after = rig.gateway.fleet.get('dev-001')!;
    assert.equal(after.version, before.version);
    assert.equal(after.version, '1.0.0');
    assert.equal(rig.gateway.fleet.get('mallory'), undefined, 'a refused retained status does not even register the sender');
    assert.equal(rig.sims.get('dev-001')!.stats.invalid, 0, 'nothing reached the real device');
  });
});
