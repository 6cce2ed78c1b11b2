import { EventEmitter } from 'node:events';
import type { DeviceChannel, DeviceEvent } from '../../../gateway/device-channel.ts';
import { waitForValue, type Timers } from '../../../gateway/waiter.ts';
import type { ErrorCode } from '../../../protocol/errors.ts';
import type { GatewayMessage } from '../../../protocol/ota.ts';

/** Deterministic clock: timers fire only when the test advances time. */
export class FakeTimers implements Timers {
  private t: number;
  private seq = 0;
  private readonly pending = new Map<number, { at: number; fn: () => void }>();
  /** `start`: the clock's reading before any time passes (default 0). */
  constructor(start = 0) {
    this.t = start;
  }
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.seq;
    this.pending.set(id, { at: this.t + Math.max(0, ms), fn });
    return id;
  }
  clearTimeout(h: unknown): void {
    this.pending.delete(h as number);
  }
  /** Advance to the next due timer, run it, and let promises settle. false when none is pending. */
  async step(limitMs: number): Promise<boolean> {
    await settle();
    let next: [number, { at: number; fn: () => void }] | undefined;
    for (const e of this.pending) if (!next || e[1].at < next[1].at) next = e;
    if (!next || next[1].at > limitMs) return false;
    this.pending.delete(next[0]);
    this.t = Math.max(this.t, next[1].at);
    next[1].fn();
    await settle();
    return true;
  }
}

export async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise<void>((r) => setImmediate(r));
}

/** Run `p` to completion by advancing fake time; fails if it needs more than limitMs. */
export async function drive<T>(timers: FakeTimers, p: Promise<T>, limitMs: number): Promise<T> {
  let done = false;
  const out = p.finally(() => { done = true; });
  out.catch(() => undefined);
  while (!done) {
    if (!(await timers.step(limitMs))) {
      await settle();
      if (!done) throw new Error(`still running with no timer due before ${limitMs} ms of fake time`);
    }
  }
  return out;
}

/**
 * A scripted device behind a fake channel: `script` answers each command with events (or none);
 * answers are delivered asynchronously, as the broker would.
 */
export class ScriptedChannel {
  readonly sent: GatewayMessage[] = [];
  online = true;
  private readonly fns = new Set<(e: DeviceEvent) => void>();
  constructor(private readonly script: (msg: GatewayMessage) => DeviceEvent[]) {}
  listen(_id: string, fn: (e: DeviceEvent) => void): () => void {
    this.fns.add(fn);
    return () => this.fns.delete(fn);
  }
  isOnline(): boolean {
    return this.online;
  }
  async send(_id: string, msg: GatewayMessage): Promise<void> {
    this.sent.push(msg);
    const replies = this.script(msg);
    setImmediate(() => {
      for (const r of replies) this.emit(r);
    });
  }
  emit(e: DeviceEvent): void {
    for (const fn of [...this.fns]) fn(e);
  }
  asChannel(): DeviceChannel {
    return this as unknown as DeviceChannel;
  }
  count(t: GatewayMessage['t']): number {
    return this.sent.filter((m) => m.t === t).length;
  }
}

/**
 * Several scripted devices behind one fake channel, on fake time: a subclass answers each
 * command in `send` with `deliver` (asynchronously, as the broker would, or after `delayMs` of
 * fake time). Every device is online; `hello` registers one at version 1.0.0 with the fleet.
 */
export abstract class FakeSite extends EventEmitter<{ event: [deviceId: string, event: DeviceEvent] }> {
  private readonly fns = new Map<string, Set<(e: DeviceEvent) => void>>();

  constructor(protected readonly timers: FakeTimers) {
    super();
  }

  abstract send(id: string, msg: GatewayMessage): Promise<void>;

  asChannel(): DeviceChannel {
    return this as unknown as DeviceChannel;
  }

  /** Register a device with the fleet, as its first status does. */
  hello(id: string): void {
    this.deliver(id, [{
      t: 'status', hw: 'hw', version: '1.0.0', slot: 'a', slots: { a: { state: 'confirmed', version: '1.0.0' }, b: { state: 'empty' } },
      maxChunk: 4096, busy: false, trial: false,
    }], 0, true);
  }

  listen(id: string, fn: (e: DeviceEvent) => void): () => void {
    let set = this.fns.get(id);
    if (!set) this.fns.set(id, (set = new Set()));
    set.add(fn);
    return () => set.delete(fn);
  }

  isOnline(): boolean {
    return true;
  }

  waitFor<R extends DeviceEvent>(id: string, match: (e: DeviceEvent) => e is R, timeoutMs: number, what: string, code: ErrorCode = 'E_DEVICE_TIMEOUT'): Promise<R> {
    return waitForValue((fn) => this.listen(id, fn), match, timeoutMs, this.timers, code, `${what} from ${id}`);
  }

  async request<R extends DeviceEvent>(id: string, msg: GatewayMessage, match: (e: DeviceEvent) => e is R, timeoutMs: number, what: string): Promise<R> {
    const reply = this.waitFor(id, match, timeoutMs, what);
    await this.send(id, msg);
    return reply;
  }

  /** Answers arrive asynchronously, after `delayMs` of fake time when given, or at once with `sync`. */
  protected deliver(id: string, events: DeviceEvent[], delayMs = 0, sync = false): void {
    const go = (): void => {
      for (const e of events) {
        this.emit('event', id, e);
        for (const fn of [...(this.fns.get(id) ?? [])]) fn(e);
      }
    };
    if (sync) go();
    else if (delayMs > 0) this.timers.setTimeout(go, delayMs);
    else setImmediate(go);
  }
}
