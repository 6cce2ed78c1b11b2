import type { DeviceChannel, DeviceEvent } from '../../../gateway/device-channel.ts';
import type { Timers } from '../../../gateway/waiter.ts';
import type { GatewayMessage } from '../../../protocol/ota.ts';

/** Deterministic clock: timers fire only when the test advances time. */
export class FakeTimers implements Timers {
  private t = 0;
  private seq = 0;
  private readonly pending = new Map<number, { at: number; fn: () => void }>();
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
