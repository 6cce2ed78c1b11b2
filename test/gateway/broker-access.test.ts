import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { connect as tlsConnect } from 'node:tls';
import { join } from 'node:path';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { Broker, type BrokerOptions } from '../../gateway/broker.ts';
import { authenticateClient, publishRefusal, subscribeRefusal } from '../../gateway/broker-access.ts';
import { checkPassword, DeviceCredentials, hashPassword, readDevicesFile, setDevicePassword } from '../../gateway/device-auth.ts';
import { ConnectRateLimiter } from '../../gateway/rate-limit.ts';
import { isFwError } from '../../protocol/errors.ts';
import { TEST_SCRYPT, writeDeviceList } from '../helpers/devices.ts';
import { makeTestPki, type TestPki } from '../helpers/pki.ts';

const WAIT_MS = 5000;

function within<T>(p: Promise<T>, what: string, ms = WAIT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

async function until(cond: () => boolean, what: string): Promise<void> {
  await within((async () => {
    while (!cond()) await new Promise((r) => setTimeout(r, 5));
  })(), what);
}

const up = (id: string): string => `fwgate/v1/dev/${id}/up`;
const down = (id: string): string => `fwgate/v1/dev/${id}/down`;

describe('gateway/broker access (docs/protocol.md §6.1.8)', function () {
  this.timeout(30_000);
  let dir: string;
  let devicesFile: string;
  let passwords: Map<string, string>;
  let credentials: DeviceCredentials;
  let broker: Broker | undefined;
  let logs: string[];
  let ups: [string, string, string | null][];
  const clients: MqttClient[] = [];
  const sockets: Socket[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fwgate-access-'));
    devicesFile = join(dir, 'devices.json');
    passwords = await writeDeviceList(devicesFile, ['dev-a', 'dev-b']);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  beforeEach(async () => {
    logs = [];
    ups = [];
    credentials = await DeviceCredentials.open(devicesFile);
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) c.end(true);
    for (const s of sockets.splice(0)) s.destroy();
    await broker?.close();
    broker = undefined;
  });

  async function start(over: Partial<BrokerOptions> = {}): Promise<Broker> {
    broker = await Broker.start({
      host: '127.0.0.1', port: 0, maxPacketBytes: 4096, maxClients: 10, logger: (l) => logs.push(l),
      access: { requireAuth: true, credentials }, ...over,
    });
    await broker.subscribe('fwgate/v1/dev/+/up', (topic, payload, clientId) => ups.push([topic, payload.toString(), clientId]));
    return broker;
  }

  function connect(url: string, clientId: string, opts: IClientOptions = {}): Promise<MqttClient> {
    return within(mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: WAIT_MS, clientId, ...opts }, false), `connect ${clientId}`)
      .then((c) => {
        c.on('error', () => undefined);
        clients.push(c);
        return c;
      });
  }

  function device(b: Broker, id: string, opts: IClientOptions = {}): Promise<MqttClient> {
    return connect(b.url, id, { username: id, password: passwords.get(id)!, ...opts });
  }

  /** The CONNACK return code of a refused connect. */
  async function refusedWith(p: Promise<MqttClient>): Promise<number> {
    try {
      await p;
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      assert.equal(typeof code, 'number', `refused with a CONNACK code, got ${String(err)}`);
      return code as number;
    }
    assert.fail('the connect was accepted');
  }

  function closed(c: MqttClient): Promise<void> {
    return within(new Promise<void>((resolve) => {
      if (!c.connected) resolve();
      else c.once('close', () => resolve());
    }), 'client close');
  }

  let seq = 0;
  /** Gets a command on its down topic, and its status reaches the gateway from it. */
  async function works(b: Broker, c: MqttClient): Promise<void> {
    const id = c.options.clientId!;
    await within(c.subscribeAsync(down(id), { qos: 1 }), 'subscribe');
    const word = `w-${++seq}`;
    const got = within(new Promise<string>((resolve) => c.on('message', (t, p) => t === down(id) && resolve(p.toString()))), `command to ${id}`);
    await b.publish(down(id), Buffer.from(word), 1);
    assert.equal(await got, word);
    await within(c.publishAsync(up(id), word, { qos: 1 }), 'publish');
    await until(() => ups.some(([t, p, from]) => t === up(id) && p === word && from === id), `${word} from ${id}`);
  }

  describe('device list and scrypt', () => {
    it('stores a PHC string with the cost; checks in constant time; the file never holds the password', async () => {
      const phc = await hashPassword('correct horse', TEST_SCRYPT);
      assert.match(phc, /^\$scrypt\$ln=10,r=8,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/);
      assert.equal(await checkPassword('correct horse', phc), true);
      assert.equal(await checkPassword('correct horsE', phc), false);
      assert.notEqual(await hashPassword('correct horse', TEST_SCRYPT), phc, 'fresh salt each time');
      const text = await readFile(devicesFile, 'utf8');
      for (const pw of passwords.values()) assert.ok(!text.includes(pw));
      assert.equal(await credentials.check('dev-a', passwords.get('dev-a')!), 'ok');
      assert.equal(await credentials.check('dev-a', passwords.get('dev-a')!), 'ok', 'again (remembered)');
      assert.equal(await credentials.check('dev-a', passwords.get('dev-b')!), 'bad-password');
      assert.equal(await credentials.check('dev-z', 'x'), 'unknown-device');
    });

    it('refuses a bad file naming the problem', async () => {
      const bad = join(dir, 'bad.json');
      const { writeFile } = await import('node:fs/promises');
      const cases: [unknown, RegExp][] = [
        [[{ id: 'a b', scrypt: '' }], /0\.id: must be a valid device id/],
        [[{ id: 'x', scrypt: '$scrypt$ln=30,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' }], /0\.scrypt: must be/],
        [[{ id: 'x', scrypt: await hashPassword('p', TEST_SCRYPT) }, { id: 'x', scrypt: await hashPassword('q', TEST_SCRYPT) }], /listed twice/],
        [{ id: 'x' }, /expected array/],
      ];
      for (const [json, pattern] of cases) {
        await writeFile(bad, JSON.stringify(json));
        await assert.rejects(readDevicesFile(bad), (err: unknown) => isFwError(err, 'E_CONFIG') && pattern.test((err as Error).message));
      }
    });

    it('the rate limiter refills over a minute and forgets full buckets', () => {
      let now = 0;
      const rl = new ConnectRateLimiter(3, () => now);
      assert.deepEqual([rl.take('a'), rl.take('a'), rl.take('a'), rl.take('a'), rl.take('b')], [true, true, true, false, true]);
      now += 20_000; // one token back
      assert.deepEqual([rl.take('a'), rl.take('a')], [true, false]);
      now += 120_000;
      assert.equal(rl.take('c'), true);
      assert.equal(rl.tracked, 1, 'a and b refilled and were forgotten');
      assert.equal(new ConnectRateLimiter(0).take('x'), true, '0 = off');
    });
  });

  describe('authentication at CONNECT', () => {
    it('accepts the right password; refuses wrong (4), unknown (4), missing (5), another user name (5)', async () => {
      const b = await start();
      const a = await device(b, 'dev-a');
      await works(b, a);
      assert.equal(await refusedWith(connect(b.url, 'dev-b', { username: 'dev-b', password: passwords.get('dev-a')! })), 4);
      assert.equal(await refusedWith(connect(b.url, 'dev-x', { username: 'dev-x', password: 'guess' })), 4);
      assert.equal(await refusedWith(connect(b.url, 'dev-b')), 5);
      assert.equal(await refusedWith(connect(b.url, 'dev-b', { username: 'dev-a', password: passwords.get('dev-a')! })), 5);
      assert.equal(b.stats.authFailures, 4);
      assert.equal(b.stats.clientErrors, 0);
      assert.equal(b.isConnected('dev-b'), false);
      assert.ok(logs.some((l) => l.includes('refused dev-b') && l.includes('CONNACK 4')), logs.join('\n'));
      assert.ok(!logs.some((l) => l.includes('refused dev-x')), 'a repeated refusal from the same address is not logged again within refusalLogIntervalMs');
      await works(b, a);
    });

    it('a device added to the file while the broker runs can connect at once', async () => {
      const file = join(dir, 'devices-live.json');
      await writeDeviceList(file, ['dev-a']);
      credentials = await DeviceCredentials.open(file);
      const b = await start();
      assert.equal(await refusedWith(connect(b.url, 'dev-new', { username: 'dev-new', password: 'fresh-pw' })), 4);
      await setDevicePassword(file, 'dev-new', 'fresh-pw', TEST_SCRYPT);
      const c = await connect(b.url, 'dev-new', { username: 'dev-new', password: 'fresh-pw' });
      await works(b, c);
    });

    it('requireAuth false: a listed device must still log in, an unlisted id may connect without', async () => {
      const b = await start({ access: { requireAuth: false, credentials } });
      assert.equal(await refusedWith(connect(b.url, 'dev-a')), 5);
      await works(b, await connect(b.url, 'dev-anon'));
      await works(b, await device(b, 'dev-a'));
    });

    it('rules in isolation', async () => {
      const verdict = (requireAuth: boolean, clientId: string, username?: string, password?: string, certificateCn?: string) =>
        authenticateClient({ requireAuth, credentials }, { clientId, username, password: password === undefined ? undefined : Buffer.from(password), certificateCn });
      assert.deepEqual(await verdict(true, 'dev-c', undefined, undefined, 'dev-c'), { ok: true, via: 'certificate' });
      assert.equal((await verdict(true, 'dev-a', undefined, undefined, 'dev-c')).ok, false);
      assert.deepEqual(await verdict(true, 'dev-a', 'dev-a', passwords.get('dev-a')), { ok: true, via: 'password' });
      assert.deepEqual(await verdict(false, 'other'), { ok: true, via: 'anonymous' });
      await assert.rejects(Broker.start({ host: '127.0.0.1', port: 0, maxPacketBytes: 4096, maxClients: 1, access: { requireAuth: true } }),
        (err: unknown) => isFwError(err, 'E_CONFIG'));
    });
  });

  describe('client ids must be device ids at CONNECT, in every mode (issue 18 item 3, §6.1.8 rule 0)', () => {
    /** The CONNACK return code the broker gives a raw CONNECT with this client id (mqtt.js would replace an empty one). */
    async function connackFor(b: Broker, clientId: string): Promise<number> {
      const sock = netConnect(b.port, '127.0.0.1');
      sockets.push(sock);
      const got = new Promise<number>((resolve, reject) => {
        sock.once('data', (d: Buffer) => (d[0] === 0x20 ? resolve(d[3]!) : reject(new Error(`not a CONNACK: ${d.toString('hex')}`))));
        sock.once('error', reject);
      });
      sock.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 30, clientId }));
      return within(got, `CONNACK for ${JSON.stringify(clientId)}`);
    }
    const hostileIds = ['+', '#', 'fwgate/v1/dev/+', 'a/b', '', 'x'.repeat(65), '-dash', 'dev a', 'dév'];

    for (const [mode, access] of [
      ['open (no device list)', (): BrokerOptions['access'] => ({ requireAuth: false })],
      ['requireAuth false with a device list (migration)', (): BrokerOptions['access'] => ({ requireAuth: false, credentials })],
      ['requireAuth true', (): BrokerOptions['access'] => ({ requireAuth: true, credentials })],
    ] as const) {
      it(`${mode}: "+", "#", "/", empty, over-long and other non-device ids are refused (2, identifier rejected); commands stay private`, async () => {
        const b = await start({ access: access() });
        for (const id of hostileIds) assert.equal(await connackFor(b, id), 2, `client id ${JSON.stringify(id)}`);
        assert.equal(b.stats.authFailures, hostileIds.length);
        assert.ok(logs.some((l) => l.includes('refused "+"') && l.includes('is not a device id') && l.includes('CONNACK 2')), logs.join('\n'));
        // the attack: a "+" client subscribing to its own "down" topic would get every device's commands
        const victim = mode === 'requireAuth true' ? await device(b, 'dev-a') : await connect(b.url, 'dev-anon');
        await works(b, victim);
        assert.equal(await connackFor(b, 'x'.repeat(64)), mode === 'requireAuth true' ? 5 : 0, 'a 64-character id is a device id');
      });
    }
  });

  describe('authorization', () => {
    it('publish rules: only the own up topic, never retained; subscribe: only the own down topic', () => {
      assert.equal(publishRefusal('dev-a', up('dev-a'), false), null);
      assert.match(publishRefusal('dev-a', up('dev-b'), false)!, /may not publish/);
      assert.match(publishRefusal('dev-a', down('dev-a'), false)!, /may not publish/);
      assert.match(publishRefusal('dev-a', 'other/topic', false)!, /may not publish/);
      assert.match(publishRefusal('dev-a', up('dev-a'), true)!, /retained/);
      assert.equal(subscribeRefusal('dev-a', down('dev-a')), null);
      for (const f of [down('dev-b'), up('dev-a'), 'fwgate/v1/dev/+/down', '#', '$SYS/#']) assert.ok(subscribeRefusal('dev-a', f), f);
    });

    it('a device publishing on another device\'s up topic, on a down topic or retained is dropped; the other is not spoofed', async () => {
      const b = await start();
      const victim = await device(b, 'dev-b');
      for (const [topic, retain] of [[up('dev-b'), false], [down('dev-b'), false], [up('dev-a'), true]] as const) {
        const a = await device(b, 'dev-a');
        const aClosed = closed(a);
        a.publish(topic, 'spoof', { qos: 1, retain });
        await aClosed;
      }
      await until(() => b.stats.deniedPublishes === 3, 'three refusals');
      assert.equal(ups.filter(([, p]) => p === 'spoof').length, 0, 'nothing reached the gateway');
      assert.equal(b.stats.clientErrors, 0);
      await works(b, victim);
      assert.equal(ups.every(([t, , from]) => from === null || t === up(from)), true);
    });

    it('a subscription to another device\'s topics or a wildcard is refused (SUBACK 0x80); the connection stays', async () => {
      const b = await start();
      const a = await device(b, 'dev-a');
      for (const f of [down('dev-b'), 'fwgate/v1/dev/+/down', up('dev-b'), '#']) {
        await assert.rejects(within(a.subscribeAsync(f, { qos: 1 }), `subscribe ${f}`));
      }
      assert.equal(b.stats.deniedSubscribes, 4);
      const other = await device(b, 'dev-b');
      let leaked = 0;
      a.on('message', (t) => {
        if (t !== down('dev-a')) leaked++;
      });
      await works(b, other);
      await works(b, a);
      assert.equal(leaked, 0);
    });

    it('a will on another device\'s topic is not published', async () => {
      const b = await start();
      const a = await device(b, 'dev-a', { will: { topic: up('dev-b'), payload: Buffer.from('will-spoof'), qos: 1, retain: false } });
      const aClosed = closed(a);
      a.stream.destroy(); // no DISCONNECT: the broker would publish the will
      await aClosed;
      await until(() => b.stats.deniedPublishes === 1, 'will refused');
      assert.equal(ups.some(([, p]) => p === 'will-spoof'), false);
    });
  });

  describe('connect rate per address', () => {
    it('drops a flooding address before CONNECT; a connected device and other addresses are unaffected', async () => {
      let now = 1_000_000;
      const b = await start({ connectRatePerMin: 5, now: () => now });
      const a = await device(b, 'dev-a'); // one token of 127.0.0.1
      const flood: Socket[] = [];
      const closedCount = (): number => flood.filter((s) => s.closed).length;
      for (let i = 0; i < 20; i++) {
        const s = netConnect({ port: b.port, host: '127.0.0.1', localAddress: '127.0.0.2' });
        s.on('error', () => undefined);
        sockets.push(s);
        flood.push(s);
      }
      await until(() => b.stats.rateLimited === 15 && closedCount() === 15, 'fifteen of twenty dropped');
      assert.equal(b.stats.clientErrors, 0);
      assert.equal(logs.filter((l) => l.includes('connects per minute')).length, 1, 'logged once, not per connection');
      await works(b, a);
      await works(b, await device(b, 'dev-b')); // another address still has tokens
      now += 60_000;
      const accepted = b.stats.connections;
      const again = netConnect({ port: b.port, host: '127.0.0.1', localAddress: '127.0.0.2' });
      again.on('error', () => undefined);
      sockets.push(again);
      await within(new Promise((resolve) => again.once('connect', resolve)), 'connect after a minute');
      // the broker's decision, observed rather than waited out: it took the socket in (a refusal is never counted as a connection)
      await until(() => b.stats.connections === accepted + 1 || b.stats.rateLimited > 15, 'the broker to decide on the new connection');
      assert.equal(b.stats.rateLimited, 15, 'not refused: a minute refilled the address\'s tokens');
      assert.equal(b.stats.connections, accepted + 1);
      assert.equal(again.closed, false);
    });
  });

  describe('TLS listener', () => {
    let pki: TestPki;
    before(async function () {
      this.timeout(60_000);
      pki = await makeTestPki(dir, ['dev-c', 'dev-a']);
    });

    async function startTls(): Promise<Broker> {
      return start({
        tls: { port: 0, cert: await readFile(pki.serverCert), key: await readFile(pki.serverKey), ca: await readFile(pki.ca), requestCert: true },
      });
    }

    it('a device logs in with a password over mqtts, trusting the throw-away CA', async () => {
      const b = await startTls();
      assert.match(b.tlsUrl!, /^mqtts:\/\/127\.0\.0\.1:\d+$/);
      const a = await connect(b.tlsUrl!, 'dev-a', { username: 'dev-a', password: passwords.get('dev-a')!, ca: await readFile(pki.ca) });
      await works(b, a);
      assert.equal(await refusedWith(connect(b.tlsUrl!, 'dev-b', { ca: await readFile(pki.ca) })), 5, 'no credentials');
      // a client that does not trust the broker's CA never gets to MQTT
      await assert.rejects(connect(b.tlsUrl!, 'dev-a', { username: 'dev-a', password: passwords.get('dev-a')! }));
    });

    it('a client certificate authenticates the device named by its CN, without a password', async () => {
      const b = await startTls();
      const cert = pki.clients.get('dev-c')!;
      const tlsOpts = { ca: await readFile(pki.ca), cert: await readFile(cert.cert), key: await readFile(cert.key) };
      const c = await connect(b.tlsUrl!, 'dev-c', tlsOpts); // dev-c is not in the device list
      await works(b, c);
      assert.equal(await refusedWith(connect(b.tlsUrl!, 'dev-b', tlsOpts)), 5, 'a certificate for dev-c does not make one dev-b');
      assert.equal(await refusedWith(connect(b.url, 'dev-c')), 5, 'the plain listener has no certificate to go by');
      assert.equal(b.stats.authFailures, 2);
    });

    it('the connect-rate limit drops TLS connections before the handshake (no crypto, no client error)', async () => {
      const b = await start({
        connectRatePerMin: 2,
        tls: { port: 0, cert: await readFile(pki.serverCert), key: await readFile(pki.serverKey) },
      });
      const ca = await readFile(pki.ca);
      const socks = Array.from({ length: 6 }, () => {
        const s = tlsConnect({ port: b.tlsPort!, host: '127.0.0.1', ca });
        s.on('error', () => undefined);
        return s;
      });
      try {
        await until(() => b.stats.rateLimited === 4 && socks.filter((s) => s.authorized).length === 2, 'two handshakes, four drops');
        assert.equal(b.stats.clientErrors, 0);
      } finally {
        for (const s of socks) s.destroy();
      }
    });
  });
});
