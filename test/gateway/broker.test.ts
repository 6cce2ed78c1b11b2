import assert from 'node:assert/strict';
import { connect as netConnect, type Socket } from 'node:net';
import fc from 'fast-check';
import mqtt, { type MqttClient } from 'mqtt';
import { isFwError } from '../../protocol/errors.ts';
import { MqttSizeGuard } from '../../gateway/broker-connection.ts';
import { Broker, type BrokerOptions } from '../../gateway/broker.ts';

const WAIT_MS = 5000;

/** Every wait in these tests goes through here. */
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

/** MQTT Remaining Length varint [MQTT-2.2.3]. */
function varint(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
}

function packet(typeByte: number, body: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from([typeByte, ...varint(body.length)]), body]);
}

/** A minimal MQTT 3.1.1 CONNECT (clean session, keepalive 60 s). */
function connectPacket(clientId: string): Buffer {
  const id = Buffer.from(clientId);
  const body = Buffer.concat([Buffer.from([0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0x02, 0, 60, id.length >> 8, id.length & 0xff]), id]);
  return packet(0x10, body);
}

/** Size on the wire of a QoS 0 PUBLISH. */
function publishSize(topic: string, payloadLength: number): number {
  const rem = 2 + Buffer.byteLength(topic) + payloadLength;
  return 1 + varint(rem).length + rem;
}

describe('gateway/broker', () => {
  describe('MqttSizeGuard (fixed-header parser)', () => {
    // PINGREQ (empty), a small PUBLISH, a PUBLISH whose remaining length needs 2 bytes, another needing 3.
    const stream = Buffer.concat([
      packet(0xc0, new Uint8Array(0)),
      packet(0x30, Buffer.from([0, 1, 0x74, 1, 2, 3])),
      packet(0x30, Buffer.alloc(300, 7)),
      packet(0x32, Buffer.alloc(20_000, 9)),
      packet(0xe0, new Uint8Array(0)),
    ]);
    const PACKETS = 5;

    it('counts packets in one chunk, byte by byte, and split at every offset', () => {
      const whole = new MqttSizeGuard(65_536);
      assert.deepEqual(whole.feed(stream), { ok: true });
      assert.equal(whole.packets, PACKETS);

      const bytewise = new MqttSizeGuard(65_536);
      for (let i = 0; i < stream.length; i++) assert.deepEqual(bytewise.feed(stream.subarray(i, i + 1)), { ok: true });
      assert.equal(bytewise.packets, PACKETS);

      for (let cut = 0; cut <= stream.length; cut++) {
        const g = new MqttSizeGuard(65_536);
        assert.deepEqual(g.feed(stream.subarray(0, cut)), { ok: true });
        assert.deepEqual(g.feed(stream.subarray(cut)), { ok: true });
        assert.equal(g.packets, PACKETS, `cut at ${cut}`);
      }
    });

    it('flags an oversize packet from its header, wherever the stream is split', () => {
      const big = 20_000 + 1 + 3; // the 4th packet's size on the wire
      for (let cut = 0; cut <= stream.length; cut++) {
        const g = new MqttSizeGuard(big - 1);
        const a = g.feed(stream.subarray(0, cut));
        const v = a.ok ? g.feed(stream.subarray(cut)) : a;
        assert.deepEqual(v, { ok: false, reason: 'oversize', size: big }, `cut at ${cut}`);
        assert.equal(g.packets, 3);
        assert.deepEqual(g.feed(Buffer.from([0xc0, 0])), v, 'stays failed');
      }
      const exact = new MqttSizeGuard(big);
      assert.deepEqual(exact.feed(stream), { ok: true });
    });

    it('flags a remaining length longer than 4 bytes as malformed, and the largest 4-byte one as oversize', () => {
      const fiveBytes = Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x07]); // 0x7fffffff needs 5 bytes
      for (let cut = 0; cut <= fiveBytes.length; cut++) {
        const g = new MqttSizeGuard(1 << 30);
        const a = g.feed(fiveBytes.subarray(0, cut));
        assert.deepEqual(a.ok ? g.feed(fiveBytes.subarray(cut)) : a, { ok: false, reason: 'malformed' });
      }
      const g = new MqttSizeGuard(1 << 20);
      assert.deepEqual(g.feed(Buffer.from([0x30, 0xff, 0xff, 0xff, 0x7f])), { ok: false, reason: 'oversize', size: 268_435_455 + 5 });
    });

    it('property: any packet sequence, any split, counts every packet and never flags one within the limit', () => {
      const pkt = fc.tuple(fc.integer({ min: 1, max: 14 }), fc.integer({ min: 0, max: 20_000 }))
        .map(([type, len]) => packet(type << 4, Buffer.alloc(len)));
      fc.assert(fc.property(fc.array(pkt, { maxLength: 8 }), fc.array(fc.nat(), { maxLength: 6 }), (pkts, cuts) => {
        const all = Buffer.concat(pkts);
        const points = [...new Set(cuts.map((c) => c % (all.length + 1)))].sort((a, b) => a - b);
        const g = new MqttSizeGuard(20_000 + 4);
        let prev = 0;
        for (const p of [...points, all.length]) {
          assert.deepEqual(g.feed(all.subarray(prev, p)), { ok: true });
          prev = p;
        }
        assert.equal(g.packets, pkts.length);
      }), { numRuns: 200 });
    });
  });

  describe('over TCP', () => {
    let broker: Broker | undefined;
    let logs: string[];
    /** Every publish on an up topic, as the gateway's channel sees it: [topic, payload, publisher]. */
    let ups: [string, string, string | null][];
    const clients: MqttClient[] = [];
    const sockets: Socket[] = [];

    async function start(over: Partial<BrokerOptions> = {}): Promise<Broker> {
      broker = await Broker.start({ host: '127.0.0.1', port: 0, maxPacketBytes: 4096, maxClients: 10, logger: (l) => logs.push(l), ...over });
      await broker.subscribe('fwgate/v1/dev/+/up', (topic, payload, clientId) => ups.push([topic, payload.toString(), clientId]));
      return broker;
    }

    async function client(b: Broker, clientId: string): Promise<MqttClient> {
      const c = await within(mqtt.connectAsync(b.url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: WAIT_MS, clientId }, false), `connect ${clientId}`);
      c.on('error', () => undefined);
      clients.push(c);
      return c;
    }

    function nextMessage(c: MqttClient, topic: string): Promise<Buffer> {
      return within(new Promise<Buffer>((resolve) => {
        const on = (t: string, payload: Buffer): void => {
          if (t !== topic) return;
          c.off('message', on);
          resolve(payload);
        };
        c.on('message', on);
      }), `a message on ${topic}`);
    }

    function closed(c: MqttClient): Promise<void> {
      return within(new Promise<void>((resolve) => {
        if (!c.connected) resolve();
        else c.once('close', () => resolve());
      }), 'client close');
    }

    async function raw(b: Broker): Promise<Socket> {
      const s = netConnect(b.port, '127.0.0.1');
      s.on('error', () => undefined);
      sockets.push(s);
      await within(new Promise<void>((resolve) => s.once('connect', () => resolve())), 'raw connect');
      return s;
    }

    function socketClosed(s: Socket): Promise<void> {
      return within(new Promise<void>((resolve) => {
        if (s.closed) resolve();
        else s.once('close', () => resolve());
      }), 'socket close');
    }

    let seq = 0;
    /** The client gets a command on its down topic and its publish on its up topic reaches the gateway (proves it still works). */
    async function works(b: Broker, c: MqttClient): Promise<void> {
      const id = c.options.clientId!;
      const down = `fwgate/v1/dev/${id}/down`;
      await within(c.subscribeAsync(down, { qos: 1 }), 'subscribe');
      const got = nextMessage(c, down);
      const word = `ping-${++seq}`;
      await b.publish(down, Buffer.from(word), 1);
      assert.equal((await got).toString(), word);
      await within(c.publishAsync(`fwgate/v1/dev/${id}/up`, word, { qos: 1 }), 'publish');
      await until(() => ups.some(([t, p, from]) => t === `fwgate/v1/dev/${id}/up` && p === word && from === id), `${word} from ${id}`);
    }

    beforeEach(() => {
      logs = [];
      ups = [];
    });
    afterEach(async () => {
      for (const c of clients.splice(0)) c.end(true);
      for (const s of sockets.splice(0)) s.destroy();
      await broker?.close();
      broker = undefined;
    });

    it('relays the gateway\'s commands to each device and each device\'s messages to the gateway', async () => {
      const b = await start();
      assert.match(b.url, /^mqtt:\/\/127\.0\.0\.1:\d+$/);
      assert.notEqual(b.port, 0);
      const a = await client(b, 'dev-a');
      const c = await client(b, 'dev-b');
      await works(b, a);
      await works(b, c);
    });

    it('in-process publish reaches a client; a client publish reaches an in-process subscriber with its client id', async () => {
      const b = await start();
      const dev = await client(b, 'dev-7');
      await within(dev.subscribeAsync('fwgate/v1/dev/dev-7/down', { qos: 1 }), 'subscribe');
      const down = nextMessage(dev, 'fwgate/v1/dev/dev-7/down');
      await b.publish('fwgate/v1/dev/dev-7/down', new Uint8Array([1, 2, 3]), 1);
      assert.deepEqual([...(await down)], [1, 2, 3]);

      const seen: [string, string, string | null][] = [];
      const unsubscribe = await b.subscribe('fwgate/v1/dev/+/up', (topic, payload, clientId) => seen.push([topic, payload.toString(), clientId]));
      await within(dev.publishAsync('fwgate/v1/dev/dev-7/up', 'hello', { qos: 1 }), 'publish qos 1');
      await within(dev.publishAsync('fwgate/v1/dev/dev-7/up', 'again', { qos: 0 }), 'publish qos 0');
      await until(() => seen.length === 2, 'two in-process deliveries');
      await b.publish('fwgate/v1/dev/dev-7/up', Buffer.from('local'), 0);
      assert.deepEqual(seen, [
        ['fwgate/v1/dev/dev-7/up', 'hello', 'dev-7'],
        ['fwgate/v1/dev/dev-7/up', 'again', 'dev-7'],
        ['fwgate/v1/dev/dev-7/up', 'local', null],
      ]);

      // After unsubscribing, a second subscriber still hears and the first does not.
      const other: string[] = [];
      await b.subscribe('fwgate/v1/dev/+/up', (_t, payload) => other.push(payload.toString()));
      await unsubscribe();
      await unsubscribe();
      await b.publish('fwgate/v1/dev/dev-7/up', Buffer.from('late'), 0);
      assert.deepEqual(other, ['late']);
      assert.equal(seen.length, 3);
    });

    it('reports presence: events and isConnected', async () => {
      const b = await start();
      const events: string[] = [];
      b.on('clientConnected', (id) => events.push(`+${id}`));
      b.on('clientDisconnected', (id) => events.push(`-${id}`));
      const c = await client(b, 'dev-p');
      assert.ok(b.isConnected('dev-p'));
      assert.equal(b.stats.clients, 1);
      await within(c.endAsync(), 'client end');
      await until(() => !b.isConnected('dev-p'), 'disconnect seen');
      assert.deepEqual(events, ['+dev-p', '-dev-p']);
    });

    it('drops a client that sends a packet over maxPacketBytes; others keep working', async () => {
      const max = 1024;
      const b = await start({ maxPacketBytes: max });
      const big = await client(b, 'big');
      const a = await client(b, 'a');
      const c = await client(b, 'c');
      const topic = 'fwgate/v1/dev/big/up';
      // exactly at the limit: accepted
      let fits = max;
      while (publishSize(topic, fits) > max) fits--;
      assert.equal(publishSize(topic, fits), max);
      await within(big.publishAsync(topic, Buffer.alloc(fits, 1)), 'publish at limit');
      await until(() => ups.some(([t, p]) => t === topic && p.length === fits), 'the publish at the limit delivered');
      // one byte over: dropped
      const bigClosed = closed(big);
      big.publish(topic, Buffer.alloc(fits + 1, 2));
      await bigClosed;
      await until(() => b.stats.oversizePackets === 1 && !b.isConnected('big'), 'oversize counted');
      assert.ok(logs.some((l) => l.includes('127.0.0.1') && l.includes(`exceeds ${max}`)), logs.join('\n'));
      await works(b, a);
      await works(b, c);
      assert.equal(b.stats.clientErrors, 0);
    });

    it('drops a raw socket announcing a huge packet from its header alone', async () => {
      const b = await start();
      const other = await client(b, 'other');
      const s = await raw(b);
      s.write(connectPacket('raw-1'));
      await within(new Promise((resolve) => s.once('data', resolve)), 'CONNACK');
      // PUBLISH with Remaining Length 268,435,455 (the 4-byte maximum); no body follows
      s.write(Buffer.from([0x30, 0xff, 0xff, 0xff, 0x7f]));
      await socketClosed(s);
      assert.equal(b.stats.oversizePackets, 1);
      assert.equal(b.stats.clientErrors, 0, 'the header never reached the MQTT parser');

      // A Remaining Length of 0x7fffffff needs a 5th byte: malformed, dropped before CONNECT
      const s2 = await raw(b);
      s2.write(Buffer.from([0x10, 0xff, 0xff, 0xff, 0xff, 0x07]));
      await socketClosed(s2);
      await until(() => b.stats.clientErrors === 1, 'malformed counted');
      assert.equal(b.stats.oversizePackets, 1);
      await works(b, other);
    });

    it('refuses the (max+1)-th client with "server unavailable"; existing ones keep working; a freed slot is reusable', async () => {
      const b = await start({ maxClients: 2 });
      const a = await client(b, 'a');
      const c = await client(b, 'c');
      await assert.rejects(
        within(mqtt.connectAsync(b.url, { protocolVersion: 4, reconnectPeriod: 0, clientId: 'd' }, false), 'refusal'),
        (err: Error & { code?: number }) => err.code === 3,
      );
      assert.equal(b.stats.rejectedClients, 1);
      assert.equal(b.stats.clientErrors, 0);
      assert.equal(b.isConnected('d'), false);
      await works(b, a);
      await works(b, c);

      // a client id already admitted may take over its session even at the cap
      const aClosed = closed(a);
      const a2 = await client(b, 'a');
      await aClosed;
      assert.ok(b.isConnected('a'));
      await works(b, a2);

      await within(c.endAsync(), 'end c');
      await until(() => b.stats.connections === 1, 'slot freed');
      const d = await client(b, 'd');
      await works(b, d);
      await works(b, a2);
      assert.equal(b.stats.rejectedClients, 1);
    });

    it('drops a client sending garbage; others keep working', async () => {
      const b = await start();
      const a = await client(b, 'a');
      const s = await raw(b);
      s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
      await socketClosed(s);
      await until(() => b.stats.clientErrors === 1, 'client error counted');

      // garbage after a valid CONNECT: a reserved packet type 0
      const s2 = await raw(b);
      s2.write(connectPacket('raw-2'));
      await within(new Promise((resolve) => s2.once('data', resolve)), 'CONNACK');
      s2.write(Buffer.from([0x00, 0x00]));
      await socketClosed(s2);
      await until(() => !b.isConnected('raw-2'), 'raw-2 gone');
      await works(b, a);
    });

    it('fails to start with E_CONFIG when the port is taken', async () => {
      const b = await start();
      await assert.rejects(Broker.start({ host: '127.0.0.1', port: b.port, maxPacketBytes: 4096, maxClients: 1 }), (err: unknown) => {
        assert.ok(isFwError(err, 'E_CONFIG'));
        assert.equal((err.cause as NodeJS.ErrnoException).code, 'EADDRINUSE');
        return true;
      });
    });

    it('publishDirect: only to the connected client subscribed to exactly that topic; the packets of one turn leave in one write, in order', async () => {
      const b = await start({ maxPacketBytes: 64 * 1024 });
      const down = 'fwgate/v1/dev/dev-d/down';
      assert.equal(b.publishDirect('dev-d', down, Buffer.from('x')), undefined, 'no such client');
      const dev = await client(b, 'dev-d');
      assert.equal(b.publishDirect('dev-d', down, Buffer.from('x')), undefined, 'not subscribed (yet)');
      assert.equal(b.publishDirect('dev-d', 'fwgate/v1/dev/dev-e/down', Buffer.from('x')), undefined, 'another topic than its subscription');
      await within(dev.subscribeAsync(down, { qos: 1 }), 'subscribe');
      const got: Buffer[] = [];
      dev.on('message', (t, payload) => { if (t === down) got.push(payload); });
      // the broker's side of the client's connection (GuardedConnection): each _write/_writev is one socket write
      const conn = (b as unknown as { aedes: { clients: Record<string, { conn: { _write: unknown; _writev: unknown } }> } }).aedes.clients['dev-d']!.conn;
      let writes = 0;
      for (const k of ['_write', '_writev'] as const) {
        const orig = conn[k] as (...a: unknown[]) => unknown;
        conn[k] = function (this: unknown, ...a: unknown[]) { writes++; return orig.apply(this, a); };
      }
      const payloads = Array.from({ length: 12 }, (_, i) => Buffer.alloc(1000, i));
      await Promise.all(payloads.map((p) => b.publishDirect('dev-d', down, p) ?? assert.fail('subscribed: a direct write')));
      await until(() => got.length === payloads.length, 'twelve packets');
      assert.deepEqual(got, payloads, 'all of them, in order, as QoS 0 publishes');
      assert.equal(writes, 1, 'one socket write for the packets of one turn');
      await works(b, dev); // aedes's own routing to the client is unchanged
    });

    it('publishDirect: over the socket buffer it resolves at the drain; sends to a client that stopped reading all settle once it goes away', async () => {
      const b = await start({ maxPacketBytes: 64 * 1024 });
      const down = 'fwgate/v1/dev/dev-s/down';
      const dev = await client(b, 'dev-s');
      await within(dev.subscribeAsync(down, { qos: 1 }), 'subscribe');
      let received = 0;
      dev.on('message', () => received++);
      const big = Buffer.alloc(60 * 1024, 7);
      const sends = Array.from({ length: 8 }, () => b.publishDirect('dev-s', down, big)!);
      await within(Promise.all(sends), 'the drain of 480 KiB read by the client');
      await until(() => received === 8, 'eight big packets');

      (dev.stream as Socket).pause(); // stops reading: the broker's side fills up (60 MB: beyond any socket buffer)
      const stuck = Array.from({ length: 1000 }, () => b.publishDirect('dev-s', down, big));
      assert.ok(stuck.every((p) => p !== undefined));
      dev.stream.end(); // a clean close (FIN), no error on the broker's side
      await within(Promise.all(stuck), 'every send settled once the client is gone');
      assert.equal(b.publishDirect('dev-s', down, big), undefined, 'gone: undefined');
    });

    it('close() closes the listener, every client and raw socket, and aedes', async () => {
      const b = await start();
      const a = await client(b, 'a');
      const s = await raw(b);
      const aClosed = closed(a);
      const sClosed = socketClosed(s);
      await within(b.close(), 'broker close');
      await aClosed;
      await sClosed;
      assert.equal(b.stats.connections, 0);
      assert.equal(b.aedes.closed, true);
      await assert.rejects(b.publish('x', new Uint8Array(1), 0), (err: unknown) => isFwError(err, 'E_LINK_CLOSED'));
      await assert.rejects(
        within(mqtt.connectAsync(b.url, { protocolVersion: 4, reconnectPeriod: 0 }, false), 'connect after close'),
        (err: Error & { code?: string }) => err.code === 'ECONNREFUSED' || /connect/i.test(err.message),
      );
      await within(b.close(), 'second close');
    });
  });
});
