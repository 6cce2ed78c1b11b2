import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { FailureBackoff, ScryptLimiter } from '../../gateway/auth-guard.ts';
import { Broker, type BrokerOptions } from '../../gateway/broker.ts';
import { DeviceCredentials } from '../../gateway/device-auth.ts';
import { writeDeviceList } from '../helpers/devices.ts';
import { waitUntil } from '../helpers/wait.ts';

/**
 * Issue 18 items 6 and 7 over real sockets: wrong passwords cost no scrypt while their address or
 * client id backs off, scrypt runs one at a time so file I/O never queues behind a flood of
 * checks, and a client publishing too fast is dropped, counted, then disconnected — with one log
 * line, not one per refusal. Clocks are injected: nothing here waits for time to pass.
 */
describe('security: login and publish floods (issue 18 items 6, 7)', function () {
  this.timeout(60_000);
  let dir: string;
  let devicesFile: string;
  let passwords: Map<string, string>;
  let broker: Broker | undefined;
  const sockets: Socket[] = [];
  const clients: MqttClient[] = [];
  let logs: string[];
  const clock = { now: 1_000_000 };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fwgate-flood-'));
    devicesFile = join(dir, 'devices.json');
    passwords = await writeDeviceList(devicesFile, ['dev-a', 'dev-b', 'dev-c', 'dev-d']);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  beforeEach(() => {
    logs = [];
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) c.end(true);
    for (const s of sockets.splice(0)) s.destroy();
    await broker?.close();
    broker = undefined;
  });

  async function start(over: Partial<BrokerOptions>): Promise<Broker> {
    broker = await Broker.start({ host: '127.0.0.1', port: 0, maxPacketBytes: 4096, maxClients: 1000, logger: (l) => logs.push(l), now: () => clock.now, ...over });
    return broker;
  }

  /** A raw CONNECT from `from` (a loopback address): its CONNACK return code. */
  async function connack(b: Broker, clientId: string, password: string | undefined, from = '127.0.0.1'): Promise<number> {
    const sock = netConnect({ port: b.port, host: '127.0.0.1', localAddress: from });
    sockets.push(sock);
    const got = new Promise<number>((resolve, reject) => {
      sock.once('data', (d: Buffer) => (d[0] === 0x20 ? resolve(d[3]!) : reject(new Error(`not a CONNACK: ${d.toString('hex')}`))));
      sock.once('error', reject);
    });
    sock.write(mqttPacket.generate({
      cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 30, clientId,
      ...(password !== undefined ? { username: clientId, password: Buffer.from(password) } : {}),
    }));
    return got;
  }

  it('wrong passwords from one address: one scrypt, then refused at once (3) until the backoff ends; a remembered device still gets in', async () => {
    const limiter = new ScryptLimiter(1, 32);
    const credentials = await DeviceCredentials.open(devicesFile, { limiter });
    const backoff = new FailureBackoff({ baseMs: 1000, maxMs: 60_000 }, () => clock.now);
    const b = await start({ access: { requireAuth: true, credentials, backoff } });
    assert.equal(await connack(b, 'dev-a', passwords.get('dev-a')), 0, 'dev-a logs in once: its password is remembered');
    const before = limiter.runs;
    const codes: number[] = [];
    for (let i = 0; i < 50; i++) codes.push(await connack(b, i % 2 ? `dev-${i}` : 'dev-b', 'guess'));
    assert.equal(codes[0], 4, 'the first wrong password is checked');
    assert.deepEqual(new Set(codes.slice(1)), new Set([3]), 'the rest are refused without a check');
    assert.equal(limiter.runs - before, 1, 'one scrypt for 50 wrong CONNECTs');
    assert.equal(b.stats.throttledLogins, 49);
    assert.equal(await connack(b, 'dev-a', passwords.get('dev-a')), 0, 'a device whose password is remembered gets in during the backoff');
    assert.equal(await connack(b, 'dev-c', passwords.get('dev-c')), 3, 'a device never seen backs off with its address (documented)');
    assert.equal(logs.filter((l) => /refused .*\(CONNACK 3\)/.test(l)).length, 1, `one log line for the repeated refusals:\n${logs.join('\n')}`);
    clock.now += 1000;
    assert.equal(await connack(b, 'dev-c', passwords.get('dev-c')), 0, 'after the backoff, the right password gets in and clears it');
    assert.equal(await connack(b, 'dev-d', 'guess'), 4);
    clock.now += 999;
    assert.equal(await connack(b, 'dev-d', 'guess'), 3, 'one failure: 1 s');
    clock.now += 1;
    assert.equal(await connack(b, 'dev-d', 'guess'), 4, 'checked again after 1 s: a second failure in a row');
    clock.now += 1999;
    assert.equal(await connack(b, 'dev-d', 'guess'), 3, 'two failures in a row: 2 s');
    clock.now += 1;
    assert.equal(await connack(b, 'dev-d', 'guess'), 4);
  });

  it('wrong passwords for one client id from another address: the id backs off too', async () => {
    const limiter = new ScryptLimiter(1, 32);
    const credentials = await DeviceCredentials.open(devicesFile, { limiter });
    const b = await start({ access: { requireAuth: true, credentials, backoff: new FailureBackoff({ baseMs: 1000, maxMs: 60_000 }, () => clock.now) } });
    assert.equal(await connack(b, 'dev-b', 'guess', '127.0.0.2'), 4);
    assert.equal(await connack(b, 'dev-b', 'guess', '127.0.0.3'), 3, 'same id, another address');
    assert.equal(await connack(b, 'dev-d', 'guess', '127.0.0.3'), 4, 'another id from a fresh address is checked');
    assert.equal(limiter.runs, 2);
  });

  it('an unknown id costs the same scrypt as a wrong password (the dummy check)', async () => {
    const limiter = new ScryptLimiter(1, 32);
    const credentials = await DeviceCredentials.open(devicesFile, { limiter });
    assert.equal(await credentials.check('dev-a', 'wrong'), 'bad-password');
    assert.equal(limiter.runs, 1);
    assert.equal(await credentials.check('no-such-device', 'wrong'), 'unknown-device');
    assert.equal(limiter.runs, 2, 'an unknown id runs one scrypt too');
    assert.equal(await credentials.check('dev-a', passwords.get('dev-a')!), 'ok');
    assert.equal(limiter.runs, 3);
    assert.equal(await credentials.check('dev-a', passwords.get('dev-a')!), 'ok');
    assert.equal(limiter.runs, 3, 'a remembered password costs none');
  });

  it('40 concurrent wrong CONNECTs: one scrypt at a time, the queue bounded, and a file read does not wait behind them', async () => {
    const limiter = new ScryptLimiter(1, 8);
    const credentials = await DeviceCredentials.open(devicesFile, { limiter });
    const b = await start({ access: { requireAuth: true, credentials } });
    const file = join(dir, 'store-file');
    await writeFile(file, Buffer.alloc(64 * 1024, 1));
    // unknown ids: each check is the dummy scrypt at the default cost (N = 2^14, 16 MiB)
    const flood = Array.from({ length: 40 }, (_, i) => connack(b, `stranger-${i}`, 'guess', `127.0.0.${10 + i}`));
    await waitUntil(() => limiter.running === 1 && limiter.queued === 8, 10_000, 'the scrypt queue filled');
    const doneBefore = limiter.runs - limiter.running;
    await readFile(file);
    const doneAfterRead = limiter.runs - limiter.running;
    const codes = await Promise.all(flood);
    assert.equal(limiter.peak, 1, 'never two scrypts at once');
    assert.ok(doneAfterRead - doneBefore <= 1, `the file read finished while at most one scrypt completed (${doneAfterRead - doneBefore})`);
    assert.equal(codes.filter((c) => c === 4).length, 9, 'one running + 8 queued were checked');
    assert.equal(codes.filter((c) => c === 3).length, 31, 'the rest refused at once (server unavailable)');
    assert.equal(limiter.refused, 31);
  });

  it('a client publishing too fast: dropped over its rate and counted, disconnected past the drop limit, one log line', async () => {
    const b = await start({ access: { requireAuth: false }, publishRate: { perSec: 100, burst: 100, dropLimit: 300 } });
    const got: string[] = [];
    await b.subscribe('fwgate/v1/dev/+/up', (_t, p) => got.push(p.toString()));
    const c = await mqtt.connectAsync(b.url, { clientId: 'dev-a', protocolVersion: 4, reconnectPeriod: 0 });
    c.on('error', () => undefined);
    clients.push(c);
    const closed = new Promise<void>((resolve) => c.once('close', () => resolve()));
    for (let i = 0; i < 1000 && c.connected; i++) {
      c.publish('fwgate/v1/dev/dev-a/up', String(i), { qos: 0 });
      if (i % 100 === 99) await new Promise((r) => setImmediate(r));
    }
    await closed;
    await waitUntil(() => b.stats.rateDisconnects === 1, 5000, 'the disconnect counted');
    assert.equal(got.length, 100, 'the burst got through, nothing after it (the clock stands still)');
    assert.deepEqual(got.slice(0, 3), ['0', '1', '2']);
    assert.equal(b.stats.droppedPublishes, 300);
    assert.equal(logs.filter((l) => l.includes('dropping publishes of dev-a')).length, 1, logs.join('\n'));
    assert.equal(logs.filter((l) => l.includes('disconnected dev-a')).length, 1);
    assert.equal(b.isConnected('dev-a'), false);
  });

  it('repeated refused subscriptions of one client: logged once per interval, with the count', async () => {
    const b = await start({ access: { requireAuth: false }, refusalLogIntervalMs: 10_000 });
    const c = await mqtt.connectAsync(b.url, { clientId: 'dev-a', protocolVersion: 4, reconnectPeriod: 0 });
    clients.push(c);
    for (let i = 0; i < 20; i++) await c.subscribeAsync(`fwgate/v1/dev/dev-${i}x/down`).catch(() => undefined);
    assert.equal(b.stats.deniedSubscribes, 20);
    assert.equal(logs.filter((l) => l.includes('refused a subscription')).length, 1);
    clock.now += 10_000;
    await c.subscribeAsync('fwgate/v1/dev/other/down').catch(() => undefined);
    const lines = logs.filter((l) => l.includes('refused a subscription'));
    assert.equal(lines.length, 2);
    assert.match(lines[1]!, /\(and 19 more like it since the last such line\)/);
  });
});
