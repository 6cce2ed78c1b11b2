import { join } from 'node:path';
import type { Command } from 'commander';
import { describeError, FwError } from '../protocol/errors.ts';
import type { GatewayConfig } from './config.ts';
import { readDevicesFile, updateDevicesFile, type DeviceEntry } from './device-auth.ts';
import { FLEET_FILE, readFleetFile, type StoredDevice } from './fleet-store.ts';

/** One row of `fwgate device list`: the device list's entry and the fleet report's, either may be missing. */
export interface DeviceListRow {
  id: string;
  /** In the device list (may log in with a password). */
  listed: boolean;
  disabled: boolean;
  hw?: string;
  version?: string;
  online?: boolean;
  lastCheckIn?: number;
  lastResult?: StoredDevice['lastResult'];
}

/**
 * `fwgate device list [--json]`, `device remove <id>`, `device disable <id>`, `device enable <id>`:
 * the device list (--devices or broker.devicesFile) joined with the fleet report of the data
 * directory; remove / disable / enable rewrite the device list atomically, and a running gateway
 * re-reads it at the next CONNECT. A disabled device is refused at CONNECT (CONNACK 5) and stays in
 * the list and in the fleet report; a removed one can no longer log in when authentication is
 * required, and its history stays in the fleet report. Exit 1 when a file cannot be read or
 * written, 2 on a usage error (unknown id, no device list).
 */
export function addDeviceAdminCommands(device: Command, config: (cmd: Command) => Promise<GatewayConfig>, setRun: (run: () => Promise<void>) => void): void {
  device.command('list')
    .description('List the devices: the device list (--devices) joined with the fleet report (--data): id, listed, disabled, hw, version, online, last check-in')
    .option('--json', 'one JSON object {devices: [...]}')
    .action((o: { json?: boolean }, cmd: Command) => setRun(async () => list(await config(cmd), o.json === true)));
  const change = (name: string, description: string, fn: (entries: DeviceEntry[], id: string) => DeviceEntry[], done: string): void => {
    device.command(`${name} <id>`).description(description).action((id: string, _o: unknown, cmd: Command) => setRun(async () => {
      const file = (await config(cmd)).broker.devicesFile;
      if (!file) return usage(name, 'no device list: give --devices <file>, or --config with broker.devicesFile');
      try {
        await updateDevicesFile(file, (entries) => {
          if (!entries.some((e) => e.id === id)) throw new FwError('E_USAGE', `${id} is not in the device list ${file} (fwgate device list shows it)`);
          return fn(entries, id);
        });
      } catch (err) {
        if (err instanceof FwError && err.code === 'E_USAGE') return usage(name, err.message);
        process.stderr.write(`fwgate: ${describeError(err)}\n`);
        process.exitCode = 1;
        return;
      }
      process.stderr.write(`fwgate: ${id} ${done} in ${file}\n`);
    }));
  };
  change('remove', 'Remove a device from the device list (its history stays in the fleet report)', (entries, id) => entries.filter((e) => e.id !== id), 'removed');
  change('disable', 'Disable a device: refused at CONNECT (CONNACK 5) from its next connection, kept in the list and the report', (entries, id) => entries.map((e) => (e.id === id ? { ...e, disabled: true } : e)), 'disabled');
  change('enable', 'Enable a disabled device again', (entries, id) => entries.map((e) => (e.id === id ? { id: e.id, scrypt: e.scrypt } : e)), 'enabled');
}

function usage(name: string, msg: string): void {
  process.stderr.write(`fwgate device ${name}: ${msg}\n`);
  process.exitCode = 2;
}

async function list(config: GatewayConfig, json: boolean): Promise<void> {
  let entries: DeviceEntry[] = [];
  let report: StoredDevice[] = [];
  try {
    if (config.broker.devicesFile) entries = await readDevicesFile(config.broker.devicesFile);
    report = (await readFleetFile(join(config.dataDir, FLEET_FILE)))?.devices ?? [];
  } catch (err) {
    process.stderr.write(`fwgate: ${describeError(err)}\n`);
    process.exitCode = 1;
    return;
  }
  const rows = new Map<string, DeviceListRow>();
  for (const e of entries) rows.set(e.id, { id: e.id, listed: true, disabled: e.disabled === true });
  for (const d of report) {
    rows.set(d.id, {
      ...(rows.get(d.id) ?? { id: d.id, listed: false, disabled: false }),
      hw: d.hw, version: d.version, online: d.online, lastCheckIn: d.lastCheckIn, ...(d.lastResult ? { lastResult: d.lastResult } : {}),
    });
  }
  const sorted = [...rows.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  if (json) {
    process.stdout.write(`${JSON.stringify({ devices: sorted })}\n`);
    return;
  }
  const head = ['device', 'listed', 'disabled', 'hw', 'version', 'online', 'last check-in'];
  const cells = sorted.map((r) => [
    r.id, r.listed ? 'yes' : 'no', r.disabled ? 'DISABLED' : '', r.hw ?? '-', r.version ?? '-', r.online === undefined ? '-' : r.online ? 'yes' : 'no',
    r.lastCheckIn ? new Date(r.lastCheckIn).toISOString() : '-',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]): string => c.map((x, i) => x.padEnd(widths[i]!)).join('  ').trimEnd();
  process.stdout.write(`${[line(head), ...cells.map(line)].join('\n')}\n`);
}
