import { EventEmitter } from 'node:events';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import mqttPacket from 'mqtt-packet';
import { Aedes, type AedesPublishPacket, type AuthenticateError, type Client } from 'aedes';
import { describeError, FwError, isFwError } from '../protocol/errors.ts';
import { isValidDeviceId } from '../protocol/topics.ts';
import { drained, GuardedConnection, type GuardVerdict } from './broker-connection.ts';
import { authenticateClient, publishRefusal, SERVER_UNAVAILABLE, subscribeRefusal, type AccessOptions } from './broker-access.ts';
import { ConnectRateLimiter, LogThrottle, PublishRateLimiter } from './rate-limit.ts';

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
 * Access (docs/protocol.md §6.1.8, gateway/broker-access.ts): the `authenticate` hook checks a
 * password against the device list or takes a verified client certificate (TLS listener), refusing
 * with CONNACK 4 or 5; `authorizePublish` lets a client publish only on its own up topic, never
 * retained (a refusal closes the connection: MQTT 3.1.1 has no negative PUBACK), and is also what
 * aedes asks before publishing a will; `authorizeSubscribe` grants only the client's own down
 * topic (a refusal is SUBACK 0x80, the connection stays). A connect-rate limit per remote address
 * drops excess TCP connections before any byte is read (before the TLS handshake on mqtts).
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
  /** Who may connect. Default: anyone, without credentials (the topic rules apply all the same). */
  access?: AccessOptions;
  /** TCP connections accepted per minute from one remote address (token bucket); 0 = no limit (default). */
  connectRatePerMin?: number;
  /** An additional MQTT-over-TLS listener. */
  tls?: BrokerTlsOptions;
  /** The plain listener on host:port; false = TLS only (then `port` and `url` are the TLS listener's). Default true. */
  plain?: boolean;
  /** Per-client publish rate (token bucket): publishes per second, burst, drops in 10 s before a disconnect; perSec 0 = off (default). */
  publishRate?: { perSec: number; burst: number; dropLimit: number };
  /** A repeated refusal (same kind and client or address) is logged at most once per this many ms (default 10000). */
  refusalLogIntervalMs?: number;
  /** Clock of the connect-rate buckets, the publish rate and the log throttle. */
  now?: () => number;
}

/** Where a publish over its client's rate goes: a topic no one subscribes to (the gateway listens on fwgate/v1/dev/+/up). */
const DROPPED_TOPIC = '$fwgate/dropped';

export interface BrokerTlsOptions {
  /** Default: the plain listener's host. */
  host?: string;
  /** 0 = an ephemeral port. */
  port: number;
  /** PEM server certificate (chain) and private key. */
  cert: string | Buffer;
  key: string | Buffer;
  /** PEM CA certificate(s) that sign client certificates. */
  ca?: string | Buffer;
  /** Ask clients for a certificate; one that verifies against `ca` authenticates the device named by its CN. */
  requestCert?: boolean;
}

/** Bound on a TLS handshake, ms. */
const TLS_HANDSHAKE_TIMEOUT_MS = 10_000;

export interface BrokerStats {
  /** TCP connections open now (connected MQTT clients and sockets that have not sent CONNECT yet). */
  connections: number;
  /** MQTT clients connected now. */
  clients: number;
  /** CONNECTs refused by the client cap (cumulative). */
  rejectedClients: number;
  /** Connections dropped for announcing a packet over maxPacketBytes (cumulative). */
  oversizePackets: number;
  /** Connections dropped with an error: malformed packet or length, bad CONNECT, keepalive timeout, socket error, failed TLS handshake (cumulative). */
  clientErrors: number;
  /** CONNECTs refused for their credentials or certificate, CONNACK 4 or 5 (cumulative). */
  authFailures: number;
  /** Publishes refused by the topic rules; each closed its connection (wills: dropped) (cumulative). */
  deniedPublishes: number;
  /** Subscriptions refused by the topic rules, SUBACK 0x80 (cumulative). */
  deniedSubscribes: number;
  /** TCP connections dropped by the connect-rate limit before any byte was read (cumulative). */
  rateLimited: number;
  /** Publishes dropped by the per-client publish rate limit (cumulative). */
  droppedPublishes: number;
  /** Clients disconnected for dropping more than publishDropLimit publishes in 10 s (cumulative). */
  rateDisconnects: number;
  /** Password checks not run because the address or id was backing off, or too many were waiting (CONNACK 3, cumulative). */
  throttledLogins: number;
}

type BrokerEvents = { clientConnected: [clientId: string]; clientDisconnected: [clientId: string] };
export type PublishHandler = (topic: string, payload: Buffer, clientId: string | null) => void;

const DEFAULT_CLOSE_TIMEOUT_MS = 5000;
/** Return code 3 "Server unavailable" [MQTT-3.2.2-3, table 3.1]. */

export class Broker extends EventEmitter<BrokerEvents> {
  readonly aedes: Aedes;
  readonly port: number;
  readonly url: string;
  /** The TLS listener's port and URL (mqtts://), when there is one. */
  readonly tlsPort: number | undefined;
  readonly tlsUrl: string | undefined;
  readonly #server: Server;
  /** The mqtts listener: a TCP server that applies the rate limit and hands sockets to the (not listening) TLS server. */
  readonly #tlsListener: { net: Server; tls: TlsServer } | undefined;
  /** TCP sockets of the mqtts listener still in their TLS handshake. */
  readonly #handshaking = new Set<Socket>();
  readonly #access: AccessOptions;
  readonly #rate: ConnectRateLimiter;
  readonly #opts: BrokerOptions;
  readonly #log: (line: string) => void;
  readonly #conns = new Set<GuardedConnection>();
  /** Connections admitted by the client cap, with the client id each was admitted for. */
  readonly #admitted = new Map<GuardedConnection, string>();
  readonly #connected = new Set<string>();
  #rejectedClients = 0;
  #oversizePackets = 0;
  #clientErrors = 0;
  #authFailures = 0;
  #deniedPublishes = 0;
  #deniedSubscribes = 0;
  #rateLimited = 0;
  #droppedPublishes = 0;
  #rateDisconnects = 0;
  #throttledLogins = 0;
  readonly #publishRate: PublishRateLimiter;
  readonly #logThrottle: LogThrottle;
  #closing: Promise<void> | undefined;

  private constructor(opts: BrokerOptions, aedes: Aedes, server: Server, tlsListener: { net: Server; tls: TlsServer } | undefined) {
    super();
    this.#opts = opts;
    this.#log = opts.logger ?? (() => undefined);
    this.#access = opts.access ?? { requireAuth: false };
    this.#rate = new ConnectRateLimiter(opts.connectRatePerMin ?? 0, opts.now);
    const pr = opts.publishRate ?? { perSec: 0, burst: 1, dropLimit: 1 };
    this.#publishRate = new PublishRateLimiter(pr.perSec, pr.burst, pr.dropLimit, opts.now);
    this.#logThrottle = new LogThrottle(opts.refusalLogIntervalMs ?? 10_000, opts.now);
    this.aedes = aedes;
    this.#server = server;
    this.#tlsListener = tlsListener;
    const plain = opts.plain !== false;
    const addr = (plain ? server.address() : tlsListener!.net.address()) as AddressInfo;
    this.port = addr.port;
    this.url = urlOf(plain ? 'mqtt' : 'mqtts', addr);
    const tlsAddr = tlsListener?.net.address() as AddressInfo | undefined;
    this.tlsPort = tlsAddr?.port;
    this.tlsUrl = tlsAddr ? urlOf('mqtts', tlsAddr) : undefined;

    // the client id as sent: aedes replaces an empty one by a generated id before `authenticate`
    aedes.preConnect = (client, packet, done) => {
      if (client.conn instanceof GuardedConnection) client.conn.requestedClientId = packet.clientId;
      done(null, true);
    };
    aedes.authenticate = (client, username, password, done) => this.#admit(client, username, password, done);
    aedes.authorizePublish = (client, packet, done) => {
      const why = client ? publishRefusal(client.id, packet.topic, packet.retain) : 'no client';
      if (why === null) return this.#rateLimitPublish(client!, packet, done);
      this.#deniedPublishes++;
      this.#logThrottle.log(`publish:${client?.id ?? ''}`, `broker: refused a publish of ${client?.id ?? '(will of a gone client)'} from ${remoteOf(client)}: ${why}`, this.#log);
      done(new FwError('E_BROKER_DENIED', why));
    };
    aedes.authorizeSubscribe = (client, sub, done) => {
      const why = subscribeRefusal(client.id, sub.topic);
      if (why === null) return done(null, sub);
      this.#deniedSubscribes++;
      this.#logThrottle.log(`subscribe:${client.id}`, `broker: refused a subscription of ${client.id} from ${remoteOf(client)}: ${why}`, this.#log);
      done(null, null);
    };
    aedes.on('client', (client) => {
      this.#connected.add(client.id);
      this.emit('clientConnected', client.id);
    });
    aedes.on('clientDisconnect', (client) => {
      this.#connected.delete(client.id);
      this.#publishRate.forget(client.id);
      this.emit('clientDisconnected', client.id);
    });
    aedes.on('clientError', (client, err) => this.#onClientError(client, err));
    aedes.on('connectionError', (client, err) => this.#onClientError(client, err));
    (aedes as EventEmitter).on('error', (err: unknown) => this.#log(`broker: aedes error: ${describeError(err)}`));
    server.on('connection', (socket) => {
      if (this.#rateAllows(socket)) this.#accept(socket);
    });
    server.on('error', (err) => this.#log(`broker: listener error: ${describeError(err)}`));
    if (tlsListener) {
      const { net, tls } = tlsListener;
      // The rate limit runs on the TCP socket, before the handshake: a dropped connection costs no crypto.
      net.on('connection', (socket) => {
        if (!this.#rateAllows(socket)) return;
        if (this.#closing) {
          socket.destroy();
          return;
        }
        this.#handshaking.add(socket);
        socket.once('close', () => this.#handshaking.delete(socket));
        tls.emit('connection', socket);
      });
      net.on('error', (err) => this.#log(`broker: TLS listener error: ${describeError(err)}`));
      tls.on('secureConnection', (socket) => this.#accept(socket));
      tls.on('tlsClientError', (err, socket) => {
        this.#clientErrors++;
        this.#log(`broker: TLS handshake with ${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'} failed: ${describeError(err)}`);
      });
    }
  }

  /** Create the broker and listen on host:port. */
  static async start(opts: BrokerOptions): Promise<Broker> {
    if (!Number.isInteger(opts.maxPacketBytes) || opts.maxPacketBytes < 2) throw new FwError('E_CONFIG', 'broker maxPacketBytes must be an integer >= 2');
    if (!Number.isInteger(opts.maxClients) || opts.maxClients < 1) throw new FwError('E_CONFIG', 'broker maxClients must be an integer >= 1');
    if (opts.connectRatePerMin !== undefined && (!Number.isInteger(opts.connectRatePerMin) || opts.connectRatePerMin < 0)) {
      throw new FwError('E_CONFIG', 'broker connectRatePerMin must be an integer >= 0');
    }
    if (opts.access?.requireAuth && !opts.access.credentials && !(opts.tls?.ca && opts.tls.requestCert)) {
      throw new FwError('E_CONFIG', 'broker requireAuth needs a device list or a TLS listener with client certificates (ca and requestCert)');
    }
    if (opts.plain === false && !opts.tls) throw new FwError('E_CONFIG', 'broker plain: false needs a TLS listener (no listener would be left)');
    let tlsServer: TlsServer | undefined;
    if (opts.tls) {
      const t = opts.tls;
      try {
        tlsServer = createTlsServer({
          cert: t.cert, key: t.key, ...(t.ca ? { ca: t.ca } : {}), requestCert: t.requestCert === true,
          // a client without a (valid) certificate may still log in with a password: checked at CONNECT
          rejectUnauthorized: false, handshakeTimeout: TLS_HANDSHAKE_TIMEOUT_MS, noDelay: true,
        });
      } catch (err) {
        throw new FwError('E_CONFIG', `broker TLS: bad certificate or key: ${describeError(err)}`, { cause: err });
      }
    }
    const aedes = await Aedes.createBroker();
    const server = createServer({ noDelay: true });
    const tlsNet = tlsServer ? createServer({ noDelay: true }) : undefined;
    const listening: Server[] = [];
    try {
      if (opts.plain !== false) {
        await listen(server, opts.port, opts.host);
        listening.push(server);
      }
      if (tlsNet) {
        await listen(tlsNet, opts.tls!.port, opts.tls!.host ?? opts.host);
        listening.push(tlsNet);
      }
    } catch (err) {
      await Promise.all(listening.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
      await new Promise<void>((resolve) => aedes.close(resolve));
      throw err;
    }
    const broker = new Broker(opts, aedes, server, tlsNet && tlsServer ? { net: tlsNet, tls: tlsServer } : undefined);
    const auth = broker.#access.requireAuth ? 'authentication required' : 'authentication optional';
    const urls = opts.plain === false ? `${broker.tlsUrl} only (plain listener off)` : `${broker.url}${broker.tlsUrl ? ` and ${broker.tlsUrl}` : ''}`;
    broker.#log(`broker: listening on ${urls} (max packet ${opts.maxPacketBytes} bytes, max clients ${opts.maxClients}, ${auth})`);
    return broker;
  }

  /** The MQTT listener accepts connections (not closing). */
  get listening(): boolean {
    return this.#server.listening && !this.#closing;
  }

  get stats(): BrokerStats {
    return {
      connections: this.#conns.size,
      clients: this.#connected.size,
      rejectedClients: this.#rejectedClients,
      oversizePackets: this.#oversizePackets,
      clientErrors: this.#clientErrors,
      authFailures: this.#authFailures,
      deniedPublishes: this.#deniedPublishes,
      deniedSubscribes: this.#deniedSubscribes,
      rateLimited: this.#rateLimited,
      droppedPublishes: this.#droppedPublishes,
      rateDisconnects: this.#rateDisconnects,
      throttledLogins: this.#throttledLogins,
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
   * A QoS 0 publish written straight to the one client that may receive it: `clientId`, connected,
   * subscribed to exactly `topic` (a device's own down topic: the access rules let no other client
   * subscribe to it, broker-access.ts). This is what aedes's routing would deliver, without its
   * topic match, emitter queue and one event-loop turn per packet: the packets written in one turn
   * leave in one socket write (mqtt-packet corks the stream until the next tick). Measured by
   * bench/fanout (docs/performance.md): a chunk window is one write instead of one per chunk.
   * Undefined when the client is not there or not subscribed (publish() then decides); resolves
   * once the socket took the packet, or drained, or closed (the caller's ack timeouts cover a loss).
   */
  publishDirect(clientId: string, topic: string, payload: Uint8Array): Promise<void> | undefined {
    if (this.#closing) return undefined;
    // aedes keeps its connected clients by id (aedes.js), outside its typings
    const clients = (this.aedes as unknown as { clients: Record<string, Client & { subscriptions?: Record<string, unknown>; connected?: boolean } | undefined> }).clients;
    const client = clients[clientId];
    if (!client?.connected || client.closed || !client.subscriptions?.[topic]) return undefined;
    const buf = Buffer.isBuffer(payload) ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
    const conn = client.conn as Duplex;
    if (mqttPacket.writeToStream({ cmd: 'publish', topic, payload: buf, qos: 0, retain: false, dup: false }, conn)) return Promise.resolve();
    return drained(conn);
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
    const tlsNet = this.#tlsListener?.net;
    const serverClosed = Promise.all([
      new Promise<void>((resolve) => (this.#server.listening ? this.#server.close(() => resolve()) : resolve())),
      tlsNet ? new Promise<void>((resolve) => tlsNet.close(() => resolve())) : undefined,
    ]).then(() => undefined);
    const aedesClosed = new Promise<void>((resolve) => this.aedes.close(() => resolve()));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), this.#opts.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS);
    });
    try {
      // aedes closes its clients, which destroys their connections; destroy any stragglers too.
      const first = await Promise.race([aedesClosed, timeout]);
      for (const conn of this.#conns) conn.destroy();
      for (const socket of this.#handshaking) socket.destroy();
      const second = first === 'timeout' ? first : await Promise.race([serverClosed, timeout]);
      if (second === 'timeout') this.#log('broker: close timed out; sockets destroyed');
    } finally {
      clearTimeout(timer);
    }
    await this.#access.credentials?.close?.().catch((err: unknown) => this.#log(`broker: ${(err as Error).message}`));
    this.#log('broker: closed');
  }

  /** The connect-rate limit: false (socket destroyed, counted) when the remote address has no token left. */
  #rateAllows(socket: Socket): boolean {
    const address = socket.remoteAddress ?? '?';
    if (this.#rate.take(address)) return true;
    this.#rateLimited++;
    // Log the first refusal and then every 100th, not a line per flooding connection.
    if (this.#rateLimited % 100 === 1) this.#log(`broker: dropped a connection from ${address}: over ${this.#rate.perMinute} connects per minute (${this.#rateLimited} dropped so far)`);
    socket.destroy();
    return false;
  }

  #accept(socket: Socket | TLSSocket): void {
    const remote = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    if (this.#closing || socket.destroyed) {
      socket.destroy();
      return;
    }
    const conn = new GuardedConnection(socket, this.#opts.maxPacketBytes, remote, (v) => this.#onViolation(conn, v), certificateCn(socket));
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

  /**
   * The `authenticate` hook: the client cap, then the credentials (§6.1.8), then the cap again (the
   * check may have waited for scrypt). A client id already admitted may take over its session.
   */
  #admit(client: Client, username: string | undefined, password: Buffer | undefined, done: (err: AuthenticateError | null, ok: boolean | null) => void): void {
    const conn = client.conn;
    if (!(conn instanceof GuardedConnection)) {
      done(null, true); // a connection handed to aedes directly by the embedding code
      return;
    }
    const refuse = (code: 'E_BROKER_LIMIT' | 'E_BROKER_DENIED', message: string, returnCode: number): void => {
      const err = new FwError(code, message) as FwError & { returnCode: number };
      err.returnCode = returnCode;
      done(err as unknown as AuthenticateError, false);
    };
    const atCap = (): boolean => {
      if (this.#admitted.size < this.#opts.maxClients || this.#isAdmitted(client.id)) return false;
      this.#rejectedClients++;
      this.#log(`broker: refused ${client.id} from ${conn.remote}: ${this.#opts.maxClients} clients connected`);
      refuse('E_BROKER_LIMIT', `client limit ${this.#opts.maxClients} reached`, SERVER_UNAVAILABLE);
      return true;
    };
    if (atCap()) return;
    const clientId = conn.requestedClientId ?? client.id;
    const address = conn.remote.slice(0, conn.remote.lastIndexOf(':'));
    authenticateClient(this.#access, { clientId, username, password, certificateCn: conn.certificateCn, address }).then((verdict) => {
      if (!verdict.ok) {
        this.#authFailures++;
        if (verdict.returnCode === SERVER_UNAVAILABLE) this.#throttledLogins++;
        const shown = isValidDeviceId(clientId) ? clientId : JSON.stringify(clientId.slice(0, 80));
        this.#logThrottle.log(`connect:${address}:${verdict.returnCode}`, `broker: refused ${shown} from ${conn.remote}: ${verdict.reason} (CONNACK ${verdict.returnCode})`, this.#log);
        refuse('E_BROKER_DENIED', verdict.reason, verdict.returnCode);
        return;
      }
      if (conn.destroyed || atCap()) return;
      this.#admitted.set(conn, client.id);
      done(null, true);
    }, (err: unknown) => {
      this.#authFailures++;
      if (isFwError(err, 'E_BROKER_LIMIT')) this.#throttledLogins++;
      this.#logThrottle.log(`connect:${address}:error`, `broker: refused ${client.id} from ${conn.remote}: credential check failed: ${describeError(err)}`, this.#log);
      refuse('E_BROKER_DENIED', 'credential check failed', SERVER_UNAVAILABLE);
    });
  }

  /** A publish the topic rules allow, through the client's publish rate (issue 18 item 7): on, dropped (counted), or the client disconnected. */
  #rateLimitPublish(client: Client, packet: { topic: string }, done: (err: Error | null) => void): void {
    const verdict = this.#publishRate.take(client.id);
    if (verdict === 'ok') return done(null);
    if (verdict === 'drop') {
      this.#droppedPublishes++;
      packet.topic = DROPPED_TOPIC; // aedes still acknowledges a QoS 1 publish; no one receives it
      this.#logThrottle.log(`rate:${client.id}`, `broker: dropping publishes of ${client.id} from ${remoteOf(client)}: over ${this.#publishRate.perSec} per second (${this.#droppedPublishes} dropped so far)`, this.#log);
      return done(null);
    }
    this.#rateDisconnects++;
    this.#log(`broker: disconnected ${client.id} from ${remoteOf(client)}: more than ${this.#publishRate.dropLimit} publishes over its rate in 10 s`);
    done(new FwError('E_BROKER_DENIED', 'publish rate'));
  }

  #isAdmitted(clientId: string): boolean {
    for (const id of this.#admitted.values()) if (id === clientId) return true;
    return false;
  }

  #onClientError(client: Client, err: Error): void {
    // counted as rejectedClients, authFailures or deniedPublishes
    if (err instanceof FwError && (err.code === 'E_BROKER_LIMIT' || err.code === 'E_BROKER_DENIED')) return;
    this.#clientErrors++;
    const conn = client.conn;
    const remote = conn instanceof GuardedConnection ? conn.remote : '?';
    this.#log(`broker: dropped client ${client.id ?? '(before CONNECT)'} from ${remote}: ${describeError(err)}`);
  }
}

function urlOf(scheme: string, addr: AddressInfo): string {
  return `${scheme}://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}`;
}

function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  }).catch((err: unknown) => {
    throw new FwError('E_CONFIG', `broker cannot listen on ${host}:${port}`, { cause: err });
  });
}

function remoteOf(client: Client | null): string {
  return client?.conn instanceof GuardedConnection ? client.conn.remote : '?';
}

/** The CN of a client certificate that verified against the listener's CA; undefined on plain TCP. */
function certificateCn(socket: Socket | TLSSocket): string | undefined {
  if (!('encrypted' in socket) || !socket.authorized) return undefined;
  const cn = socket.getPeerCertificate().subject?.CN as string | string[] | undefined;
  return typeof cn === 'string' ? cn : undefined;
}

function publisherOf(packet: AedesPublishPacket): string | null {
  const id = (packet as { clientId?: unknown }).clientId;
  return typeof id === 'string' ? id : null;
}
