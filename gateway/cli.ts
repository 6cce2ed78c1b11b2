#!/usr/bin/env node
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { describeError, FwError } from '../protocol/errors.ts';
import { TOOL_VERSION } from '../protocol/tool-version.ts';
import { closeSerialPort, closeSerialPortWithin, openSerialPort, watchPortPath } from '../transport/serial-port.ts';
import { checkExposure, type Exposure } from './broker-exposure.ts';
import { loadConfigFile, mergeConfig, parseConfig, type GatewayConfig } from './config.ts';
import { addConfigCommands } from './config-cli.ts';
import { addDeviceAdminCommands } from './device-admin-cli.ts';
import { addDeviceCommands } from './device-cli.ts';
import { addCampaignControlCommands } from './control-cli.ts';
import { addReleaseCommands } from './release-cli.ts';
import { FLEET_FILE, readFleetFile, type FleetFile } from './fleet-store.ts';
import { Gateway } from './gateway.ts';
import { addHistoryCommands } from './history-cli.ts';
import { startFailed } from './start-failure.ts';
import { startHttp } from './http/start.ts';
import { createLogger, type Logger } from './log.ts';

function int(name: string) {
  return (v: string): number => {
    if (!/^\d+$/.test(v)) throw new InvalidArgumentError(`${name} must be a whole number, got "${v}"`);
    return Number(v);
  };
}

const program = new Command('fwgate')
  .description('Firmware-update gateway: takes images from a field laptop over serial and rolls them out to devices over its embedded MQTT broker.')
  .option('-c, --config <file>', 'JSON config file (all settings; flags override it)')
  .option('-s, --serial <path>', 'serial port of the laptop link, e.g. /dev/ttyUSB0')
  .option('--baud <rate>', 'serial baud rate', int('--baud'))
  .option('-d, --data <dir>', 'data directory (images, partial uploads, campaign journals, fleet.json)')
  .option('--host <addr>', 'MQTT listen address (default 127.0.0.1)')
  .option('-p, --port <port>', 'MQTT listen port (default 1883; 0 = any free port)', int('--port'))
  .option('--devices <file>', 'device list with password hashes (broker.devicesFile): devices must log in')
  .option('--insecure-open', 'LAB ONLY: allow an open broker (no device authentication) on an address beyond loopback (broker.insecureOpen); says so loudly at start-up')
  .option('--concurrency <n>', 'devices updated at the same time', int('--concurrency'))
  .option('--trusted-key <file>', 'trust manifests signed by this Ed25519 public key (PEM from `fwpush keygen`); repeat for a key rotation; added to security.trustedKeys', (v: string, prev: string[] = []) => [...prev, v])
  .option('--technician-key <file>', 'accept uploads authenticated with this technician public key (PEM from `fwpush keygen`); repeat for several; added to uplink.technicianKeys', (v: string, prev: string[] = []) => [...prev, v])
  .option('--http-port <port>', 'serve metrics, health, the JSON API and the status page on this port (http.port; 0 = any free port; default off)', int('--http-port'))
  .option('--http-host <addr>', 'HTTP listen address (http.host, default 127.0.0.1; any other needs http.token)')
  .option('--allow-unsigned', 'DEVELOPMENT ONLY: accept unsigned images (security.allowUnsigned); says so loudly at start-up')
  .option('--log-level <level>', 'fatal|error|warn|info|debug|trace|silent')
  .option('--log-format <format>', 'pretty|json')
  .version(`fwgate ${TOOL_VERSION}`, '-V, --version', 'print fwgate\'s version')
  .configureOutput({ outputError: (str, write) => write(`${str.trimEnd()} (see fwgate --help)\n`) })
  .exitOverride();

type Flags = {
  config?: string; serial?: string; baud?: number; data?: string; host?: string; port?: number; concurrency?: number; logLevel?: string; logFormat?: string;
  trustedKey?: string[]; allowUnsigned?: boolean; technicianKey?: string[]; httpPort?: number; httpHost?: string; insecureOpen?: boolean;
};

/** What this run does: serve (no subcommand) or a subcommand; set by the action commander picks. */
let run: (() => Promise<void>) | undefined;
program.action(() => {
  run = () => serve(program.opts<Flags>());
});
program.command('report')
  .description('Print the fleet report (every device: version, last check-in, last result) from <data>/fleet.json; starts no gateway, works while one runs')
  .option('--json', 'one JSON object instead of a table')
  .action((o: { json?: boolean }, cmd: Command) => {
    run = () => report(cmd.optsWithGlobals<Flags>(), o.json === true);
  });

addConfigCommands(program, (cmd) => loadConfig(cmd.optsWithGlobals<Flags>()), (r) => {
  run = r;
});
addDeviceAdminCommands(addDeviceCommands(program, async (cmd) => (await loadConfig(cmd.optsWithGlobals<Flags>())).broker.devicesFile, (r) => {
  run = r;
}), (cmd) => loadConfig(cmd.optsWithGlobals<Flags>()), (r) => {
  run = r;
});
const { campaign } = addHistoryCommands(program, (cmd) => loadConfig(cmd.optsWithGlobals<Flags>()), (r) => {
  run = r;
});
// cancel, retry and resume go to the running gateway through its control socket in the data directory
addCampaignControlCommands(campaign, async (cmd) => (await loadConfig(cmd.optsWithGlobals<Flags>())).dataDir, (r) => {
  run = r;
});

// fwgate releases, fwgate release live (docs/operations.md "Releases")
addReleaseCommands(program, (cmd) => loadConfig(cmd.optsWithGlobals<Flags>()), (r) => {
  run = r;
});

async function main(): Promise<void> {
  try {
    program.parse();
  } catch (err) {
    const code = (err as { exitCode?: number }).exitCode ?? 2;
    process.exit(code === 0 ? 0 : 2);
  }
  await run?.();
}

/** Defaults <- config file <- flags; a bad value ends the process with exit code 2. */
async function loadConfig(o: Flags): Promise<GatewayConfig> {
  try {
    const file = o.config ? await loadConfigFile(o.config) : {};
    const flagKeys = await Promise.all((o.trustedKey ?? []).map(async (path) => ({ publicKey: await readKeyFile(path) })));
    const fileKeys = (file as { security?: { trustedKeys?: unknown } } | null)?.security?.trustedKeys;
    const techKeys = await Promise.all((o.technicianKey ?? []).map(async (path) => ({ publicKey: await readKeyFile(path, 'technician key') })));
    const fileTechKeys = (file as { uplink?: { technicianKeys?: unknown } } | null)?.uplink?.technicianKeys;
    const flags = {
      security: {
        trustedKeys: flagKeys.length > 0 ? [...(Array.isArray(fileKeys) ? fileKeys : []), ...flagKeys] : undefined,
        allowUnsigned: o.allowUnsigned ? true : undefined,
      },
      dataDir: o.data,
      serial: { path: o.serial, baudRate: o.baud },
      uplink: { technicianKeys: techKeys.length > 0 ? [...(Array.isArray(fileTechKeys) ? fileTechKeys : []), ...techKeys] : undefined },
      http: { port: o.httpPort, host: o.httpHost },
      broker: { host: o.host, port: o.port, devicesFile: (o as { devices?: string }).devices, insecureOpen: o.insecureOpen ? true : undefined },
      rollout: { concurrency: o.concurrency },
      log: { level: o.logLevel, format: o.logFormat },
    };
    return parseConfig(mergeConfig(file, flags), o.config ? `config (${o.config} + flags)` : 'flags');
  } catch (err) {
    process.stderr.write(`fwgate: ${describeError(err)}\n`);
    process.exit(2);
  }
}

async function readKeyFile(path: string, what = 'trusted key'): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (cause) {
    throw new FwError('E_CONFIG', `cannot read ${what} ${path}: ${(cause as Error).message}`, { cause });
  }
}

async function serve(o: Flags): Promise<void> {
  const config = await loadConfig(o);
  let exposure: Exposure;
  try {
    exposure = checkExposure(config.broker);
  } catch (err) {
    process.stderr.write(`fwgate: ${describeError(err)}\n`);
    process.exit(2);
  }
  const log = createLogger({ level: config.log.level, format: config.log.format });
  let gw: Gateway;
  let http: Awaited<ReturnType<typeof startHttp>>;
  try {
    gw = await Gateway.start({ config, log });
  } catch (err) {
    startFailed(err, log);
  }
  try {
    http = await startHttp(gw, config.http);
  } catch (err) {
    await gw.stop().catch(() => undefined);
    startFailed(err, log);
  }
  process.stdout.write(`fwgate ready: broker ${gw.broker.url}\n`);
  for (const line of exposure.warnings) process.stdout.write(`fwgate: ${line}\n`);
  if (http) process.stdout.write(`fwgate http: ${http.url}\n`);
  if (config.security.allowUnsigned) process.stdout.write('fwgate: DEVELOPMENT MODE (--allow-unsigned): unsigned firmware images are accepted\n');
  const serial = config.serial.path ? serveSerial(gw, config, log) : undefined;

  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    const hard = setTimeout(() => process.exit(1), 10_000);
    hard.unref();
    void (async () => {
      await serial?.stop();
      await http?.stop();
      await gw.stop();
      log.info('stopped');
      process.exit(0);
    })();
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
}

/** Keep the laptop's serial port open; if it goes away (cable pulled), reopen it with backoff. */
function serveSerial(gw: Gateway, config: GatewayConfig, log: Logger): { stop(): Promise<void> } {
  const path = config.serial.path!;
  let stopped = false;
  let current: Awaited<ReturnType<typeof openSerialPort>> | undefined;
  let retry: NodeJS.Timeout | undefined;
  const attach = async (delayMs: number): Promise<void> => {
    if (stopped) return;
    try {
      current = await openSerialPort(path, config.serial.baudRate);
    } catch (err) {
      const next = Math.min(delayMs * 2, 10_000);
      log.warn({ err: err instanceof FwError ? err.message : String(err), retryMs: next }, 'serial port not available');
      retry = setTimeout(() => void attach(next), next);
      return;
    }
    log.info({ path, baud: config.serial.baudRate }, 'serial port open');
    const port = current;
    let unwatch: () => void = () => undefined;
    let reopening = false;
    const reopen = (): void => {
      unwatch();
      if (stopped || reopening) return;
      reopening = true;
      retry = setTimeout(() => void attach(500), 500);
    };
    port.once('close', () => {
      if (!stopped && !reopening) log.warn({ path }, 'serial port closed; reopening');
      reopen();
    });
    gw.attachUplink(port);
    // A vanished or replaced tty (cable or adapter pulled and plugged back) is closed and reopened;
    // a close that hangs on the hung-up tty is left to the OS.
    unwatch = await watchPortPath(path, config.serial.portCheckIntervalMs, (why) => {
      log.warn({ path, why }, `serial port ${why}; reopening`);
      void closeSerialPortWithin(port, config.serial.portCloseTimeoutMs).then(reopen);
    });
  };
  void attach(500);
  return {
    async stop() {
      stopped = true;
      clearTimeout(retry);
      if (current) await closeSerialPort(current);
    },
  };
}

/**
 * `fwgate report`: the fleet file of the data directory as a table (or one JSON object), sorted
 * by device id. Reads the file only (the gateway replaces it whole at each write). Exit 1 when
 * there is no fleet file or it cannot be read.
 */
async function report(o: Flags, json: boolean): Promise<void> {
  const { dataDir } = await loadConfig(o);
  const path = join(dataDir, FLEET_FILE);
  let file: FleetFile | undefined;
  try {
    file = await readFleetFile(path);
  } catch (err) {
    process.stderr.write(`fwgate: ${describeError(err)}\n`);
    process.exitCode = 1;
    return;
  }
  if (!file) {
    process.stderr.write(existsSync(dataDir)
      ? `fwgate: no fleet report in ${dataDir}: ${path} does not exist (the gateway writes it once a device has reported)\n`
      : `fwgate: no fleet report: the data directory ${dataDir} does not exist (give the gateway's --data or --config)\n`);
    process.exitCode = 1;
    return;
  }
  process.stdout.write(json ? `${JSON.stringify({ file: path, savedAt: file.savedAt, devices: file.devices })}\n` : `${reportTable(file, path, Date.now()).join('\n')}\n`);
}

/** The report for a person: local times with their age. */
function reportTable(file: FleetFile, path: string, now: number): string[] {
  const when = (at: number): string => `${localTime(at)} (${age(now - at)})`;
  const floors = file.devices.some((d) => d.floor !== undefined);
  const head = ['device', 'hw', 'version', ...(floors ? ['floor'] : []), 'online', 'last check-in', 'last result', 'code', 'image', 'result at', 'campaign'];
  const rows = file.devices.map((d) => {
    const r = d.lastResult;
    return [
      d.id, d.hw, d.version, ...(floors ? [d.floor ?? '-'] : []), d.online ? 'yes' : 'no', when(d.lastCheckIn),
      ...(r ? [r.outcome, r.code, r.version, when(r.at), r.campaign] : ['-', '', '', '', '']),
    ];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  const n = file.devices.length;
  return [
    `Fleet report from ${path}, saved ${when(file.savedAt)}: ${n} device${n === 1 ? '' : 's'} (online as the gateway last saw them)`,
    ...(n === 0 ? [] : ['', line(head), ...rows.map(line)]),
  ];
}

/** `2025-01-31 14:05:09`, in the local time zone. */
function localTime(ms: number): string {
  const d = new Date(ms);
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

function age(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s ago`;
  const min = Math.floor(s / 60);
  if (min < 60) return `${min} min ago`;
  const h = Math.floor(min / 60);
  if (h < 48) return `${h} h ${String(min % 60).padStart(2, '0')} min ago`;
  return `${Math.floor(h / 24)} d ${h % 24} h ago`;
}

void main();
