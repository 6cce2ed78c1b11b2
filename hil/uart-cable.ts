import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startRelay } from '../bench/lib/serial-relay.ts';
import { describeError } from '../protocol/errors.ts';
import { createPtyPair } from '../scripts/lib/pty-pair.ts';
import { openSerialPort } from '../transport/serial-port.ts';

/**
 * The laptop's cable on the simulated rig when the rig gives a baud rate (docs/hil.md): two socat
 * pty pairs joined by a pacing relay that emulates a UART at that baud behind a USB-serial adapter
 * (bench/lib/serial-relay.ts). The laptop's end is <dir>/laptop/b.tty, the gateway's
 * <dir>/gateway/a.tty. It prints "cable ready" once both ends exist and runs until killed; the
 * runner starts it in its own process group and unplugs the cable by killing the group (socat
 * included), so both ttys vanish as when a USB-serial adapter is pulled.
 *
 *   node --import tsx hil/uart-cable.ts --dir <dir> --baud 921600 [--latency 1]
 */
async function main(): Promise<void> {
  const { values } = parseArgs({ options: { dir: { type: 'string' }, baud: { type: 'string', default: '921600' }, latency: { type: 'string', default: '1' } } });
  const baud = Number(values.baud);
  const latencyMs = Number(values.latency);
  if (!values.dir || !Number.isInteger(baud) || baud < 50 || !(latencyMs >= 0)) throw new Error('usage: uart-cable.ts --dir <dir> --baud <rate> [--latency <ms>]');
  const laptopSide = join(values.dir, 'laptop');
  const gatewaySide = join(values.dir, 'gateway');
  await mkdir(laptopSide, { recursive: true });
  await mkdir(gatewaySide, { recursive: true });
  const l = await createPtyPair(laptopSide);
  const g = await createPtyPair(gatewaySide);
  const a = await openSerialPort(l.a, baud);
  const b = await openSerialPort(g.b, baud);
  for (const p of [a, b]) p.on('error', () => undefined);
  startRelay(a, b, { baud, latencyMs });
  process.stdout.write(`cable ready: laptop ${l.b} <-> gateway ${g.a} at ${baud} baud\n`);
  const stop = (): void => {
    void Promise.allSettled([l.close(), g.close()]).then(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((err: unknown) => {
  process.stderr.write(`uart-cable: ${describeError(err)}\n`);
  process.exit(1);
});
