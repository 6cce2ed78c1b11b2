/**
 * bench/fanout, baseline side: N plain MQTT.js subscribers (MQTT 3.1.1) in their own process, as
 * the simulated fleet is in the gateway run. Each subscribes to one topic and counts bytes; prints
 *   {"t":"ready"}  once every client is subscribed
 *   {"t":"done"}   once every client has received --bytes bytes
 *
 * With --device-work <dir>, each subscriber also does the least a device must do with an image
 * (docs/protocol.md §6.6, §6.7): the CRC-32 of every chunk, the chunk written at its offset into
 * its own slot file in <dir>, and once every byte is there the slot read back whole with its
 * CRC-32 and SHA-256 — no acks, no offer, no reboot: a floor for any gateway and device pair.
 *
 *   node --import tsx bench/lib/fanout-subscribers.ts --url mqtt://127.0.0.1:1883 --count 100 --topic t --bytes 1048576 [--device-work DIR]
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import mqtt, { type MqttClient } from 'mqtt';
import { crc32 } from '../../protocol/crc.ts';

const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    count: { type: 'string' },
    topic: { type: 'string' },
    bytes: { type: 'string' },
    'device-work': { type: 'string' },
  },
  strict: true,
});
const COUNT = Number(values.count);
const BYTES = Number(values.bytes);
if (!values.url || !values.topic || !Number.isInteger(COUNT) || COUNT < 1 || !Number.isInteger(BYTES) || BYTES < 1) {
  process.stderr.write('fanout-subscribers: --url, --topic, --count and --bytes are required\n');
  process.exit(2);
}
const url = values.url;
const topic = values.topic;
const workDir = values['device-work'];

const say = (o: object): void => {
  process.stdout.write(`${JSON.stringify(o)}\n`);
};

let complete = 0;
function subscriber(i: number): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(url, { clientId: `fanout-sub-${i}`, protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 30_000 });
    let received = 0;
    const slot = workDir === undefined ? undefined : join(workDir, `${i}.slot`);
    const fd = slot === undefined ? undefined : openSync(slot, 'w+');
    client.on('message', (_t, payload) => {
      if (received >= BYTES) return;
      if (fd !== undefined) {
        crc32(payload);
        writeSync(fd, payload, 0, payload.length, received);
      }
      received += payload.length;
      if (received < BYTES) return;
      if (fd !== undefined && slot !== undefined) {
        closeSync(fd);
        const image = readFileSync(slot);
        crc32(image);
        createHash('sha256').update(image).digest();
      }
      if (++complete === COUNT) say({ t: 'done' });
    });
    client.once('error', reject);
    client.once('connect', () => {
      client.subscribe(topic, { qos: 0 }, (err, granted) => {
        if (err || granted?.[0]?.qos === 128) reject(err ?? new Error(`subscription to ${topic} refused`));
        else resolve(client);
      });
    });
  });
}

// connect in batches: a burst of hundreds of CONNECTs at once only measures the accept queue
const clients: MqttClient[] = [];
for (let i = 0; i < COUNT; i += 50) {
  clients.push(...await Promise.all(Array.from({ length: Math.min(50, COUNT - i) }, (_, k) => subscriber(i + k))));
}
say({ t: 'ready' });

const stop = (): void => {
  void Promise.all(clients.map((c) => c.endAsync(true))).then(() => process.exit(0));
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
