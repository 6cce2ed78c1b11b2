/**
 * bench/scale helper: one fwgate (Gateway.start, real broker on 127.0.0.1) in its own process,
 * so that its resident memory is the gateway's alone. Run with node --expose-gc.
 *
 *   node --expose-gc --import tsx bench/lib/scale-gateway.ts <config.json>
 *
 * Prints `ready <broker url>` on stdout, then answers each stdin line with one JSON line:
 *   `stat` -> {"online":n,"rss":bytes,"heapUsed":bytes,"external":bytes,"arrayBuffers":bytes}
 *   `gc`   -> the same, after full garbage collections
 * Warnings and errors of the gateway go to stderr as JSON log lines. Ends on stdin close or SIGTERM.
 * With `serial.path` in the config the gateway serves the laptop on that port, opened once at start
 * as fwgate does (gateway/cli.ts serveSerial, without its reopening of a vanished tty).
 */
import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseConfig } from '../../gateway/config.ts';
import { Gateway } from '../../gateway/gateway.ts';
import { createLogger } from '../../gateway/log.ts';
import { closeSerialPort, openSerialPort } from '../../transport/serial-port.ts';

const path = process.argv[2];
if (!path) {
  process.stderr.write('usage: scale-gateway.ts <config.json>\n');
  process.exit(2);
}
const config = parseConfig(JSON.parse(await readFile(path, 'utf8')) as unknown, path);
const gateway = await Gateway.start({ config, log: createLogger({ level: config.log.level, format: 'json' }) });
const serial = config.serial.path ? await openSerialPort(config.serial.path, config.serial.baudRate) : undefined;
if (serial) gateway.attachUplink(serial);

function stat(): string {
  let online = 0;
  // fleet.online() sorts the whole fleet; counting is enough here
  for (const d of gateway.fleet.list()) if (d.online) online++;
  const m = process.memoryUsage();
  return JSON.stringify({ online, rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers });
}

async function fullGc(): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with node --expose-gc');
  for (let i = 0; i < 3; i++) {
    gc();
    await sleep(100);
  }
}

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  await gateway.stop();
  if (serial) await closeSerialPort(serial).catch(() => undefined);
  process.exit(0);
}
process.once('SIGTERM', () => void stop());

process.stdout.write(`ready ${gateway.broker.url}\n`);
const lines = createInterface({ input: process.stdin });
lines.on('close', () => void stop());
for await (const line of lines) {
  if (line === 'gc') await fullGc();
  if (line === 'gc' || line === 'stat') process.stdout.write(`${stat()}\n`);
}
