import { EventEmitter } from 'node:events';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { Aedes, type AedesPublishPacket, type AuthenticateError, type Client } from 'aedes';
import { describeError, FwError } from '../protocol/errors.ts';

/**
 * The embedded MQTT 3.1.1 broker (Aedes) with the two limits Aedes lacks:
 *  - a largest packet: every accepted socket is wrapped in a GuardedConnection that reads the
 *    MQTT fixed headers [MQTT-2.2] as bytes pass by and drops the connection as soon as a header
 *    announces a packet larger than `maxPacketBytes` — before the body arrives, so nothing
 *    downstream ever buffers it;
 *  - a client cap: the (maxClients+1)-th CONNECT is refused with CONNACK return code 3
 *    "server unavailable" [MQTT-3.2.2-5] (from the `authenticate` hook, the only aedes hook that
 *    can answer a CONNECT with a return code; `preConnect` answering false leaves the socket open
 *    with no CONNACK).
 *
 * Publisher identity: aedes stamps `packet.clientId` on every packet a client publishes (its
 * `emitPacket` step, also for wills) before handing it to `aedes.subscribe` listeners; packets
 * published in-process carry none. `subscribe()` passes that to handlers as `clientId` (null for
 * in-process publishes).
 */

export interface BrokerOptions {
  host: string;
  /** 0 = an ephemeral port. */
  port: number;
  /** Largest MQTT packet (fixed header + remaining length) accepted from a client. */
  maxPacketBytes: number;
  /** Most MQTT clients admitted at once. */
  maxClients: number;
  logger?: (line: string) => void;
  /** Bound on close(), ms. */
  closeTimeoutMs?: number;
}

export interface BrokerStats {
  /** TCP connections open now (connected MQTT clients and sockets that have not sent CONNECT yet). */
  connections: number;
  /** MQTT clients connected now. */
  clients: number;
  /** CONNECTs refused by the client cap (cumulative). */
  rejectedClients: number;
  /** Connections dropped for announcing a packet over maxPacketBytes (cumulative). */
  oversizePackets: number;
  /** Connections dropped with an error: malformed packet or length, bad CONNECT, keepalive timeout, socket error (cumulative). */
  clientErrors: number;
}

type BrokerEvents = { clientConnected: [clientId: string]; clientDisconnected: [clientId: string] };
export type PublishHandler = (topic: string, payload: Buffer, clientId: string | null) => void;

const DEFAULT_CLOSE_TIMEOUT_MS = 5000;
/** Return code 3 "Server unavailable" [MQTT-3.2.2-3, table 3.1]. */
const SERVER_UNAVAILABLE = 3;

export class Broker extends EventEmitter<BrokerEvents> {
  readonly aedes: Aedes;
  readonly port: number;
  readonly url: string;
  readonly #server: Server;
  readonly #opts: BrokerOptions;
  readonly #log: (line: string) => void;
  readonly #conns = new Set<GuardedConnection>();
  /** Connections admitted by the client cap, with the client id each was admitted for. */
  readonly #admitted = new Map<GuardedConnection, string>();
  readonly #connected = new Set<string>();
  #rejectedClients = 0;
  #oversizePackets = 0;
  #clientErrors = 0;
  #closing: Promise<void> | undefined;

  private constructor(opts: BrokerOptions, aedes: Aedes, server: Server) {
    super();
    this.#opts = opts;
    this.#log = opts.logger ?? (() => undefined);
    this.aedes = aedes;
    this.#server = server;
    const addr = server.address() as AddressInfo;
    this.port = addr.port;
    this.url = `mqtt://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}`;

    aedes.authenticate = (client, _username, _password, done) => this.#admit(client, done);
    aedes.on('client', (client) => {
      this.#connected.add(client.id);
      this.emit('clientConnected', client.id);
    });
    aedes.on('clientDisconnect', (client) => {
      this.#connected.delete(client.id);
      this.emit('clientDisconnected', client.id);
    });
    aedes.on('clientError', (client, err) => this.#onClientError(client, err));
    aedes.on('connectionError', (client, err) => this.#onClientError(client, err));
    (aedes as EventEmitter).on('error', (err: unknown) => this.#log(`broker: aedes error: ${describeError(err)}`));
    server.on('connection', (socket) => this.#accept(socket));
    server.on('error', (err) => this.#log(`broker: listener error: ${describeError(err)}`));
  }

  /** Create the broker and listen on host:port. */
  static async start(opts: BrokerOptions): Promise<Broker> {
    if (!Number.isInteger(opts.maxPacketBytes) || opts.maxPacketBytes < 2) throw new FwError('E_CONFIG', 'broker maxPacketBytes must be an integer >= 2');
    if (!Number.isInteger(opts.maxClients) || opts.maxClients < 1) throw new FwError('E_CONFIG', 'broker maxClients must be an integer >= 1');
    const aedes = await Aedes.createBroker();
    const server = createServer({ noDelay: true });
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(opts.port, opts.host, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      await new Promise<void>((resolve) => aedes.close(resolve));
      throw new FwError('E_CONFIG', `broker cannot listen on ${opts.host}:${opts.port}`, { cause: err });
    }
    const broker = new Broker(opts, aedes, server);
    broker.#log(`broker: listening on ${broker.url} (max packet ${opts.maxPacketBytes} bytes, max clients ${opts.maxClients})`);
    return broker;
  }

  get stats(): BrokerStats {
    return {
      connections: this.#conns.size,
      clients: this.#connected.size,
      rejectedClients: this.#rejectedClients,
      oversizePackets: this.#oversizePackets,
      clientErrors: this.#clientErrors,
    };
  }

  /** Publish in-process (retain false). Resolves once aedes has routed the packet to subscribers. */
  publish(topic: string, payload: Uint8Array, qos: 0 | 1): Promise<void> {
    if (this.#closing) return Promise.reject(new FwError('E_LINK_CLOSED', 'broker is closed'));
    const buf = Buffer.isBuffer(payload) ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
    return new Promise((resolve, reject) => {
      this.aedes.publish({ cmd: 'publish', topic, payload: buf, qos, retain: false, dup: false }, (err) => (err ? reject(err) : resolve()));
    });
  }

  /**
   * Subscribe in-process. `clientId` is the publishing client's id, or null for an in-process
   * publish. The handler runs synchronously in delivery; an exception it throws is logged.
   * Returns an idempotent unsubscribe function.
   */
  subscribe(topicFilter: string, handler: PublishHandler): Promise<() => Promise<void>> {
    if (this.#closing) return Promise.reject(new FwError('E_LINK_CLOSED', 'broker is closed'));
    const deliver = (packet: AedesPublishPacket, done: () => void): void => {
      try {
        const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
        handler(packet.topic, payload, publisherOf(packet));
      } catch (err) {
        this.#log(`broker: subscriber of ${topicFilter} threw: ${describeError(err)}`);
      } finally {
        done();
      }
    };
    let subscribed = true;
    const unsubscribe = (): Promise<void> => {
      if (!subscribed || this.aedes.closed) return Promise.resolve();
      subscribed = false;
      return new Promise((resolve) => this.aedes.unsubscribe(topicFilter, deliver, resolve));
    };
    return new Promise((resolve, reject) => {
      // aedes calls back with an error (e.g. too many topic levels) though its types omit it
      const done = (err?: Error): void => (err ? reject(err) : resolve(unsubscribe));
      this.aedes.subscribe(topicFilter, deliver, done as () => void);
    });
  }

  /** Whether an MQTT client with this id is connected now. */
  isConnected(clientId: string): boolean {
    return this.#connected.has(clientId);
  }

  /** Stop listening, close every client and aedes. Bounded by closeTimeoutMs; idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    const serverClosed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    const aedesClosed = new Promise<void>((resolve) => this.aedes.close(() => resolve()));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), this.#opts.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS);
    });
    try {
      // aedes closes its clients, which destroys their connections; destroy any stragglers too.
      const first = await Promise.race([aedesClosed, timeout]);
      for (const conn of this.#conns) conn.destroy();
      const second = first === 'timeout' ? first : await Promise.race([serverClosed, timeout]);
      if (second === 'timeout') this.#log('broker: close timed out; sockets destroyed');
    } finally {
      clearTimeout(timer);
    }
    this.#log('broker: closed');
  }

  #accept(socket: Socket): void {
    const remote = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    if (this.#closing) {
      socket.destroy();
      return;
    }
    const conn = new GuardedConnection(socket, this.#opts.maxPacketBytes, remote, (v) => this.#onViolation(conn, v));
    this.#conns.add(conn);
    conn.once('close', () => {
      this.#conns.delete(conn);
      this.#admitted.delete(conn);
    });
    this.aedes.handle(conn);
  }

  #onViolation(conn: GuardedConnection, v: GuardVerdict & { ok: false }): void {
    if (v.reason === 'oversize') {
      this.#oversizePackets++;
      this.#log(`broker: dropped ${conn.remote}: packet of ${v.size} bytes exceeds ${this.#opts.maxPacketBytes}`);
    } else {
      this.#log(`broker: dropped ${conn.remote}: malformed remaining length`);
    }
  }

  /** The client cap, in the `authenticate` hook. A client id already admitted may take over its session. */
  #admit(client: Client, done: (err: AuthenticateError | null, ok: boolean | null) => void): void {
    const conn = client.conn;
    if (!(conn instanceof GuardedConnection)) {
      done(null, true); // a connection handed to aedes directly by the embedding code
      return;
    }
    if (this.#admitted.size >= this.#opts.maxClients && !this.#isAdmitted(client.id)) {
      this.#rejectedClients++;
      this.#log(`broker: refused ${client.id} from ${conn.remote}: ${this.#opts.maxClients} clients connected`);
      const err = new FwError('E_BROKER_LIMIT', `client limit ${this.#opts.maxClients} reached`) as FwError & { returnCode: number };
      err.returnCode = SERVER_UNAVAILABLE;
      done(err as unknown as AuthenticateError, false);
      return;
    }
    this.#admitted.set(conn, client.id);
    done(null, true);
  }

  #isAdmitted(clientId: string): boolean {
    for (const id of this.#admitted.values()) if (id === clientId) return true;
    return false;
  }

  #onClientError(client: Client, err: Error): void {
    if (err instanceof FwError && err.code === 'E_BROKER_LIMIT') return; // counted as rejectedClients
    this.#clientErrors++;
    const conn = client.conn;
    const remote = conn instanceof GuardedConnection ? conn.remote : '?';
    this.#log(`broker: dropped client ${client.id ?? '(before CONNECT)'} from ${remote}: ${describeError(err)}`);
  }
}

function publisherOf(packet: AedesPublishPacket): string | null {
  const id = (packet as { clientId?: unknown }).clientId;
  return typeof id === 'string' ? id : null;
}

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

  constructor(socket: Socket, maxPacketBytes: number, readonly remote: string, onViolation: (v: GuardVerdict & { ok: false }) => void) {
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
