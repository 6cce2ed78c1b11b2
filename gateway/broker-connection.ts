/**
 * What the embedded broker (broker.ts) does on each client connection's bytes: the MQTT
 * fixed-header guard that drops a packet over the size limit before its body arrives, the Duplex
 * aedes reads and writes through, and the wait for a connection's drain when a direct write
 * (Broker.publishDirect) finds its buffer full.
 */
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { FwError } from '../protocol/errors.ts';

// --- Fixed-header guard -------------------------------------------------------------------------

export type GuardVerdict = { ok: true } | { ok: false; reason: 'oversize'; size: number } | { ok: false; reason: 'malformed' };

type Phase = 'type' | 'length' | 'body';

/**
 * Follows MQTT packet boundaries in a byte stream without buffering: for each packet it reads the
 * type byte and the Remaining Length varint [MQTT-2.2.3] (1..4 bytes; a fifth continuation byte
 * is malformed) and then skips the body by counting. Chunks may split a header anywhere and carry
 * any number of packets. Once it has returned a failure it keeps returning it.
 */
export class MqttSizeGuard {
  #phase: Phase = 'type';
  #length = 0;
  #lengthBytes = 0;
  #bodyLeft = 0;
  #failed: GuardVerdict | undefined;
  /** Complete packets seen. */
  packets = 0;

  constructor(readonly maxPacketBytes: number) {}

  feed(chunk: Uint8Array): GuardVerdict {
    if (this.#failed) return this.#failed;
    const n = chunk.length;
    let i = 0;
    while (i < n) {
      switch (this.#phase) {
        case 'body': {
          const take = Math.min(this.#bodyLeft, n - i);
          i += take;
          this.#bodyLeft -= take;
          if (this.#bodyLeft === 0) this.#endPacket();
          break;
        }
        case 'type':
          i++;
          this.#phase = 'length';
          this.#length = 0;
          this.#lengthBytes = 0;
          break;
        case 'length': {
          const b = chunk[i++]!;
          this.#length += (b & 0x7f) * 128 ** this.#lengthBytes;
          this.#lengthBytes++;
          if (b & 0x80) {
            if (this.#lengthBytes === 4) return (this.#failed = { ok: false, reason: 'malformed' });
            break;
          }
          const size = 1 + this.#lengthBytes + this.#length;
          if (size > this.maxPacketBytes) return (this.#failed = { ok: false, reason: 'oversize', size });
          this.#bodyLeft = this.#length;
          if (this.#bodyLeft === 0) this.#endPacket();
          else this.#phase = 'body';
          break;
        }
        default: {
          const never: never = this.#phase;
          throw new Error(`unreachable phase ${String(never)}`);
        }
      }
    }
    return { ok: true };
  }

  #endPacket(): void {
    this.packets++;
    this.#phase = 'type';
  }
}

/**
 * The Duplex aedes sees for one TCP socket: reads pass through an MqttSizeGuard (the same Buffer
 * objects, no copies) and writes go straight to the socket. A violation destroys the socket;
 * the chunk carrying it is never passed on.
 */
export class GuardedConnection extends Duplex {
  readonly #socket: Socket;
  readonly #guard: MqttSizeGuard;
  /** The client id of the CONNECT, as sent (aedes' preConnect); undefined before it. */
  requestedClientId: string | undefined;

  constructor(
    socket: Socket,
    maxPacketBytes: number,
    readonly remote: string,
    onViolation: (v: GuardVerdict & { ok: false }) => void,
    /** CN of the verified client certificate (TLS listener), if any. */
    readonly certificateCn?: string,
  ) {
    super({ allowHalfOpen: false });
    this.#socket = socket;
    this.#guard = new MqttSizeGuard(maxPacketBytes);
    socket.on('data', (chunk: Buffer) => {
      const v = this.#guard.feed(chunk);
      if (!v.ok) {
        socket.pause();
        onViolation(v);
        // oversize: a clean drop (aedes sees the connection close); malformed: a protocol error
        this.destroy(v.reason === 'malformed' ? new FwError('E_MESSAGE_INVALID', 'malformed MQTT remaining length') : undefined);
        return;
      }
      if (!this.push(chunk)) socket.pause();
    });
    socket.on('end', () => this.push(null));
    socket.on('error', (err) => this.destroy(err));
    // A clean close after 'end' lets aedes read what is buffered (e.g. DISCONNECT) first.
    socket.on('close', () => {
      if (!this.readableEnded && this.readableLength > 0) this.push(null);
      else this.destroy();
    });
  }

  override _read(): void {
    this.#socket.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.#socket.write(chunk, cb);
  }

  override _writev(chunks: { chunk: Buffer }[], cb: (err?: Error | null) => void): void {
    this.#socket.cork();
    for (let i = 0; i < chunks.length - 1; i++) this.#socket.write(chunks[i]!.chunk);
    this.#socket.write(chunks[chunks.length - 1]!.chunk, cb);
    this.#socket.uncork();
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.#socket.end(cb);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.#socket.destroy();
    cb(err);
  }
}

/** One promise per stream over its limit: resolves at its next 'drain', or when it closes or fails (nothing waits forever). */
const drains = new WeakMap<Duplex, Promise<void>>();
export function drained(conn: Duplex): Promise<void> {
  let p = drains.get(conn);
  if (!p) {
    p = new Promise<void>((resolve) => {
      const done = (): void => {
        conn.off('drain', done);
        conn.off('close', done);
        conn.off('error', done);
        drains.delete(conn);
        resolve();
      };
      conn.on('drain', done);
      conn.on('close', done);
      conn.on('error', done);
      if (conn.destroyed) done();
    });
    drains.set(conn, p);
  }
  return p;
}
