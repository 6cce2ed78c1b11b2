/**
 * bench/scale helper: N idle devices in one process, each one MQTT.js client (protocol 3.1.1)
 * with its device id as client id, doing what a device does on connect (docs/protocol.md §6.2):
 * subscribe to its `down` topic, publish `status` (QoS 1), then stay idle (keepalive pings only).
 * No flash files, no OTA handling: fwsim's SimDevice keeps two slot files and a transfer state
 * per device, which is not what is measured here (the gateway's memory is).
 *
 * With --password, every device logs in with its id as user name and that password (the bench's
 * device list gives all devices the same one, each its own entry), and after every reconnect it
 * subscribes and reports its status again, as a device does after a gateway restart.
 *
 *   node --import tsx bench/lib/scale-devices.ts <broker url> <count> [--prefix dev] [--inflight 200] [--keepalive 10] [--password p] [--register-timeout 30]
 *
 * --register-timeout: seconds one device may take from its first connect attempt to its status
 * acknowledged (default 30). A first login with a password waits for its scrypt verification in
 * the broker's bounded queue (docs/security.md): with hundreds in flight on a loaded host that is
 * longer than 30 s, so the reconnect-storm run passes a longer bound.
 *
 * stdout: `start` when the first connect begins, `progress <n>` every 500 devices, `connected <n>`
 * when all have published their status (PUBACK received). Ends on SIGTERM (clients end by force).
 */
import { parseArgs } from 'node:util';
import mqtt, { type MqttClient } from 'mqtt';
import { encodeDeviceMessage, type StatusMessage } from '../../protocol/ota.ts';
import { topics } from '../../protocol/topics.ts';
import { fleetDeviceId } from '../../device-sim/fleet.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    prefix: { type: 'string', default: 'dev' },
    inflight: { type: 'string', default: '200' },
    keepalive: { type: 'string', default: '10' },
    password: { type: 'string' },
    'register-timeout': { type: 'string', default: '30' },
  },
});
const [url, countArg] = positionals;
const count = Number(countArg);
const inflight = Number(values.inflight);
const registerS = Number(values['register-timeout']);
if (!url || !Number.isInteger(count) || count < 1 || !Number.isInteger(inflight) || inflight < 1 || !(registerS > 0)) {
  process.stderr.write('usage: scale-devices.ts <broker url> <count> [--prefix p] [--inflight n] [--keepalive s] [--password p] [--register-timeout s]\n');
  process.exit(2);
}

const status: StatusMessage = {
  t: 'status', hw: 'sensor-v1', version: '1.0.0', slot: 'a',
  slots: { a: { state: 'confirmed', version: '1.0.0' }, b: { state: 'empty' } },
  maxChunk: 4096, busy: false, trial: false,
};
const payload = Buffer.from(encodeDeviceMessage(status));
const clients: MqttClient[] = [];

/** Connect one device and report its status; rejects after --register-timeout seconds. */
async function device(id: string): Promise<void> {
  const client = mqtt.connect(url!, {
    clientId: id, protocolVersion: 4, clean: true, keepalive: Number(values.keepalive),
    connectTimeout: 30_000, reconnectPeriod: 1000, resubscribe: false,
    ...(values.password === undefined ? {} : { username: id, password: values.password, reconnectOnConnackError: true }),
  });
  clients.push(client);
  client.on('error', () => undefined); // a refused or dropped connection: MQTT.js tries again
  let connects = 0;
  client.on('connect', () => {
    // the first connect is handled below; after a reconnect, announce again
    if (++connects === 1) return;
    void client.subscribeAsync(topics.down(id), { qos: 1 }).then(() => client.publishAsync(topics.up(id), payload, { qos: 1 })).catch(() => undefined);
  });
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${id}: not registered within ${registerS} s (--register-timeout)`)), registerS * 1000);
  });
  try {
    await Promise.race([bound, (async () => {
      if (!client.connected) await new Promise<void>((resolve) => client.once('connect', () => resolve()));
      await client.subscribeAsync(topics.down(id), { qos: 1 });
      await client.publishAsync(topics.up(id), payload, { qos: 1 });
    })()]);
  } finally {
    clearTimeout(timer);
  }
}

process.once('SIGTERM', () => {
  for (const c of clients) c.end(true);
  process.exit(0);
});

process.stdout.write('start\n');
let next = 0;
let done = 0;
async function worker(): Promise<void> {
  while (next < count) {
    const id = fleetDeviceId(values.prefix!, next++);
    await device(id);
    done++;
    if (done % 500 === 0 && done < count) process.stdout.write(`progress ${done}\n`);
  }
}
try {
  await Promise.all(Array.from({ length: Math.min(inflight, count) }, () => worker()));
  process.stdout.write(`connected ${done}\n`);
} catch (err) {
  process.stderr.write(`scale-devices: ${(err as Error).message}\n`);
  process.exit(1);
}
