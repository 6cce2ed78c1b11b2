import assert from 'node:assert/strict';
import {
  ArqLink, FrameKind, FrameParser, ackFields, ackFrame, dataFrame, encodeFrame, frameKindName, frameNonce, isMore, nakFrame, nakSeqs,
  resetAckFrame, resetFrame, type ArqOptions, type Frame, type LinkTimers,
} from '../../../protocol/link/index.ts';

/** Deterministic PRNG (mulberry32). */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  /** Uniform in [0, 1). */
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }
  bytes(n: number): Uint8Array {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = this.int(0, 255);
    return b;
  }
}

interface Timer { at: number; id: number; fn: () => void; cancelled: boolean }

/** Fake clock: timers fire only when the test advances time; same-time timers fire in the order set. */
export class FakeClock implements LinkTimers {
  private t = 0;
  private nextId = 0;
  private heap: Timer[] = [];

  now(): number {
    return this.t;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const timer: Timer = { at: this.t + Math.max(0, ms), id: this.nextId++, fn, cancelled: false };
    this.heap.push(timer);
    this.up(this.heap.length - 1);
    return timer;
  }

  clearTimeout(handle: unknown): void {
    (handle as Timer).cancelled = true;
  }

  /** Live (not cancelled) timers. */
  get pending(): number {
    return this.heap.filter((t) => !t.cancelled).length;
  }

  /** Fire the next timer; false when none is left or it lies beyond `limit`. */
  step(limit = Infinity): boolean {
    for (;;) {
      const top = this.heap[0];
      if (top === undefined || top.at > limit) return false;
      this.pop();
      if (top.cancelled) continue;
      this.t = top.at;
      top.fn();
      return true;
    }
  }

  /** Fire timers until pred() holds; false when the timers run out or the time limit (absolute) is reached first. */
  runUntil(pred: () => boolean, limit: number): boolean {
    while (!pred()) {
      if (!this.step(limit)) return pred();
    }
    return true;
  }

  /** Fire every timer due within ms and move the clock forward by ms. */
  advance(ms: number): void {
    const end = this.t + ms;
    while (this.step(end)) { /* fire */ }
    this.t = end;
  }

  private less(i: number, j: number): boolean {
    const a = this.heap[i]!;
    const b = this.heap[j]!;
    return a.at < b.at || (a.at === b.at && a.id < b.id);
  }

  private swap(i: number, j: number): void {
    const a = this.heap[i]!;
    this.heap[i] = this.heap[j]!;
    this.heap[j] = a;
  }

  private up(i: number): void {
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(i, p)) return;
      this.swap(i, p);
      i = p;
    }
  }

  private pop(): void {
    const last = this.heap.pop()!;
    if (this.heap.length === 0) return;
    this.heap[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < this.heap.length && this.less(l, m)) m = l;
      if (r < this.heap.length && this.less(r, m)) m = r;
      if (m === i) return;
      this.swap(i, m);
      i = m;
    }
  }
}

export interface ChannelOptions {
  latencyMs: number;
  /** Extra random delay 0..jitterMs per frame: frames can overtake each other (reordering). */
  jitterMs?: number;
  /** Probability a frame is lost. */
  loss?: number;
  /** Probability a frame is delivered twice. */
  duplicate?: number;
  /** Probability one random bit of a frame (delimiter included) is flipped. */
  corrupt?: number;
  /** Deliver each frame in 1..3 receive() calls. */
  split?: boolean;
}

/** One direction of a simulated serial line. Each output() call is one frame. */
export class Channel {
  /** Drop everything (the peer is gone). */
  cut = false;
  /** Sees every frame as sent, before loss or corruption. */
  tap: ((wire: Uint8Array) => void) | undefined;
  deliver: (bytes: Uint8Array) => void = () => undefined;
  readonly counts = { sent: 0, lost: 0, duplicated: 0, corrupted: 0 };
  private readonly rng: Rng;

  constructor(private readonly clock: FakeClock, public options: ChannelOptions, seed: number) {
    this.rng = new Rng(seed);
  }

  readonly send = (wire: Uint8Array): void => {
    this.counts.sent++;
    this.tap?.(wire);
    if (this.cut) return;
    const o = this.options;
    if (this.rng.next() < (o.loss ?? 0)) {
      this.counts.lost++;
      return;
    }
    const copies = this.rng.next() < (o.duplicate ?? 0) ? 2 : 1;
    if (copies === 2) this.counts.duplicated++;
    for (let c = 0; c < copies; c++) {
      const bytes = wire.slice();
      if (this.rng.next() < (o.corrupt ?? 0)) {
        this.counts.corrupted++;
        const bit = this.rng.int(0, bytes.length * 8 - 1);
        bytes[bit >> 3]! ^= 1 << (bit & 7);
      }
      const delay = o.latencyMs + (o.jitterMs ? this.rng.next() * o.jitterMs : 0);
      const pieces = o.split ? this.splitUp(bytes) : [bytes];
      for (const piece of pieces) this.clock.setTimeout(() => this.deliver(piece), delay);
    }
  };

  private splitUp(bytes: Uint8Array): Uint8Array[] {
    const n = this.rng.int(1, 3);
    const cuts = Array.from({ length: n - 1 }, () => this.rng.int(0, bytes.length)).sort((a, b) => a - b);
    const out: Uint8Array[] = [];
    let from = 0;
    for (const c of [...cuts, bytes.length]) {
      out.push(bytes.subarray(from, c));
      from = c;
    }
    return out;
  }
}

export interface Pair {
  clock: FakeClock;
  a: ArqLink;
  b: ArqLink;
  /** a -> b */
  ab: Channel;
  /** b -> a */
  ba: Channel;
  /** Messages each side received, in order. */
  atA: Uint8Array[];
  atB: Uint8Array[];
}

export type LinkSettings = Omit<ArqOptions, 'timers' | 'output'>;

/** Two links joined by a simulated channel each way; a is the active side. */
export function linkPair(opts: { ab: ChannelOptions; ba?: ChannelOptions; seed?: number; a?: LinkSettings; b?: LinkSettings }): Pair {
  const clock = new FakeClock();
  const seed = opts.seed ?? 1;
  const ab = new Channel(clock, opts.ab, seed * 2 + 1);
  const ba = new Channel(clock, opts.ba ?? opts.ab, seed * 2 + 2);
  let nonce = seed * 1000;
  const a = new ArqLink({ nonce: () => ++nonce, ...opts.a, timers: clock, output: ab.send });
  const b = new ArqLink({ ...opts.b, timers: clock, output: ba.send });
  ab.deliver = (bytes) => b.receive(bytes);
  ba.deliver = (bytes) => a.receive(bytes);
  const atA: Uint8Array[] = [];
  const atB: Uint8Array[] = [];
  a.on('message', (m) => atA.push(m));
  b.on('message', (m) => atB.push(m));
  return { clock, a, b, ab, ba, atA, atB };
}

/** Open a onto b, running the fake clock; throws when it does not open within limitMs. */
export async function openPair(p: Pair, limitMs = 60_000): Promise<void> {
  const opened = p.a.open();
  const outcome = opened.then(() => undefined, (e: unknown) => e);
  p.clock.runUntil(() => p.a.state === 'up', p.clock.now() + limitMs);
  const err = await outcome;
  if (err !== undefined) throw err;
}

export interface Sending {
  /** Everything has been handed to the link. */
  done(): boolean;
  /** Stop handing over messages (the application abandons them, e.g. after a reset). */
  stop(): void;
}

/** Send all messages from `from`, respecting backpressure (waits for 'drain' when send() says so). */
export function sendAll(from: ArqLink, messages: readonly Uint8Array[]): Sending {
  let i = 0;
  const go = (): void => {
    while (i < messages.length) {
      const ok = from.send(messages[i++]!);
      if (!ok) return;
    }
  };
  from.on('drain', go);
  go();
  return { done: () => i === messages.length, stop: () => from.off('drain', go) };
}

export function randomMessages(rng: Rng, count: number, minSize: number, maxSize: number): Uint8Array[] {
  return Array.from({ length: count }, () => rng.bytes(rng.int(minSize, maxSize)));
}

export function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}

export function fromHex(s: string): Uint8Array {
  return new Uint8Array(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
}

/** The semantic JSON form used by the frame vectors in docs/protocol.md §10.4. */
export type FrameVectorValue =
  | { kind: 'DATA'; seq: number; more: boolean; payload: string }
  | { kind: 'ACK'; cum: number; sack: number }
  | { kind: 'NAK'; missing: number[] }
  | { kind: 'RESET' | 'RESET_ACK'; nonce: number };

export function vectorValueToFrame(v: FrameVectorValue): Frame {
  switch (v.kind) {
    case 'DATA': return dataFrame(v.seq, fromHex(v.payload), v.more);
    case 'ACK': return ackFrame(v.cum, v.sack);
    case 'NAK': return nakFrame(v.missing);
    case 'RESET': return resetFrame(v.nonce);
    case 'RESET_ACK': return resetAckFrame(v.nonce);
    default: {
      const unreachable: never = v;
      throw new Error(`unknown vector ${JSON.stringify(unreachable)}`);
    }
  }
}

export function frameToVectorValue(f: Frame): FrameVectorValue {
  switch (f.kind) {
    case FrameKind.DATA: return { kind: 'DATA', seq: f.seq, more: isMore(f), payload: hex(f.payload) };
    case FrameKind.ACK: return { kind: 'ACK', ...ackFields(f) };
    case FrameKind.NAK: return { kind: 'NAK', missing: nakSeqs(f) };
    case FrameKind.RESET:
    case FrameKind.RESET_ACK: return { kind: frameKindName(f.kind) as 'RESET' | 'RESET_ACK', nonce: frameNonce(f) };
    default: {
      const unreachable: never = f.kind;
      throw new Error(`unknown kind ${String(unreachable)}`);
    }
  }
}

/** One ArqLink on a fake clock, driven frame by frame (as in arq.test.ts). */
export interface Harness {
  clock: FakeClock;
  link: ArqLink;
  /** Frames the link sent, decoded, with the time they were sent. */
  out: { at: number; frame: Frame }[];
  messages: Uint8Array[];
  /** The frames, encoded, as one chunk of bytes read from the port. */
  feed(...frames: Frame[]): void;
  /** Output frames of one kind, then forget all output. */
  take(kind?: FrameKind): Frame[];
}

export function harness(settings: LinkSettings = {}, output?: (wire: Uint8Array, written: () => void) => void): Harness {
  const clock = new FakeClock();
  const parser = new FrameParser();
  const out: { at: number; frame: Frame }[] = [];
  const link = new ArqLink({
    nonce: () => 0x1234,
    ...settings,
    timers: clock,
    output: (wire, written) => {
      const frames = parser.push(wire);
      assert.equal(frames.length, 1, 'every output() call is exactly one frame');
      out.push({ at: clock.now(), frame: frames[0]! });
      output?.(wire, written);
    },
  });
  const messages: Uint8Array[] = [];
  link.on('message', (m) => messages.push(m));
  return {
    clock, link, out, messages,
    feed: (...frames) => link.receive(new Uint8Array(Buffer.concat(frames.map((f) => encodeFrame(f))))),
    take: (kind) => {
      const frames = out.map((o) => o.frame).filter((f) => kind === undefined || f.kind === kind);
      out.length = 0;
      return frames;
    },
  };
}
