import { EventEmitter } from 'node:events';
import { FwError } from '../protocol/errors.ts';
import { SimDevice, type SimDeviceEvents } from './device.ts';
import type { Faults } from './faults.ts';
import type { DeviceOptionsInput, Timers } from './options.ts';

/** Device options shared by the whole fleet (everything but identity and faults). */
export type FleetDeviceOptions = Omit<DeviceOptionsInput, 'id' | 'broker' | 'dataDir' | 'faults'>;

export interface FleetOptions {
  broker: string;
  count: number;
  /** Base folder; each device keeps its files in `<dataDir>/<id>/`. */
  dataDir: string;
  /** Id prefix; ids are `<prefix>-001`, `<prefix>-002`, ... Default "dev". */
  prefix?: string;
  device?: FleetDeviceOptions;
  /** Faults for the device at `index` (0-based) with `id`. */
  faults?: (index: number, id: string) => Faults | undefined;
  timers?: Timers;
}

export const MAX_FLEET_SIZE = 10_000;

/** `<prefix>-NNN` for the 0-based `index` (zero-padded to 3 digits, more when needed). */
export function fleetDeviceId(prefix: string, index: number): string {
  return `${prefix}-${String(index + 1).padStart(3, '0')}`;
}

/** N simulated devices, each with its own MQTT connection; re-emits every device event. */
export class Fleet extends EventEmitter<SimDeviceEvents> {
  readonly devices: readonly SimDevice[];
  readonly #byId: Map<string, SimDevice>;

  constructor(opts: FleetOptions) {
    super();
    if (!Number.isInteger(opts.count) || opts.count < 1 || opts.count > MAX_FLEET_SIZE) {
      throw new FwError('E_CONFIG', `fleet size must be 1..${MAX_FLEET_SIZE}, got ${opts.count}`);
    }
    const prefix = opts.prefix ?? 'dev';
    const devices: SimDevice[] = [];
    for (let i = 0; i < opts.count; i++) {
      const id = fleetDeviceId(prefix, i);
      const faults = opts.faults?.(i, id);
      const device = new SimDevice(
        { ...opts.device, id, broker: opts.broker, dataDir: opts.dataDir, ...(faults ? { faults } : {}) },
        opts.timers ? { timers: opts.timers } : {},
      );
      device.on('event', (e) => this.emit('event', e));
      devices.push(device);
    }
    this.devices = devices;
    this.#byId = new Map(devices.map((d) => [d.id, d]));
  }

  get(id: string): SimDevice | undefined {
    return this.#byId.get(id);
  }

  /** Power on every device; if any fails to boot, stop the others and throw its error. */
  async start(): Promise<void> {
    const results = await Promise.allSettled(this.devices.map((d) => d.start()));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      await this.stop();
      throw failed.reason;
    }
  }

  /** Clean shutdown of every device (DISCONNECT, flush). */
  async stop(): Promise<void> {
    await Promise.allSettled(this.devices.map((d) => d.stop()));
  }
}
