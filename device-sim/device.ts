import { EventEmitter } from 'node:events';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { setImmediate as yieldTurn } from 'node:timers/promises';
import mqtt, { type MqttClient } from 'mqtt';
import { crc32 } from '../protocol/crc.ts';
import { describeError } from '../protocol/errors.ts';
import {
  decodeGatewayMessage, encodeDeviceMessage,
  type BootMessage, type ChunkMessage, type DeviceMessage, type GatewayMessage, type OfferMessage,
  type RejectCode, type SlotName, type StatusMessage, type Task, type TasksMessage, type VerifyCode,
} from '../protocol/ota.ts';
import { KeyRing, parsePublicKey } from '../protocol/signature.ts';
import { topics } from '../protocol/topics.ts';
import { applyActivation, applyConfirm, isReadyFor, planActivation, planConfirm, readyComponent } from './activation.ts';
import {
  DeviceFiles, PowerLost, runBootloader, type BootOutcome,
} from './bootloader.ts';
import { checkOffer, checkOfferSignature, offerComponent } from './offer-checks.ts';
import { bootComponents, slotInfo, statusComponents } from './reports.ts';
import {
  APP, anyInTrial, componentNames, componentOf, isMultiComponent, otherSlot, type SlotRecord, type SlotStateRecord,
} from './state-record.ts';
import { connectCredentials } from './credentials.ts';
import { FaultSwitches, corruptCopy, type Faults, type PowerCutPhase } from './faults.ts';
import { realTimers, resolveDeviceOptions, type DeviceOptions, type DeviceOptionsInput, type Timers } from './options.ts';
import { TrialClock } from './trial-clock.ts';
import { ReceiveMap, loadProgress, removeProgress, saveProgress, type ImageMeta } from './transfer.ts';

/**
 * A simulated device: MCUboot-like A/B slots on files, one MQTT connection, the device side of
 * the OTA protocol (docs/protocol.md §6, protocol/ota.ts). See docs/device-sim.md.
 *
 * Power model: `start()` powers on (bootloader, then connect); a reboot closes the connection,
 * waits `bootDelayMs` and boots again; `powerCut()` drops everything without cleanup and boots
 * again from the files after `powerOffMs`; `stop()` is a clean shutdown.
 */
export interface DeviceStats {
  boots: number;
  /** Chunk messages received for a known transfer sid (good, bad and duplicate), all boots. */
  chunks: number;
  badChunks: number;
  duplicates: number;
  /** Payloads on the down topic that failed to decode or validate. */
  invalid: number;
  /** Valid messages that did not apply (unknown sid, activate without a ready slot, ...). */
  ignored: number;
  /** Successful connects after the first one of a boot. */
  reconnects: number;
  /** Connections dropped by the dropAfterChunks fault. */
  drops: number;
  powerCuts: number;
  errors: number;
}

/** What a device reports about itself (CLI lines, tests); every event also carries the device id. */
export type SimEventBody =
  | { type: 'booted'; version: string; slot: SlotName; trial: boolean; reverted: boolean; reason?: string; factory: boolean; bootCount: number; components?: BootOutcome['components'] }
  | { type: 'reverted'; version: string; slot: SlotName; reason: string }
  | { type: 'connected'; reconnect: boolean }
  | { type: 'disconnected' }
  | { type: 'offer-accepted'; sid: number; version: string; next: number; chunk: number; resumed: boolean; component?: string }
  | { type: 'offer-rejected'; sid: number; version: string; code: RejectCode; reason: string; component?: string }
  | { type: 'chunk-bad'; sid: number; off: number; why: string }
  | { type: 'transfer-complete'; sid: number }
  | { type: 'verified'; sid: number; ok: boolean; code?: VerifyCode }
  | { type: 'activated'; sid: number; slot: SlotName; with?: number[] }
  | { type: 'rebooting'; reason: string }
  | { type: 'trial-timeout' }
  | { type: 'confirmed'; version: string; sha256: string; repeat: boolean }
  | { type: 'aborted'; sid: number }
  | { type: 'tasks'; tasks: readonly Task[] }
  | { type: 'invalid'; reason: string }
  | { type: 'dropped' }
  | { type: 'power-cut'; phase?: PowerCutPhase; lostWrites: number }
  | { type: 'stopped' }
  | { type: 'error'; message: string };
export type SimEvent = SimEventBody & { id: string };
export type SimEventType = SimEvent['type'];

export interface SimDeviceEvents {
  event: [SimEvent];
}

/** The image being received into the inactive slot of one component (one transfer at a time). */
interface Transfer {
  /** Offer session id; null after a power cycle until the gateway re-offers. */
  sid: number | null;
  component: string;
  slot: SlotName;
  meta: ImageMeta;
  /** Held chunks (durable: flushed and in the progress file). */
  map: ReceiveMap;
  /** Chunks written to flash but not yet flushed. */
  unflushed: Set<number>;
  /** The slot was erased for this image; before that, an abort restores `prev`. */
  erased: boolean;
  prev: SlotRecord;
  /** The offer this transfer runs under (its seq and signature are checked at verify); null like `sid`. */
  offer: OfferMessage | null;
  /**
   * Length of the progress file as this transfer last wrote it (same image, same chunk size),
   * so the next save may overwrite it in place (transfer.ts saveProgress); 0 = replace it whole.
   */
  progressBytes: number;
}

/** Everything in RAM for one boot. Dies with a reboot or a power cut. */
interface Runtime {
  alive: boolean;
  boot: BootOutcome;
  rec: SlotStateRecord;
  client: MqttClient;
  connected: boolean;
  connects: number;
  bootReported: boolean;
  backoffMs: number;
  inbox: GatewayMessage[];
  pumping: boolean;
  /** Chunks handled since the last flush, to be acked together; `bad` = offset of a rejected chunk. */
  owed: { sid: number; bad?: number }[];
  commitNow: boolean;
  dropAfterCommit: boolean;
  transfer: Transfer | null;
  /** The trial timeout while the running image is in trial (§6.9.3): runs only while connected. */
  trial: TrialClock | null;
  /** The last check-in task list received this boot (§6.14): shown and logged, never acted on. */
  tasks: readonly Task[];
}

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

  constructor(input: DeviceOptionsInput, deps: { timers?: Timers } = {}) {
    super();
    this.options = resolveDeviceOptions(input);
    this.id = this.options.id;
    this.faults = new FaultSwitches(this.options.faults);
    this.files = new DeviceFiles(join(this.options.dataDir, this.id), this.options.slotCapacity, { fsync: this.options.fsync });
    this.pinned = new KeyRing(this.options.pinnedKeys.map(parsePublicKey));
    this.#timers = deps.timers ?? realTimers;
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
          await this.#guard(rt, () => this.#commitChunks(rt));
          continue;
        }
        if (msg.t !== 'chunk' && rt.owed.length > 0) await this.#guard(rt, () => this.#commitChunks(rt));
        if (!rt.alive) break;
        await this.#guard(rt, () => this.#dispatch(rt, msg));
        if (rt.owed.length >= this.options.flushBatch || rt.commitNow) await this.#guard(rt, () => this.#commitChunks(rt));
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
        return this.#onOffer(rt, msg);
      case 'chunk':
        return this.#onChunk(rt, msg);
      case 'verify':
        return this.#onVerify(rt, msg.sid);
      case 'activate':
        return this.#onActivate(rt, msg.sid, msg.with);
      case 'confirm':
        return this.#onConfirm(rt, msg.sha256, msg.with);
      case 'abort':
        return this.#onAbort(rt, msg.sid);
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

  async #onOffer(rt: Runtime, m: OfferMessage): Promise<void> {
    const component = offerComponent(m);
    const of = component === APP ? {} : { component };
    const reject = (code: RejectCode, reason: string): void => {
      this.#publish(rt, { t: 'reject', sid: m.sid, code, reason });
      this.#emit({ type: 'offer-rejected', sid: m.sid, version: m.version, code, reason, ...of });
    };
    const rejection = checkOffer(m, {
      hw: rt.rec.hw,
      components: componentNames(rt.rec),
      running: new Map(rt.boot.components.map((c) => [c.name, c.version])),
      installedSeq: rt.rec.seq ?? 0,
      slotCapacity: this.options.slotCapacity,
      securityFloor: this.options.securityFloor,
      busy: this.faults.busy,
      inTrial: anyInTrial(rt.rec),
      pinned: this.pinned,
    });
    if (rejection) return reject(rejection.code, rejection.reason);

    const slot = otherSlot(componentOf(rt.rec, component).active);
    const cur = componentOf(rt.rec, component).slots[slot];
    const chunk = Math.min(m.chunk, this.options.maxChunk);
    const meta: ImageMeta = { name: m.name, version: m.version, size: m.size, crc32: m.crc32, sha256: m.sha256 };
    const accept = (next: number, resumed: boolean): void => {
      this.#publish(rt, { t: 'accept', sid: m.sid, next, chunk, window: this.options.window });
      this.#emit({ type: 'offer-accepted', sid: m.sid, version: m.version, next, chunk, resumed, ...of });
    };

    // Already received and verified, waiting for activation (downloaded early, installed later).
    if (cur.state === 'ready' && cur.sha256 === m.sha256 && cur.size === m.size) {
      if (cur.sid !== m.sid && !(await this.#updateState(rt, (rec) => { componentOf(rec, component).slots[slot].sid = m.sid; }))) return;
      return accept(m.size, true);
    }
    let t = rt.transfer;
    if (t && t.component === component && sameImage(t.meta, meta)) {
      t.sid = m.sid;
      t.offer = m;
      if (t.map.chunk !== chunk) {
        t.map = t.map.rechunk(chunk);
        t.progressBytes = await saveProgress(this.files.progressFile, { ...of, slot, meta: t.meta, map: t.map }, this.files.sync, undefined, this.files.progress);
        if (!rt.alive) return;
      }
      return accept(t.map.next, t.map.held > 0);
    }
    // A different image (or none): discard what was held and start clean. Only one transfer at a
    // time: one of another component is dropped too (its slot as it was, or empty once written).
    const prev: SlotRecord = cur.state === 'confirmed' || cur.state === 'bad' || cur.state === 'empty' ? cur : { state: 'empty' };
    const dropped = t && t.component !== component ? t : null;
    rt.transfer = null;
    if (dropped) {
      this.files.flash(dropped.slot, dropped.component).discard();
      this.files.flash(dropped.slot, dropped.component).close();
    }
    this.files.flash(slot, component).discard();
    this.files.flash(slot, component).close();
    await removeProgress(this.files.progressFile, this.files.sync, this.files.progress);
    if (!rt.alive) return;
    const ok = await this.#updateState(rt, (rec) => {
      for (const other of componentNames(rec)) {
        if (other === component) continue;
        const c = componentOf(rec, other);
        const s = otherSlot(c.active);
        if (dropped && dropped.component === other) c.slots[s] = dropped.erased ? { state: 'empty' } : dropped.prev;
        else if (c.slots[s].state === 'receiving') c.slots[s] = { state: 'empty' }; // a transfer a power cut left without progress
      }
      componentOf(rec, component).slots[slot] = { state: 'receiving', name: m.name, version: m.version, sha256: m.sha256, size: m.size };
    });
    if (!ok) return;
    t = { sid: m.sid, component, slot, meta, map: new ReceiveMap(m.size, chunk), unflushed: new Set(), erased: false, prev, offer: m, progressBytes: 0 };
    rt.transfer = t;
    accept(0, false);
    this.#publish(rt, this.#status(rt));
  }

  async #onChunk(rt: Runtime, m: ChunkMessage): Promise<void> {
    const t = rt.transfer;
    if (!t || t.sid !== m.sid) {
      this.stats.ignored += 1;
      return;
    }
    this.stats.chunks += 1;
    const fault = this.faults.onChunk();
    const data = fault.corrupt ? corruptCopy(m.data) : m.data;
    if (fault.drop) {
      rt.dropAfterCommit = true;
      rt.commitNow = true;
    }
    const { map } = t;
    const idx = Math.floor(m.off / map.chunk);
    let why: string | null = null;
    if (crc32(data) !== m.crc) why = 'crc32 mismatch';
    else if (m.off % map.chunk !== 0) why = `offset ${m.off} is not a multiple of ${map.chunk}`;
    else if (idx >= map.count) why = `offset ${m.off} beyond image of ${map.size} bytes`;
    else if (data.length !== map.lengthOf(idx)) why = `length ${data.length}, expected ${map.lengthOf(idx)}`;
    if (why !== null) {
      this.stats.badChunks += 1;
      this.#emit({ type: 'chunk-bad', sid: m.sid, off: m.off, why });
      rt.owed.push(idx < map.count ? { sid: m.sid, bad: idx * map.chunk } : { sid: m.sid });
      return;
    }
    if (map.has(idx) || t.unflushed.has(idx)) {
      this.stats.duplicates += 1;
      rt.owed.push({ sid: m.sid });
      return;
    }
    const flash = this.files.flash(t.slot, t.component);
    if (!t.erased) {
      await flash.erase();
      if (!rt.alive) return;
      t.erased = true;
    }
    flash.writeOwned(m.off, data); // `data` belongs to this decoded message (or is corruptCopy's copy): no copy needed
    t.unflushed.add(idx);
    rt.owed.push({ sid: m.sid });
  }

  /** End of a chunk batch: flush, record progress, then one ack for every chunk of the batch. */
  async #commitChunks(rt: Runtime): Promise<void> {
    const owed = rt.owed;
    rt.owed = [];
    rt.commitNow = false;
    const t = rt.transfer;
    if (!t) return;
    const wasComplete = t.map.complete;
    if (t.unflushed.size > 0) {
      if (this.#cutIf('chunk-write', [t.component])) return;
      await this.files.flash(t.slot, t.component).flush();
      if (!rt.alive) return;
      for (const i of t.unflushed) t.map.add(i);
      t.unflushed.clear();
      const progress = { ...(t.component === APP ? {} : { component: t.component }), slot: t.slot, meta: t.meta, map: t.map };
      t.progressBytes = await saveProgress(this.files.progressFile, progress, this.files.sync, t.progressBytes, this.files.progress);
      if (!rt.alive) return;
    }
    // One ack answers the whole batch (§6.6.4): every chunk of it is durable now, so the acks owed
    // would all say the same but for the bad chunks, which this one lists together.
    for (const sid of new Set(owed.map((o) => o.sid))) {
      const bad = owed.filter((o) => o.sid === sid && o.bad !== undefined).map((o) => o.bad!);
      this.#publish(rt, { t: 'ack', sid, next: t.map.next, missing: t.map.missing(bad) });
    }
    if (!wasComplete && t.map.complete && t.sid !== null) {
      this.#emit({ type: 'transfer-complete', sid: t.sid });
      if (this.#cutIf('after-transfer', [t.component])) return;
    }
    if (rt.dropAfterCommit) {
      rt.dropAfterCommit = false;
      this.stats.drops += 1;
      rt.inbox = [];
      this.#emit({ type: 'dropped' });
      rt.client.stream.destroy();
    }
  }

  async #onVerify(rt: Runtime, sid: number): Promise<void> {
    const reply = (ok: boolean, code?: VerifyCode, reason?: string): void => {
      this.#publish(rt, { t: 'verified', sid, ok, ...(code ? { code } : {}), ...(reason ? { reason } : {}) });
      this.#emit({ type: 'verified', sid, ok, ...(code ? { code } : {}) });
    };
    if (readyComponent(rt.rec, sid) !== undefined) return reply(true);
    const t = rt.transfer;
    if (!t || t.sid !== sid) return reply(false, 'incomplete', 'no transfer with this sid');
    if (!t.map.complete) return reply(false, 'incomplete', `${t.map.held} of ${t.map.count} chunks held`);
    const { slot, component } = t;
    const flash = this.files.flash(slot, component);
    const bytes = await flash.read();
    if (!rt.alive) return;
    let code: VerifyCode | null = null;
    let reason = '';
    if (bytes.length !== t.meta.size) [code, reason] = ['size', `slot holds ${bytes.length} bytes, offer says ${t.meta.size}`];
    else if (crc32(bytes) !== t.meta.crc32) [code, reason] = ['crc32', 'CRC-32 of the slot does not match the offer'];
    else if (createHash('sha256').update(bytes).digest('hex') !== t.meta.sha256) [code, reason] = ['sha256', 'SHA-256 of the slot does not match the offer'];
    else [code, reason] = checkOfferSignature(this.pinned, t.offer);
    rt.transfer = null;
    flash.close(); // the transfer is over: its slot descriptor is not kept
    await removeProgress(this.files.progressFile, this.files.sync, this.files.progress);
    if (!rt.alive) return;
    if (code !== null) {
      // Nothing is installed unless everything arrived intact: discard, a re-offer starts clean.
      if (!(await this.#updateState(rt, (rec) => { componentOf(rec, component).slots[slot] = { state: 'empty' }; }))) return;
      await flash.erase();
      flash.close();
      if (!rt.alive) return;
      reply(false, code, reason);
    } else {
      const { name, version, size, sha256 } = t.meta;
      const seq = t.offer?.seq ?? 0;
      const ready = await this.#updateState(rt, (rec) => {
        componentOf(rec, component).slots[slot] = { state: 'ready', name, version, size, sha256, sid, seq };
      }, () => this.#cutIf('verification', [component]));
      if (!ready) return;
      reply(true);
    }
    this.#publish(rt, this.#status(rt));
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

  /** `abort {sid}`: drops the transfer, or the ready image, of that sid, whichever component it is for. */
  async #onAbort(rt: Runtime, sid: number): Promise<void> {
    const t = rt.transfer;
    let target: { component: string; slot: SlotName; restore: SlotRecord } | null = null;
    if (t && t.sid === sid) {
      target = { component: t.component, slot: t.slot, restore: t.erased ? { state: 'empty' } : t.prev };
      rt.transfer = null;
      this.files.flash(t.slot, t.component).discard();
    } else {
      const ready = readyComponent(rt.rec, sid);
      if (ready) target = { ...ready, restore: { state: 'empty' } };
    }
    if (target !== null) {
      const { component, slot, restore: to } = target;
      const flash = this.files.flash(slot, component);
      await removeProgress(this.files.progressFile, this.files.sync, this.files.progress);
      if (!rt.alive) return;
      if (!(await this.#updateState(rt, (rec) => { componentOf(rec, component).slots[slot] = to; }))) return;
      if (to.state === 'empty') await flash.erase();
      flash.close(); // the transfer is over: its slot descriptor is not kept
      if (!rt.alive) return;
    }
    this.#publish(rt, { t: 'aborted', sid });
    this.#emit({ type: 'aborted', sid });
    if (target !== null) this.#publish(rt, this.#status(rt));
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

function sameImage(a: ImageMeta, b: ImageMeta): boolean {
  return a.sha256 === b.sha256 && a.size === b.size && a.crc32 === b.crc32;
}
