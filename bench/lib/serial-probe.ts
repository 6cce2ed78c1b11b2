/**
 * bench/scale helper: does the gateway answer its serial link? From the laptop's end of a pty
 * pair, over and over: open the port, reset the link and exchange hellos (laptop/connection.ts
 * openConnection, as fwpush does), close; one JSON line per attempt on stdout:
 *   {"t":"hello","ms":12.3}                   the gateway's hello arrived this long after the open
 *   {"t":"fail","ms":5000,"message":"..."}    no hello within --timeout ms (or another failure)
 * Runs in its own process so that its timing is not held up by the benchmark's event loop. Ends on
 * SIGTERM.
 *
 *   node --import tsx bench/lib/serial-probe.ts <laptop end> [--every 200] [--timeout 5000]
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { defaultClientOptions } from '../../laptop/client.ts';
import { openConnection } from '../../laptop/connection.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { every: { type: 'string', default: '200' }, timeout: { type: 'string', default: '5000' } },
});
const path = positionals[0];
const every = Number(values.every);
const timeoutMs = Number(values.timeout);
if (!path || !(every > 0) || !(timeoutMs > 0)) {
  process.stderr.write('usage: serial-probe.ts <laptop end> [--every ms] [--timeout ms]\n');
  process.exit(2);
}
let stopping = false;
process.once('SIGTERM', () => {
  stopping = true;
});
const say = (o: object): void => {
  process.stdout.write(`${JSON.stringify(o)}\n`);
};
while (!stopping) {
  const t0 = performance.now();
  try {
    const c = await openConnection({ path, baudRate: 921_600, client: defaultClientOptions, attach: () => undefined }, timeoutMs);
    const ms = performance.now() - t0;
    await c.close();
    say({ t: 'hello', ms: Math.round(ms * 10) / 10 });
  } catch (err) {
    say({ t: 'fail', ms: Math.round(performance.now() - t0), message: (err as Error).message });
  }
  await sleep(every);
}
process.exit(0);
