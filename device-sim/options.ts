import { z } from 'zod';
import { FwError } from '../protocol/errors.ts';
import { MAX_CHUNK_SIZE, MAX_COMPONENTS, MAX_WINDOW, MIN_CHUNK_SIZE } from '../protocol/limits.ts';
import { DEFAULT_COMPONENT, componentName } from '../protocol/release.ts';
import { formatIssues } from '../protocol/schema.ts';
import { parsePublicKey } from '../protocol/signature.ts';
import { isValidDeviceId } from '../protocol/topics.ts';
import { compareVersions, isValidVersion } from '../protocol/version.ts';
import { deviceTlsSchema } from './credentials.ts';
import { faultsSchema } from './faults.ts';

/**
 * Every tunable of the simulated device in one place: timings, limits and identity.
 * Defaults are listed once, in DEVICE_DEFAULTS; `resolveDeviceOptions` validates a partial
 * object against them and returns the complete, frozen configuration a SimDevice uses.
 */
export const DEVICE_DEFAULTS = {
  /** Hardware model reported in status and checked against `offer.hw`. */
  hw: 'sensor-v1',
  /** Version of the factory image written to slot A on the very first start. */
  factoryVersion: '1.0.0',
  /** Image name used for the factory image. */
  imageName: 'sensor-fw',
  /** Size of the generated factory image, bytes. */
  factoryImageSize: 64 * 1024,

  // ---- timings (ms unless noted) ----
  /** Time between closing the connection for a reboot and the bootloader running. */
  bootDelayMs: 300,
  /**
   * A trial image not confirmed within this much time *connected to the broker* makes the device
   * reboot and revert (§6.9.3: the trial waits while the gateway is unreachable) ...
   */
  trialTimeoutMs: 30_000,
  /** ... and within this long from the trial boot in any case, connected or not. */
  trialMaxMs: 600_000,
  /** First reconnect delay after a lost connection; doubles per failed attempt ... */
  reconnectDelayMs: 1_000,
  /** ... up to this bound. Reset to reconnectDelayMs after every successful connect. */
  reconnectMaxMs: 10_000,
  /** MQTT keepalive, seconds. */
  keepaliveS: 10,
  /** MQTT CONNECT -> CONNACK bound. */
  connectTimeoutMs: 5_000,
  /** How long the device stays dark after a simulated power cut before it boots again. */
  powerOffMs: 500,
  /** Bound on waiting for the broker to acknowledge `activated` before the reboot. */
  publishTimeoutMs: 2_000,

  // ---- limits ----
  /** Largest chunk the device accepts (accept.chunk = min(offer.chunk, maxChunk)). */
  maxChunk: 16_384,
  /**
   * Chunks the gateway may have in flight (accept.window): two flush batches, so that the next
   * batch is already arriving while the device writes and acks the last one.
   */
  window: 16,
  /** Capacity of one slot; larger offers are refused with `no-space`. */
  slotCapacity: 16 * 1024 * 1024,
  /** At most this many chunks are buffered before the flash is flushed and the acks go out. */
  flushBatch: 8,
  /**
   * Also fsync every flash flush and every atomic replace of state.json / transfer.json. Off:
   * the simulated power cut drops unflushed writes in the simulator itself and a killed
   * process loses no write already made, so the power model holds without it; on, the files
   * also survive a crash of the host OS, at one fsync per flush and two per replace.
   */
  fsync: false,
} as const;

const ms = z.number().int().min(0).max(24 * 3600 * 1000);

export const deviceOptionsSchema = z.strictObject({
  id: z.string().refine(isValidDeviceId, 'must be a valid device id (letters, digits, ".", "_", "-"; at most 64)'),
  broker: z.string().refine(isBrokerUrl, 'must be a broker URL such as mqtt://127.0.0.1:1883 (mqtt, mqtts, tcp, tls, ws, wss)'),
  /** Base data folder; the device keeps its files in `<dataDir>/<id>/`. */
  dataDir: z.string().min(1),
  hw: z.string().min(1).max(64).default(DEVICE_DEFAULTS.hw),
  factoryVersion: z.string().refine(isValidVersion, 'must be a semantic version').default(DEVICE_DEFAULTS.factoryVersion),
  imageName: z.string().min(1).max(64).default(DEVICE_DEFAULTS.imageName),
  factoryImageSize: z.number().int().min(1024).max(64 * 1024 * 1024).default(DEVICE_DEFAULTS.factoryImageSize),
  bootDelayMs: ms.default(DEVICE_DEFAULTS.bootDelayMs),
  trialTimeoutMs: ms.min(1).default(DEVICE_DEFAULTS.trialTimeoutMs),
  trialMaxMs: ms.min(1).default(DEVICE_DEFAULTS.trialMaxMs),
  reconnectDelayMs: ms.min(1).default(DEVICE_DEFAULTS.reconnectDelayMs),
  reconnectMaxMs: ms.min(1).default(DEVICE_DEFAULTS.reconnectMaxMs),
  keepaliveS: z.number().int().min(1).max(65_535).default(DEVICE_DEFAULTS.keepaliveS),
  connectTimeoutMs: ms.min(1).default(DEVICE_DEFAULTS.connectTimeoutMs),
  powerOffMs: ms.default(DEVICE_DEFAULTS.powerOffMs),
  publishTimeoutMs: ms.min(1).default(DEVICE_DEFAULTS.publishTimeoutMs),
  maxChunk: z.number().int().min(MIN_CHUNK_SIZE).max(MAX_CHUNK_SIZE).default(DEVICE_DEFAULTS.maxChunk),
  window: z.number().int().min(1).max(MAX_WINDOW).default(DEVICE_DEFAULTS.window),
  slotCapacity: z.number().int().min(1024).max(0xffff_ffff).default(DEVICE_DEFAULTS.slotCapacity),
  flushBatch: z.number().int().min(1).max(256).default(DEVICE_DEFAULTS.flushBatch),
  fsync: z.boolean().default(DEVICE_DEFAULTS.fsync),
  /**
   * Anti-rollback security floor (docs/protocol.md §6.5.6): offers of an older version are refused
   * with `below-floor`, even as a downgrade, and `status.floor` reports it. A property of the
   * device's boot chain (OTP / security counter), not of its files: taken from the options at every
   * start, never persisted. No default: without it the device has no floor.
   */
  securityFloor: z.string().refine(isValidVersion, 'must be a semantic version').optional(),
  /**
   * Pinned manifest-signing public keys (docs/protocol.md §5.4, §6.7.1): Ed25519, SPKI PEM or raw
   * 32 bytes base64/hex. With any, `verify` also checks the offer's signature; with none, the
   * simulator checks no signature (development behaviour, docs/device-sim.md).
   */
  pinnedKeys: z.array(z.string().min(1).superRefine((k, ctx) => {
    try {
      parsePublicKey(k);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
    }
  })).max(16).default([]),
  /** MQTT password; the user name is the device id (docs/protocol.md §6.1.8). None: connect without credentials. */
  password: z.string().min(1).optional(),
  /** mqtts: CA of the broker's certificate, and the device's certificate and key (PEM files). */
  tls: deviceTlsSchema.optional(),
  /**
   * The device's components (docs/device-sim.md "Components"), each with A/B slots of its own;
   * `app` must be one of them and comes first. Default `['app']`: a single-image device, whose
   * files and messages are those of every device before components existed.
   */
  components: z.array(componentName).min(1).max(MAX_COMPONENTS)
    .refine((c) => c.includes(DEFAULT_COMPONENT), `must include "${DEFAULT_COMPONENT}"`)
    .refine((c) => new Set(c).size === c.length, 'must not repeat a component')
    .transform((c) => [DEFAULT_COMPONENT, ...c.filter((n) => n !== DEFAULT_COMPONENT)])
    .default([DEFAULT_COMPONENT]),
  /** Factory image per component: that file's bytes instead of a generated image (version and name from its sample header, if any). */
  componentImages: z.record(componentName, z.string().min(1)).optional(),
  /** Factory version per component (default factoryVersion). */
  componentVersions: z.record(componentName, z.string().refine(isValidVersion, 'must be a semantic version')).optional(),
  faults: faultsSchema.default({}),
})
  .refine((o) => Object.keys({ ...o.componentImages, ...o.componentVersions }).every((c) => o.components.includes(c)), {
    message: 'names a component the device does not have (see components)', path: ['components'],
  })
  .refine((o) => [o.faults.failSelfTestComponent, o.faults.powerCutComponent].every((c) => c === undefined || o.components.includes(c)), {
    message: 'a fault names a component the device does not have (see components)', path: ['faults'],
  })
  .refine((o) => o.reconnectMaxMs >= o.reconnectDelayMs, { message: 'reconnectMaxMs must be >= reconnectDelayMs', path: ['reconnectMaxMs'] })
  .refine((o) => o.securityFloor === undefined || !isValidVersion(o.securityFloor) || !isValidVersion(o.factoryVersion) || compareVersions(o.factoryVersion, o.securityFloor) >= 0, {
    message: 'securityFloor must not be above factoryVersion (the factory image would be below the floor)', path: ['securityFloor'],
  });

const BROKER_PROTOCOLS = new Set(['mqtt:', 'mqtts:', 'tcp:', 'tls:', 'ws:', 'wss:']);

export function isBrokerUrl(url: string): boolean {
  try {
    const u = new URL(url);
    return BROKER_PROTOCOLS.has(u.protocol) && u.hostname !== '';
  } catch {
    return false;
  }
}

export type DeviceOptionsInput = z.input<typeof deviceOptionsSchema>;
export type DeviceOptions = Readonly<z.output<typeof deviceOptionsSchema>>;

/** Validate options and fill in defaults; throws FwError E_CONFIG naming each bad field. */
export function resolveDeviceOptions(input: DeviceOptionsInput): DeviceOptions {
  const r = deviceOptionsSchema.safeParse(input);
  if (!r.success) throw new FwError('E_CONFIG', `device options: ${formatIssues(r.error)}`);
  return Object.freeze(r.data);
}

/** Timers are injected so tests can substitute fake ones (style.md "Inject what varies"). */
export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  /** Monotonic ms (fake clocks); default performance.now. */
  now?(): number;
}

export const realTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};
