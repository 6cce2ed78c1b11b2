import { randomInt } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { FwError } from '../errors.ts';
import { MAX_UPLINK_MESSAGE } from '../limits.ts';
import {
  DEFAULT_ACK_EVERY, DEFAULT_HIGH_WATER_BYTES, DEFAULT_MAX_RETRANSMITS, DEFAULT_RTO_INITIAL_MS, DEFAULT_RTO_MAX_MS, DEFAULT_RTO_MIN_MS,
  DEFAULT_SEND_PAYLOAD, DEFAULT_WINDOW, FrameKind, MAX_ACK_DELAY_MS, MAX_FRAME_PAYLOAD, MAX_NAK_SEQS, MAX_WINDOW, MIN_BODY_SIZE,
  MIN_FRAME_PAYLOAD, SACK_BITS, SEQ_MASK,
} from './constants.ts';
import {
  ackFields, ackFrame, dataFrame, encodeFrame, frameNonce, isMore, nakFrame, nakSeqs, resetAckFrame, resetFrame,
  type Frame,
} from './frame.ts';
import { FrameParser, type ParserStats } from './parser.ts';

/**
 * Selective-repeat ARQ over one full-duplex serial link (docs/protocol.md §4).
 * Pure: bytes come in through receive(), go out through options.output, time through
 * options.timers. One retransmit timer (earliest deadline) and one handshake timer at most.
 */

const NOOP = (): void => undefined;

export interface LinkTimers {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export interface ArqOptions {
  timers: LinkTimers;
  /**
   * Writes wire bytes to the port. Called synchronously; must not throw. A transport that can
   * tell when the bytes have left it (handed to the OS, e.g. a stream's write callback) calls
   * `written` then: the frame's retransmit clock starts there instead of at the hand-off, so
   * frames queued behind a slow line are not retransmitted before they were even sent (§4.5).
   */
  output: (wire: Uint8Array, written: () => void) => void;
  /** Most DATA frames in flight, 1..MAX_WINDOW (default 8). */
  window?: number;
  /** DATA payload size when sending, MIN_FRAME_PAYLOAD..MAX_FRAME_PAYLOAD (default 256). */
  maxPayload?: number;
  /** Largest DATA payload accepted from the peer (default MAX_FRAME_PAYLOAD). */
  acceptPayload?: number;
  /** Largest reassembled message accepted (default MAX_UPLINK_MESSAGE). */
  maxMessage?: number;
  rtoInitialMs?: number;
  rtoMinMs?: number;
  rtoMaxMs?: number;
  /** Retransmissions of one frame on timeout before the link is declared dead (default 12). */
  maxRetransmits?: number;
  /** send() returns false while more unsent bytes than this are queued (default 64 KiB). */
  highWaterBytes?: number;
  /** Source of RESET nonces (u32); default crypto.randomInt. Injected for tests. */
  nonce?: () => number;
  /**
   * Delayed ACK (§4.4): in-order DATA is acknowledged at most this long after the previous ACK,
   * one ACK for all that came in between (0, the default: every batch of bytes read is answered at once).
   */
  ackDelayMs?: number;
  /** With ackDelayMs: ACK at once when this many DATA frames are owed an ACK (default 4). */
  ackEvery?: number;
}

export type ArqEvents = {
  message: [message: Uint8Array];
  /** open() succeeded: both directions start at seq 0. */
  open: [];
  /** The peer reset the link (a new peer session): all state was dropped. */
  reset: [nonce: number];
  drain: [];
  /** Nothing queued and nothing unacked. */
  idle: [];
  /** Emitted only when someone listens; every error is also counted in stats. */
  error: [error: FwError];
  /** The sending direction is dead (retransmit limit) until a RESET either way. */
  down: [];
};

export type LinkState = 'up' | 'opening' | 'down' | 'closed';

export interface ArqStats {
  framesOut: number;
  framesIn: number;
  /** DATA frames sent again (timeout or NAK). */
  retransmits: number;
  /** Payload bytes of DATA frames on their first transmission. */
  dataBytesOut: number;
  wireBytesOut: number;
  wireBytesIn: number;
  acksSent: number;
  /** ACKs sent by the delayed-ACK timer (§4.4), included in acksSent. */
  acksDelayed: number;
  /** Keepalive ACKs (§4.11.1), included in acksSent. */
  keepalivesSent: number;
  /** DATA frames the peer acknowledged (first time each). */
  framesAcked: number;
  naksSent: number;
  naksReceived: number;
  /** DATA frames already delivered or already buffered. */
  duplicates: number;
  /** DATA frames outside the receive window. */
  outOfWindow: number;
  /** Valid frames that do not fit the current state (stale ACK, DATA while opening, foreign RESET_ACK). */
  ignored: number;
  messagesOut: number;
  messagesIn: number;
  /** Messages dropped for exceeding maxMessage. */
  oversize: number;
  parser: ParserStats;
  /** Smoothed round-trip time; undefined before the first sample. */
  rttMs: number | undefined;
  rtoMs: number;
}

interface Outgoing {
  readonly seq: number;
  readonly wire: Uint8Array;
  /** Transmission number of the latest send of this frame: the order of DATA frames on the line (§4.7). */
  tx: number;
  /** When the latest send was handed to the transport, or reported written by it. */
  writtenAt: number;
  /** The DATA transmission just before the latest send of this frame has left the line (acked, overtaken or resent, §4.7). */
  predResolved: boolean;
  /** When the transmission ahead left the line (or is forecast to), once known. */
  readyAt: number;
  /** When the retransmit clock of the latest send started (written and predecessor resolved); RTT samples count from here. */
  startAt: number;
  /** Infinity while the clock has not started. */
  deadline: number;
  /** The clock started because the transmission ahead was given up as lost (not acknowledged). */
  afterLoss: boolean;
  /** Karn: no RTT sample from a frame sent more than once. */
  retransmitted: boolean;
  timeouts: number;
  nakRetransmitAt: number;
  acked: boolean;
  /** The transport reported the latest send of this frame written (see ArqOptions.output). */
  written: boolean;
  /** rtoMax periods this frame waited unwritten in the transport (bounded by maxRetransmits). */
  unwrittenWaits: number;
}

interface Pending { readonly data: Uint8Array; offset: number }

interface Handshake {
  readonly nonce: number;
  readonly sentAt: number;
  /** RESET retransmissions so far. */
  attempts: number;
  timer: unknown;
  readonly resolve: () => void;
  readonly reject: (e: FwError) => void;
  readonly promise: Promise<void>;
}

type Counters = Omit<ArqStats, 'parser' | 'rttMs' | 'rtoMs'>;

const GRANULARITY_MS = 1;
const HALF_SEQ = 0x8000;

function intOption(value: number | undefined, fallback: number, min: number, max: number, name: string): number {
  const v = value ?? fallback;
  if (!Number.isInteger(v) || v < min || v > max) throw new FwError('E_CONFIG', `${name} must be an integer in ${min}..${max}`);
  return v;
}

function concat(parts: readonly Uint8Array[], length: number): Uint8Array {
  const out = new Uint8Array(length);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Signed distance b - a in sequence space. */
function seqDiff(b: number, a: number): number {
  const d = (b - a) & SEQ_MASK;
  return d >= HALF_SEQ ? d - 0x1_0000 : d;
}

export class ArqLink extends EventEmitter<ArqEvents> {
  private readonly timers: LinkTimers;
  private readonly output: ArqOptions['output'];
  private readonly nextNonce: () => number;
  private readonly parser: FrameParser;
  private readonly maxMessage: number;
  private readonly rtoInitial: number;
  private readonly rtoMin: number;
  private readonly rtoMax: number;
  private readonly maxRetransmits: number;
  private readonly highWater: number;
  private window: number;
  private maxPayload: number;
  private linkState: LinkState = 'up';
  private readonly counters: Counters = {
    framesOut: 0, framesIn: 0, retransmits: 0, dataBytesOut: 0, wireBytesOut: 0, wireBytesIn: 0, acksSent: 0, acksDelayed: 0, keepalivesSent: 0, framesAcked: 0,
    naksSent: 0, naksReceived: 0, duplicates: 0, outOfWindow: 0, ignored: 0, messagesOut: 0, messagesIn: 0, oversize: 0,
  };
  private readonly events: (() => void)[] = [];

  // RTT estimator (§4.7)
  private srtt: number | undefined;
  private rttvar = 0;
  private rto: number;

  // sender (§4.6)
  private readonly inflight: (Outgoing | undefined)[] = new Array<Outgoing | undefined>(MAX_WINDOW);
  private sndBase = 0;
  private sndNext = 0;
  private unackedCount = 0;
  private queue: Pending[] = [];
  private queued = 0;
  private needDrain = false;
  private busy = false;
  private timer: unknown;
  private timerAt = Infinity;
  /** The transport calls `written` (ArqOptions.output): unwritten frames are not retransmitted. */
  private reportsWrites = false;
  /** The first timeout of a frame sent after a timeout: the backed-off value, until a valid sample (§4.7). */
  private rtoFloor = 0;
  /** Next DATA transmission number (§4.7: line order). */
  private txNext = 0;
  /** Highest transmission number acknowledged on a frame sent once: every transmission up to it has left the line. */
  private deliveredTx = -1;
  /** The latest DATA transmission (the predecessor of the next one). */
  private lastSent: Outgoing | undefined;
  /**
   * A timeout gave up every transmission so far as lost (§4.7): until the next ACK, a new one
   * starts its clock at once, or at `allResolvedAt` (the line rate's forecast of when it reaches the line).
   */
  private allResolved = false;
  private allResolvedAt = -Infinity;
  /** When an ACK last acknowledged a frame. */
  private progressAt = -Infinity;
  /** Least RTT sample: the line's latency both ways, without queueing (§4.7). */
  private minRtt = Infinity;
  /** Line rate estimate (§4.7): decayed sums of ACK spacing and of the wire bytes it acknowledged, while frames were queued. */
  private rateMs = 0;
  private rateBytes = 0;
  /** Largest wire size of a frame that gave an RTT sample: a larger frame's timeout scales by its size (§4.7). */
  private sampledWire = 0;

  // receiver (§4.4, §4.5)
  private readonly rcvBuf: (Frame | undefined)[] = new Array<Frame | undefined>(MAX_WINDOW);
  private rcvNext = 0;
  private readonly nakSeq = new Int32Array(MAX_WINDOW).fill(-1);
  private readonly nakAt = new Float64Array(MAX_WINDOW);
  private parts: Uint8Array[] = [];
  private partsLength = 0;
  private dropping = false;
  // delayed ACK (§4.4)
  private ackDelay: number;
  private ackEvery: number;
  /** DATA frames received since the last ACK. */
  private ackOwed = 0;
  private lastAckAt = -Infinity;
  private ackTimer: unknown;

  // RESET handshake (§4.1)
  private peerNonce: number | undefined;
  private ownNonce: number | undefined;
  private handshake: Handshake | undefined;

  constructor(options: ArqOptions) {
    super();
    this.timers = options.timers;
    this.output = options.output;
    this.nextNonce = options.nonce ?? (() => randomInt(0, 0x1_0000_0000));
    this.window = intOption(options.window, DEFAULT_WINDOW, 1, MAX_WINDOW, 'window');
    this.maxPayload = intOption(options.maxPayload, DEFAULT_SEND_PAYLOAD, MIN_FRAME_PAYLOAD, MAX_FRAME_PAYLOAD, 'maxPayload');
    const acceptPayload = intOption(options.acceptPayload, MAX_FRAME_PAYLOAD, MIN_FRAME_PAYLOAD, MAX_FRAME_PAYLOAD, 'acceptPayload');
    this.parser = new FrameParser({ maxPayload: acceptPayload });
    this.maxMessage = intOption(options.maxMessage, MAX_UPLINK_MESSAGE, 1, 0xffff_ffff, 'maxMessage');
    this.rtoMin = intOption(options.rtoMinMs, DEFAULT_RTO_MIN_MS, 1, 600_000, 'rtoMinMs');
    this.rtoMax = intOption(options.rtoMaxMs, DEFAULT_RTO_MAX_MS, this.rtoMin, 600_000, 'rtoMaxMs');
    this.rtoInitial = intOption(options.rtoInitialMs, DEFAULT_RTO_INITIAL_MS, this.rtoMin, this.rtoMax, 'rtoInitialMs');
    this.maxRetransmits = intOption(options.maxRetransmits, DEFAULT_MAX_RETRANSMITS, 0, 1000, 'maxRetransmits');
    this.highWater = intOption(options.highWaterBytes, DEFAULT_HIGH_WATER_BYTES, 1, 0xffff_ffff, 'highWaterBytes');
    this.ackDelay = intOption(options.ackDelayMs, 0, 0, MAX_ACK_DELAY_MS, 'ackDelayMs');
    this.ackEvery = intOption(options.ackEvery, DEFAULT_ACK_EVERY, 1, MAX_WINDOW, 'ackEvery');
    this.rto = this.rtoInitial;
  }

  get state(): LinkState {
    return this.linkState;
  }

  private get closed(): boolean {
    return this.linkState === 'closed';
  }

  /** DATA frames sent and not yet acknowledged. */
  get unacked(): number {
    return this.unackedCount;
  }

  /** Message bytes queued and not yet sent in any frame. */
  get queuedBytes(): number {
    return this.queued;
  }

  /**
   * The line rate estimate of §4.7 in ms per wire byte: bytes acknowledged over the time the
   * line was busy with them, smoothed; undefined until an ACK arrived with frames queued behind.
   */
  get lineMsPerByte(): number | undefined {
    return this.msPerByte();
  }

  /** A snapshot of the counters. */
  get stats(): Readonly<ArqStats> {
    return { ...this.counters, parser: { ...this.parser.stats }, rttMs: this.srtt, rtoMs: this.rto };
  }

  /**
   * Active open (§4.1): drop all state, send RESET(nonce) until RESET_ACK(nonce) comes back.
   * Messages sent while opening are queued and flow once open. Calling it while opening returns
   * the same promise.
   */
  open(): Promise<void> {
    if (this.closed) return Promise.reject(new FwError('E_LINK_CLOSED'));
    if (this.handshake !== undefined) return this.handshake.promise;
    this.resetState();
    this.linkState = 'opening';
    let nonce = this.nextNonce() >>> 0;
    if (nonce === this.ownNonce) nonce = (nonce + 1) >>> 0;
    this.ownNonce = nonce;
    let resolve!: () => void;
    let reject!: (e: FwError) => void;
    const promise = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    this.handshake = { nonce, sentAt: this.timers.now(), attempts: 0, timer: undefined, resolve, reject, promise };
    this.sendControl(resetFrame(nonce));
    this.armHandshake();
    this.flush();
    return promise;
  }

  /**
   * §4.11.2: a passive side that starts (a restarted gateway) sends one RESET(nonce) with a fresh
   * nonce, so a peer still holding the old session learns at once that it is gone. Nothing else
   * changes: this side is already in the state after a RESET and does not wait for the
   * RESET_ACK (it is ignored when it comes).
   */
  announceReset(): void {
    if (this.closed) return;
    let nonce = this.nextNonce() >>> 0;
    if (nonce === this.ownNonce) nonce = (nonce + 1) >>> 0;
    this.ownNonce = nonce;
    this.sendControl(resetFrame(nonce));
  }

  /**
   * §4.11.1: a keepalive, sent when nothing was sent for the agreed interval — an ACK of the
   * receive state as it is (any ARQ peer takes it as a duplicate ACK and changes nothing).
   */
  sendKeepalive(): void {
    if (this.closed) return;
    this.counters.keepalivesSent++;
    this.sendAck();
    this.flush();
  }

  /**
   * §4.11.1: nothing arrived from the peer for `ms` although it agreed to keepalives: the link
   * is down (`E_LINK_TIMEOUT`, 'down') until a RESET either way, as after the retransmit limit.
   */
  peerSilent(ms: number, what = 'nothing from the link peer'): void {
    if (this.closed || this.linkState !== 'up') return;
    this.linkDown(new FwError('E_LINK_TIMEOUT', `${what} for ${ms} ms`));
    this.flush();
  }

  /**
   * Queue a message (1 byte or more; copied) for sending as DATA fragments (§4.3). Returns false
   * when more than highWaterBytes are queued unsent: wait for 'drain'.
   */
  send(message: Uint8Array): boolean {
    if (this.closed) throw new FwError('E_LINK_CLOSED');
    if (message.length === 0) throw new FwError('E_MESSAGE_INVALID', 'an empty message cannot be sent on the link');
    this.queue.push({ data: message.slice(), offset: 0 });
    this.queued += message.length;
    this.counters.messagesOut++;
    this.busy = true;
    this.pump();
    const ok = this.queued <= this.highWater;
    if (!ok) this.needDrain = true;
    this.flush();
    return ok;
  }

  /** Raw bytes from the port. Never throws on bad input: garbage is counted. */
  receive(bytes: Uint8Array): void {
    if (this.closed) return;
    this.counters.wireBytesIn += bytes.length;
    const frames = this.parser.push(bytes);
    let ackNeeded = false;
    let gap = false;
    let ackNow = false;
    for (const frame of frames) {
      if (this.closed) break;
      this.counters.framesIn++;
      switch (frame.kind) {
        case FrameKind.DATA: {
          const r = this.onData(frame);
          if (r !== 'ignored') {
            ackNeeded = true;
            this.ackOwed++;
          }
          gap ||= r === 'gap';
          ackNow ||= r === 'duplicate';
          break;
        }
        case FrameKind.ACK:
          this.onAck(frame);
          break;
        case FrameKind.NAK:
          this.onNak(frame);
          break;
        case FrameKind.RESET:
          ackNeeded = false;
          gap = false;
          ackNow = false;
          this.onReset(frame);
          break;
        case FrameKind.RESET_ACK:
          this.onResetAck(frame);
          break;
        default: {
          const unreachable: never = frame.kind;
          throw new Error(`unhandled frame kind ${String(unreachable)}`);
        }
      }
    }
    if (ackNeeded && !this.closed) {
      // §4.4: a gap or a duplicate is answered at once; in-order DATA at most ackDelay after the
      // previous ACK, or at once when ackEvery frames (at most half the window) are owed one
      const t = this.timers.now();
      const every = Math.min(this.ackEvery, Math.max(1, this.window >> 1));
      if (gap || ackNow || this.ackDelay === 0 || this.ackOwed >= every || t - this.lastAckAt >= this.ackDelay) {
        this.sendAck();
        if (gap) this.sendNak();
      } else if (this.ackTimer === undefined) {
        this.ackTimer = this.timers.setTimeout(() => this.onAckTimer(), this.lastAckAt + this.ackDelay - t);
      }
    }
    this.flush();
  }

  /**
   * Apply negotiated parameters; they affect frames not yet sent. The delayed-ACK settings (§4.4)
   * apply from the next DATA received.
   */
  configure(p: { window?: number; maxPayload?: number; ackDelayMs?: number; ackEvery?: number }): void {
    if (this.closed) throw new FwError('E_LINK_CLOSED');
    const window = intOption(p.window, this.window, 1, MAX_WINDOW, 'window');
    const maxPayload = intOption(p.maxPayload, this.maxPayload, MIN_FRAME_PAYLOAD, MAX_FRAME_PAYLOAD, 'maxPayload');
    const ackDelay = intOption(p.ackDelayMs, this.ackDelay, 0, MAX_ACK_DELAY_MS, 'ackDelayMs');
    const ackEvery = intOption(p.ackEvery, this.ackEvery, 1, MAX_WINDOW, 'ackEvery');
    this.window = window;
    this.maxPayload = maxPayload;
    this.ackDelay = ackDelay;
    this.ackEvery = ackEvery;
    this.pump();
    this.flush();
  }

  /** Stop: clear all timers, drop queued data, reject a pending open(). Further receive() is ignored. */
  close(): void {
    if (this.closed) return;
    const hs = this.handshake;
    this.resetState();
    this.linkState = 'closed';
    this.events.length = 0;
    hs?.reject(new FwError('E_LINK_CLOSED'));
  }

  // ---- receiver (§4.4, §4.5) ----

  private onData(frame: Frame): 'ignored' | 'duplicate' | 'ack' | 'gap' {
    if (this.linkState === 'opening') {
      this.counters.ignored++;
      return 'ignored';
    }
    const d = seqDiff(frame.seq, this.rcvNext);
    if (d < 0 || d >= MAX_WINDOW) {
      if (d < 0 && d >= -MAX_WINDOW) this.counters.duplicates++;
      else this.counters.outOfWindow++;
      return 'duplicate';
    }
    const slot = frame.seq % MAX_WINDOW;
    if (this.rcvBuf[slot] !== undefined) {
      this.counters.duplicates++;
      return 'duplicate';
    }
    this.rcvBuf[slot] = frame;
    if (d > 0) return 'gap';
    for (let f: Frame | undefined = frame; f !== undefined; f = this.rcvBuf[this.rcvNext % MAX_WINDOW]) {
      this.rcvBuf[this.rcvNext % MAX_WINDOW] = undefined;
      this.rcvNext = (this.rcvNext + 1) & SEQ_MASK;
      this.reassemble(f);
    }
    return this.rcvBuf.some((f) => f !== undefined) ? 'gap' : 'ack';
  }

  private reassemble(frame: Frame): void {
    const more = isMore(frame);
    if (!this.dropping) {
      if (this.partsLength + frame.payload.length > this.maxMessage) {
        this.dropping = true;
        this.counters.oversize++;
        const err = new FwError('E_MESSAGE_TOO_LONG', undefined, { details: { limit: this.maxMessage } });
        this.events.push(() => this.emitError(err));
        this.parts = [];
        this.partsLength = 0;
      } else {
        this.parts.push(frame.payload);
        this.partsLength += frame.payload.length;
      }
    }
    if (more) return;
    if (!this.dropping) {
      const out = this.parts.length === 1 ? this.parts[0]! : concat(this.parts, this.partsLength);
      this.counters.messagesIn++;
      this.events.push(() => this.emit('message', out));
    }
    this.parts = [];
    this.partsLength = 0;
    this.dropping = false;
  }

  private sendAck(): void {
    let sack = 0;
    for (let i = 0; i < SACK_BITS; i++) {
      if (this.rcvBuf[(this.rcvNext + 1 + i) % MAX_WINDOW] !== undefined) sack |= 1 << i;
    }
    this.counters.acksSent++;
    this.clearAckTimer();
    this.ackOwed = 0;
    this.lastAckAt = this.timers.now();
    this.sendControl(ackFrame(this.rcvNext, sack >>> 0));
  }

  /** The delayed ACK is due (§4.4). */
  private onAckTimer(): void {
    this.ackTimer = undefined;
    if (this.closed || this.ackOwed === 0) return;
    this.counters.acksDelayed++;
    this.sendAck();
    this.flush();
  }

  private clearAckTimer(): void {
    if (this.ackTimer !== undefined) this.timers.clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
  }

  /** NAK the holes below the highest buffered frame, each at most once per smoothed RTT. */
  private sendNak(): void {
    let highest = 0;
    for (let d = 1; d < MAX_WINDOW; d++) {
      if (this.rcvBuf[(this.rcvNext + d) % MAX_WINDOW] !== undefined) highest = d;
    }
    const now = this.timers.now();
    const interval = this.srtt ?? this.rto;
    const missing: number[] = [];
    for (let d = 0; d < highest && missing.length < MAX_NAK_SEQS; d++) {
      const seq = (this.rcvNext + d) & SEQ_MASK;
      const slot = seq % MAX_WINDOW;
      if (this.rcvBuf[slot] !== undefined) continue;
      if (this.nakSeq[slot] === seq && now - this.nakAt[slot]! < interval) continue;
      this.nakSeq[slot] = seq;
      this.nakAt[slot] = now;
      missing.push(seq);
    }
    if (missing.length === 0) return;
    this.counters.naksSent++;
    this.sendControl(nakFrame(missing));
  }

  // ---- sender (§4.6, §4.7, §4.8) ----

  private onAck(frame: Frame): void {
    if (this.linkState !== 'up') {
      this.counters.ignored++;
      return;
    }
    const { cum, sack } = ackFields(frame);
    const span = (this.sndNext - this.sndBase) & SEQ_MASK;
    const dc = (cum - this.sndBase) & SEQ_MASK;
    let sampled: Outgoing | undefined;
    let sampleStart = -Infinity;
    let ackedWire = 0;
    let queued = true;
    let delivered = this.deliveredTx;
    const resent: Outgoing[] = [];
    const take = (e: Outgoing | undefined, seq: number): void => {
      if (e === undefined || e.acked || e.seq !== seq) return;
      e.acked = true;
      this.counters.framesAcked++;
      this.unackedCount--;
      ackedWire += e.wire.length;
      // on the line since the previous ACK at the latest: it was written and waiting for the frame ahead
      queued &&= e.predResolved ? e.startAt < this.progressAt && !e.afterLoss : e.writtenAt <= this.progressAt;
      if (e.retransmitted) {
        resent.push(e);
        return;
      }
      // Karn: only a frame sent once gives a sample, and it proves every transmission before it has left the line
      if (e.tx > delivered) delivered = e.tx;
      // its clock's start; one still waiting for the frame ahead (acked by this ACK too, or lost)
      // has been on the line at most since the previous ACK
      const start = e.deadline !== Infinity ? e.startAt : Math.max(e.writtenAt, this.leftBy(this.progressAt));
      if (start > sampleStart) {
        sampleStart = start;
        sampled = e;
      }
    };
    if (dc <= span) {
      for (let k = 0; k < dc; k++) {
        const seq = (this.sndBase + k) & SEQ_MASK;
        take(this.inflight[seq % MAX_WINDOW], seq);
        this.inflight[seq % MAX_WINDOW] = undefined;
      }
      this.sndBase = cum;
    } else {
      this.counters.ignored++;
    }
    for (let i = 0; i < SACK_BITS; i++) {
      if (((sack >>> i) & 1) === 0) continue;
      const seq = (cum + 1 + i) & SEQ_MASK;
      if (((seq - this.sndBase) & SEQ_MASK) < ((this.sndNext - this.sndBase) & SEQ_MASK)) take(this.inflight[seq % MAX_WINDOW], seq);
    }
    while (this.sndBase !== this.sndNext && this.inflight[this.sndBase % MAX_WINDOW]?.acked === true) {
      this.inflight[this.sndBase % MAX_WINDOW] = undefined;
      this.sndBase = (this.sndBase + 1) & SEQ_MASK;
    }
    const now = this.timers.now();
    if (ackedWire > 0) {
      // the line was busy with these frames since the previous ACK: a line rate sample
      if (queued && this.progressAt > -Infinity && now > this.progressAt) {
        this.rateMs = this.rateMs * 0.875 + (now - this.progressAt) * 0.125;
        this.rateBytes = this.rateBytes * 0.875 + ackedWire * 0.125;
      }
      this.progressAt = now;
      this.allResolved = false;
    }
    if (sampled !== undefined) this.rttSample(now - sampleStart, sampled.wire.length);
    // frames queued behind what left the line start their clocks now (§4.7); an ACK of a frame
    // sent twice is ambiguous, so it only releases the frame sent right after its latest copy
    this.deliveredTx = delivered;
    const left = this.leftBy(now);
    this.resolveUpTo(delivered, left);
    for (const e of resent) this.resolveTx(e.tx, left, false);
    this.pump();
    if (this.busy && this.unackedCount === 0 && this.queue.length === 0) {
      this.busy = false;
      this.events.push(() => this.emit('idle'));
    }
  }

  private onNak(frame: Frame): void {
    this.counters.naksReceived++;
    if (this.linkState !== 'up') {
      this.counters.ignored++;
      return;
    }
    const now = this.timers.now();
    const interval = this.srtt ?? this.rto;
    const span = (this.sndNext - this.sndBase) & SEQ_MASK;
    for (const seq of nakSeqs(frame)) {
      if (((seq - this.sndBase) & SEQ_MASK) >= span) continue;
      const e = this.inflight[seq % MAX_WINDOW];
      if (e === undefined || e.acked || e.seq !== seq) continue;
      // a resend still queued behind other frames, or NAK-resent and on the line for less than
      // an SRTT, may yet arrive: the NAK was sent before it could (§4.6)
      if (now - e.nakRetransmitAt < interval || (e.retransmitted && (e.deadline === Infinity || now - e.startAt < interval))) continue;
      e.nakRetransmitAt = now;
      this.retransmit(e, now);
    }
    this.armTimer();
  }

  /**
   * When the frame acknowledged at `ackAt` had finished leaving the sender: the ACK took the
   * line's latency both ways after that (at least the least RTT seen; 0 before any sample).
   */
  private leftBy(ackAt: number): number {
    return this.minRtt === Infinity ? ackAt : ackAt - this.minRtt;
  }

  private rttSample(r: number, wireBytes: number): void {
    this.rtoFloor = 0;
    if (r < this.minRtt) this.minRtt = r;
    if (wireBytes > this.sampledWire) this.sampledWire = wireBytes;
    if (this.srtt === undefined) {
      this.srtt = r;
      this.rttvar = r / 2;
    } else {
      this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.srtt - r);
      this.srtt = 0.875 * this.srtt + 0.125 * r;
    }
    // the variance term is at least the least RTT: samples taken while frames queue back to back
    // vary little, but a frame with nothing behind it can wait that much longer (e.g. a USB-serial
    // adapter's latency timer holds the tail of a packet, each way) (§4.7)
    this.rto = Math.min(this.rtoMax, Math.max(this.rtoMin, this.srtt + Math.max(GRANULARITY_MS, 4 * this.rttvar, this.minRtt)));
  }

  /**
   * The frame's timeout (§4.7): RTO doubled per timeout so far, scaled up for a frame larger than
   * any that gave a sample (its time on the line grows with its size), at least the backed-off
   * floor, at most rtoMax.
   */
  private timeoutOf(e: Outgoing): number {
    const scale = this.sampledWire > 0 ? Math.max(1, e.wire.length / this.sampledWire) : 1;
    return Math.min(this.rtoMax, Math.max(this.rtoFloor, this.rto * 2 ** e.timeouts * scale));
  }

  /** Cut fragments from the queue while the window has room. */
  private pump(): void {
    if (this.linkState !== 'up') return;
    while (this.queue.length > 0 && ((this.sndNext - this.sndBase) & SEQ_MASK) < this.window) {
      const head = this.queue[0]!;
      const n = Math.min(this.maxPayload, head.data.length - head.offset);
      const payload = head.data.subarray(head.offset, head.offset + n);
      head.offset += n;
      const more = head.offset < head.data.length;
      if (!more) this.queue.shift();
      this.queued -= n;
      const seq = this.sndNext;
      this.sndNext = (seq + 1) & SEQ_MASK;
      const wire = encodeFrame(dataFrame(seq, payload, more), this.maxPayload);
      const e: Outgoing = {
        seq, wire, tx: -1, writtenAt: 0, predResolved: false, readyAt: 0, startAt: 0, deadline: Infinity, afterLoss: false, retransmitted: false, timeouts: 0,
        nakRetransmitAt: -Infinity, acked: false, written: false, unwrittenWaits: 0,
      };
      this.inflight[seq % MAX_WINDOW] = e;
      this.unackedCount++;
      this.counters.dataBytesOut += n;
      this.writeData(e);
    }
    this.armTimer();
    if (this.needDrain && this.queued < this.highWater / 2) {
      this.needDrain = false;
      this.events.push(() => this.emit('drain'));
    }
  }

  /** Send again (timeout or NAK): the earlier copy is off the line (lost), so the frame sent after it starts its clock. */
  private retransmit(e: Outgoing, now: number): void {
    e.retransmitted = true;
    this.counters.retransmits++;
    this.resolveTx(e.tx, now, true);
    this.writeData(e);
  }

  /**
   * Send a DATA frame as the next transmission on the line. Its retransmit clock (deadline, RTT
   * sample) starts when both hold (§4.7): it was written (the transport's report, else the
   * hand-off), and the transmission before it has left the line — on a FIFO line a frame cannot
   * arrive before the one ahead of it, however deep the queues in between.
   */
  private writeData(e: Outgoing): void {
    const now = this.timers.now();
    const pred = this.lastSent;
    e.tx = this.txNext++;
    e.written = false;
    e.writtenAt = now;
    // (pred === e: this is a resend, and the copy before it was just given up as lost)
    const lost = pred === e || this.allResolved;
    e.predResolved = lost || pred === undefined || pred.acked || pred.tx <= this.deliveredTx;
    e.afterLoss = lost;
    e.deadline = Infinity;
    this.lastSent = e;
    if (this.allResolved) {
      this.startClock(e, Math.max(now, this.allResolvedAt));
      const msPerByte = this.msPerByte();
      if (msPerByte !== undefined) this.allResolvedAt = e.startAt + e.wire.length * msPerByte;
    } else if (e.predResolved) {
      this.startClock(e, now);
    }
    this.counters.framesOut++;
    this.counters.wireBytesOut += e.wire.length;
    const tx = e.tx;
    this.output(e.wire, () => {
      if (e.acked || this.linkState !== 'up' || e.tx !== tx) return; // acked, down, or sent again since
      this.reportsWrites = true;
      e.written = true;
      const at = this.timers.now();
      e.writtenAt = at;
      if (e.predResolved) {
        this.startClock(e, e.readyAt);
        this.armTimer();
      }
    });
  }

  /** The transmission ahead left the line at `at` (or is forecast to): the clock runs from then, or from the write if later. */
  private startClock(e: Outgoing, at: number): void {
    e.readyAt = at;
    e.startAt = Math.max(at, e.writtenAt);
    e.deadline = e.startAt + this.timeoutOf(e);
  }

  /** Transmission `tx` has left the line (acknowledged, or given up as lost): the frame sent right after it starts its clock. */
  private resolveTx(tx: number, now: number, lost: boolean): void {
    const span = (this.sndNext - this.sndBase) & SEQ_MASK;
    for (let k = 0; k < span; k++) {
      const e = this.inflight[(this.sndBase + k) % MAX_WINDOW];
      if (e !== undefined && !e.acked && e.tx === tx + 1 && !e.predResolved) {
        e.predResolved = true;
        e.afterLoss = lost;
        this.startClock(e, now);
        return;
      }
    }
  }

  /**
   * Two transmissions in a row given up with no ACK in between (the line or the peer lost all
   * that is outstanding): every waiting frame starts its clock at once — when it would reach the
   * line behind the ones ahead at the measured line rate, or, without a rate yet, when it was sent.
   */
  private resolveAll(now: number): void {
    const waiting: Outgoing[] = [];
    const span = (this.sndNext - this.sndBase) & SEQ_MASK;
    for (let k = 0; k < span; k++) {
      const e = this.inflight[(this.sndBase + k) % MAX_WINDOW];
      if (e !== undefined && !e.acked && !e.predResolved) waiting.push(e);
    }
    waiting.sort((x, y) => x.tx - y.tx);
    const msPerByte = this.msPerByte();
    // (after the frames an earlier forecast has already placed on the line)
    let at = this.allResolved ? Math.max(now, this.allResolvedAt) : now;
    for (const e of waiting) {
      e.predResolved = true;
      e.afterLoss = true;
      this.startClock(e, msPerByte === undefined ? -Infinity : at);
      at = e.startAt + e.wire.length * (msPerByte ?? 0);
    }
    this.allResolved = true;
    this.allResolvedAt = msPerByte === undefined ? -Infinity : at;
  }

  /** The line rate estimate (ms per wire byte), or undefined before the first sample. */
  private msPerByte(): number | undefined {
    return this.rateBytes > 0 ? this.rateMs / this.rateBytes : undefined;
  }

  /** Every transmission up to `tx` has left the line: frames sent up to one after it start their clocks. */
  private resolveUpTo(tx: number, now: number): void {
    const span = (this.sndNext - this.sndBase) & SEQ_MASK;
    for (let k = 0; k < span; k++) {
      const e = this.inflight[(this.sndBase + k) % MAX_WINDOW];
      if (e !== undefined && !e.acked && !e.predResolved && e.tx <= tx + 1) {
        e.predResolved = true;
        e.afterLoss = false;
        this.startClock(e, now);
      }
    }
  }

  /** Keep one timer armed at (or before) the earliest deadline of an unacked frame. */
  private armTimer(): void {
    let earliest = Infinity;
    if (this.linkState === 'up') {
      const span = (this.sndNext - this.sndBase) & SEQ_MASK;
      for (let k = 0; k < span; k++) {
        const e = this.inflight[(this.sndBase + k) % MAX_WINDOW];
        if (e !== undefined && !e.acked && e.deadline < earliest) earliest = e.deadline;
      }
    }
    if (earliest === Infinity) {
      this.clearTimer();
      return;
    }
    if (this.timer !== undefined && this.timerAt <= earliest) return;
    this.clearTimer();
    this.timerAt = earliest;
    this.timer = this.timers.setTimeout(() => this.onTimer(), Math.max(0, earliest - this.timers.now()));
  }

  private clearTimer(): void {
    if (this.timer !== undefined) this.timers.clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
  }

  private onTimer(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    if (this.linkState !== 'up') return;
    const now = this.timers.now();
    const span = (this.sndNext - this.sndBase) & SEQ_MASK;
    // A frame timed out whose clock started when the frame ahead was given up, with nothing
    // acknowledged since: the line (or the peer) lost all that is outstanding (§4.7).
    for (let k = 0; k < span; k++) {
      const e = this.inflight[(this.sndBase + k) % MAX_WINDOW];
      if (e !== undefined && !e.acked && e.deadline <= now && (!this.reportsWrites || e.written) && e.afterLoss && this.progressAt <= e.startAt) {
        this.resolveAll(now);
        break;
      }
    }
    let timedOut = false;
    for (let k = 0; k < span; k++) {
      const e = this.inflight[(this.sndBase + k) % MAX_WINDOW];
      if (e === undefined || e.acked || e.deadline > now) continue;
      if (this.reportsWrites && !e.written) {
        // still queued in the transport (a slow line): not sent yet, so nothing to retransmit;
        // bounded all the same — a frame that never leaves ends the link like one never acked
        if (++e.unwrittenWaits > this.maxRetransmits) {
          this.linkDown(new FwError('E_LINK_TIMEOUT', 'frame not written by the transport', { details: { seq: e.seq } }));
          this.flush();
          return;
        }
        e.deadline = now + this.rtoMax;
        continue;
      }
      if (e.timeouts >= this.maxRetransmits) {
        this.linkDown(new FwError('E_LINK_TIMEOUT', undefined, { details: { seq: e.seq, retransmits: e.timeouts } }));
        this.flush();
        return;
      }
      e.timeouts++;
      this.retransmit(e, now);
      timedOut = true;
    }
    // RFC 6298 5.5/5.7: a timeout doubles the timeout of frames (re)sent from now on, kept until
    // the next valid sample — else, with every frame retransmitted, Karn's rule would leave no
    // sample to raise a too-small RTO (e.g. one measured with small frames on a slow line)
    if (timedOut) this.rtoFloor = Math.min(this.rtoMax, Math.max(this.rtoFloor, this.rto) * 2);
    this.armTimer();
    this.flush();
  }

  private linkDown(err: FwError): void {
    this.linkState = 'down';
    this.clearTimer();
    this.events.push(() => this.emitError(err));
    this.events.push(() => this.emit('down'));
  }

  // ---- RESET handshake (§4.1) ----

  private onReset(frame: Frame): void {
    const nonce = frameNonce(frame);
    if (nonce !== this.peerNonce) {
      this.peerNonce = nonce;
      const opening = this.linkState === 'opening';
      const drain = this.resetData();
      if (!opening) {
        this.clearHandshake();
        this.linkState = 'up';
      }
      this.events.push(() => this.emit('reset', nonce));
      if (drain) this.events.push(() => this.emit('drain'));
    }
    this.sendControl(resetAckFrame(nonce));
  }

  private onResetAck(frame: Frame): void {
    const hs = this.handshake;
    if (this.linkState !== 'opening' || hs === undefined || frameNonce(frame) !== hs.nonce) {
      this.counters.ignored++;
      return;
    }
    if (hs.attempts === 0) this.rttSample(this.timers.now() - hs.sentAt, frame.payload.length + MIN_BODY_SIZE + 2);
    this.clearHandshake();
    this.linkState = 'up';
    hs.resolve();
    this.events.push(() => this.emit('open'));
    this.pump();
  }

  private armHandshake(): void {
    const hs = this.handshake;
    if (hs === undefined) return;
    const delay = Math.min(this.rtoMax, this.rtoInitial * 2 ** hs.attempts);
    hs.timer = this.timers.setTimeout(() => this.onHandshakeTimer(), delay);
  }

  private onHandshakeTimer(): void {
    const hs = this.handshake;
    if (hs === undefined) return;
    hs.timer = undefined;
    if (hs.attempts >= this.maxRetransmits) {
      this.handshake = undefined;
      this.linkState = 'down';
      hs.reject(new FwError('E_LINK_TIMEOUT', 'no RESET_ACK from the link peer', { details: { attempts: hs.attempts + 1 } }));
      this.events.push(() => this.emit('down'));
      this.flush();
      return;
    }
    hs.attempts++;
    this.sendControl(resetFrame(hs.nonce));
    this.armHandshake();
  }

  private clearHandshake(): void {
    const hs = this.handshake;
    if (hs?.timer !== undefined) this.timers.clearTimeout(hs.timer);
    this.handshake = undefined;
  }

  // ---- plumbing ----

  /** Drop everything both directions (§4.1), including a pending handshake. */
  private resetState(): void {
    this.clearHandshake();
    if (this.resetData()) this.events.push(() => this.emit('drain'));
  }

  /** Returns whether a writer was waiting for 'drain' (the queue is now empty). */
  private resetData(): boolean {
    const drain = this.needDrain;
    this.clearTimer();
    this.inflight.fill(undefined);
    this.sndBase = 0;
    this.sndNext = 0;
    this.unackedCount = 0;
    this.queue = [];
    this.queued = 0;
    this.busy = false;
    this.needDrain = false;
    this.rcvBuf.fill(undefined);
    this.rcvNext = 0;
    this.clearAckTimer();
    this.ackOwed = 0;
    this.lastAckAt = -Infinity;
    this.nakSeq.fill(-1);
    this.parts = [];
    this.partsLength = 0;
    this.dropping = false;
    this.srtt = undefined;
    this.rttvar = 0;
    this.rto = this.rtoInitial;
    this.rtoFloor = 0;
    this.txNext = 0;
    this.deliveredTx = -1;
    this.lastSent = undefined;
    this.allResolved = false;
    this.allResolvedAt = -Infinity;
    this.progressAt = -Infinity;
    this.minRtt = Infinity;
    this.rateMs = 0;
    this.rateBytes = 0;
    this.sampledWire = 0;
    return drain;
  }

  private sendControl(frame: Frame): void {
    this.write(encodeFrame(frame));
  }

  private write(wire: Uint8Array): void {
    this.counters.framesOut++;
    this.counters.wireBytesOut += wire.length;
    this.output(wire, NOOP);
  }

  private emitError(err: FwError): void {
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }

  /** Emit queued events in order; listeners may re-enter (send, receive, close). */
  private flush(): void {
    for (let ev = this.events.shift(); ev !== undefined; ev = this.events.shift()) {
      if (this.closed) {
        this.events.length = 0;
        return;
      }
      ev();
    }
  }
}
