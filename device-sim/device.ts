import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import { setImmediate as yieldTurn } from 'node:timers/promises';
import mqtt, { type MqttClient } from 'mqtt';
import { describeError } from '../protocol/errors.ts';
import {
  decodeGatewayMessage, encodeDeviceMessage,
  type BootMessage, type DeviceMessage, type GatewayMessage, type SlotName, type StatusMessage, type Task, type TasksMessage,
} from '../protocol/ota.ts';
import { KeyRing, parsePublicKey } from '../protocol/signature.ts';
import { topics } from '../protocol/topics.ts';
import { applyActivation, applyConfirm, planActivation, planConfirm } from './activation.ts';
import { DeviceFiles, PowerLost, runBootloader, type BootOutcome } from './bootloader.ts';
import { connectCredentials } from './credentials.ts';
import { FaultSwitches, type Faults, type PowerCutPhase } from './faults.ts';
import { realTimers, resolveDeviceOptions, type DeviceOptions, type DeviceOptionsInput, type Timers } from './options.ts';
import { Receiver } from './receiver.ts';
import { bootComponents, slotInfo, statusComponents } from './reports.ts';
import type { DeviceStats, Runtime, SimDeviceEvents, SimEventBody, Transfer } from './runtime.ts';
import { anyInTrial, componentNames, componentOf, isMultiComponent, otherSlot, type SlotStateRecord } from './state-record.ts';
import { TrialClock } from './trial-clock.ts';
import { loadProgress } from './transfer.ts';

export type { DeviceStats, SimDeviceEvents, SimEvent, SimEventBody, SimEventType } from './runtime.ts';

/**
 * A simulated device: MCUboot-like A/B slots on files, one MQTT connection, the device side of
 * the OTA protocol (docs/protocol.md §6, protocol/ota.ts). See docs/device-sim.md.
 *
 * Power model: `start()` powers on (bootloader, then connect); a reboot closes the connection,
 * waits `bootDelayMs` and boots again; `powerCut()` drops everything without cleanup and boots
 * again from the files after `powerOffMs`; `stop()` is a clean shutdown.
 */
export class SimDevice extends EventEmitter<SimDeviceEvents> {
  readonly id: string;
  readonly options: DeviceOptions;
  readonly faults: FaultSwitches;
  readonly files: DeviceFiles;
  /** The pinned signing keys (options.pinnedKeys); empty: no signature check (development behaviour). */
  readonly pinned: KeyRing;
  readonly stats: DeviceStats = {
    boots: 0, chunks: 0, badChunks: 0, duplicates: 0, invalid: 0, ignored: 0, reconnects: 0, drops: 0, powerCuts: 0, errors: 0,
  };
  readonly #timers: Timers;
  #on = false;
  /** Bumped on every power transition; async work from an older epoch stops at its next step. */
  #epoch = 0;
  #rt: Runtime | null = null;
  #restartTimer: unknown = null;
  #sleeps = new Set<{ handle: unknown; resolve: () => void }>();
  #tasks = new Set<Promise<unknown>>();
  /** offer, chunk, verify, abort: the receiving side (receiver.ts). */
  readonly #receiver: Receiver;

  constructor(input: DeviceOptionsInput, deps: { timers?: Timers } = {}) {
    super();
    this.options = resolveDeviceOptions(input);
    this.id = this.options.id;
    this.faults = new FaultSwitches(this.options.faults);
    this.files = new DeviceFiles(join(this.options.dataDir, this.id), this.options.slotCapacity, { fsync: this.options.fsync });
    this.pinned = new KeyRing(this.options.pinnedKeys.map(parsePublicKey));
    this.#timers = deps.timers ?? realTimers;
    this.#receiver = new Receiver({
      files: this.files, faults: this.faults, options: this.options, pinned: this.pinned, stats: this.stats,
      emit: (e) => this.#emit(e),
      publish: (rt, msg) => this.#publish(rt, msg),
      status: (rt) => this.#status(rt),
      updateState: (rt, mutate, beforeRename) => this.#updateState(rt, mutate, beforeRename),
      cutIf: (phase, components) => this.#cutIf(phase, components),
    });
  }

  get powered(): boolean {
    return this.#on;
  }

  get connected(): boolean {
    return this.#rt?.connected ?? false;
  }

  /** The running image (of `app`; `components`: every component), or null while off or booting. */
  get running(): { slot: SlotName; version: string; sha256: string; trial: boolean; components: { name: string; slot: SlotName; version: string; sha256: string; trial: boolean }[] } | null {
    const rt = this.#rt;
    if (!rt) return null;
    const components = rt.boot.components.map((c) => ({ ...c, trial: componentOf(rt.rec, c.name).trial }));
    return { slot: rt.boot.slot, version: rt.boot.version, sha256: rt.boot.sha256, trial: rt.rec.trial, components };
  }

  /**
   * The last check-in task list the gateway sent during this boot (§6.14), empty before the
   * first one. Kept in RAM only: informational, the device does nothing with it on its own.
   */
  get pendingTasks(): readonly Task[] {
    return this.#rt?.tasks ?? [];
  }

  /** The status message the device would publish now (null while off or booting). */
  status(): StatusMessage | null {
    return this.#rt ? this.#status(this.#rt) : null;
  }

  /**
   * Power on: run the bootloader (factory image on a blank device), then start connecting.
   * Resolves with the boot outcome, or null when a power-cut fault fired during this boot
   * (the device then boots again by itself after powerOffMs).
   */
  async start(): Promise<BootOutcome | null> {
    if (this.#on) throw new Error(`${this.id}: already powered on`);
    this.#on = true;
    this.#epoch += 1;
    return this.#powerOn();
  }

  /** Clean shutdown: close the connection (DISCONNECT), flush the flash, wait for in-flight work. */
  async stop(): Promise<void> {
    const wasOn = this.#on;
    this.#on = false;
    const rt = this.#powerDown();
    if (rt) await this.#endClient(rt.client, false);
    await this.#settle();
    if (wasOn) {
      await this.files.flushAll();
      this.files.close();
      this.#emit({ type: 'stopped' });
    }
  }

  /**
   * Lose power now: no cleanup, no DISCONNECT, unflushed flash writes are lost. Unless
   * `restart` is false the device boots again from its files after `offMs` (default powerOffMs).
   */
  powerCut(opts: { phase?: PowerCutPhase; offMs?: number; restart?: boolean } = {}): void {
    if (!this.#on) return;
    this.#powerDown()?.client.end(true);
    const lostWrites = this.files.powerCut();
    this.stats.powerCuts += 1;
    this.#emit({ type: 'power-cut', lostWrites, ...(opts.phase ? { phase: opts.phase } : {}) });
    if (opts.restart === false) {
      this.#on = false;
      return;
    }
    const inFlight = [...this.#tasks];
    const epoch = this.#epoch;
    this.#restartTimer = this.#timers.setTimeout(() => {
      this.#restartTimer = null;
      this.#track((async () => {
        await Promise.allSettled(inFlight); // work that was mid-I/O at the cut has stopped touching files
        if (epoch === this.#epoch) await this.#powerOn();
      })());
    }, opts.offMs ?? this.options.powerOffMs);
  }

  /** Change fault switches (see faults.ts); publishes status when `busy` changes. */
  setFaults(update: Partial<Faults>): void {
    const wasBusy = this.faults.busy;
    this.faults.set(update);
    const rt = this.#rt;
    if (rt && rt.connected && wasBusy !== this.faults.busy) this.#publish(rt, this.#status(rt));
  }

  // ---------------------------------------------------------------- power and boot

  async #powerOn(hint?: string): Promise<BootOutcome | null> {
    const epoch = this.#epoch;
    let out: BootOutcome;
    try {
      out = await runBootloader(this.files, {
        hw: this.options.hw,
        factoryVersion: this.options.factoryVersion,
        imageName: this.options.imageName,
        factoryImageSize: this.options.factoryImageSize,
        failSelfTest: this.faults.failSelfTest,
        onFirstBoot: (components) => this.#cutIf('first-boot', components),
        components: this.options.components,
        ...(this.options.componentImages !== undefined ? { componentImages: this.options.componentImages } : {}),
        ...(this.options.componentVersions !== undefined ? { componentVersions: this.options.componentVersions } : {}),
        ...(this.faults.failSelfTestComponent !== undefined ? { failSelfTestComponent: this.faults.failSelfTestComponent } : {}),
        ...(hint !== undefined ? { hint } : {}),
      });
    } catch (err) {
      if (err instanceof PowerLost) return null;
      throw err; // start() rejects with it; after a reboot #track reports it as an `error` event
    }
    if (epoch !== this.#epoch) return null;
    let transfer: Transfer | null = null;
    for (const component of componentNames(out.record)) {
      // one transfer at a time: the first component whose inactive slot is receiving and has its progress file
      const inactive = otherSlot(componentOf(out.record, component).active);
      const target = componentOf(out.record, component).slots[inactive];
      if (target.state !== 'receiving' || target.sha256 === undefined) continue;
      const p = await loadProgress(this.files.progressFile, inactive, target.sha256, component);
      if (epoch !== this.#epoch) return null;
      if (p) {
        transfer = { sid: null, component, slot: inactive, meta: p.meta, map: p.map, unflushed: new Set(), erased: true, prev: { state: 'empty' }, offer: null, progressBytes: 0 };
        break;
      }
    }
    this.stats.boots += 1;
    const rt = this.#connect(out, transfer);
    this.#rt = rt;
    const { slot, version, trial, reverted, reason, factory } = out;
    const multi = isMultiComponent(out.record);
    this.#emit({
      type: 'booted', slot, version, trial, reverted, factory, bootCount: out.record.bootCount,
      ...(reason !== undefined ? { reason } : {}), ...(multi ? { components: out.components } : {}),
    });
    if (reverted) this.#emit({ type: 'reverted', slot, version, reason: reason ?? 'reverted' });
    if (anyInTrial(out.record)) {
      rt.trial = new TrialClock({
        timeoutMs: this.options.trialTimeoutMs, maxMs: this.options.trialMaxMs, timers: this.#timers, now: () => this.#timers.now?.() ?? performance.now(),
        onExpire: (why) => {
          rt.trial = null;
          if (!rt.alive) return;
          this.#emit({ type: 'trial-timeout' });
          this.#track(this.#reboot(rt, 'trial timeout', why));
        },
      }, rt.connected);
    }
    return out;
  }

  /** Soft reboot: stop handling messages, close the connection, wait bootDelayMs, boot. */
  async #reboot(rt: Runtime, why: string, hint?: string): Promise<void> {
    if (!rt.alive) return;
    const epoch = this.#epoch;
    this.#kill(rt);
    if (this.#rt === rt) this.#rt = null;
    this.#emit({ type: 'rebooting', reason: why });
    await this.#endClient(rt.client, false);
    if (epoch !== this.#epoch) return;
    await this.files.flushAll();
    this.files.close();
    await this.#sleep(this.options.bootDelayMs);
    if (epoch !== this.#epoch) return;
    await this.#powerOn(hint);
  }

  /** If a power cut is armed for `phase`, cut now and return true (the caller stops at once). */
  /** End this boot's runtime: newer epoch, no timers, the RAM state killed. Returns what it was. */
  #powerDown(): Runtime | null {
    this.#epoch += 1;
    this.#cancelTimers();
    const rt = this.#rt;
    this.#rt = null;
    if (rt) this.#kill(rt);
    return rt;
  }

  #cutIf(phase: PowerCutPhase, components?: readonly string[]): boolean {
    if (!this.faults.takePowerCut(phase, components)) return false;
    this.powerCut({ phase });
    return true;
  }

  #kill(rt: Runtime): void {
    rt.alive = false;
    rt.inbox = [];
    rt.owed = [];
    rt.trial?.stop();
    rt.trial = null;
    if (rt.connected) {
      rt.connected = false;
      this.#emit({ type: 'disconnected' });
    }
  }

  // ---------------------------------------------------------------- MQTT

  #connect(boot: BootOutcome, transfer: Transfer | null): Runtime {
    const o = this.options;
    const client = mqtt.connect(o.broker, {
      clientId: this.id,
      protocolVersion: 4,
      clean: true,
      keepalive: o.keepaliveS,
      connectTimeout: o.connectTimeoutMs,
      reconnectPeriod: o.reconnectDelayMs,
      resubscribe: false,
      queueQoSZero: false,
      ...connectCredentials(this.id, o),
    });
    const rt: Runtime = {
      alive: true, boot, rec: boot.record, client, connected: false, connects: 0, bootReported: false,
      backoffMs: o.reconnectDelayMs, inbox: [], pumping: false, owed: [], commitNow: false, dropAfterCommit: false,
      transfer, trial: null, tasks: [],
    };
    client.on('connect', () => this.#track(this.#onConnect(rt)));
    client.on('message', (topic, payload) => this.#onMessage(rt, topic, payload));
    client.on('close', () => {
      rt.trial?.disconnected(); // §6.9.3: the trial waits for the gateway
      if (rt.connected) {
        rt.connected = false;
        if (rt.alive) this.#emit({ type: 'disconnected' });
      }
      // Bounded exponential backoff: MQTT.js reads options.reconnectPeriod when it schedules an
      // attempt (its own close handler runs first, so this sets the delay of the attempt after).
      rt.backoffMs = Math.min(rt.backoffMs * 2, o.reconnectMaxMs);
      client.options.reconnectPeriod = rt.backoffMs;
    });
    client.on('error', (err) => {
      if (rt.alive) this.#error(err);
    });
    return rt;
  }

  /** On every connect, in order (like aedes connectActions). */
  readonly #connectSteps: readonly { name: string; run: (rt: Runtime) => Promise<void> | void }[] = [
    { name: 'subscribe', run: async (rt) => {
      await rt.client.subscribeAsync(topics.down(this.id), { qos: 1 });
    } },
    { name: 'report-boot', run: (rt) => {
      // once per boot: only the first connect after a power-up or reboot
      if (rt.bootReported) return;
      rt.bootReported = true;
      const b = rt.boot;
      const msg: BootMessage = { t: 'boot', version: b.version, slot: b.slot, sha256: b.sha256, trial: b.trial, reverted: b.reverted };
      if (b.reason !== undefined) msg.reason = b.reason;
      if (isMultiComponent(b.record)) msg.components = bootComponents(b.components);
      this.#publish(rt, msg);
    } },
    { name: 'report-status', run: (rt) => this.#publish(rt, this.#status(rt)) },
  ];

  async #onConnect(rt: Runtime): Promise<void> {
    if (!rt.alive) return;
    // Small request/response messages: without this, Nagle + delayed ACK add ~40 ms per round trip
    // and would distort the gateway's link probes.
    (rt.client.stream as unknown as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
    rt.connected = true;
    rt.trial?.connected();
    rt.connects += 1;
    if (rt.connects > 1) this.stats.reconnects += 1;
    rt.backoffMs = this.options.reconnectDelayMs;
    rt.client.options.reconnectPeriod = this.options.reconnectDelayMs;
    let current = '';
    try {
      for (const step of this.#connectSteps) {
        current = step.name;
        await step.run(rt);
        if (!rt.alive || !rt.connected) return;
      }
    } catch (err) {
      if (rt.alive && rt.connected) this.#error(new Error(`connect step ${current} failed`, { cause: err }));
      return;
    }
    this.#emit({ type: 'connected', reconnect: rt.connects > 1 });
  }

  #onMessage(rt: Runtime, topic: string, payload: Buffer): void {
    if (!rt.alive || topic !== topics.down(this.id)) return;
    let msg: GatewayMessage;
    try {
      msg = decodeGatewayMessage(payload);
    } catch (err) {
      this.stats.invalid += 1;
      this.#emit({ type: 'invalid', reason: describeError(err) });
      return;
    }
    rt.inbox.push(msg);
    if (!rt.pumping) {
      rt.pumping = true;
      this.#track(this.#pump(rt));
    }
  }

  #publish(rt: Runtime, msg: DeviceMessage): void {
    if (!rt.alive) return;
    const qos = msg.t === 'ack' || msg.t === 'pong' || msg.t === 'probed' ? 0 : 1;
    rt.client.publish(topics.up(this.id), Buffer.from(encodeDeviceMessage(msg)), { qos }, (err) => {
      if (err && rt.alive && rt.connected) this.#error(err);
    });
  }

  /** Publish and wait for the broker's PUBACK, at most publishTimeoutMs. */
  async #publishAcked(rt: Runtime, msg: DeviceMessage): Promise<void> {
    if (!rt.alive) return;
    await this.#within(rt.client.publishAsync(topics.up(this.id), Buffer.from(encodeDeviceMessage(msg)), { qos: 1 }), this.options.publishTimeoutMs);
  }

  /** End an MQTT client: gracefully (DISCONNECT) within publishTimeoutMs, else by force. */
  async #endClient(client: MqttClient, force: boolean): Promise<void> {
    if (!force && (await this.#within(client.endAsync(false), this.options.publishTimeoutMs))) return;
    await this.#within(client.endAsync(true), this.options.publishTimeoutMs);
  }

  #status(rt: Runtime): StatusMessage {
    return {
      t: 'status',
      hw: rt.rec.hw,
      version: rt.boot.version,
      slot: rt.boot.slot,
      slots: { a: slotInfo(rt.rec.slots.a), b: slotInfo(rt.rec.slots.b) },
      maxChunk: this.options.maxChunk,
      busy: this.faults.busy,
      trial: rt.rec.trial,
      ...(this.options.securityFloor !== undefined ? { floor: this.options.securityFloor } : {}),
      ...(isMultiComponent(rt.rec) ? { components: statusComponents(rt.rec) } : {}),
    };
  }

  // ---------------------------------------------------------------- message handling

  /**
   * Handle queued messages one at a time. Chunks are written to the flash buffer; the flush,
   * the progress file and the acks follow when the batch ends (a non-chunk message, an empty
   * queue after one event-loop turn, or flushBatch chunks), so no ack claims unflushed bytes.
   */
  async #pump(rt: Runtime): Promise<void> {
    try {
      while (rt.alive) {
        const msg = rt.inbox.shift();
        if (msg === undefined) {
          if (rt.owed.length === 0) break;
          await yieldTurn();
          if (rt.inbox[0]?.t === 'chunk' && rt.owed.length < this.options.flushBatch) continue;
          await this.#guard(rt, () => this.#receiver.commitChunks(rt));
          continue;
        }
        if (msg.t !== 'chunk' && rt.owed.length > 0) await this.#guard(rt, () => this.#receiver.commitChunks(rt));
        if (!rt.alive) break;
        await this.#guard(rt, () => this.#dispatch(rt, msg));
        if (rt.owed.length >= this.options.flushBatch || rt.commitNow) await this.#guard(rt, () => this.#receiver.commitChunks(rt));
      }
    } finally {
      rt.pumping = false;
    }
  }

  async #guard(rt: Runtime, fn: () => Promise<void>): Promise<void> {
    try {
      await fn();
    } catch (err) {
      if (rt.alive) this.#error(err);
    }
  }

  /** One handler per message type; the compiler checks the switch is exhaustive. */
  async #dispatch(rt: Runtime, msg: GatewayMessage): Promise<void> {
    switch (msg.t) {
      case 'ping': {
        this.#publish(rt, msg.pad !== undefined ? { t: 'pong', n: msg.n, pad: msg.pad } : { t: 'pong', n: msg.n });
        return;
      }
      case 'probe':
        this.#publish(rt, { t: 'probed', n: msg.n, size: msg.data.length });
        return;
      case 'query':
        this.#publish(rt, this.#status(rt));
        return;
      case 'offer':
        return this.#receiver.offer(rt, msg);
      case 'chunk':
        return this.#receiver.chunk(rt, msg);
      case 'verify':
        return this.#receiver.verify(rt, msg.sid);
      case 'activate':
        return this.#onActivate(rt, msg.sid, msg.with);
      case 'confirm':
        return this.#onConfirm(rt, msg.sha256, msg.with);
      case 'abort':
        return this.#receiver.abort(rt, msg.sid);
      case 'tasks':
        return this.#onTasks(rt, msg);
      default: {
        const never: never = msg;
        throw new Error(`unhandled message ${(never as { t: string }).t}`);
      }
    }
  }

  /** Replace the slot-state record atomically; RAM follows only once the file is written. */
  async #updateState(rt: Runtime, mutate: (rec: SlotStateRecord) => void, beforeRename?: () => boolean): Promise<boolean> {
    const next = structuredClone(rt.rec);
    mutate(next);
    const r = await this.files.saveState(next, beforeRename);
    if (r === 'cut' || !rt.alive) return false;
    rt.rec = next;
    return true;
  }

  /** `activate {sid, with}` (§6.15.2): every named component `pending` in one write, then one reboot. */
  async #onActivate(rt: Runtime, sid: number, withSids?: readonly number[]): Promise<void> {
    const plan = planActivation(rt.rec, sid, withSids);
    if ('why' in plan) {
      this.stats.ignored += 1;
      return;
    }
    const { parts } = plan;
    const ok = await this.#updateState(rt, (rec) => applyActivation(rec, parts), () => this.#cutIf('activation', parts.map((p) => p.component)));
    if (!ok) return;
    const slot = parts[0]!.slot;
    this.#emit({ type: 'activated', sid, slot, ...(withSids !== undefined ? { with: [...withSids] } : {}) });
    await this.#publishAcked(rt, { t: 'activated', sid, slot });
    await this.#reboot(rt, 'activate');
  }

  /** `confirm {sha256, with}` (§6.15.3): every component in trial confirmed in one write, or nothing. */
  async #onConfirm(rt: Runtime, sha256: string, withDigests?: readonly string[]): Promise<void> {
    const trialSet = componentNames(rt.rec).filter((n) => componentOf(rt.rec, n).trial);
    if (this.#cutIf('before-confirm', trialSet)) return;
    const plan = planConfirm(rt.rec, sha256, withDigests);
    if (plan.kind === 'ignore') {
      this.stats.ignored += 1;
      return;
    }
    const repeat = plan.kind === 'repeat';
    if (plan.kind === 'confirm') {
      if (!(await this.#updateState(rt, (rec) => applyConfirm(rec, plan.components)))) return;
      rt.trial?.stop();
      rt.trial = null;
    }
    this.#publish(rt, { t: 'confirmed', sha256, version: plan.version });
    this.#emit({ type: 'confirmed', sha256, version: plan.version, repeat });
    if (!repeat) this.#publish(rt, this.#status(rt));
  }

  /** Informational (§6.14): remember and report the list; no reply, no state change. */
  #onTasks(rt: Runtime, m: TasksMessage): void {
    rt.tasks = m.tasks;
    this.#emit({ type: 'tasks', tasks: rt.tasks });
  }

  // ---------------------------------------------------------------- plumbing

  #emit(e: SimEventBody): void {
    this.emit('event', { ...e, id: this.id });
  }

  #error(err: unknown): void {
    this.stats.errors += 1;
    const cause = err instanceof Error && err.cause !== undefined ? `: ${describeError(err.cause)}` : '';
    this.#emit({ type: 'error', message: `${describeError(err)}${cause}` });
  }

  #track(p: Promise<unknown>): void {
    const q = p.catch((err: unknown) => this.#error(err)).finally(() => this.#tasks.delete(q));
    this.#tasks.add(q);
  }

  async #settle(): Promise<void> {
    while (this.#tasks.size > 0) await Promise.allSettled([...this.#tasks]);
  }

  /** A sleep that stop() and powerCut() cut short. */
  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const entry = { handle: null as unknown, resolve };
      entry.handle = this.#timers.setTimeout(() => {
        this.#sleeps.delete(entry);
        resolve();
      }, ms);
      this.#sleeps.add(entry);
    });
  }

  /** Wait for `p` at most `ms`: true when it settled in time (either way), false on timeout. */
  async #within(p: Promise<unknown>, ms: number): Promise<boolean> {
    let handle: unknown = null;
    const timeout = new Promise<boolean>((resolve) => {
      handle = this.#timers.setTimeout(() => resolve(false), ms);
    });
    try {
      return await Promise.race([p.then(() => true, () => true), timeout]);
    } finally {
      this.#timers.clearTimeout(handle);
    }
  }

  #cancelTimers(): void {
    if (this.#restartTimer !== null) this.#timers.clearTimeout(this.#restartTimer);
    this.#restartTimer = null;
    for (const s of this.#sleeps) {
      this.#timers.clearTimeout(s.handle);
      s.resolve();
    }
    this.#sleeps.clear();
  }
}
