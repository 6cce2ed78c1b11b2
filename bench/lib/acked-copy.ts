/**
 * The acknowledged floor of bench/serial (`pty_acked_floor_ratio`): the least any reliable upload
 * between two processes does over a pty pair, with nothing of fwgate's link in it. A sender
 * process writes the image in frame-sized writes, at most `window` frames ahead of what the
 * receiver has acknowledged; a receiver process does the pty floor's work with each read (CRC-32,
 * running SHA-256, the bytes appended to a file) and writes an 8-byte cumulative acknowledgement
 * after every `ackEvery` frames' worth of bytes and at the end. No framing, no CRC per frame, no
 * messages, no retransmission: what is left is the traffic pattern of an ARQ (a second process,
 * acknowledgements back through the same pty pair) — the highest `pty_ratio` a windowed,
 * acknowledged upload with these settings can reach on the host.
 *
 *   node --import tsx bench/lib/acked-copy.ts receive <port> <image> <out-file> <frame> <ackEvery>
 *   node --import tsx bench/lib/acked-copy.ts send <port> <image> <frame> <window>
 *
 * The receiver prints `ready` once its port is open, then `{"ok":true}` when every byte arrived
 * and its SHA-256 matched; the sender prints `{"ms":…}`, first write to last acknowledgement.
 * Either exits 1 with a message on stderr after TIMEOUT_MS.
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { crc32 } from '../../protocol/crc.ts';
import { closeSerialPort, openSerialPort } from '../../transport/serial-port.ts';

const TIMEOUT_MS = 300_000;
const ACK_BYTES = 8;

function fail(message: string): never {
  process.stderr.write(`acked-copy: ${message}\n`);
  process.exit(1);
}

function count(value: string | undefined, what: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1) fail(`${what} must be a whole number >= 1, got ${String(value)}`);
  return n;
}

/** An acknowledgement: 4 zero bytes, then the count of bytes received so far (u32 LE). */
function ack(received: number): Buffer {
  const b = Buffer.alloc(ACK_BYTES);
  b.writeUInt32LE(received, 4);
  return b;
}

async function receive(port: string, imagePath: string, outPath: string, frame: number, ackEvery: number): Promise<void> {
  const expected = createHash('sha256').update(readFileSync(imagePath)).digest('hex');
  const size = readFileSync(imagePath).length;
  const rx = await openSerialPort(port, 921_600);
  const fd = openSync(outPath, 'w');
  const sha = createHash('sha256');
  const every = frame * ackEvery;
  let got = 0;
  let acked = 0;
  const done = new Promise<void>((resolve) => {
    rx.on('data', (d: Buffer) => {
      crc32(d);
      sha.update(d);
      writeSync(fd, d);
      got += d.length;
      if (got - acked >= every || got >= size) {
        acked = got;
        rx.write(ack(got));
      }
      if (got >= size) resolve();
    });
  });
  process.stdout.write('ready\n');
  const timer = setTimeout(() => fail(`receive: ${got} of ${size} bytes after ${TIMEOUT_MS} ms`), TIMEOUT_MS);
  await done;
  clearTimeout(timer);
  closeSync(fd);
  if (got !== size) fail(`receive: ${got} bytes, the image has ${size}`);
  if (sha.digest('hex') !== expected) fail('receive: the bytes read differ from the image');
  // let the last acknowledgement leave before the port closes
  await new Promise<void>((resolve) => rx.drain(() => resolve()));
  process.stdout.write(`${JSON.stringify({ ok: true })}\n`);
  await closeSerialPort(rx);
}

async function send(port: string, imagePath: string, frame: number, window: number): Promise<void> {
  const image = readFileSync(imagePath);
  const tx = await openSerialPort(port, 921_600);
  let acked = 0;
  let carry: Buffer = Buffer.alloc(0);
  let wake: (() => void) | undefined;
  tx.on('data', (d: Buffer) => {
    // acknowledgements may arrive split across reads
    carry = carry.length === 0 ? d : Buffer.concat([carry, d]);
    const whole = carry.length - (carry.length % ACK_BYTES);
    for (let o = 0; o < whole; o += ACK_BYTES) acked = Math.max(acked, carry.readUInt32LE(o + 4));
    carry = carry.subarray(whole);
    wake?.();
  });
  const ackOrTimeout = (): Promise<void> => new Promise<void>((resolve) => {
    wake = resolve;
  });
  const timer = setTimeout(() => fail(`send: ${acked} of ${image.length} bytes acknowledged after ${TIMEOUT_MS} ms`), TIMEOUT_MS);
  const t0 = performance.now();
  let sent = 0;
  let frames = 0;
  while (sent < image.length) {
    if (sent - acked >= window * frame) {
      await ackOrTimeout();
      continue;
    }
    const n = Math.min(frame, image.length - sent);
    const room = tx.write(image.subarray(sent, sent + n));
    sent += n;
    if (!room) await new Promise<void>((resolve) => tx.once('drain', () => resolve()));
    // let acknowledgements in now and then when the window is wide
    else if (++frames % 16 === 0) await new Promise<void>((resolve) => setImmediate(resolve));
  }
  while (acked < image.length) await ackOrTimeout();
  const ms = performance.now() - t0;
  clearTimeout(timer);
  process.stdout.write(`${JSON.stringify({ ms })}\n`);
  await closeSerialPort(tx);
}

const [role, ...args] = process.argv.slice(2);
if (role === 'receive') {
  await receive(args[0] ?? fail('receive: no port'), args[1] ?? fail('receive: no image'), args[2] ?? fail('receive: no output file'), count(args[3], 'frame'), count(args[4], 'ackEvery'));
} else if (role === 'send') {
  await send(args[0] ?? fail('send: no port'), args[1] ?? fail('send: no image'), count(args[2], 'frame'), count(args[3], 'window'));
} else {
  fail(`the role is receive or send, got ${String(role)}`);
}
