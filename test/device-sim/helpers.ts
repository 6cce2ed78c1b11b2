import { fileURLToPath } from 'node:url';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Aedes } from 'aedes';
import mqtt, { type MqttClient } from 'mqtt';
import { crc32 } from '../../protocol/crc.ts';
import { manifestForImage, type Manifest } from '../../protocol/manifest.ts';
import {
  decodeDeviceMessage, encodeGatewayMessage, type DeviceMessage, type GatewayMessage, type OfferMessage,
} from '../../protocol/ota.ts';
import { parseDeviceTopic, topics } from '../../protocol/topics.ts';
import { SimDevice, type SimEvent } from '../../device-sim/device.ts';
import type { DeviceOptionsInput } from '../../device-sim/options.ts';
import { makeSampleImage, type SelfTest } from '../../firmware-samples/image-format.ts';

/** Poll `predicate` until it returns a value other than false/undefined/null; bounded. */
export async function waitFor<T>(predicate: () => T | false | undefined | null, timeoutMs: number, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = predicate();
    if (v !== false && v !== undefined && v !== null) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

// ---------------------------------------------------------------- broker

export interface TestBroker {
  url: string;
  broker: Aedes;
  close(): Promise<void>;
}

export async function startBroker(): Promise<TestBroker> {
  const broker = await Aedes.createBroker();
  const server: Server = createServer({ noDelay: true }, broker.handle);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `mqtt://127.0.0.1:${port}`,
    broker,
    close: async () => {
      await new Promise<void>((resolve) => broker.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

// ---------------------------------------------------------------- temp dirs

export async function tempDir(): Promise<{ path: string; remove(): Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), 'fwsim-test-'));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

// ---------------------------------------------------------------- device events

/** Records a device's (or fleet's) events; `next` consumes them in order of arrival. */
export class EventLog {
  readonly events: SimEvent[] = [];
  #consumed = new Set<number>();

  constructor(source: { on(event: 'event', listener: (e: SimEvent) => void): unknown }) {
    source.on('event', (e) => this.events.push(e));
  }

  /** First not-yet-consumed event of `type` matching `pred`; waits at most `timeoutMs`. */
  async next<K extends SimEvent['type']>(type: K, pred: (e: Extract<SimEvent, { type: K }>) => boolean = () => true, timeoutMs = 5_000): Promise<Extract<SimEvent, { type: K }>> {
    const i = await waitFor(() => {
      const j = this.events.findIndex((e, k) => !this.#consumed.has(k) && e.type === type && pred(e as Extract<SimEvent, { type: K }>));
      return j >= 0 ? j + 1 : null;
    }, timeoutMs, `device event "${type}"`);
    this.#consumed.add(i - 1);
    return this.events[i - 1] as Extract<SimEvent, { type: K }>;
  }

  count(type: SimEvent['type']): number {
    return this.events.filter((e) => e.type === type).length;
  }
}

// ---------------------------------------------------------------- scripted gateway

type Msg<T extends DeviceMessage['t']> = Extract<DeviceMessage, { t: T }>;

/** The gateway side, scripted by the test: an MQTT.js client on the device topics. */
export class ScriptedGateway {
  readonly client: MqttClient;
  /** Every message received from devices, in order; `consumed` marks what `expect` returned. */
  readonly received: { id: string; msg: DeviceMessage; consumed: boolean }[] = [];
  /** Payloads from devices that failed to decode: must stay empty. */
  readonly decodeErrors: string[] = [];

  private constructor(client: MqttClient) {
    this.client = client;
    client.on('message', (topic, payload) => {
      const t = parseDeviceTopic(topic);
      if (!t || t.kind !== 'up') return;
      try {
        this.received.push({ id: t.deviceId, msg: decodeDeviceMessage(payload), consumed: false });
      } catch (err) {
        this.decodeErrors.push(`${t.deviceId}: ${(err as Error).message}`);
      }
    });
  }

  static async connect(url: string): Promise<ScriptedGateway> {
    const client = await mqtt.connectAsync(url, { protocolVersion: 4, clientId: `test-gw-${process.pid}-${Math.random().toString(16).slice(2, 8)}`, reconnectPeriod: 100 });
    (client.stream as unknown as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
    const gw = new ScriptedGateway(client);
    await client.subscribeAsync(topics.allUp, { qos: 1 });
    return gw;
  }

  async send(id: string, msg: GatewayMessage, qos: 0 | 1 = 1): Promise<void> {
    await this.client.publishAsync(topics.down(id), Buffer.from(encodeGatewayMessage(msg)), { qos });
  }

  async sendRaw(id: string, payload: Uint8Array): Promise<void> {
    await this.client.publishAsync(topics.down(id), Buffer.from(payload), { qos: 1 });
  }

  /** The first unconsumed message of type `t` from `id` matching `pred`, waiting at most `timeoutMs`. */
  async expect<T extends DeviceMessage['t']>(id: string, t: T, pred: (m: Msg<T>) => boolean = () => true, timeoutMs = 5_000): Promise<Msg<T>> {
    const entry = await waitFor(
      () => this.received.find((r) => !r.consumed && r.id === id && r.msg.t === t && pred(r.msg as Msg<T>)),
      timeoutMs, `"${t}" from ${id}`,
    );
    entry.consumed = true;
    return entry.msg as Msg<T>;
  }

  /** Mark everything received so far from `id` as consumed (start a fresh phase of a test). */
  drain(id: string): void {
    for (const r of this.received) if (r.id === id) r.consumed = true;
  }

  all<T extends DeviceMessage['t']>(id: string, t: T): Msg<T>[] {
    return this.received.filter((r) => r.id === id && r.msg.t === t).map((r) => r.msg as Msg<T>);
  }

  offerFor(sid: number, manifest: Manifest, over: Partial<OfferMessage> = {}): OfferMessage {
    const { name, version, hw, size, crc32: c, sha256, chunk, seq, signature } = manifest;
    return {
      t: 'offer', sid, name, version, hw, size, crc32: c, sha256, chunk,
      ...(seq !== undefined ? { seq } : {}), ...(signature ? { keyId: signature.keyId, sig: signature.sig } : {}), ...over,
    };
  }

  /**
   * Send `image` from `next` on with at most `window` chunks in flight, resending what acks
   * report missing, until an ack says every byte is held. Acks are cumulative (§6.6.4: one ack
   * may answer a whole batch of chunks): a chunk counts as in flight until `next` passes it, and
   * a chunk an ack lists as missing is resent at once (not held back by the window, as the
   * gateway does) the first time it is listed after it was sent.
   */
  async transfer(id: string, sid: number, image: Uint8Array, accept: { next: number; chunk: number; window: number }, timeoutMs = 10_000): Promise<{ sent: number; resent: number; acks: Msg<'ack'>[] }> {
    const { chunk, window } = accept;
    let cursor = accept.next;
    const acks: Msg<'ack'>[] = [];
    let sent = 0;
    let resent = 0;
    let next = accept.next;
    /** Resent and not yet passed by `next` nor listed again. */
    const resending = new Set<number>();
    const send = async (off: number): Promise<void> => {
      const data = image.subarray(off, Math.min(off + chunk, image.length));
      await this.send(id, { t: 'chunk', sid, off, data, crc: crc32(data) });
      sent += 1;
    };
    while (next < image.length) {
      while (cursor < image.length && cursor - next < window * chunk) {
        await send(cursor);
        cursor += chunk;
      }
      if (cursor <= next) throw new Error(`transfer stalled at next=${next} with nothing in flight`);
      const ack = await this.expect(id, 'ack', (a) => a.sid === sid, timeoutMs);
      acks.push(ack);
      next = Math.max(next, ack.next);
      for (const off of [...resending]) if (off < next) resending.delete(off);
      for (const m of ack.missing) {
        if (m < next || m >= cursor || resending.has(m)) continue;
        resending.add(m);
        await send(m);
        resent += 1;
      }
    }
    return { sent, resent, acks };
  }

  /** offer -> accept -> transfer -> verify ok. Returns the accept. */
  async deliver(id: string, sid: number, image: Uint8Array, manifest: Manifest): Promise<Msg<'accept'>> {
    await this.send(id, this.offerFor(sid, manifest));
    const accept = await this.expect(id, 'accept', (a) => a.sid === sid);
    await this.transfer(id, sid, image, accept);
    await this.send(id, { t: 'verify', sid });
    const v = await this.expect(id, 'verified', (m) => m.sid === sid);
    if (!v.ok) throw new Error(`verify failed: ${v.code ?? '?'} ${v.reason ?? ''}`);
    return accept;
  }

  async close(): Promise<void> {
    await this.client.endAsync(true);
  }
}

// ---------------------------------------------------------------- devices and images

export const FAST: Partial<DeviceOptionsInput> = {
  bootDelayMs: 20,
  reconnectDelayMs: 50,
  reconnectMaxMs: 200,
  powerOffMs: 30,
  publishTimeoutMs: 1_000,
  factoryImageSize: 16 * 1024,
};

export function sampleImage(version: string, opts: { hw?: string; size?: number; selftest?: SelfTest; chunk?: number } = {}): { image: Uint8Array; manifest: Manifest } {
  const hw = opts.hw ?? 'sensor-v1';
  const image = makeSampleImage({ name: 'sensor-fw', version, hw, size: opts.size ?? 64 * 1024 + 123, selftest: opts.selftest ?? 'pass' });
  return { image, manifest: manifestForImage(image, { name: 'sensor-fw', version, hw: [hw], chunk: opts.chunk ?? 4096 }) };
}

/** Test context: broker, gateway, temp dir, and devices that are stopped and removed afterwards. */
export class Rig {
  broker!: TestBroker;
  gw!: ScriptedGateway;
  dir!: { path: string; remove(): Promise<void> };
  readonly devices: SimDevice[] = [];

  async setUp(): Promise<void> {
    this.broker = await startBroker();
    this.gw = await ScriptedGateway.connect(this.broker.url);
    this.dir = await tempDir();
  }

  device(id: string, over: Partial<DeviceOptionsInput> = {}): SimDevice {
    const d = new SimDevice({ ...FAST, ...over, id, broker: this.broker.url, dataDir: this.dir.path });
    this.devices.push(d);
    return d;
  }

  /** Create, start and wait until connected and the boot + status messages are in. */
  async online(id: string, over: Partial<DeviceOptionsInput> = {}): Promise<{ device: SimDevice; log: EventLog }> {
    const device = this.device(id, over);
    const log = new EventLog(device);
    await device.start();
    await log.next('connected');
    await this.gw.expect(id, 'boot');
    await this.gw.expect(id, 'status');
    return { device, log };
  }

  async tearDown(): Promise<void> {
    await Promise.allSettled(this.devices.map((d) => d.stop()));
    await this.gw?.close();
    await this.broker?.close();
    await this.dir?.remove();
  }
}

/** Run fwsim (device-sim/cli.ts) as a real process, bounded; resolves with its exit code and output. */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export function runCli(args: string[], opts: { untilStdout?: (out: string) => boolean; signal?: NodeJS.Signals; timeoutMs?: number } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'device-sim/cli.ts', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let signalled = false;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`fwsim did not finish in time; stdout:\n${stdout}\nstderr:\n${stderr}`));
    }, opts.timeoutMs ?? 20_000);
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (!signalled && opts.untilStdout?.(stdout)) {
        signalled = true;
        child.kill(opts.signal ?? 'SIGTERM');
      }
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

