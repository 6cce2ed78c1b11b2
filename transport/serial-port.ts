import { readSync, writeSync, writevSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { EventEmitter } from 'node:events';
import { SerialPort } from 'serialport';
import { FwError } from '../protocol/errors.ts';

/**
 * A serial port that hands everything written in one turn of the event loop to the OS in one
 * write: the link writes a frame at a time (a window's worth when an ACK frees it), and each
 * write is a system call through the thread pool. (The stream already joins writes made while one
 * is in progress; this also joins the first of a turn with the rest.) Each write's callback still
 * fires, once the joined write is done.
 */
class CoalescingSerialPort extends SerialPort {
  #corked = false;
  /** Set by readWriteInLoop: several buffers in one system call, without joining them first. */
  writevNow: ((buffers: Buffer[]) => Promise<void>) | undefined;

  override write(chunk: unknown, encoding?: BufferEncoding | ((error: Error | null | undefined) => void), cb?: (error: Error | null | undefined) => void): boolean {
    if (!this.#corked) {
      this.#corked = true;
      this.cork();
      process.nextTick(() => this.flushWrites());
    }
    return typeof encoding === 'function' ? super.write(chunk, encoding) : super.write(chunk, encoding as BufferEncoding, cb);
  }

  /** Hand what was written since the turn began to the OS now (the read loop does, after each read). */
  flushWrites(): void {
    if (!this.#corked) return;
    this.#corked = false;
    this.uncork();
  }

  override _writev(...[chunks, callback]: Parameters<SerialPort['_writev']>): void {
    const writev = this.writevNow;
    if (writev === undefined || !this.isOpen) {
      super._writev(chunks, callback);
      return;
    }
    // as the stream's own _write does with the binding's write
    writev(chunks.map((c) => c.chunk)).then(() => callback(null), (err: Error & { canceled?: boolean }) => {
      if (!err.canceled) this._disconnected(err);
      callback(err);
    });
  }
}

/**
 * Open a serial port (a USB-serial adapter, or a pty in tests and the demo). Raw mode, no flow
 * control; the link ARQ does its own. Errors name the path. Writes made in one turn of the event
 * loop go to the OS as one.
 */
export async function openSerialPort(path: string, baudRate: number): Promise<SerialPort> {
  const port = new CoalescingSerialPort({ path, baudRate, autoOpen: false, hupcl: false });
  await new Promise<void>((resolve, reject) => {
    port.open((err) => (err ? reject(new FwError('E_LINK_CLOSED', `cannot open serial port ${path}: ${err.message}`, { cause: err })) : resolve()));
  });
  readWriteInLoop(port);
  return port;
}

/** The parts of @serialport/bindings-cpp's unix port (13.0.0: dist/linux.js, darwin.js) used here. */
interface UnixBindingPort {
  fd: number | null;
  poller: EventEmitter;
  writeOperation: Promise<void> | null;
  read(buffer: Buffer, offset: number, length: number): Promise<{ bytesRead: number; buffer: Buffer }>;
  write(buffer: Buffer): Promise<void>;
}

function isUnixBindingPort(p: unknown): p is UnixBindingPort {
  return typeof p === 'object' && p !== null && 'fd' in p && typeof p.fd === 'number' && 'poller' in p && typeof p.poller === 'object'
    && 'writeOperation' in p && 'read' in p && 'write' in p;
}

/** The binding's poll flags (libuv's uv_poll_event; bindings-cpp dist/poller.js EVENTS). */
const POLL = { readable: 0b001, writable: 0b010, disconnect: 0b100 } as const;

/**
 * @serialport/bindings-cpp 13.0.0 `Poller::poll` (src/poller.cpp) restarts its uv_poll with only
 * the event just asked for: a read waiting for "readable" loses that wait when a write then waits
 * for "writable", until the fd turns writable. If the peer drains our writes only after we read
 * what it sent, neither side moves (test/transport/serial-port.test.ts: 1 MiB each way at once
 * stalls without this). Each wait here asks for every event that still has a waiter.
 */
export function keepPollerWaits(poller: EventEmitter & { poll?: (flags?: number) => void }): void {
  const poll = poller.poll?.bind(poller);
  if (poll === undefined) return;
  poller.poll = (flags = 0) => {
    let all = flags;
    for (const [event, flag] of Object.entries(POLL)) if (poller.listenerCount(event) > 0) all |= flag;
    poll(all);
  };
}

/** Errors of a non-blocking fd that mean "not now": wait for the poller, as the binding does. */
const tryAgain = (err: unknown): boolean => {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'EAGAIN' || code === 'EWOULDBLOCK' || code === 'EINTR';
};

/** Reads in a row that found data, without a wait, before one turn of the event loop. */
const READS_BEFORE_YIELD = 16;
/** A read gets at least this much room in the read pool; less left, and a new pool is taken. */
const MIN_READ_ROOM = 8 * 1024;

/** The poller's next `event` (its error, e.g. canceled at close, rejects). */
const next = (poller: EventEmitter, event: 'readable' | 'writable'): Promise<void> =>
  new Promise((resolve, reject) => poller.once(event, (err: Error | null) => (err ? reject(err) : resolve())));

/**
 * The unix binding reads and writes its (non-blocking) fd with fs.read / fs.write through the
 * thread pool: two thread hops per chunk (the data, then EAGAIN before it polls), for a pty at
 * most 4 KiB a read. Here the read or write is tried at once on the event loop — it cannot block,
 * the fd is O_NONBLOCK — and the poller is waited for only on EAGAIN, as the binding does.
 *
 * Reads: a loop pushes each read straight into the stream, with no promise or stream call per
 * read in between, and after each one hands the writes its handlers made (an ACK) to the OS; it
 * waits for the poller on EAGAIN, lets one turn of the event loop through every
 * READS_BEFORE_YIELD reads, and stops while the stream's buffer is full. Writes: the buffers of a
 * turn go out in one writev, no copy to join them; after a short write the rest waits for
 * "writable" (trying again at once would only fail with EAGAIN, and an exception costs). Anything
 * else (an error, a read of 0 bytes from a hung-up tty, a closed port) goes to the binding's own
 * read or write, which reports it as it always has.
 */
function readWriteInLoop(port: CoalescingSerialPort): void {
  const bp: unknown = port.port;
  if (!isUnixBindingPort(bp)) return;
  keepPollerWaits(bp.poller);
  const read = bp.read.bind(bp);
  const write = bp.write.bind(bp);
  // the fallback read path (errors, a 0-byte read): the stream's own _read through bp.read
  let streak = 0;
  bp.read = async (buffer, offset, length) => {
    if (++streak >= READS_BEFORE_YIELD) {
      streak = 0;
      await new Promise((resolve) => setImmediate(resolve));
    }
    for (;;) {
      if (bp.fd === null) return read(buffer, offset, length);
      let n: number;
      try {
        n = readSync(bp.fd, buffer, offset, length, null);
      } catch (err) {
        if (!tryAgain(err)) return read(buffer, offset, length);
        streak = 0;
        await next(bp.poller, 'readable');
        continue;
      }
      if (n === 0) return read(buffer, offset, length);
      return { bytesRead: n, buffer };
    }
  };
  const streamRead = port._read.bind(port);
  let looping = false;
  let pool = Buffer.alloc(0);
  let used = 0;
  const fallBack = (size: number): void => {
    looping = false;
    streamRead(size);
  };
  const loop = (): void => {
    for (let i = 0; i < READS_BEFORE_YIELD; i++) {
      if (bp.fd === null || !port.isOpen) return fallBack(port.readableHighWaterMark);
      if (pool.length - used < MIN_READ_ROOM) {
        pool = Buffer.allocUnsafeSlow(Math.max(port.readableHighWaterMark, 2 * MIN_READ_ROOM));
        used = 0;
      }
      let n: number;
      try {
        n = readSync(bp.fd, pool, used, pool.length - used, null);
      } catch (err) {
        if (!tryAgain(err)) return fallBack(port.readableHighWaterMark);
        next(bp.poller, 'readable').then(loop, () => fallBack(port.readableHighWaterMark));
        return;
      }
      if (n === 0) return fallBack(port.readableHighWaterMark);
      const chunk = pool.subarray(used, used + n);
      used += n;
      const more = port.push(chunk);
      port.flushWrites();
      if (!more) {
        looping = false;
        return;
      }
    }
    setImmediate(loop);
  };
  port._read = (size: number): void => {
    if (looping) return;
    if (bp.fd === null || !port.isOpen) {
      streamRead(size);
      return;
    }
    looping = true;
    // started from the stream's read(): the first read happens on the next turn, not inside it
    setImmediate(loop);
  };
  const drain = async (buffers: Buffer[]): Promise<void> => {
    let rest = buffers;
    for (;;) {
      if (bp.fd === null) return write(Buffer.concat(rest));
      let n: number;
      try {
        n = rest.length === 1 ? writeSync(bp.fd, rest[0]!) : writevSync(bp.fd, rest);
      } catch (err) {
        if (!tryAgain(err)) return write(Buffer.concat(rest));
        await next(bp.poller, 'writable');
        continue;
      }
      rest = unwritten(rest, n);
      if (rest.length === 0) return;
      // a short write: the OS buffer is full, wait until it takes more
      await next(bp.poller, 'writable');
    }
  };
  const writeAll = (buffers: Buffer[]): Promise<void> => {
    const op = drain(buffers).finally(() => {
      if (bp.writeOperation === op) bp.writeOperation = null;
    });
    bp.writeOperation = op;
    return op;
  };
  bp.write = (buffer) => writeAll([buffer]);
  port.writevNow = writeAll;
}

/** What is left of `buffers` after the first `written` bytes of them. */
function unwritten(buffers: Buffer[], written: number): Buffer[] {
  let skip = written;
  let i = 0;
  while (i < buffers.length && skip >= buffers[i]!.length) {
    skip -= buffers[i]!.length;
    i++;
  }
  if (i === buffers.length) return [];
  const rest = buffers.slice(i);
  if (skip > 0) rest[0] = rest[0]!.subarray(skip);
  return rest;
}

export async function closeSerialPort(port: SerialPort): Promise<void> {
  if (!port.isOpen) return;
  await new Promise<void>((resolve) => port.close(() => resolve()));
}

/** Which device a path is now (following symlinks), or undefined when it is gone or cannot be checked. */
export async function ttyIdentity(path: string): Promise<string | undefined> {
  try {
    const st = await stat(path);
    return `${st.dev}:${st.ino}:${st.rdev}`;
  } catch {
    return undefined;
  }
}

/**
 * Watch the path of an open port: `onGone` is called once when the path disappears or names
 * another device (a USB-serial adapter pulled, a pty pair remade). A hung-up tty is not always
 * reported by the port itself: a read that returns 0 bytes is retried by the binding for ever.
 * Returns the function that stops watching.
 */
export async function watchPortPath(path: string, intervalMs: number, onGone: (why: 'disappeared' | 'replaced') => void): Promise<() => void> {
  const identity = await ttyIdentity(path);
  if (identity === undefined) return () => undefined;
  let checking = false;
  let stopped = false;
  const timer = setInterval(() => {
    if (checking || stopped) return;
    checking = true;
    void ttyIdentity(path).then((now) => {
      checking = false;
      if (stopped || now === identity) return;
      stopped = true;
      clearInterval(timer);
      onGone(now === undefined ? 'disappeared' : 'replaced');
    });
  }, intervalMs);
  timer.unref();
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}

/** Close a port, bounded: a port that hangs in close (a hung-up tty) is left to the OS. Resolves true if it closed. */
export async function closeSerialPortWithin(port: SerialPort, timeoutMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const closed = await Promise.race([
    closeSerialPort(port).then(() => true),
    new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), timeoutMs); }),
  ]);
  clearTimeout(timer);
  return closed;
}
