#!/usr/bin/env node
import { Command, InvalidArgumentError } from 'commander';
import { describeError, FwError } from '../protocol/errors.ts';
import { closeSerialPort, openSerialPort } from '../transport/serial-port.ts';
import { loadConfigFile, mergeConfig, parseConfig, type GatewayConfig } from './config.ts';
import { Gateway } from './gateway.ts';
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
  .option('-d, --data <dir>', 'data directory (images, partial uploads)')
  .option('--host <addr>', 'MQTT listen address (default 127.0.0.1)')
  .option('-p, --port <port>', 'MQTT listen port (default 1883; 0 = any free port)', int('--port'))
  .option('--concurrency <n>', 'devices updated at the same time', int('--concurrency'))
  .option('--log-level <level>', 'fatal|error|warn|info|debug|trace|silent')
  .option('--log-format <format>', 'pretty|json')
  .showHelpAfterError()
  .exitOverride();

async function main(): Promise<void> {
  try {
    program.parse();
  } catch (err) {
    const code = (err as { exitCode?: number }).exitCode ?? 2;
    process.exit(code === 0 ? 0 : 2);
  }
  const o = program.opts<{ config?: string; serial?: string; baud?: number; data?: string; host?: string; port?: number; concurrency?: number; logLevel?: string; logFormat?: string }>();
  let config: GatewayConfig;
  try {
    const file = o.config ? await loadConfigFile(o.config) : {};
    const flags = {
      dataDir: o.data,
      serial: { path: o.serial, baudRate: o.baud },
      broker: { host: o.host, port: o.port },
      rollout: { concurrency: o.concurrency },
      log: { level: o.logLevel, format: o.logFormat },
    };
    config = parseConfig(mergeConfig(file, flags), o.config ? `config (${o.config} + flags)` : 'flags');
  } catch (err) {
    process.stderr.write(`fwgate: ${describeError(err)}\n`);
    process.exit(2);
  }
  const log = createLogger({ level: config.log.level, format: config.log.format });
  let gw: Gateway;
  try {
    gw = await Gateway.start({ config, log });
  } catch (err) {
    log.fatal({ err: describeError(err) }, 'gateway failed to start');
    process.exit(1);
  }
  process.stdout.write(`fwgate ready: broker ${gw.broker.url}\n`);
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
    current.once('close', () => {
      if (stopped) return;
      log.warn({ path }, 'serial port closed; reopening');
      retry = setTimeout(() => void attach(500), 500);
    });
    gw.attachUplink(current);
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

void main();
