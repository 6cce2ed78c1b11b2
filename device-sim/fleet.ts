import { EventEmitter } from 'node:events';
import { FwError } from '../protocol/errors.ts';
import { SimDevice, type SimDeviceEvents } from './device.ts';
import type { Faults } from './faults.ts';
import { LinkProxy, type LinkProfile } from './link.ts';
import { resolveDeviceOptions, type DeviceOptionsInput, type Timers } from './options.ts';

/** Device options shared by the whole fleet (everything but identity and faults). */
export type FleetDeviceOptions = Omit<DeviceOptionsInput, 'id' | 'broker' | 'dataDir' | 'faults'>;

/** Link profile per device (by id, or by 0-based index and id); a device without one connects directly. */
export type FleetProfiles = ReadonlyMap<string, LinkProfile> | ((index: number, id: string) => LinkProfile | undefined);

export interface FleetOptions {
  broker: string;
  count: number;
  /** Base folder; each device keeps its files in `<dataDir>/<id>/`. */
  dataDir: string;
  /** Id prefix; ids are `<prefix>-001`, `<prefix>-002`, ... Default "dev". */
  prefix?: string;
  /** Explicit device ids (fwsim --id), used instead of `<prefix>-NNN`; as many as `count`. */
  ids?: readonly string[];
  device?: FleetDeviceOptions;
  /** Options of the device at `index` (0-based) with `id` over `device` (fwsim `--component-image who:...`). */
  perDevice?: (index: number, id: string) => Partial<FleetDeviceOptions> | undefined;
  /** Faults for the device at `index` (0-based) with `id`. */
  faults?: (index: number, id: string) => Faults | undefined;
  /**
   * Link profiles: each device with one reaches the broker through its own LinkProxy on
   * 127.0.0.1 (device-sim/link.ts). With any profile given, `devices` is filled by start(),
   * once the proxies listen.
   */
  profiles?: FleetProfiles;
  /** MQTT password per device id (docs/protocol.md §6.1.8); a device without one connects without credentials. */
  passwords?: ReadonlyMap<string, string>;
  timers?: Timers;
}

/** A device's link, announced by start() before the device boots. */
export interface FleetLink {
  id: string;
  index: number;
  profile: LinkProfile;
  /** The proxy's own address (the device's broker URL points here). */
  url: string;
}

export type FleetEvents = SimDeviceEvents & { link: [FleetLink] };

export const MAX_FLEET_SIZE = 10_000;

/** `<prefix>-NNN` for the 0-based `index` (zero-padded to 3 digits, more when needed). */
export function fleetDeviceId(prefix: string, index: number): string {
  return `${prefix}-${String(index + 1).padStart(3, '0')}`;
}

/** Default port of each broker URL scheme, for the proxy's target. */
const DEFAULT_PORTS: Record<string, number> = { 'mqtt:': 1883, 'tcp:': 1883, 'mqtts:': 8883, 'tls:': 8883, 'ws:': 80, 'wss:': 443 };

interface Plan {
  id: string;
  faults: Faults | undefined;
  profile: LinkProfile | undefined;
  own: Partial<FleetDeviceOptions> | undefined;
}

/** N simulated devices, each with its own MQTT connection (and link, with profiles); re-emits every device event. */
export class Fleet extends EventEmitter<FleetEvents> {
  readonly #opts: FleetOptions;
  readonly #plan: readonly Plan[];
  #devices: SimDevice[] = [];
  #byId = new Map<string, SimDevice>();
  /** Open proxies by device id (while started). */
  readonly #links = new Map<string, LinkProxy>();
  /** Port each device's proxy listened on: a restart listens there again, the device's URL is fixed. */
  readonly #ports = new Map<string, number>();

  constructor(opts: FleetOptions) {
    super();
    if (!Number.isInteger(opts.count) || opts.count < 1 || opts.count > MAX_FLEET_SIZE) {
      throw new FwError('E_CONFIG', `fleet size must be 1..${MAX_FLEET_SIZE}, got ${opts.count}`);
    }
    if (opts.ids !== undefined && opts.ids.length !== opts.count) {
      throw new FwError('E_CONFIG', `fleet ids: ${opts.ids.length} ids for a fleet of ${opts.count}`);
    }
    this.#opts = opts;
    const prefix = opts.prefix ?? 'dev';
    const { profiles } = opts;
    const plan: Plan[] = [];
    for (let i = 0; i < opts.count; i++) {
      const id = opts.ids?.[i] ?? fleetDeviceId(prefix, i);
      const profile = profiles === undefined ? undefined : typeof profiles === 'function' ? profiles(i, id) : profiles.get(id);
      plan.push({ id, faults: opts.faults?.(i, id), profile, own: opts.perDevice?.(i, id) });
    }
    this.#plan = plan;
    if (plan.some((p) => p.profile)) {
      brokerTarget(opts.broker);
      // Devices are made once their proxies listen; check their options now all the same.
      for (const p of plan) resolveDeviceOptions(this.#deviceInput(p, opts.broker));
    } else {
      this.#makeDevices(() => opts.broker);
    }
  }

  /** The devices, in index order (with profiles: empty until start()). */
  get devices(): readonly SimDevice[] {
    return this.#devices;
  }

  get(id: string): SimDevice | undefined {
    return this.#byId.get(id);
  }

  /** The link proxy of a device with a profile, while the fleet is started. */
  link(id: string): LinkProxy | undefined {
    return this.#links.get(id);
  }

  /** The link profile of a device, or undefined for a direct connection. */
  profileOf(id: string): LinkProfile | undefined {
    return this.#plan.find((p) => p.id === id)?.profile;
  }

  /** Start the links (if any), then power on every device; if anything fails, stop the rest and throw. */
  async start(): Promise<void> {
    try {
      await this.#startLinks();
    } catch (err) {
      await this.#closeLinks();
      throw err;
    }
    if (this.#devices.length === 0) {
      this.#makeDevices((p) => (p.profile ? deviceUrl(this.#opts.broker, this.#ports.get(p.id)!) : this.#opts.broker));
    }
    const results = await Promise.allSettled(this.#devices.map((d) => d.start()));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      await this.stop();
      throw failed.reason;
    }
  }

  /** Clean shutdown of every device (DISCONNECT, flush), then close their links. */
  async stop(): Promise<void> {
    await Promise.allSettled(this.#devices.map((d) => d.stop()));
    await this.#closeLinks();
  }

  #deviceInput(p: Plan, broker: string): DeviceOptionsInput {
    const password = this.#opts.passwords?.get(p.id);
    return {
      ...this.#opts.device, ...p.own, id: p.id, broker, dataDir: this.#opts.dataDir,
      ...(p.faults ? { faults: p.faults } : {}), ...(password !== undefined ? { password } : {}),
    };
  }

  #makeDevices(brokerOf: (p: Plan) => string): void {
    const timers = this.#opts.timers;
    this.#devices = this.#plan.map((p) => {
      const device = new SimDevice(this.#deviceInput(p, brokerOf(p)), timers ? { timers } : {});
      device.on('event', (e) => this.emit('event', e));
      return device;
    });
    this.#byId = new Map(this.#devices.map((d) => [d.id, d]));
  }

  async #startLinks(): Promise<void> {
    const target = brokerTarget(this.#opts.broker);
    const started = await Promise.allSettled(this.#plan.map(async (p, index) => {
      if (!p.profile || this.#links.has(p.id)) return;
      const proxy = await LinkProxy.start({ target, profile: p.profile, seed: index + 1, port: this.#ports.get(p.id) ?? 0 });
      this.#links.set(p.id, proxy);
      this.#ports.set(p.id, proxy.port);
    }));
    const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    this.#plan.forEach((p, index) => {
      const proxy = this.#links.get(p.id);
      if (proxy) this.emit('link', { id: p.id, index, profile: proxy.profile, url: proxy.url });
    });
  }

  async #closeLinks(): Promise<void> {
    const links = [...this.#links.values()];
    this.#links.clear();
    await Promise.allSettled(links.map((l) => l.close()));
  }
}

/** Where the proxies connect: the host and port of the --broker URL. */
function brokerTarget(broker: string): { host: string; port: number } {
  let u: URL;
  try {
    u = new URL(broker);
  } catch (err) {
    throw new FwError('E_CONFIG', `broker "${broker}" is not a URL`, { cause: err });
  }
  const port = u.port ? Number(u.port) : DEFAULT_PORTS[u.protocol];
  if (port === undefined || u.hostname === '') throw new FwError('E_CONFIG', `broker "${broker}": no host and port to proxy to`);
  return { host: u.hostname.replace(/^\[(.*)\]$/, '$1'), port };
}

/** The broker URL with its host and port replaced by the device's proxy on 127.0.0.1. */
function deviceUrl(broker: string, port: number): string {
  const u = new URL(broker);
  u.hostname = '127.0.0.1';
  u.port = String(port);
  return u.toString();
}
