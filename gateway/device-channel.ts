import { EventEmitter } from 'node:events';
import { isFwError, type ErrorCode } from '../protocol/errors.ts';
import {
  decodeDeviceMessage, encodeGatewayMessage, type DeviceMessage, type GatewayMessage,
} from '../protocol/ota.ts';
import { topics } from '../protocol/topics.ts';
import type { Broker } from './broker.ts';
import type { Logger } from './log.ts';
import { LogThrottle } from './rate-limit.ts';
import { upTopicSender } from './up-topic.ts';
import { realTimers, waitForValue, type Timers } from './waiter.ts';

/** A device message, or a presence change seen by the broker. */
export type DeviceEvent = DeviceMessage | { t: 'online' } | { t: 'offline' };

export interface ChannelStats {
  received: number;
  sent: number;
  invalid: number;
  unknownType: number;
  badTopic: number;
  /** Bytes of messages published to devices (all types). */
  bytesSent: number;
  /** `chunk` messages for an offset already sent in the same transfer (session id) to the same device. */
  chunkResends: number;
}

/**
 * The gateway's side of the OTA protocol over the embedded broker: decodes what devices publish
 * on their `up` topics (counting and dropping what does not validate), publishes commands on
 * their `down` topics, and lets device sessions await replies with bounded waits.
 */
export class DeviceChannel extends EventEmitter<{ event: [deviceId: string, event: DeviceEvent] }> {
  private readonly deviceListeners = new Map<string, Set<(e: DeviceEvent) => void>>();
  private unsubscribe: (() => Promise<void>) | undefined;
  private readonly ready = new Set<string>();
  readonly stats: ChannelStats = { received: 0, sent: 0, invalid: 0, unknownType: 0, badTopic: 0, bytesSent: 0, chunkResends: 0 };
  /** Per device: the transfer (sid) being sent and the chunk offsets sent in it, to count resends. */
  private readonly chunksSent = new Map<string, { sid: number; offsets: Set<number> }>();
  /** A device sending garbage gets one warning per 10 s, with the count left out, not one per message. */
  private readonly invalidLog: LogThrottle;

  constructor(private readonly broker: Broker, private readonly log: Logger, private readonly timers: Timers = realTimers) {
    super();
    this.invalidLog = new LogThrottle(10_000, () => timers.now());
    broker.on('clientConnected', (id) => this.dispatch(id, { t: 'online' }));
    broker.on('clientDisconnected', (id) => {
      this.chunksSent.delete(id);
      this.dispatch(id, { t: 'offline' });
    });
  }

  async start(): Promise<void> {
    this.unsubscribe = await this.broker.subscribe(topics.allUp, (topic, payload, clientId) => this.onPublish(topic, payload, clientId));
  }

  async stop(): Promise<void> {
    for (const set of this.deviceListeners.values()) for (const fn of set) fn({ t: 'offline' });
    this.deviceListeners.clear();
    await this.unsubscribe?.();
  }

  private onPublish(topic: string, payload: Buffer, clientId: string | null): void {
    const deviceId = upTopicSender(topic, clientId);
    if (deviceId === undefined) {
      this.stats.badTopic++;
      this.log.debug({ topic, clientId }, 'dropped publish on a topic that is not the sender\'s up topic');
      return;
    }
    let msg: DeviceMessage;
    try {
      msg = decodeDeviceMessage(payload);
    } catch (err) {
      if (isFwError(err, 'E_MESSAGE_TYPE')) this.stats.unknownType++;
      else this.stats.invalid++;
      const { log, suppressed } = this.invalidLog.allow(deviceId);
      if (log) this.log.warn({ device: deviceId, err: isFwError(err) ? err.message : String(err), ...(suppressed > 0 ? { suppressed } : {}) }, 'dropped invalid device message');
      return;
    }
    this.stats.received++;
    this.dispatch(deviceId, msg);
  }

  private dispatch(deviceId: string, event: DeviceEvent): void {
    if (event.t === 'status') this.ready.add(deviceId);
    else if (event.t === 'offline' || event.t === 'online') this.ready.delete(deviceId);
    this.emit('event', deviceId, event);
    const set = this.deviceListeners.get(deviceId);
    if (set) for (const fn of [...set]) fn(event);
  }

  /**
   * Publish a command to a device: QoS 0 for chunks, pings and probes (our own acks cover them),
   * QoS 1 otherwise. `encoded`: the message's bytes when the caller already has them (a spliced
   * `chunk`, gateway/rollout/chunk-message.ts); they must equal `encodeGatewayMessage(msg)`.
   */
  async send(deviceId: string, msg: GatewayMessage, encoded?: Uint8Array): Promise<void> {
    const qos = msg.t === 'chunk' || msg.t === 'ping' || msg.t === 'probe' ? 0 : 1;
    this.stats.sent++;
    if (msg.t === 'chunk') this.countChunk(deviceId, msg.sid, msg.off);
    const bytes = encoded ?? encodeGatewayMessage(msg);
    this.stats.bytesSent += bytes.byteLength;
    const topic = topics.down(deviceId);
    // chunks, the bulk of the bytes, go straight to the device's connection (Broker.publishDirect)
    await ((msg.t === 'chunk' ? this.broker.publishDirect(deviceId, topic, bytes) : undefined) ?? this.broker.publish(topic, bytes, qos));
  }

  private countChunk(deviceId: string, sid: number, off: number): void {
    let sent = this.chunksSent.get(deviceId);
    if (!sent || sent.sid !== sid) {
      sent = { sid, offsets: new Set() };
      this.chunksSent.set(deviceId, sent);
    }
    if (sent.offsets.has(off)) this.stats.chunkResends++;
    else sent.offsets.add(off);
  }

  /** Receive every event of one device until the returned function is called. */
  listen(deviceId: string, fn: (e: DeviceEvent) => void): () => void {
    let set = this.deviceListeners.get(deviceId);
    if (!set) {
      set = new Set();
      this.deviceListeners.set(deviceId, set);
    }
    const mine = set;
    mine.add(fn);
    return () => {
      mine.delete(fn);
      if (mine.size === 0 && this.deviceListeners.get(deviceId) === mine) this.deviceListeners.delete(deviceId);
    };
  }

  /** Wait for an event from one device that matches; bounded by `timeoutMs`. */
  waitFor<R extends DeviceEvent>(deviceId: string, match: (e: DeviceEvent) => e is R, timeoutMs: number, what: string, code: ErrorCode = 'E_DEVICE_TIMEOUT'): Promise<R> {
    return waitForValue((fn) => this.listen(deviceId, fn), match, timeoutMs, this.timers, code, `${what} from ${deviceId}`);
  }

  /**
   * Send a command and wait for its reply. The wait is registered before the publish, so a fast
   * reply is never missed.
   */
  async request<R extends DeviceEvent>(deviceId: string, msg: GatewayMessage, match: (e: DeviceEvent) => e is R, timeoutMs: number, what: string): Promise<R> {
    const reply = this.waitFor(deviceId, match, timeoutMs, what);
    try {
      await this.send(deviceId, msg);
    } catch (err) {
      reply.catch(() => undefined);
      throw err;
    }
    return reply;
  }

  /**
   * Connected and ready for commands: the device has published `status` since it connected,
   * which it does only after subscribing to its down topic (docs/protocol.md §6.2). A command
   * sent between CONNECT and that status could be lost.
   */
  isOnline(deviceId: string): boolean {
    return this.ready.has(deviceId) && this.broker.isConnected(deviceId);
  }
}

/** Type guard factory: `is('ack')` matches events of that type. */
export function is<T extends DeviceEvent['t']>(t: T): (e: DeviceEvent) => e is Extract<DeviceEvent, { t: T }> {
  return (e): e is Extract<DeviceEvent, { t: T }> => e.t === t;
}
