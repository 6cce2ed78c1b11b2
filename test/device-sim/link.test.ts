import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import mqtt from 'mqtt';
import { isFwError } from '../../protocol/errors.ts';
import { LinkProxy, QUEUE_HIGH_WATER, type LinkProfile } from '../../device-sim/link.ts';
import { BUILTIN_PROFILES } from '../../device-sim/profiles.ts';
import { startBroker, waitFor } from './helpers.ts';

const FLAT: LinkProfile = { name: 'test', latencyMs: 0, jitterMs: 0, downBps: 0, upBps: 0, lossPct: 0 };
const profile = (p: Partial<LinkProfile>): LinkProfile => ({ ...FLAT, ...p });

/** A plain TCP target on 127.0.0.1: echoes or sinks, records bytes, counts its sockets. */
interface Target {
  server: Server;
  port: number;
  received: Buffer[];
  sockets: Set<Socket>;
  closed: number;
  bytes(): number;
  close(): Promise<void>;
}

async function startTarget(mode: 'echo' | 'sink', onConnect?: (s: Socket) => void): Promise<Target> {
  const t: Target = {
    server: createServer({ noDelay: true }), port: 0, received: [], sockets: new Set(), closed: 0,
    bytes: () => t.received.reduce((n, b) => n + b.length, 0),
    close: async () => {
      for (const s of t.sockets) s.destroy();
      await new Promise<void>((resolve) => t.server.close(() => resolve()));
    },
  };
  t.server.on('connection', (s) => {
    t.sockets.add(s);
    s.on('error', () => undefined);
    s.on('close', () => {
      t.sockets.delete(s);
      t.closed += 1;
    });
    s.on('data', (b: Buffer) => {
      t.received.push(b);
      if (mode === 'echo') s.write(b);
    });
    onConnect?.(s);
  });
  t.server.listen(0, '127.0.0.1');
  await within(once(t.server, 'listening'), 2_000, 'listening');
  t.port = (t.server.address() as AddressInfo).port;
  return t;
}

async function dial(port: number): Promise<Socket> {
  const s = connect({ host: '127.0.0.1', port, noDelay: true });
  s.on('error', () => undefined);
  await within(once(s, 'connect'), 2_000, 'connect');
  return s;
}

/** Everything a client receives. */
function collect(s: Socket): { chunks: Buffer[]; bytes(): number; all(): Buffer } {
  const chunks: Buffer[] = [];
  s.on('data', (b: Buffer) => chunks.push(b));
  return { chunks, bytes: () => chunks.reduce((n, b) => n + b.length, 0), all: () => Buffer.concat(chunks) };
}

/** `p`, or a rejection after `ms`: every wait in these tests is bounded. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([p, bound]);
  } finally {
    clearTimeout(timer);
  }
}

/** n uint32 big-endian counters. */
function numbered(n: number, from = 0): Buffer {
  const b = Buffer.alloc(n * 4);
  for (let i = 0; i < n; i++) b.writeUInt32BE(from + i, i * 4);
  return b;
}

describe('device-sim: link proxy', function () {
  this.timeout(10_000);
  const cleanups: (() => Promise<void> | void)[] = [];
  const later = <T>(v: T, fn: (v: T) => Promise<void> | void): T => {
    cleanups.push(() => fn(v));
    return v;
  };
  afterEach(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn();
  });
  const target = async (mode: 'echo' | 'sink', onConnect?: (s: Socket) => void): Promise<Target> => later(await startTarget(mode, onConnect), (t) => t.close());
  const proxy = async (t: Target, p: LinkProfile, extra: { seed?: number; stallMs?: number } = {}): Promise<LinkProxy> =>
    later(await LinkProxy.start({ target: { host: '127.0.0.1', port: t.port }, profile: p, ...extra }), (x) => x.close());
  const client = async (port: number): Promise<Socket> => later(await dial(port), (s) => void s.destroy());

  it('listens on 127.0.0.1 with an ephemeral port and validates its profile, naming the field', async () => {
    const t = await target('echo');
    const px = await proxy(t, profile({ name: 'x', latencyMs: 3 }));
    assert.ok(px.port > 0);
    assert.equal(px.url, `mqtt://127.0.0.1:${px.port}`);
    assert.equal(px.profile.latencyMs, 3);
    const bad: [Partial<LinkProfile>, RegExp][] = [
      [{ latencyMs: -1 }, /latencyMs/],
      [{ downBps: -5 }, /downBps/],
      [{ lossPct: 101 }, /lossPct/],
      [{ name: '' }, /name/],
      [{ outage: { everyMs: 100, forMs: 100 } }, /outage\.forMs: must be shorter than everyMs/],
    ];
    for (const [p, re] of bad) {
      await assert.rejects(LinkProxy.start({ target: { host: '127.0.0.1', port: t.port }, profile: profile(p) }),
        (err: unknown) => isFwError(err, 'E_CONFIG') && re.test(err.message), JSON.stringify(p));
    }
    assert.throws(() => px.setProfile({ jitterMs: -2 }), (err: unknown) => isFwError(err, 'E_CONFIG') && /jitterMs/.test(err.message));
    assert.equal(px.profile.jitterMs, 0);
  });

  it('latency: a request/response takes at least 2 x the one-way latency', async () => {
    const t = await target('echo');
    const px = await proxy(t, profile({ latencyMs: 60 }));
    const c = await client(px.port);
    const got = collect(c);
    for (let round = 0; round < 2; round++) {
      const before = got.bytes();
      const t0 = performance.now();
      c.write('ping');
      await waitFor(() => got.bytes() === before + 4, 2_000, 'echo');
      const rtt = performance.now() - t0;
      assert.ok(rtt >= 120, `rtt ${rtt.toFixed(1)} ms < 120`);
      assert.ok(rtt < 120 + 500, `rtt ${rtt.toFixed(1)} ms`);
    }
    assert.equal(got.all().toString(), 'pingping');
    assert.equal(px.stats.bytesUp, 8);
    assert.equal(px.stats.bytesDown, 8);
    assert.equal(px.stats.connections, 1);
  });

  it('bandwidth: 256 KiB through a 256 kB/s cap takes about a second', async () => {
    const t = await target('sink');
    const px = await proxy(t, profile({ upBps: 256_000 }));
    const c = await client(px.port);
    const data = numbered(65_536);
    const t0 = performance.now();
    c.write(data);
    await waitFor(() => t.bytes() === data.length, 3_000, '256 KiB at the sink');
    const took = performance.now() - t0;
    assert.ok(took >= 900, `took ${took.toFixed(0)} ms`);
    assert.ok(took < 2_500, `took ${took.toFixed(0)} ms`);
    assert.ok(Buffer.concat(t.received).equals(data));
  });

  it('byte order and content survive jitter and loss stalls, both ways', async () => {
    const t = await target('echo');
    const px = await proxy(t, profile({ latencyMs: 5, jitterMs: 20, lossPct: 15, downBps: 1_000_000 }), { seed: 7, stallMs: 30 });
    const c = await client(px.port);
    const got = collect(c);
    const parts: Buffer[] = [];
    for (let i = 0; i < 60; i++) {
      const part = numbered(128 + (i % 7) * 100, parts.reduce((n, b) => n + b.length / 4, 0));
      parts.push(part);
      c.write(part);
      await new Promise((r) => setTimeout(r, 2));
    }
    const sent = Buffer.concat(parts);
    await waitFor(() => got.bytes() === sent.length, 3_000, 'echo of the numbered stream');
    assert.ok(Buffer.concat(t.received).equals(sent), 'upstream order');
    assert.ok(got.all().equals(sent), 'downstream order');
    assert.ok(px.stats.stalls >= 2, `stalls ${px.stats.stalls}`);
  });

  it('outage: nothing passes during the window, then everything arrives on the same connection', async () => {
    const t = await target('sink');
    const px = await proxy(t, profile({ latencyMs: 1, outage: { everyMs: 500, forMs: 350 } }));
    const c = await client(px.port);
    c.write('before');
    await waitFor(() => t.bytes() === 6, 1_000, 'bytes before the outage');
    await within(once(px, 'outage'), 2_000, 'the outage');
    const start = performance.now();
    let ended = 0;
    // the order of what happened, recorded: bytes reaching the target, and the outage's end
    const seq: string[] = [];
    for (const s of t.sockets) s.on('data', () => seq.push('data'));
    px.on('outage-end', () => seq.push('outage-end'));
    px.once('outage-end', () => (ended = performance.now()));
    c.write(numbered(1000));
    await waitFor(() => t.bytes() === 6 + 4000, 2_000, 'bytes after the outage');
    assert.equal(seq[0], 'outage-end', `nothing passed during the outage: ${seq.join(', ')}`);
    const arrived = performance.now();
    assert.ok(arrived - start >= 349, `arrived ${(arrived - start).toFixed(0)} ms after the outage began`);
    assert.ok(ended > 0 && ended <= arrived);
    assert.equal(px.stats.outages, 1);
    assert.equal(t.sockets.size, 1, 'connection still open');
    assert.ok(Buffer.concat(t.received).subarray(6).equals(numbered(1000)));
    // no more periodic outages; interrupt(): an outage on demand
    px.setProfile({ outage: undefined });
    seq.length = 0;
    px.interrupt(200);
    c.write('x');
    await waitFor(() => t.bytes() === 4007, 1_000, 'byte after interrupt');
    assert.deepEqual(seq, ['outage-end', 'data'], 'the byte written during the interrupt passed only after it ended');
  });

  it('a slower profile gives a measurably slower transfer of the same bytes', async () => {
    const payload = numbered(32_768); // 128 KiB, sent by the target on connect (down direction)
    const t = await target('sink', (s) => s.end(payload));
    const timeOne = async (p: LinkProfile): Promise<number> => {
      const px = await proxy(t, p, { seed: 1 });
      const c = await client(px.port);
      const got = collect(c);
      const t0 = performance.now();
      await waitFor(() => got.bytes() === payload.length, 3_000, `${p.name} transfer`);
      assert.ok(got.all().equals(payload));
      return performance.now() - t0;
    };
    const good = await timeOne(BUILTIN_PROFILES['wifi-good']);
    const poor = await timeOne(BUILTIN_PROFILES['wifi-poor']);
    assert.ok(poor >= 131_072 / 250_000 * 1000 * 0.9, `wifi-poor took ${poor.toFixed(0)} ms`);
    assert.ok(poor > good + 300, `wifi-good ${good.toFixed(0)} ms, wifi-poor ${poor.toFixed(0)} ms`);
  });

  it('backpressure: a slow link pauses the sender instead of queueing without bound', async () => {
    const t = await target('sink');
    const px = await proxy(t, profile({ upBps: 200_000 }));
    const c = await client(px.port);
    c.write(Buffer.alloc(16 * 1024 * 1024));
    // watched until the target has taken 256 KiB (the link has been busy a while), never more queued than the bound
    let most = 0;
    await waitFor(() => {
      most = Math.max(most, px.queuedBytes);
      return t.bytes() >= 256 * 1024;
    }, 10_000, '256 KiB through the slow link');
    assert.ok(most <= QUEUE_HIGH_WATER + 65_536, `queued up to ${most}`);
    assert.ok(c.writableLength > 0, 'the sender is held back');
  });

  it('closing the client closes upstream, closing upstream closes the client', async () => {
    const t = await target('echo');
    const px = await proxy(t, profile({ latencyMs: 5 }));
    const a = await client(px.port);
    await waitFor(() => t.sockets.size === 1, 1_000, 'upstream connection');
    a.end();
    await waitFor(() => t.closed === 1, 1_000, 'upstream closed after client end');
    await waitFor(() => px.openConnections === 0, 1_000, 'proxy forgot the connection');

    const b = await client(px.port);
    await waitFor(() => t.sockets.size === 1, 1_000, 'second upstream connection');
    const bClosed = once(b, 'close');
    for (const s of t.sockets) s.destroy();
    await within(bClosed, 1_000, 'client closed after upstream');
    await waitFor(() => px.openConnections === 0, 1_000, 'proxy forgot the second connection');

    const c = await client(px.port);
    await waitFor(() => t.sockets.size === 1, 1_000, 'third upstream connection');
    const cClosed = once(c, 'close');
    await px.close();
    await within(cClosed, 1_000, 'client closed by close()');
    await waitFor(() => t.sockets.size === 0, 1_000, 'upstream closed by close()');
    assert.equal(px.stats.connections, 3);
  });

  it('an MQTT.js client talks to a real Aedes broker through the proxy, with the added delay', async () => {
    const broker = later(await startBroker(), (b) => b.close());
    const port = Number(new URL(broker.url).port);
    const px = later(await LinkProxy.start({ target: { host: '127.0.0.1', port }, profile: profile({ latencyMs: 25, downBps: 500_000, upBps: 200_000 }) }), (x) => x.close());
    const client = mqtt.connect(px.url, { protocolVersion: 4, clientId: 'through-link', reconnectPeriod: 0, connectTimeout: 3_000 });
    later(client, (cl) => void cl.end(true));
    await within(new Promise((resolve) => client.once('connect', resolve)), 3_000, 'CONNACK through the link');
    assert.equal(broker.broker.connectedClients, 1);
    await client.subscribeAsync('t/1', { qos: 1 });
    const t0 = performance.now();
    const got = new Promise<[string, Buffer]>((resolve) => client.once('message', (topic, payload) => resolve([topic, payload])));
    await client.publishAsync('t/1', Buffer.alloc(20_000, 7), { qos: 0 });
    const [topic, payload] = await within(got, 2_000, 'the message back');
    const took = performance.now() - t0;
    assert.equal(topic, 't/1');
    assert.equal(payload.length, 20_000);
    assert.ok(took >= 50 + 20_000 / 500_000 * 1000 * 0.8, `publish -> message took ${took.toFixed(0)} ms`);
    assert.ok(took < 50 + 100 + 100 + 1_000, `took ${took.toFixed(0)} ms`);
    await client.endAsync();
    await waitFor(() => broker.broker.connectedClients === 0, 2_000, 'broker sees the client gone');
    await waitFor(() => px.openConnections === 0, 1_000, 'proxy connection closed');
  });
});
