/**
 * bench/serial — how close does an upload laptop -> gateway come to what the serial link carries?
 *
 * 1. pty: fwpush -> fwgate over one socat pty pair, as in real use; baseline in the same run: the
 *    same bytes copied raw through the same pty pair. Payload MiB/s and the ratio to raw. Two
 *    floors in the same run: the raw copy with a receiver's least work per read, and the same
 *    acknowledged between two processes with the upload's frame, window and ACK spacing
 *    (bench/lib/acked-copy.ts) — what the host allows any acknowledged upload.
 * 2. uart: the same upload through a pacing relay (bench/lib/serial-relay.ts) between two pty
 *    pairs that emulates a UART at --baud (at most baud/10 B/s each way) behind an FTDI-style
 *    adapter (62-byte USB packets, --latency ms latency timer). Payload rate / line rate, and link
 *    efficiency = image bytes / bytes on the wire (both directions, counted by the relay).
 *
 * Every pty figure (raw copy, floor, acknowledged floor, link floor, upload) is measured --repeat
 * times (3), in rounds after a warm-up round that is not counted, the order rotated from round to
 * round so that no figure always runs first (cold) or last; the JSON reports each figure's median
 * and [min, max], and each ratio as the median of the rounds' own ratios (numerator and denominator
 * measured in the same round). `pty_vs_acked_floor` = upload / acknowledged floor.
 *
 * The upload is timed from fwpush's first `upload` event to its `committed` event (fwpush --json);
 * the campaign that follows has no devices. Manifests are signed and fwpush authenticates with a
 * technician key, as in scripts/demo.ts. Human table on stderr; with --json a final JSON line.
 *
 *   npm run bench:serial [-- --json --size 4194304 --baud 921600 --latency 1,16 --runs 1]
 *   npm run bench:serial -- --baud 115200,921600,3000000 --uart-size 921600:1048576
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, writeSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { spawn } from 'node:child_process';
import { makeSampleImage } from '../firmware-samples/image-format.ts';
import { crc32 } from '../protocol/crc.ts';
import { generateSigningKey } from '../protocol/signature.ts';
import { closeSerialPort, openSerialPort } from '../transport/serial-port.ts';
import { freePort, ROOT, startTs, type Proc } from '../scripts/lib/processes.ts';
import { parseConfig } from '../gateway/config.ts';
import { laptopSettings } from '../laptop/settings.ts';
import { createPtyPair, type PtyPair } from '../scripts/lib/pty-pair.ts';
import { startRelay, type Relay } from './lib/serial-relay.ts';
import { intFlag } from './lib/int-flag.ts';

const int = intFlag('bench/serial');

const { values } = parseArgs({
  options: {
    size: { type: 'string', default: String(4 * 1024 * 1024) },
    baud: { type: 'string', default: '921600' },
    latency: { type: 'string', default: '1,16' },
    'uart-size': { type: 'string', default: '' },
    'skip-pty': { type: 'boolean', default: false },
    frame: { type: 'string', default: '' },
    window: { type: 'string', default: '' },
    'ack-every': { type: 'string', default: '' },
    profile: { type: 'string', default: '' },
    'reader-busy-us': { type: 'string', default: '' },
    repeat: { type: 'string', default: '3' },
    json: { type: 'boolean', default: false },
  },
  strict: true,
});

const SIZE = int(values.size, 'size', 4096, 64 * 1024 * 1024);
const REPEAT = int(values.repeat, 'repeat', 1, 20);
const BAUDS = values.baud ? values.baud.split(',').map((v) => int(v, 'baud', 9600, 20_000_000)) : [];
const LATENCIES = values.latency.split(',').map((v) => int(v, 'latency', 0, 1000));
/**
 * Image size per baud, smaller than --size to keep a run short at today's rates (docs/performance-log.md):
 * 64 KiB at 115200, 256 KiB at 921600, 1 MiB at 3000000; --uart-size baud:bytes,... overrides.
 */
const UART_SIZE = new Map<number, number>([[115_200, 64 * 1024], [921_600, 256 * 1024], [3_000_000, 1024 * 1024]]);
for (const kv of values['uart-size'] ? values['uart-size'].split(',') : []) {
  const [b, s] = kv.split(':');
  UART_SIZE.set(int(b ?? '', 'uart-size', 50, 20_000_000), int(s ?? '', 'uart-size', 4096, 64 * 1024 * 1024));
}
const uartSize = (baud: number): number => Math.min(SIZE, UART_SIZE.get(baud) ?? Math.max(64 * 1024, Math.round(baud / 10 * 10 / 65536) * 65536));
/**
 * `--reader-busy-us 0,50,100`: `dd` copies the image into the pty pair and a reader spins that long
 * after each read — how per-read work on the receiving side adds to the time per read
 * (docs/performance-log.md).
 */
const READER_BUSY_US = values['reader-busy-us'] ? values['reader-busy-us'].split(',').map((v) => int(v, 'reader-busy-us', 0, 100_000)) : [];
/** `--profile <dir>`: fwgate and fwpush run under `node --cpu-prof`, profiles written to <dir>. */
const PROFILE = values.profile;
/** startTs runs `node --import tsx <entry> <args>`: node options go in front of the script. */
function entry(script: string, args: string[]): [string, string[]] {
  return PROFILE ? ['--cpu-prof', [`--cpu-prof-dir=${PROFILE}`, script, ...args]] : [script, args];
}
const PUSH_FLAGS = [...(values.frame ? ['--frame', values.frame] : []), ...(values.window ? ['--window', values.window] : [])];

const log = (s: string): void => {
  process.stderr.write(`${s}\n`);
};
const MiB = 1024 * 1024;

interface Keys { dir: string; signKey: string; trustedKey: string; techKey: string; config: string }

async function makeKeys(dir: string): Promise<Keys> {
  const base = join(dir, 'vendor');
  const keygen = spawn(process.execPath, ['--import', 'tsx', 'laptop/cli.ts', 'keygen', '--out', base], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
  const code = await new Promise<number>((resolve) => keygen.once('exit', (c) => resolve(c ?? 1)));
  if (code !== 0) throw new Error(`fwpush keygen exited with ${code}`);
  const tech = generateSigningKey();
  const techKey = join(dir, 'technician.key');
  await writeFile(techKey, tech.privateKeyPem, { mode: 0o600 });
  const config = join(dir, 'gateway.json');
  // a --frame above the gateway's default uplink.maxFrame (4096) is offered by the gateway too
  const maxFrame = values.frame ? { maxFrame: Math.max(4096, Number(values.frame)) } : {};
  // and a --window above its uplink.window (16) is offered by the gateway too
  const window = values.window ? { window: Math.max(16, Number(values.window)) } : {};
  // --ack-every N: the gateway's uplink.ackEvery (delayed ACK, docs/protocol.md §4.4)
  const ackEvery = values['ack-every'] ? { ackEvery: int(values['ack-every'], 'ack-every', 1, 64) } : {};
  await writeFile(config, JSON.stringify({ uplink: { technicianKeys: [{ publicKey: tech.publicKeyPem }], ...maxFrame, ...window, ...ackEvery } }));
  return { dir, signKey: `${base}.key`, trustedKey: `${base}.pub`, techKey, config };
}

/**
 * Copy `bytes` raw from one serial end to another; ms from the first write to the last byte read.
 * With `storeTo`, the reader also does the least any receiver of an image must do with each
 * read — its CRC-32, a running SHA-256, the bytes appended to that file — and the SHA-256 is
 * finished at the end: a floor for any framed upload on this host (`pty_floor_ratio`).
 */
async function rawCopy(from: string, to: string, bytes: Buffer, storeTo?: string): Promise<number> {
  const rx = await openSerialPort(to, 921_600);
  const tx = await openSerialPort(from, 921_600);
  const fd = storeTo === undefined ? undefined : openSync(storeTo, 'w');
  const sha = createHash('sha256');
  try {
    let got = 0;
    const chunks: Buffer[] = [];
    const done = new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`raw copy: ${got}/${bytes.length} bytes after 300 s`)), 300_000);
      rx.on('data', (d: Buffer) => {
        if (fd !== undefined) {
          crc32(d);
          sha.update(d);
          writeSync(fd, d);
        }
        got += d.length;
        chunks.push(d);
        if (got >= bytes.length) {
          clearTimeout(t);
          resolve();
        }
      });
    });
    const t0 = performance.now();
    for (let off = 0; off < bytes.length; off += 64 * 1024) {
      if (!tx.write(bytes.subarray(off, off + 64 * 1024))) await new Promise((r) => tx.once('drain', r));
    }
    await done;
    if (fd !== undefined) sha.digest();
    const ms = performance.now() - t0;
    if (!Buffer.concat(chunks).equals(bytes)) throw new Error(`raw copy ${from} -> ${to}: the bytes read differ from those written`);
    return ms;
  } finally {
    await closeSerialPort(tx);
    await closeSerialPort(rx);
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * `dd` writes the file into one end; this process reads the other and spins `busyUs` after each
 * read. The writer is another process so that the spinning holds up only the reader.
 */
async function busyReaderCopy(from: string, to: string, file: string, size: number, busyUs: number): Promise<{ ms: number; reads: number }> {
  const rx = await openSerialPort(to, 921_600);
  try {
    let got = 0;
    let reads = 0;
    const done = new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`busy reader: ${got}/${size} bytes after 300 s`)), 300_000);
      rx.on('data', (d: Buffer) => {
        reads++;
        for (const until = performance.now() + busyUs / 1000; performance.now() < until;);
        got += d.length;
        if (got >= size) {
          clearTimeout(t);
          resolve();
        }
      });
    });
    const t0 = performance.now();
    const dd = spawn('dd', [`if=${file}`, `of=${from}`, 'bs=65536'], { stdio: 'ignore' });
    await done;
    const ms = performance.now() - t0;
    await new Promise((r) => (dd.exitCode !== null ? r(null) : dd.once('exit', r)));
    return { ms, reads };
  } finally {
    await closeSerialPort(rx);
  }
}

/**
 * The link settings an upload runs with — what fwpush offers and fwgate agrees to (docs/protocol.md
 * §7.2.1, §4.4), after --frame, --window and --ack-every — for the acknowledged floor to copy.
 */
function negotiatedLink(): { frame: number; window: number; ackEvery: number } {
  const uplink = parseConfig({}).uplink;
  const frame = values.frame ? Number(values.frame) : Math.min(uplink.maxFrame, laptopSettings.maxFrame);
  const window = values.window ? Number(values.window) : Math.min(uplink.window, laptopSettings.window);
  const every = values['ack-every'] ? Number(values['ack-every']) : uplink.ackEvery;
  // an ACK at once when `every` frames, at most half the window, are owed one (§4.4)
  return { frame, window, ackEvery: Math.min(every, Math.max(1, window >> 1)) };
}

/**
 * The acknowledged floor (bench/lib/acked-copy.ts): a sender process and a receiver process copy
 * the image with the upload's frame size, window and ACK spacing and the pty floor's work per
 * read — `bare`: no link code; `link`: through MessageLink/ArqLink as an upload's `data`
 * messages. ms from the first write to the last acknowledgement.
 */
async function ackedCopy(from: string, to: string, imagePath: string, outPath: string, through: 'bare' | 'link'): Promise<number> {
  const { frame, window, ackEvery } = negotiatedLink();
  const [receive, send] = through === 'bare' ? ['receive', 'send'] : ['link-receive', 'link-send'];
  const procs: Proc[] = [];
  try {
    const rx = startTs(`acked-copy ${receive}`, 'bench/lib/acked-copy.ts', [receive, to, imagePath, outPath, String(frame), String(ackEvery)], { stderr: 'inherit' });
    procs.push(rx);
    await rx.waitForLine(/^ready$/, 60_000);
    const tx = startTs(`acked-copy ${send}`, 'bench/lib/acked-copy.ts', [send, from, imagePath, String(frame), String(window)], { stderr: 'inherit' });
    procs.push(tx);
    const sent = JSON.parse(await tx.waitForLine(/^\{"ms"/, 330_000)) as { ms: number };
    await rx.waitForLine(/^\{"ok":true\}$/, 30_000);
    return sent.ms;
  } finally {
    for (const p of procs.reverse()) await p.stop(3000).catch(() => undefined);
  }
}

interface Upload { ms: number; payload: number; retransmitHint?: string }

/** fwgate on `gatewayEnd`, fwpush on `laptopEnd`; the upload timed from the first `upload` event to `committed`. */
async function upload(keys: Keys, run: string, gatewayEnd: string, laptopEnd: string, imagePath: string, version: string): Promise<Upload> {
  const procs: Proc[] = [];
  try {
    const port = await freePort();
    const gw = startTs('fwgate', ...entry('gateway/cli.ts', [
      '--config', keys.config, '--serial', gatewayEnd, '--data', join(keys.dir, `gw-${run}`), '--host', '127.0.0.1', '--port', String(port),
      '--log-format', 'json', '--log-level', 'warn', '--trusted-key', keys.trustedKey,
    ]), { stderr: 'ignore' });
    procs.push(gw);
    await gw.waitForLine(/^fwgate ready/, 60_000);
    let t0 = 0;
    let sent0 = 0;
    let total = 0;
    const push = startTs('fwpush', ...entry('laptop/cli.ts', [
      '--port', laptopEnd, imagePath, '--name', 'sensor-fw', '--version', version, '--hw', 'sensor-v1',
      '--sign-key', keys.signKey, '--seq', '1', '--tech-key', keys.techKey, '--json', '--reconnect-timeout', '0', ...PUSH_FLAGS,
    ]), { stderr: 'inherit' });
    procs.push(push);
    const line = await push.waitForLine((l) => {
      const e = parse(l);
      if (e?.event === 'upload' && t0 === 0) {
        t0 = performance.now();
        sent0 = Number(e.sent);
        total = Number(e.total);
      }
      return e?.event === 'committed' || e?.event === 'error';
    }, 600_000);
    const t1 = performance.now();
    const e = parse(line);
    if (e?.event !== 'committed' || e.ok !== true) throw new Error(`fwpush: ${line}`);
    return { ms: t1 - t0, payload: total - sent0 };
  } finally {
    for (const p of procs.reverse()) await p.stop(3000).catch(() => undefined);
  }
}

function parse(l: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(l) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

async function image(dir: string, version: string, size: number): Promise<{ path: string; bytes: Buffer }> {
  const bytes = Buffer.from(makeSampleImage({ name: 'sensor-fw', version, hw: 'sensor-v1', size }));
  const path = join(dir, `sensor-fw-${version}.bin`);
  await writeFile(path, bytes);
  return { path, bytes };
}

interface UartFigures { baud: number; latencyMs: number; size: number; mibs: number; ratio: number; rawRatio: number; efficiency: number; wire: number; up: number; down: number }

/** laptop end <-> pair 1 <-> relay <-> pair 2 <-> gateway end. */
async function uartRun(keys: Keys, baud: number, latencyMs: number, n: number): Promise<UartFigures> {
  const size = uartSize(baud);
  const version = `2.${n}.0`;
  const img = await image(keys.dir, version, size);
  const pairs: PtyPair[] = [];
  let relay: Relay | undefined;
  const ports: Awaited<ReturnType<typeof openSerialPort>>[] = [];
  try {
    pairs.push(await createPtyPair(await mkdtemp(join(keys.dir, 'p1-'))), await createPtyPair(await mkdtemp(join(keys.dir, 'p2-'))));
    const [p1, p2] = pairs as [PtyPair, PtyPair];
    ports.push(await openSerialPort(p1.b, baud), await openSerialPort(p2.a, baud));
    for (const p of ports) p.on('error', () => undefined); // a close with writes pending reports "Canceled"
    relay = startRelay(ports[0]!, ports[1]!, { baud, latencyMs });
    const rawMs = await rawCopy(p1.a, p2.b, img.bytes);
    const before = relay.counts;
    const up = await upload(keys, `u${n}`, p2.b, p1.a, img.path, version);
    const after = relay.counts;
    const wire = after.aToB - before.aToB + after.bToA - before.bToA;
    const line = baud / 10;
    const rate = up.payload / (up.ms / 1000);
    return {
      baud, latencyMs, size, mibs: rate / MiB, ratio: rate / line, rawRatio: size / (rawMs / 1000) / line,
      // the whole session (hello, authentication, manifest, upload, commit and the campaign's first events) against the whole image
      efficiency: size / wire, wire, up: after.aToB - before.aToB, down: after.bToA - before.bToA,
    };
  } finally {
    relay?.close();
    for (const p of ports) await closeSerialPort(p).catch(() => undefined);
    for (const p of pairs) await p.close().catch(() => undefined);
  }
}

type Measure = 'raw' | 'floor' | 'acked' | 'link' | 'upload';
const MEASURES: readonly Measure[] = ['raw', 'floor', 'acked', 'link', 'upload'];

/**
 * The pty figures in rounds. Published single runs had the floor (raw copy + a receiver's least
 * work) faster than the raw copy it bounds (pty_floor_ratio 1.016-1.076): the raw copy always ran
 * first in a fresh process — its read handler, the serial port binding and the heap still cold —
 * and each figure was one sample on a shared 2-core host. Here a warm-up round runs every
 * measurement once on a smaller image and is dropped, then each round runs all of them with the
 * order rotated, and figures are medians. Returns the JSON fields.
 */
async function ptyRounds(keys: Keys, pty: PtyPair, img: { path: string; bytes: Buffer }): Promise<Record<string, number | number[]>> {
  const one = async (m: Measure, tag: string, im: { path: string; bytes: Buffer }, version: string): Promise<number> => {
    const size = im.bytes.length;
    switch (m) {
      case 'raw': return size / (await rawCopy(pty.b, pty.a, im.bytes) / 1000) / MiB;
      case 'floor': return size / (await rawCopy(pty.b, pty.a, im.bytes, join(dir, 'floor.bin')) / 1000) / MiB;
      case 'acked': return size / (await ackedCopy(pty.b, pty.a, im.path, join(dir, 'acked-floor.bin'), 'bare') / 1000) / MiB;
      case 'link': return size / (await ackedCopy(pty.b, pty.a, im.path, join(dir, 'link.bin'), 'link') / 1000) / MiB;
      case 'upload': {
        const up = await upload(keys, `pty-${tag}`, pty.a, pty.b, im.path, version);
        return up.payload / (up.ms / 1000) / MiB;
      }
    }
  };
  const warm = await image(dir, '1.9.0', Math.min(SIZE, 512 * 1024));
  for (const m of MEASURES) await one(m, 'warm', warm, '1.9.0');
  const rounds: Record<Measure, number>[] = [];
  for (let r = 0; r < REPEAT; r++) {
    const order = MEASURES.map((_, i) => MEASURES[(i + r) % MEASURES.length]!);
    const got = {} as Record<Measure, number>;
    for (const m of order) got[m] = await one(m, String(r), img, '2.0.0');
    rounds.push(got);
    log(`pty round ${r + 1}/${REPEAT} (${order.join(', ')}): ${MEASURES.map((m) => `${m} ${got[m].toFixed(2)}`).join(', ')} MiB/s`);
  }
  const med = (xs: number[]): number => {
    const v = [...xs].sort((a, b) => a - b);
    const k = v.length >> 1;
    return v.length % 2 ? v[k]! : (v[k - 1]! + v[k]!) / 2;
  };
  const figure = (xs: number[]): [number, number[]] => [round(med(xs)), [round(Math.min(...xs)), round(Math.max(...xs))]];
  const fields: Record<string, number | number[]> = { pty_size: SIZE, pty_rounds: REPEAT };
  const put = (key: string, xs: number[]): void => {
    const [m, mm] = figure(xs);
    fields[key] = m;
    fields[`${key}_min_max`] = mm;
  };
  const series = (m: Measure): number[] => rounds.map((g) => g[m]);
  const ratio = (a: Measure, b: Measure): number[] => rounds.map((g) => g[a] / g[b]);
  put('pty_raw_mibs', series('raw'));
  put('pty_mibs', series('upload'));
  put('pty_ratio', ratio('upload', 'raw'));
  put('pty_floor_mibs', series('floor'));
  put('pty_floor_ratio', ratio('floor', 'raw'));
  put('pty_acked_floor_mibs', series('acked'));
  put('pty_acked_floor_ratio', ratio('acked', 'raw'));
  put('pty_link_mibs', series('link'));
  put('pty_link_ratio', ratio('link', 'raw'));
  put('pty_vs_acked_floor', ratio('upload', 'acked'));
  const link = negotiatedLink();
  log(`pty pair, ${SIZE / MiB} MiB, medians of ${REPEAT} round(s) after a warm-up: raw copy ${fields.pty_raw_mibs} MiB/s; + CRC-32, SHA-256 and store (floor) ${fields.pty_floor_mibs} MiB/s (floor ratio ${fields.pty_floor_ratio}); acknowledged between two processes (${link.frame}-byte frames, window ${link.window}, an ACK per ${link.ackEvery}) ${fields.pty_acked_floor_mibs} MiB/s (acked floor ratio ${fields.pty_acked_floor_ratio}); through the serial link alone ${fields.pty_link_mibs} MiB/s (link ratio ${fields.pty_link_ratio}); fwpush -> fwgate ${fields.pty_mibs} MiB/s (ratio ${fields.pty_ratio}, upload / acked floor ${fields.pty_vs_acked_floor})`);
  return fields;
}

const dir = await mkdtemp(join(tmpdir(), 'fwgate-bench-serial-'));
let code = 0;
try {
  const keys = await makeKeys(dir);
  const out: Record<string, number | number[]> = {};
  if (!values['skip-pty']) {
    const img = await image(dir, '2.0.0', SIZE);
    const pty = await createPtyPair(await mkdtemp(join(dir, 'pty-')));
    try {
      Object.assign(out, await ptyRounds(keys, pty, img));
      for (const us of READER_BUSY_US) {
        const { ms, reads } = await busyReaderCopy(pty.b, pty.a, img.path, SIZE, us);
        const mibs = SIZE / (ms / 1000) / MiB;
        log(`pty pair, dd -> reader busy ${us} µs after each read: ${mibs.toFixed(2)} MiB/s, ${reads} reads, ${(ms * 1000 / reads).toFixed(0)} µs per read`);
        out[`pty_busy_${us}us_mibs`] = round(mibs);
      }
    } finally {
      await pty.close();
    }
  }
  const rows: UartFigures[] = [];
  let n = 1;
  for (const baud of BAUDS) {
    for (const latencyMs of LATENCIES) {
      const f = await uartRun(keys, baud, latencyMs, n++);
      rows.push(f);
      const key = `uart_${baud}${latencyMs === 1 ? '' : `_${latencyMs}ms`}`;
      Object.assign(out, { [`${key}_ratio`]: round(f.ratio), [`${key}_efficiency`]: round(f.efficiency), [`${key}_raw_ratio`]: round(f.rawRatio), [`${key}_size`]: f.size });
    }
  }
  if (rows.length > 0) {
    log('\n| baud | latency | image | payload | payload / line rate | raw copy / line rate | wire bytes (up + down) | efficiency |');
    log('| --- | --- | --- | --- | --- | --- | --- | --- |');
    for (const r of rows) {
      log(`| ${r.baud} | ${r.latencyMs} ms | ${r.size / 1024} KiB | ${(r.mibs * 1024).toFixed(1)} KiB/s | ${r.ratio.toFixed(3)} | ${r.rawRatio.toFixed(3)} | ${r.up} + ${r.down} | ${r.efficiency.toFixed(4)} |`);
    }
  }
  // `efficiency` at default settings: the 921600 / 1 ms run (the relay is what counts wire bytes).
  const ref = rows.find((r) => r.baud === 921_600 && r.latencyMs === 1) ?? rows[0];
  if (ref) out.efficiency = round(ref.efficiency, 4);
  if (values.json) process.stdout.write(`${JSON.stringify(out)}\n`);
} catch (err) {
  log(`bench/serial: ${(err as Error).stack ?? String(err)}`);
  code = 1;
} finally {
  await rm(dir, { recursive: true, force: true });
}
process.exit(code);

function round(x: number, digits = 3): number {
  return Math.round(x * 10 ** digits) / 10 ** digits;
}
