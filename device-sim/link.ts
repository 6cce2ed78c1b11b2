import { EventEmitter } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { z } from 'zod';
import { FwError } from '../protocol/errors.ts';
import { formatIssues } from '../protocol/schema.ts';
import { realTimers, type Timers } from './options.ts';
import { mulberry32 } from '../protocol/seeded-random.ts';

/**
 * A shaping TCP proxy on loopback that gives one simulated device a real, slow link to the
 * broker (docs/device-sim.md "Link profiles"). Each accepted socket gets its own upstream socket
 * to the target; bytes in each direction go through a Shaper:
 *
 *   arrive -> split into slices -> token bucket (rate cap) -> + latency ± jitter (+ loss stall) -> deliver
 *
 * Delivery times never decrease, so jitter and stalls never reorder bytes; a stalled slice holds
 * everything behind it (head-of-line blocking, as TCP does after a lost segment). An outage stops
 * both directions of every connection for a while; the connections stay open. Nothing upstream
 * is told the profile: the gateway sees real sockets with real delays.
 */
export interface LinkProfile {
  name: string;
  /** One-way delay added to every byte, ms. */
  latencyMs: number;
  /** Uniform ± spread around latencyMs, ms (never reorders). */
  jitterMs: number;
  /** Broker -> device cap, bytes per second; 0 = unlimited. */
  downBps: number;
  /** Device -> broker cap, bytes per second; 0 = unlimited. */
  upBps: number;
  /** Chance per slice (percent) that the slice is held back a stall: stallMs (default 200) + 2 x latency. */
  lossPct: number;
  /**
   * The link passes nothing for `forMs`, every `everyMs`; the first outage comes 0.5–1.5 x everyMs
   * (seeded) after the start or the last change of `outage`.
   */
  outage?: { everyMs: number; forMs: number } | undefined;
}

const delayMs = z.number().min(0).max(60_000);
const bps = z.number().min(0).max(10_000_000_000);

export const linkProfileSchema = z.strictObject({
  name: z.string().min(1).max(64),
  latencyMs: delayMs,
  jitterMs: delayMs,
  downBps: bps,
  upBps: bps,
  lossPct: z.number().min(0).max(100),
  outage: z.strictObject({
    everyMs: z.number().min(10).max(24 * 3600 * 1000),
    forMs: z.number().min(1).max(24 * 3600 * 1000),
  }).refine((o) => o.forMs < o.everyMs, { message: 'must be shorter than everyMs', path: ['forMs'] }).optional(),
});

/** Validate a profile; throws FwError E_CONFIG naming each bad field. */
export function parseLinkProfile(input: unknown, what = 'link profile'): LinkProfile {
  const r = linkProfileSchema.safeParse(input);
  if (!r.success) throw new FwError('E_CONFIG', `${what}: ${formatIssues(r.error)}`);
  return Object.freeze({ ...r.data, ...(r.data.outage ? { outage: Object.freeze({ ...r.data.outage }) } : {}) });
}

/** Extra hold of a "lost" slice on top of 2 x latency: a retransmission timeout. */
export const DEFAULT_STALL_MS = 200;
/** Token bucket size when none is given: bursts above the cap stay this small. */
export const DEFAULT_BURST_BYTES = 4096;
/** Largest slice; chunks are split so the cap applies smoothly. */
export const MAX_SLICE_BYTES = 2048;
/** Bytes queued in one direction before the source socket is paused (resumed below half). */
export const QUEUE_HIGH_WATER = 256 * 1024;
/** Bound on connecting to the target and on close(). */
const CONNECT_TIMEOUT_MS = 10_000;
const CLOSE_TIMEOUT_MS = 2_000;

/** Timers plus a monotonic clock in ms, injected like everywhere else (style.md). */
export interface LinkClock extends Timers {
  now(): number;
}
export const realClock: LinkClock = { ...realTimers, now: () => performance.now() };

export interface LinkStats {
  /** Bytes delivered to devices (broker -> device), all connections. */
  bytesDown: number;
  /** Bytes delivered to the broker (device -> broker), all connections. */
  bytesUp: number;
  /** Slices held back by simulated loss. */
  stalls: number;
  /** Outage windows begun (periodic and interrupt()). */
  outages: number;
  /** Client connections accepted. */
  connections: number;
}

export interface LinkProxyOptions {
  target: { host: string; port: number };
  profile: LinkProfile;
  /** Seed of the jitter and loss generator; the same seed gives the same sequence of draws. */
  seed?: number;
  /** Token bucket size, bytes (>= 256). */
  burstBytes?: number;
  /** Hold of a "lost" slice on top of 2 x latency, ms; default DEFAULT_STALL_MS. */
  stallMs?: number;
  /** Listen port on 127.0.0.1; default 0 (ephemeral). */
  port?: number;
  timers?: LinkClock;
}

export interface LinkProxyEvents {
  outage: [{ forMs: number }];
  'outage-end': [];
}

/** What a Shaper needs from its proxy. */
interface LinkContext {
  readonly profile: LinkProfile;
  readonly clock: LinkClock;
  readonly burst: number;
  readonly slice: number;
  readonly stallMs: number;
  readonly outageUntil: number;
  readonly stats: LinkStats;
  random(): number;
}

type Direction = 'down' | 'up';

/** One direction of one connection: a queue and one timer for its next event, no busy loop. */
class Shaper {
  /** Slices waiting for tokens. */
  readonly #waiting: Buffer[] = [];
  #waitingHead = 0;
  /** Slices on the wire, each with its delivery time (non-decreasing). */
  readonly #flight: { buf: Buffer; at: number }[] = [];
  #flightHead = 0;
  #queued = 0;
  #tokens: number;
  #refilledAt: number;
  #lastDelivery = -Infinity;
  #timer: unknown = null;
  #timerAt = Infinity;
  #paused = false;
  #awaitingDrain = false;
  #sourceEnded = false;
  #disposed = false;

  constructor(
    readonly ctx: LinkContext,
    readonly dir: Direction,
    readonly src: Socket,
    readonly dst: Socket,
  ) {
    this.#tokens = ctx.burst;
    this.#refilledAt = ctx.clock.now();
  }

  push(chunk: Buffer): void {
    if (this.#disposed) return;
    for (let off = 0; off < chunk.length; off += this.ctx.slice) this.#waiting.push(chunk.subarray(off, off + this.ctx.slice));
    this.#queued += chunk.length;
    if (this.#queued > QUEUE_HIGH_WATER && !this.#paused) {
      this.#paused = true;
      this.src.pause();
    }
    this.pump();
  }

  /** The source sent FIN: pass it on once everything before it is delivered. */
  end(): void {
    this.#sourceEnded = true;
    this.pump();
  }

  get queued(): number {
    return this.#queued;
  }

  dispose(): void {
    this.#disposed = true;
    if (this.#timer !== null) this.ctx.clock.clearTimeout(this.#timer);
    this.#timer = null;
  }

  pump(): void {
    if (this.#disposed) return;
    if (this.dst.destroyed) return this.dispose();
    const { ctx } = this;
    const now = ctx.clock.now();
    if (now < ctx.outageUntil) return this.#schedule(ctx.outageUntil);
    const p = ctx.profile;
    const rate = this.dir === 'down' ? p.downBps : p.upBps;
    if (rate > 0) this.#tokens = Math.min(ctx.burst, this.#tokens + ((now - this.#refilledAt) * rate) / 1000);
    this.#refilledAt = now;

    // depart: the cap decides when a slice leaves; latency, jitter and loss when it arrives
    while (this.#waitingHead < this.#waiting.length) {
      const buf = this.#waiting[this.#waitingHead]!;
      if (rate > 0) {
        if (this.#tokens < buf.length) break;
        this.#tokens -= buf.length;
      }
      let at = now + Math.max(0, p.latencyMs + (ctx.random() * 2 - 1) * p.jitterMs);
      if (p.lossPct > 0 && ctx.random() * 100 < p.lossPct) {
        at += ctx.stallMs + 2 * p.latencyMs;
        ctx.stats.stalls += 1;
      }
      this.#lastDelivery = Math.max(at, this.#lastDelivery);
      this.#flight.push({ buf, at: this.#lastDelivery });
      this.#waitingHead += 1;
    }
    compact(this.#waiting, this.#waitingHead, (n) => (this.#waitingHead = n));

    // deliver what is due, in order, as one corked write
    if (!this.#awaitingDrain) {
      this.dst.cork();
      while (this.#flightHead < this.#flight.length && this.#flight[this.#flightHead]!.at <= now) {
        const { buf } = this.#flight[this.#flightHead]!;
        this.#flightHead += 1;
        this.#queued -= buf.length;
        ctx.stats[this.dir === 'down' ? 'bytesDown' : 'bytesUp'] += buf.length;
        this.dst.write(buf);
        if (this.dst.writableNeedDrain) {
          this.#awaitingDrain = true;
          this.dst.once('drain', () => {
            this.#awaitingDrain = false;
            this.pump();
          });
          break;
        }
      }
      this.dst.uncork();
      compact(this.#flight, this.#flightHead, (n) => (this.#flightHead = n));
    }

    if (this.#paused && this.#queued < QUEUE_HIGH_WATER / 2) {
      this.#paused = false;
      this.src.resume();
    }
    if (this.#sourceEnded && this.#queued === 0 && !this.dst.writableEnded) this.dst.end();

    let next = Infinity;
    if (!this.#awaitingDrain && this.#flightHead < this.#flight.length) next = this.#flight[this.#flightHead]!.at;
    if (rate > 0 && this.#waitingHead < this.#waiting.length) {
      next = Math.min(next, now + ((this.#waiting[this.#waitingHead]!.length - this.#tokens) * 1000) / rate);
    }
    this.#schedule(next);
  }

  #schedule(at: number): void {
    if (at === Infinity || (this.#timer !== null && this.#timerAt <= at)) return;
    if (this.#timer !== null) this.ctx.clock.clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = this.ctx.clock.setTimeout(() => {
      this.#timer = null;
      this.#timerAt = Infinity;
      this.pump();
    }, Math.max(0, Math.ceil(at - this.ctx.clock.now())));
  }
}

/** Drop consumed entries from the front of a queue once they are a good part of it. */
function compact<T>(q: T[], head: number, setHead: (n: number) => void): void {
  if (head > 0 && (head === q.length || head >= 1024)) {
    q.splice(0, head);
    setHead(0);
  }
}

interface Connection {
  client: Socket;
  upstream: Socket;
  shapers: [Shaper, Shaper];
  connectTimer: unknown;
}

export class LinkProxy extends EventEmitter<LinkProxyEvents> implements LinkContext {
  readonly stats: LinkStats = { bytesDown: 0, bytesUp: 0, stalls: 0, outages: 0, connections: 0 };
  readonly clock: LinkClock;
  readonly burst: number;
  readonly slice: number;
  readonly stallMs: number;
  readonly target: { host: string; port: number };
  readonly random: () => number;
  #profile: LinkProfile;
  #outageUntil = -Infinity;
  #server: Server | null = null;
  #port = 0;
  #closed = false;
  readonly #conns = new Set<Connection>();
  /** Outage timers (periodic and interrupt()): cleared by setProfile (periodic) and close(). */
  readonly #timers = new Set<unknown>();
  #periodic: unknown = null;
  #outageEnd: unknown = null;

  private constructor(opts: LinkProxyOptions) {
    super();
    this.#profile = parseLinkProfile(opts.profile);
    const burst = opts.burstBytes ?? DEFAULT_BURST_BYTES;
    if (!Number.isInteger(burst) || burst < 256 || burst > 16 * 1024 * 1024) {
      throw new FwError('E_CONFIG', `link proxy: burstBytes must be an integer 256..16777216, got ${burst}`);
    }
    const { host, port } = opts.target;
    if (host === '' || !Number.isInteger(port) || port < 1 || port > 65_535) {
      throw new FwError('E_CONFIG', `link proxy: target must be a host and a port 1..65535, got ${host}:${port}`);
    }
    const stallMs = opts.stallMs ?? DEFAULT_STALL_MS;
    if (!(stallMs >= 0 && stallMs <= 60_000)) throw new FwError('E_CONFIG', `link proxy: stallMs must be 0..60000, got ${stallMs}`);
    this.stallMs = stallMs;
    this.burst = burst;
    this.slice = Math.min(MAX_SLICE_BYTES, burst);
    this.target = { host, port };
    this.clock = opts.timers ?? realClock;
    this.random = mulberry32(opts.seed ?? 0x5eed);
  }

  /** Listen on 127.0.0.1 (port 0 unless given) and start the outage schedule. */
  static async start(opts: LinkProxyOptions): Promise<LinkProxy> {
    const proxy = new LinkProxy(opts);
    await proxy.#listen(opts.port ?? 0);
    proxy.#schedulePeriodicOutage();
    return proxy;
  }

  get port(): number {
    return this.#port;
  }

  get url(): string {
    return `mqtt://127.0.0.1:${this.#port}`;
  }

  get profile(): LinkProfile {
    return this.#profile;
  }

  /** End of the current outage (clock ms), or -Infinity. */
  get outageUntil(): number {
    return this.#outageUntil;
  }

  get openConnections(): number {
    return this.#conns.size;
  }

  /** Bytes accepted but not yet delivered, all connections and directions. */
  get queuedBytes(): number {
    let n = 0;
    for (const c of this.#conns) for (const s of c.shapers) n += s.queued;
    return n;
  }

  /** Change the link of every open and future connection at once; `outage: undefined` removes it. */
  setProfile(update: Partial<LinkProfile>): void {
    const next = parseLinkProfile({ ...this.#profile, ...update });
    const outageChanged = 'outage' in update;
    this.#profile = next;
    if (outageChanged) this.#schedulePeriodicOutage();
    this.#kick();
  }

  /** Start an outage now, for `forMs` (on top of the periodic ones). */
  interrupt(forMs: number): void {
    if (!(forMs > 0) || forMs > 24 * 3600 * 1000) throw new FwError('E_CONFIG', `link proxy: interrupt forMs must be 1..86400000, got ${forMs}`);
    this.#beginOutage(forMs);
  }

  /** Destroy every connection and stop listening; bounded. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const h of this.#timers) this.clock.clearTimeout(h);
    this.#timers.clear();
    this.#periodic = null;
    this.#outageEnd = null;
    for (const c of [...this.#conns]) this.#drop(c);
    const server = this.#server;
    if (!server) return;
    await new Promise<void>((resolve) => {
      const bound = setTimeout(resolve, CLOSE_TIMEOUT_MS);
      server.close(() => {
        clearTimeout(bound);
        resolve();
      });
    });
  }

  async #listen(port: number): Promise<void> {
    const server = createServer({ noDelay: true, allowHalfOpen: true }, (s) => this.#accept(s));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port, host: '127.0.0.1' }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', () => undefined);
    this.#server = server;
    this.#port = (server.address() as AddressInfo).port;
  }

  #accept(client: Socket): void {
    if (this.#closed) {
      client.destroy();
      return;
    }
    this.stats.connections += 1;
    client.setNoDelay(true);
    const upstream = connect({ host: this.target.host, port: this.target.port, noDelay: true, allowHalfOpen: true });
    const conn: Connection = {
      client, upstream,
      shapers: [new Shaper(this, 'up', client, upstream), new Shaper(this, 'down', upstream, client)],
      connectTimer: null,
    };
    const [up, down] = conn.shapers;
    this.#conns.add(conn);
    conn.connectTimer = this.clock.setTimeout(() => this.#drop(conn), CONNECT_TIMEOUT_MS);
    upstream.once('connect', () => {
      this.clock.clearTimeout(conn.connectTimer);
      conn.connectTimer = null;
    });
    client.on('data', (b: Buffer) => up.push(b));
    upstream.on('data', (b: Buffer) => down.push(b));
    client.on('end', () => up.end());
    upstream.on('end', () => down.end());
    // Errors end in 'close'; either side closing closes the other.
    client.on('error', () => undefined);
    upstream.on('error', () => undefined);
    client.once('close', () => this.#drop(conn));
    upstream.once('close', () => this.#drop(conn));
  }

  #drop(conn: Connection): void {
    if (!this.#conns.delete(conn)) return;
    if (conn.connectTimer !== null) this.clock.clearTimeout(conn.connectTimer);
    for (const s of conn.shapers) s.dispose();
    conn.client.destroy();
    conn.upstream.destroy();
  }

  #kick(): void {
    for (const c of this.#conns) for (const s of c.shapers) s.pump();
  }

  #after(ms: number, fn: () => void): unknown {
    const h = this.clock.setTimeout(() => {
      this.#timers.delete(h);
      fn();
    }, ms);
    this.#timers.add(h);
    return h;
  }

  #schedulePeriodicOutage(): void {
    if (this.#periodic !== null) {
      this.clock.clearTimeout(this.#periodic);
      this.#timers.delete(this.#periodic);
      this.#periodic = null;
    }
    const o = this.#profile.outage;
    if (!o || this.#closed) return;
    const every = (delay: number): void => {
      this.#periodic = this.#after(delay, () => {
        this.#beginOutage(o.forMs);
        every(o.everyMs);
      });
    };
    // A seeded phase: proxies started together (a fleet) do not all go dark at the same moment.
    every(Math.round(o.everyMs * (0.5 + this.random())));
  }

  #beginOutage(forMs: number): void {
    if (this.#closed) return;
    const now = this.clock.now();
    this.#outageUntil = Math.max(this.#outageUntil, now + forMs);
    this.stats.outages += 1;
    this.emit('outage', { forMs });
    if (this.#outageEnd !== null) {
      this.clock.clearTimeout(this.#outageEnd);
      this.#timers.delete(this.#outageEnd);
    }
    this.#outageEnd = this.#after(Math.ceil(this.#outageUntil - now), () => {
      this.#outageEnd = null;
      this.#outageUntil = -Infinity;
      this.emit('outage-end');
      this.#kick();
    });
  }
}
