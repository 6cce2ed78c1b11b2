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
 * With `link-receive` / `link-send` the same copy runs through fwgate's serial link instead
 * (`pty_link_ratio`): MessageLink and ArqLink over the same transport, the image in the `data`
 * messages and frames an upload uses (docs/protocol.md §3, §4, §7.3), the receiver's delayed-ACK
 * settings as the gateway's, the same work per message — the link's share of the gap between the
 * acknowledged floor and fwpush -> fwgate, without the session, the store or the gateway around it.
 *
 *   node --import tsx bench/lib/acked-copy.ts receive|link-receive <port> <image> <out-file> <frame> <ackEvery>
 *   node --import tsx bench/lib/acked-copy.ts send|link-send <port> <image> <frame> <window>
 *
 * The receiver prints `ready` once its port is open, then `{"ok":true}` when every byte arrived
 * and its SHA-256 matched; the sender prints `{"ms":…}`, first write to last acknowledgement.
 * Either exits 1 with a message on stderr after TIMEOUT_MS.
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { crc32 } from '../../protocol/crc.ts';
import { parseConfig } from '../../gateway/config.ts';
import { DATA_MESSAGE_OVERHEAD, decodeGatewayUplinkMessage, decodeLaptopMessage, encodeUplinkMessage, type GatewayUplinkMessage, type LaptopMessage } from '../../protocol/uplink.ts';
import { MessageLink } from '../../transport/message-link.ts';
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
  // resolves at the next acknowledgement; the whole copy is bounded by the timer below
  const nextAck = (): Promise<void> => new Promise<void>((resolve) => {
    wake = resolve;
  });
  const timer = setTimeout(() => fail(`send: ${acked} of ${image.length} bytes acknowledged after ${TIMEOUT_MS} ms`), TIMEOUT_MS);
  const t0 = performance.now();
  let sent = 0;
  let frames = 0;
  while (sent < image.length) {
    if (sent - acked >= window * frame) {
      await nextAck();
      continue;
    }
    const n = Math.min(frame, image.length - sent);
    const room = tx.write(image.subarray(sent, sent + n));
    sent += n;
    if (!room) await new Promise<void>((resolve) => tx.once('drain', () => resolve()));
    // let acknowledgements in now and then when the window is wide
    else if (++frames % 16 === 0) await new Promise<void>((resolve) => setImmediate(resolve));
  }
  while (acked < image.length) await nextAck();
  const ms = performance.now() - t0;
  clearTimeout(timer);
  process.stdout.write(`${JSON.stringify({ ms })}\n`);
  await closeSerialPort(tx);
}

/** The receiving end through the link, set up as fwgate's is until its hello (gateway/gateway.ts, §7.2.1). */
async function linkReceive(port: string, imagePath: string, outPath: string, frame: number, ackEvery: number): Promise<void> {
  const image = readFileSync(imagePath);
  const expected = createHash('sha256').update(image).digest('hex');
  const rx = await openSerialPort(port, 921_600);
  const uplink = parseConfig({}).uplink;
  const link = new MessageLink<LaptopMessage, GatewayUplinkMessage>(rx, {
    decode: decodeLaptopMessage,
    encode: encodeUplinkMessage,
    arq: { window: 64, maxPayload: 256, rtoInitialMs: uplink.rtoInitialMs, rtoMinMs: uplink.rtoMinMs, rtoMaxMs: uplink.rtoMaxMs, maxRetransmits: uplink.maxRetransmits },
  });
  // what the session applies after hello: the negotiated frame, and the delayed ACK of an upload
  link.on('reset', () => {
    link.configure({ maxPayload: frame });
    link.arq.configure({ ackDelayMs: uplink.ackDelayMs, ackEvery });
  });
  const fd = openSync(outPath, 'w');
  const sha = createHash('sha256');
  let got = 0;
  const done = new Promise<void>((resolve) => {
    link.on('message', (msg) => {
      if (msg.t !== 'data') fail(`link-receive: a ${msg.t} message`);
      if (msg.off !== got) fail(`link-receive: data at ${msg.off}, expected ${got}`);
      crc32(msg.data);
      sha.update(msg.data);
      writeSync(fd, msg.data);
      got += msg.data.length;
      if (got >= image.length) resolve();
    });
  });
  process.stdout.write('ready\n');
  const timer = setTimeout(() => fail(`link-receive: ${got} of ${image.length} bytes after ${TIMEOUT_MS} ms`), TIMEOUT_MS);
  await done;
  closeSync(fd);
  if (sha.digest('hex') !== expected) fail('link-receive: the bytes received differ from the image');
  process.stdout.write(`${JSON.stringify({ ok: true })}\n`);
  // stay until the sender has its last acknowledgement and closes
  await new Promise<void>((resolve) => rx.once('close', () => resolve()).once('error', () => resolve()));
  clearTimeout(timer);
  link.close();
}

/** The sending end through the link, as fwpush's upload (laptop/client.ts): one `data` message per frame. */
async function linkSend(port: string, imagePath: string, frame: number, window: number): Promise<void> {
  const image = readFileSync(imagePath);
  const tx = await openSerialPort(port, 921_600);
  const link = new MessageLink<GatewayUplinkMessage, LaptopMessage>(tx, {
    decode: decodeGatewayUplinkMessage,
    encode: encodeUplinkMessage,
    arq: { window, maxPayload: 256 },
    sendTimeoutMs: TIMEOUT_MS,
  });
  const timer = setTimeout(() => fail(`link-send: not done after ${TIMEOUT_MS} ms`), TIMEOUT_MS);
  await link.open();
  link.configure({ maxPayload: frame, window });
  const chunk = frame - DATA_MESSAGE_OVERHEAD;
  const t0 = performance.now();
  for (let off = 0; off < image.length; off += chunk) {
    await link.send({ t: 'data', off, data: image.subarray(off, Math.min(off + chunk, image.length)) });
  }
  await link.flush(TIMEOUT_MS);
  const ms = performance.now() - t0;
  clearTimeout(timer);
  process.stdout.write(`${JSON.stringify({ ms })}\n`);
  link.close();
  await closeSerialPort(tx);
}

const [role, ...args] = process.argv.slice(2);
const port = (): string => args[0] ?? fail(`${String(role)}: no port`);
const imagePath = (): string => args[1] ?? fail(`${String(role)}: no image`);
if (role === 'receive' || role === 'link-receive') {
  const out = args[2] ?? fail(`${role}: no output file`);
  await (role === 'receive' ? receive : linkReceive)(port(), imagePath(), out, count(args[3], 'frame'), count(args[4], 'ackEvery'));
} else if (role === 'send' || role === 'link-send') {
  await (role === 'send' ? send : linkSend)(port(), imagePath(), count(args[2], 'frame'), count(args[3], 'window'));
} else {
  fail(`the role is receive, send, link-receive or link-send, got ${String(role)}`);
}
