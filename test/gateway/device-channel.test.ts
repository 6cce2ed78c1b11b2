import assert from 'node:assert/strict';
import mqtt, { type MqttClient } from 'mqtt';
import { Broker } from '../../gateway/broker.ts';
import { DeviceChannel, type DeviceEvent } from '../../gateway/device-channel.ts';
import { silentLogger, type Logger } from '../../gateway/log.ts';
import { encodeDeviceMessage, type DeviceMessage } from '../../protocol/ota.ts';
import { topics } from '../../protocol/topics.ts';
import { waitUntil } from '../helpers/wait.ts';

/**
 * The device channel's own check (docs/protocol.md §6.1.3), the second layer behind the broker's
 * topic rules: a publish on a device's `up` topic counts only when that device published it. Here
 * the broker's publish rule is switched off (as if it failed or were misconfigured), so what is
 * tested is the channel alone, over a real broker and real MQTT clients.
 */
describe('gateway/device-channel: a publish on another device\'s up topic (second layer)', function () {
  this.timeout(30_000);
  let broker: Broker;
  let channel: DeviceChannel;
  const events: [string, DeviceEvent][] = [];
  const clients: MqttClient[] = [];
  const warnings: unknown[] = [];

  const status: DeviceMessage = { t: 'status', hw: 'sensor-v1', version: '9.9.9', slot: 'a', slots: { a: { state: 'confirmed' }, b: { state: 'empty' } }, maxChunk: 4096, busy: true, trial: false };

  beforeEach(async () => {
    events.length = 0;
    warnings.length = 0;
    broker = await Broker.start({ host: '127.0.0.1', port: 0, maxPacketBytes: 65_536, maxClients: 10, access: { requireAuth: false } });
    broker.aedes.authorizePublish = (_client, _packet, done) => done(null); // the first layer off
    const log = { ...silentLogger(), warn: (o: unknown) => warnings.push(o), child: () => log } as unknown as Logger;
    channel = new DeviceChannel(broker, log);
    channel.on('event', (id, e) => events.push([id, e]));
    await channel.start();
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) c.end(true);
    await channel.stop();
    await broker.close();
  });

  const connect = async (id: string): Promise<MqttClient> => {
    const c = await mqtt.connectAsync(broker.url, { clientId: id, protocolVersion: 4, reconnectPeriod: 0 });
    clients.push(c);
    return c;
  };

  it('is dropped and counted; the victim hears nothing in its name; the sender\'s own publish goes through', async () => {
    const attacker = await connect('dev-a');
    await attacker.publishAsync(topics.up('dev-b'), Buffer.from(encodeDeviceMessage(status)), { qos: 1 });
    await attacker.publishAsync(topics.up('dev-a'), Buffer.from(encodeDeviceMessage({ ...status, version: '1.0.0' })), { qos: 1 });
    await waitUntil(() => events.some(([id, e]) => id === 'dev-a' && e.t === 'status'), 5000, 'dev-a\'s own status');
    assert.equal(channel.stats.badTopic, 1);
    assert.equal(events.filter(([id]) => id === 'dev-b').length, 0, 'nothing was dispatched as dev-b');
    assert.equal(channel.stats.received, 1);
  });

  it('the gateway\'s own in-process publish (no client) is not refused', async () => {
    await broker.publish(topics.up('dev-c'), Buffer.from(encodeDeviceMessage(status)), 1);
    await waitUntil(() => events.some(([id, e]) => id === 'dev-c' && e.t === 'status'), 5000, 'the in-process status');
    assert.equal(channel.stats.badTopic, 0);
  });

  it('a device sending garbage: every message counted, one warning per 10 s', async () => {
    const dev = await connect('dev-a');
    for (let i = 0; i < 50; i++) dev.publish(topics.up('dev-a'), Buffer.from([0xff, i]), { qos: 0 });
    await dev.publishAsync(topics.up('dev-a'), Buffer.from([0xff]), { qos: 1 });
    await waitUntil(() => channel.stats.invalid + channel.stats.unknownType === 51, 5000, '51 invalid messages counted');
    assert.equal(warnings.length, 1);
  });
});
