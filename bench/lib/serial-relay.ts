/**
 * A pacing relay between two serial ends (pty ends in bench/serial), emulating a UART driven by a
 * USB-serial adapter. Each direction on its own:
 *
 * 1. The wire: bytes leave at most at `baud / 10` bytes per second (8N1: 10 bits a byte),
 *    one after another; a byte arrives at the far end when its last bit has.
 * 2. The adapter's receive side (FTDI-style latency timer): arrived bytes are held and handed on
 *    as one USB packet when `packetBytes` (62: a 64-byte full-speed packet less 2 status bytes)
 *    have accumulated, or when `latencyMs` have passed since the first byte of the packet arrived,
 *    whichever is first. The rule is applied in both directions — as if both ends sat behind such
 *    an adapter; a gateway on a native UART would see it in one direction only, so this is the
 *    pessimistic case.
 * 3. Back-pressure: the relay stops reading a side while more than `bufferBytes` of it wait for
 *    the wire, so the writer's port blocks as with a real tty instead of the whole ARQ window
 *    vanishing into the relay at once.
 *
 * Time is handled in one tick (every `tickMs`) that delivers everything due: a timer per USB
 * packet would be thousands a second. Delivery is therefore late by up to one tick (about 1 ms).
 * `baud: 0` relays without pacing (still counting bytes).
 */
import type { Duplex } from 'node:stream';

export interface RelayOptions {
  baud: number;
  latencyMs: number;
  packetBytes?: number;
  bufferBytes?: number;
  tickMs?: number;
  now?: () => number;
}

interface Segment { buf: Buffer; start: number; taken: number }

/** One direction of the relay: source -> wire -> adapter packets -> sink. */
class Direction {
  bytes = 0;
  private readonly segments: Segment[] = [];
  private queued = 0;
  private wireFreeAt = 0;
  private pending: Buffer[] = [];
  private pendingLen = 0;
  private firstAt = 0;
  private paused = false;

  constructor(
    private readonly src: Duplex,
    private readonly sink: Duplex,
    private readonly o: Required<RelayOptions>,
  ) {
    src.on('data', (d: Buffer) => this.onData(d));
  }

  private get rate(): number {
    return this.o.baud / 10 / 1000; // bytes per ms
  }

  private onData(d: Buffer): void {
    if (this.o.baud === 0) {
      this.bytes += d.length;
      this.sink.write(d);
      return;
    }
    const now = this.o.now();
    const start = Math.max(now, this.wireFreeAt);
    this.wireFreeAt = start + d.length / this.rate;
    this.segments.push({ buf: d, start, taken: 0 });
    this.queued += d.length;
    if (this.queued > this.o.bufferBytes && !this.paused) {
      this.paused = true;
      this.src.pause();
    }
  }

  /** Arrival time (ms) of byte i of a segment. */
  private arrival(s: Segment, i: number): number {
    return s.start + (i + 1) / this.rate;
  }

  /** Take up to n bytes that have arrived by time t into the pending packet. */
  private takeArrived(t: number, n: number): void {
    while (n > 0 && this.segments.length > 0) {
      const s = this.segments[0]!;
      const arrived = Math.min(s.buf.length, Math.floor((t - s.start) * this.rate + 1e-9));
      const k = Math.min(n, arrived - s.taken);
      if (k <= 0) return;
      if (this.pendingLen === 0) this.firstAt = this.arrival(s, s.taken);
      this.pending.push(s.buf.subarray(s.taken, s.taken + k));
      this.pendingLen += k;
      s.taken += k;
      n -= k;
      this.queued -= k;
      if (s.taken === s.buf.length) this.segments.shift();
    }
  }

  /** Time at which the pending packet would reach packetBytes with the bytes known now (Infinity if not). */
  private fullAt(): number {
    let need = this.o.packetBytes - this.pendingLen;
    for (const s of this.segments) {
      const left = s.buf.length - s.taken;
      if (left >= need) return this.arrival(s, s.taken + need - 1);
      need -= left;
    }
    return Infinity;
  }

  tick(): void {
    if (this.o.baud === 0) return;
    const now = this.o.now();
    const out: Buffer[] = [];
    for (;;) {
      if (this.pendingLen === 0) {
        const s = this.segments[0];
        if (!s || this.arrival(s, s.taken) > now) break;
      }
      this.takeArrived(now, this.o.packetBytes - this.pendingLen);
      if (this.pendingLen === 0) break;
      const emitAt = this.pendingLen >= this.o.packetBytes ? this.firstAt : Math.min(this.firstAt + this.o.latencyMs, this.fullAt());
      if (this.pendingLen < this.o.packetBytes && emitAt > now) break;
      if (this.pendingLen < this.o.packetBytes) this.takeArrived(emitAt, this.o.packetBytes - this.pendingLen);
      out.push(...this.pending);
      this.pending = [];
      this.pendingLen = 0;
    }
    if (out.length > 0) {
      const b = Buffer.concat(out);
      this.bytes += b.length;
      this.sink.write(b);
    }
    if (this.paused && this.queued <= this.o.bufferBytes / 2) {
      this.paused = false;
      this.src.resume();
    }
  }
}

export interface Relay {
  /** Bytes handed on so far, each way. */
  readonly counts: { aToB: number; bToA: number };
  close(): void;
}

/** Relay between a and b until close(); the streams are not closed by it. */
export function startRelay(a: Duplex, b: Duplex, opts: RelayOptions): Relay {
  const o: Required<RelayOptions> = {
    packetBytes: 62, bufferBytes: 4096, tickMs: 1, now: () => performance.now(), ...opts,
  };
  const ab = new Direction(a, b, o);
  const ba = new Direction(b, a, o);
  const timer = opts.baud === 0 ? undefined : setInterval(() => {
    ab.tick();
    ba.tick();
  }, o.tickMs);
  return {
    get counts() {
      return { aToB: ab.bytes, bToA: ba.bytes };
    },
    close() {
      if (timer) clearInterval(timer);
    },
  };
}
