import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SerialPort } from 'serialport';
import { Fleet as SimFleet, type FleetDeviceOptions } from '../../device-sim/fleet.ts';
import type { Faults } from '../../device-sim/faults.ts';
import type { LinkProfile } from '../../device-sim/link.ts';
import { makeSampleImage } from '../../firmware-samples/image-format.ts';
import { parseConfig, type ConfigInput } from '../../gateway/config.ts';
import { Gateway, type GatewayOptions } from '../../gateway/gateway.ts';
import { createLogger, silentLogger, type Logger } from '../../gateway/log.ts';
import { manifestForImage, type Manifest } from '../../protocol/manifest.ts';
import {
  decodeGatewayUplinkMessage, encodeUplinkMessage, type GatewayUplinkMessage, type LaptopMessage,
} from '../../protocol/uplink.ts';
import { generateSigningKey, parsePrivateKey } from '../../protocol/signature.ts';
import { technicianKey, type TechnicianKey } from '../../protocol/uplink-auth.ts';
import { MessageLink } from '../../transport/message-link.ts';
import { closeSerialPort, openSerialPort } from '../../transport/serial-port.ts';
import { defaultClientOptions, UplinkClient, type ClientOptions } from '../../laptop/client.ts';
import { createPtyPair, type PtyPair } from '../../scripts/lib/pty-pair.ts';
import { signed, testKey } from './keys.ts';
import { waitUntil } from './wait.ts';
import { writeDeviceList } from './devices.ts';
import { fleetDeviceId } from '../../device-sim/fleet.ts';

export interface RigOptions {
  devices: number;
  hw?: string;
  version?: string;
  faults?: (index: number, id: string) => Faults | undefined;
  /** A shaped link per device (its own proxy on loopback). */
  profiles?: (index: number, id: string) => LinkProfile | undefined;
  config?: ConfigInput;
  /** Device options laid over the rig's fast defaults (e.g. a short trialTimeoutMs for fault tests). */
  device?: FleetDeviceOptions;
  /** The wall clock of the maintenance windows (a fake one moves windows without waiting). */
  wallClock?: GatewayOptions['wallClock'];
  /** The gateway's logger (default: silent, or FWGATE_TEST_LOG). */
  log?: Logger;
  /** More device ids admitted by the broker (e.g. C devices the test starts itself); their passwords are in `rig.passwords`. */
  extraDeviceIds?: readonly string[];
  /** The gateway's data directory (e.g. on a small file system of its own); default `<rig dir>/gateway`. */
  gatewayDir?: string;
  /** Device options of one device over `device` (e.g. other components, device-sim/fleet.ts). */
  perDevice?: (index: number, id: string) => Partial<FleetDeviceOptions> | undefined;
}

/** Test timeouts: short, but generous enough for a loaded 2-core machine. */
const TEST_CONFIG: ConfigInput = {
  broker: { host: '127.0.0.1', port: 0 },
  rollout: {
    ackTimeoutMs: 1500, offerTimeoutMs: 5000, verifyTimeoutMs: 10_000, activateTimeoutMs: 5000,
    rebootTimeoutMs: 20_000, confirmTimeoutMs: 5000, offlineWaitMs: 15_000, retryBackoffMs: 100, probePings: 2,
  },
  log: { level: 'silent' },
};

/** Signed images only, trusting the test process's vendor key (test/helpers/keys.ts); a test may override `security`. */
function testSecurity(): ConfigInput['security'] {
  return { trustedKeys: [{ publicKey: testKey().publicKeyPem }], allowUnsigned: false };
}

/**
 * A whole site on loopback: fwgate in-process with its real broker on an ephemeral port and its
 * uplink on one end of a real socat pty pair; the laptop client on the other end; N simulated
 * devices with real MQTT connections. Everything is torn down by stop().
 */
export class Rig {
  private constructor(
    readonly dir: string,
    readonly pty: PtyPair,
    readonly gateway: Gateway,
    readonly gatewayPort: SerialPort,
    readonly sims: SimFleet,
    readonly laptopPort: SerialPort,
    readonly laptopLink: MessageLink<GatewayUplinkMessage, LaptopMessage>,
    readonly client: UplinkClient,
    readonly events: GatewayUplinkMessage[],
    /** The throw-away technician key the gateway trusts (docs/protocol.md §7.2.4); `rig.client` authenticates with it. */
    readonly techKey: TechnicianKey,
    /** The same key as a PKCS#8 PEM file, for `fwpush --tech-key`. */
    readonly techKeyPath: string,
    /** Device id -> MQTT password of every device the broker admits (the simulated ones and `extraDeviceIds`). */
    readonly passwords: ReadonlyMap<string, string>,
    /** The gateway's data directory. */
    readonly gatewayDir: string,
  ) {}

  /** Client options of the rig's laptop sessions: test timeouts and the rig's technician key. */
  get clientOptions(): ClientOptions {
    return { ...defaultClientOptions, replyTimeoutMs: 20_000, idleTimeoutMs: 60_000, techKey: this.techKey };
  }

  static async start(opts: RigOptions): Promise<Rig> {
    const dir = await mkdtemp(join(tmpdir(), 'fwgate-rig-'));
    const pty = await createPtyPair(dir);
    const tech = generateSigningKey();
    const techKeyPath = join(dir, 'tech-key.pem');
    await writeFile(techKeyPath, tech.privateKeyPem, { mode: 0o600 });
    const techKey = technicianKey(parsePrivateKey(tech.privateKeyPem));
    // Broker authentication on (docs/protocol.md §6.1.8): a device list with a password per simulated device.
    const devicesFile = join(dir, 'devices.json');
    const passwords = await writeDeviceList(devicesFile, [...Array.from({ length: opts.devices }, (_, i) => fleetDeviceId('dev', i)), ...(opts.extraDeviceIds ?? [])]);
    const gatewayDir = opts.gatewayDir ?? join(dir, 'gateway');
    const config = parseConfig({ ...TEST_CONFIG, ...opts.config, dataDir: gatewayDir,
      uplink: { technicianKeys: [{ publicKey: tech.publicKeyPem }], ...opts.config?.uplink },
      broker: { ...TEST_CONFIG.broker, devicesFile, ...opts.config?.broker }, rollout: { ...TEST_CONFIG.rollout, ...opts.config?.rollout },
      log: { ...TEST_CONFIG.log, ...opts.config?.log }, security: opts.config?.security ?? testSecurity() });
    const log = opts.log ?? (process.env.FWGATE_TEST_LOG ? createLogger({ level: process.env.FWGATE_TEST_LOG, format: 'pretty' }) : silentLogger());
    const gatewayPort = await openSerialPort(pty.a, 921_600);
    const gateway = await Gateway.start({ config, log, uplinkStream: gatewayPort, ...(opts.wallClock ? { wallClock: opts.wallClock } : {}) });
    const sims = new SimFleet({
      broker: gateway.broker.url, count: opts.devices, dataDir: join(dir, 'devices'),
      device: {
        hw: opts.hw ?? 'sensor-v1', factoryVersion: opts.version ?? '1.0.0', factoryImageSize: 4096,
        bootDelayMs: 50, reconnectDelayMs: 100, reconnectMaxMs: 1000, powerOffMs: 100, pinnedKeys: [testKey().publicKeyPem],
        ...opts.device,
      },
      ...(opts.faults ? { faults: opts.faults } : {}),
      ...(opts.profiles ? { profiles: opts.profiles } : {}),
      ...(opts.perDevice ? { perDevice: opts.perDevice } : {}),
      passwords,
    });
    await sims.start();
    await waitUntil(() => gateway.fleet.online().length === opts.devices, 20_000, `${opts.devices} devices registered`);
    const laptopPort = await openSerialPort(pty.b, 921_600);
    const laptopLink = new MessageLink<GatewayUplinkMessage, LaptopMessage>(laptopPort, {
      decode: decodeGatewayUplinkMessage, encode: encodeUplinkMessage, arq: { window: 16, maxPayload: 256 },
    });
    const client = new UplinkClient(laptopLink, { ...defaultClientOptions, replyTimeoutMs: 20_000, idleTimeoutMs: 60_000, techKey });
    const events: GatewayUplinkMessage[] = [];
    client.on('event', (e) => events.push(e));
    return new Rig(dir, pty, gateway, gatewayPort, sims, laptopPort, laptopLink, client, events, techKey, techKeyPath, passwords, gatewayDir);
  }

  /** A second laptop session on the same serial port (after the first one was unplugged). */
  reconnectLaptop(): { link: MessageLink<GatewayUplinkMessage, LaptopMessage>; client: UplinkClient; events: GatewayUplinkMessage[] } {
    const link = new MessageLink<GatewayUplinkMessage, LaptopMessage>(this.laptopPort, {
      decode: decodeGatewayUplinkMessage, encode: encodeUplinkMessage, arq: { window: 16, maxPayload: 256 },
    });
    const client = new UplinkClient(link, this.clientOptions);
    const events: GatewayUplinkMessage[] = [];
    client.on('event', (e) => events.push(e));
    this.extraLinks.push(link);
    return { link, client, events };
  }

  private readonly extraLinks: MessageLink<GatewayUplinkMessage, LaptopMessage>[] = [];

  async stop(): Promise<void> {
    for (const l of this.extraLinks) l.close();
    this.laptopLink.close();
    await closeSerialPort(this.laptopPort).catch(() => undefined);
    await this.sims.stop().catch(() => undefined);
    await this.gateway.stop().catch(() => undefined);
    await closeSerialPort(this.gatewayPort).catch(() => undefined);
    await this.pty.close().catch(() => undefined);
    await rm(this.dir, { recursive: true, force: true });
  }
}

/**
 * A sample image and its manifest, signed with the test key and `seq` 1 unless told otherwise
 * (`unsigned: true` for a manifest without signature).
 */
export function sampleImage(opts: { version: string; hw?: string; size?: number; selftest?: 'pass' | 'fail'; chunk?: number; seq?: number; unsigned?: boolean }): { image: Buffer; manifest: Manifest } {
  const hw = opts.hw ?? 'sensor-v1';
  const image = Buffer.from(makeSampleImage({ name: 'sensor-fw', version: opts.version, hw, size: opts.size ?? 96 * 1024, ...(opts.selftest ? { selftest: opts.selftest } : {}) }));
  const manifest = manifestForImage(image, { name: 'sensor-fw', version: opts.version, hw: [hw], seq: opts.seq ?? 1, ...(opts.chunk ? { chunk: opts.chunk } : {}) });
  return { image, manifest: opts.unsigned ? manifest : signed(manifest) };
}
