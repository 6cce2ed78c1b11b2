import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPtyPair } from '../../scripts/lib/pty-pair.ts';
import { createRequire } from 'node:module';
import type { EventEmitter } from 'node:events';
import { closeSerialPortWithin, keepPollerWaits, openSerialPort, ttyIdentity, watchPortPath } from '../../transport/serial-port.ts';

describe('transport: serial port path watch (a pulled adapter, a remade pty pair)', function () {
  this.timeout(20_000);
  let dir: string;
  beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'fwgate-port-')); });
  afterEach(async () => { await rm(dir, { recursive: true, force: true }); });

  /** Starts watching (resolves once the watch is set up) and gives the promise of its report. */
  const watching = async (path: string, intervalMs: number): Promise<{ gone: Promise<string> }> => {
    let report: (why: string) => void = () => undefined;
    const gone = new Promise<string>((resolve) => { report = resolve; });
    await watchPortPath(path, intervalMs, (why) => report(why));
    return { gone };
  };

  it('reports "disappeared" when the tty goes away, and a change when another device takes its path', async () => {
    const pair = await createPtyPair(dir);
    assert.ok(await ttyIdentity(pair.a), 'an open pty has an identity');
    const port = await openSerialPort(pair.a, 115_200);
    port.on('error', () => undefined);
    const first = await watching(pair.a, 50);
    await pair.close();
    assert.equal(await first.gone, 'disappeared');
    assert.equal(await ttyIdentity(pair.a), undefined);
    assert.equal(await closeSerialPortWithin(port, 1_000), true);

    // another device at the same path: a symlink (like /dev/serial/by-id/...) re-pointed
    await mkdir(join(dir, 'one'));
    await mkdir(join(dir, 'two'));
    const one = await createPtyPair(join(dir, 'one'));
    const two = await createPtyPair(join(dir, 'two'));
    const link = join(dir, 'adapter');
    await symlink(one.a, link);
    try {
      const second = await watching(link, 50);
      await rm(link);
      await symlink(two.a, link);
      const why = await second.gone;
      // 'replaced' when the link was re-pointed between two checks (the usual case), else 'disappeared'
      assert.ok(why === 'replaced' || why === 'disappeared', why);
      assert.equal(await ttyIdentity(link), await ttyIdentity(two.a));
    } finally {
      await one.close();
      await two.close();
    }
  });

  it('a path that does not exist is not watched (nothing to lose); stop() ends a watch', async () => {
    // Proof by the recorded timer calls, not by waiting: a watch that can never fire again is one
    // whose interval was cleared (or never set).
    const real = { set: globalThis.setInterval, clear: globalThis.clearInterval };
    const set: unknown[] = [];
    const cleared: unknown[] = [];
    let called = false;
    globalThis.setInterval = ((fn: () => void, ms?: number) => {
      const h = real.set(fn, ms);
      set.push(h);
      return h;
    }) as typeof setInterval;
    globalThis.clearInterval = ((h?: Parameters<typeof clearInterval>[0]) => {
      cleared.push(h);
      real.clear(h);
    }) as typeof clearInterval;
    let pair: Awaited<ReturnType<typeof createPtyPair>> | undefined;
    try {
      const stop = await watchPortPath(join(dir, 'none.tty'), 20, () => { called = true; });
      assert.equal(set.length, 0, 'no interval for a path that does not exist');
      stop();
      pair = await createPtyPair(dir);
      const stop2 = await watchPortPath(pair.a, 20, () => { called = true; });
      assert.equal(set.length, 1, 'an existing path is polled');
      stop2();
      assert.ok(cleared.includes(set[0]), 'stop() clears the interval: the watch cannot fire again');
    } finally {
      globalThis.setInterval = real.set;
      globalThis.clearInterval = real.clear;
      await pair?.close();
    }
    assert.equal(called, false);
  });
});

describe('transport: serial port writes (one system call per turn)', function () {
  this.timeout(20_000);
  let dir: string;
  beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'fwgate-port-')); });
  afterEach(async () => { await rm(dir, { recursive: true, force: true }); });

  it('writes made in one turn reach the OS as one write, in order; every callback fires', async () => {
    const pair = await createPtyPair(dir);
    const tx = await openSerialPort(pair.a, 921_600);
    const rx = await openSerialPort(pair.b, 921_600);
    try {
      // a turn's writes leave as one writev (several buffers) or one write (a single one)
      const binding = tx.port!;
      const writes: number[] = [];
      const write = binding.write.bind(binding);
      binding.write = (b: Buffer) => {
        writes.push(b.length);
        return write(b);
      };
      const port = tx as unknown as { writevNow?: (buffers: Buffer[]) => Promise<void> };
      const writev = port.writevNow;
      assert.ok(writev, 'the port writes several buffers with one writev');
      port.writevNow = (buffers) => {
        writes.push(buffers.reduce((n, b) => n + b.length, 0));
        return writev(buffers);
      };
      const parts = [Buffer.alloc(100, 1), Buffer.alloc(200, 2), Buffer.alloc(300, 3)];
      const expected = Buffer.concat([...parts, ...parts]);
      const got: Buffer[] = [];
      let n = 0;
      const all = new Promise<void>((resolve) => rx.on('data', (d: Buffer) => {
        got.push(d);
        n += d.length;
        if (n >= expected.length) resolve();
      }));
      const done = (p: Buffer): Promise<void> => new Promise((resolve, reject) => tx.write(p, (err) => (err ? reject(err) : resolve())));
      const first = parts.map(done); // one turn
      await Promise.all(first);
      const second = parts.map(done); // the next turn
      await Promise.all(second);
      await all;
      assert.deepEqual(Buffer.concat(got), expected);
      assert.deepEqual(writes, [600, 600], 'one write per turn');
    } finally {
      await closeSerialPortWithin(tx, 1000);
      await closeSerialPortWithin(rx, 1000);
      await pair.close();
    }
  });
});

describe('transport: serial port reads and writes on the event loop (non-blocking fd, poller on EAGAIN)', function () {
  this.timeout(30_000);
  let dir: string;
  beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'fwgate-port-')); });
  afterEach(async () => { await rm(dir, { recursive: true, force: true }); });

  it('1 MiB each way at once arrives intact, in order; a close with a read pending is clean', async () => {
    const pair = await createPtyPair(dir);
    const x = await openSerialPort(pair.a, 921_600);
    const y = await openSerialPort(pair.b, 921_600);
    const errors: Error[] = [];
    x.on('error', (e: Error) => errors.push(e));
    y.on('error', (e: Error) => errors.push(e));
    try {
      const size = 1024 * 1024;
      const pattern = (seed: number): Buffer => Buffer.from(Array.from({ length: size }, (_, i) => (i * seed + (i >> 10)) & 0xff));
      const toY = pattern(7);
      const toX = pattern(13);
      const receive = (port: typeof x): Promise<Buffer> => new Promise((resolve) => {
        const got: Buffer[] = [];
        let n = 0;
        port.on('data', (d: Buffer) => {
          got.push(Buffer.from(d));
          n += d.length;
          if (n >= size) resolve(Buffer.concat(got));
        });
      });
      const send = async (port: typeof x, bytes: Buffer): Promise<void> => {
        for (let off = 0; off < bytes.length; off += 16 * 1024) {
          if (!port.write(bytes.subarray(off, off + 16 * 1024))) await new Promise((r) => port.once('drain', r));
        }
      };
      const [atX, atY] = await Promise.all([receive(x), receive(y), send(x, toY), send(y, toX)]);
      assert.ok(atY.equals(toY), 'x -> y intact');
      assert.ok(atX.equals(toX), 'y -> x intact');
      assert.equal(await closeSerialPortWithin(x, 2000), true, 'closes with its read waiting');
      assert.deepEqual(errors, []);
    } finally {
      await closeSerialPortWithin(x, 1000);
      await closeSerialPortWithin(y, 1000);
      await pair.close();
    }
  });

  it('the read loop stops while the reader is paused: a paused port buffers at most about its high-water mark, then takes the rest once resumed, intact and in order', async () => {
    const pair = await createPtyPair(dir);
    const tx = await openSerialPort(pair.a, 921_600);
    const rx = await openSerialPort(pair.b, 921_600);
    try {
      const size = 512 * 1024;
      const bytes = Buffer.from(Array.from({ length: size }, (_, i) => (i * 31 + (i >> 9)) & 0xff));
      const got: Buffer[] = [];
      let n = 0;
      rx.on('data', (d: Buffer) => {
        got.push(Buffer.from(d));
        n += d.length;
      });
      rx.pause();
      const sent = (async () => {
        for (let off = 0; off < size; off += 16 * 1024) {
          if (!tx.write(bytes.subarray(off, off + 16 * 1024))) await new Promise((r) => tx.once('drain', r));
        }
      })();
      // while paused, reading stops once the stream's buffer is full: the rest waits in the OS
      const deadline = Date.now() + 5000;
      while (rx.readableLength < rx.readableHighWaterMark && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(n, 0, 'nothing delivered while paused');
      assert.ok(rx.readableLength >= rx.readableHighWaterMark, `buffered ${rx.readableLength}`);
      assert.ok(rx.readableLength < rx.readableHighWaterMark + 64 * 1024, `buffered ${rx.readableLength}: reading went on while paused`);
      rx.resume();
      await sent;
      const until = Date.now() + 10_000;
      while (n < size && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
      assert.ok(Buffer.concat(got).equals(bytes), `received ${n} of ${size} bytes, intact and in order`);
    } finally {
      await closeSerialPortWithin(tx, 1000);
      await closeSerialPortWithin(rx, 1000);
      await pair.close();
    }
  });
});

describe('transport: the serialport poller keeps a read waiting while a write waits (bindings-cpp 13.0.0)', () => {
  // The binding's JS Poller (the one serialport uses) over a fake native poller that records what it is asked to poll.
  const { Poller } = createRequire(import.meta.url)('@serialport/bindings-cpp/dist/poller.js') as {
    Poller: new (fd: number, native: unknown) => EventEmitter & { poll(flags?: number): void };
  };
  const READABLE = 1;
  const WRITABLE = 2;

  function fakePoller(): { poller: EventEmitter & { poll(flags?: number): void }; polled: number[]; fire(flags: number): void } {
    const polled: number[] = [];
    let callback: (err: Error | null, flags: number) => void = () => undefined;
    class Native {
      constructor(_fd: number, cb: (err: Error | null, flags: number) => void) {
        callback = cb;
      }
      poll(flags: number): void {
        polled.push(flags);
      }
      stop(): void {}
      destroy(): void {}
    }
    return { poller: new Poller(7, Native), polled, fire: (flags) => callback(null, flags) };
  }

  it('as shipped, a wait for "writable" replaces a pending wait for "readable" (the stall)', () => {
    const { poller, polled } = fakePoller();
    poller.once('readable', () => undefined);
    poller.once('writable', () => undefined);
    assert.deepEqual(polled, [READABLE, WRITABLE], 'the native poll is restarted with WRITABLE only');
  });

  it('keepPollerWaits: each poll asks for every event that still has a waiter', () => {
    const { poller, polled, fire } = fakePoller();
    keepPollerWaits(poller);
    let reads = 0;
    let writes = 0;
    poller.once('readable', () => { reads++; });
    poller.once('writable', () => { writes++; });
    assert.deepEqual(polled, [READABLE, READABLE | WRITABLE]);
    fire(WRITABLE);
    assert.equal(writes, 1);
    poller.once('writable', () => { writes++; });
    assert.deepEqual(polled.at(-1), READABLE | WRITABLE, 'the read still waits');
    fire(READABLE);
    assert.equal(reads, 1);
    poller.once('readable', () => { reads++; });
    assert.deepEqual(polled.at(-1), READABLE | WRITABLE, 'the write still waits');
  });
});
