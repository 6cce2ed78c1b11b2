/**
 * bench/link — what the serial link's own code costs per frame, without any I/O: an upload's
 * `data` messages through two ArqLinks in one process (the laptop's sender, the gateway's
 * receiver with its configured window and delayed-ACK settings: gateway/config.ts defaults), their
 * wire bytes handed across in reads of at most
 * 4095 bytes as a pty gives them. Times only the link calls on each side (send and frame
 * encoding; receive, frame decoding, message decode), so the figure moves with the link code
 * and not with the machine's pty or scheduler (docs/performance.md).
 * The image is firmware-like (firmware-samples' generator, as bench/serial and bench/fanout use):
 * COBS framing costs depend on how many zero bytes the data holds, and an all-zero image is its
 * worst and least typical case.
 *
 *   npm run bench:link [-- --json --size 16777216 --runs 3 --frame 4096]
 */
import { parseArgs } from 'node:util';
import { makeSampleImage } from '../firmware-samples/image-format.ts';
import { parseConfig } from '../gateway/config.ts';
import { ArqLink } from '../protocol/link/arq.ts';
import { DATA_MESSAGE_OVERHEAD, decodeLaptopMessage, encodeUplinkMessage } from '../protocol/uplink.ts';
import { realLinkTimers } from '../transport/message-link.ts';
import { intFlag } from './lib/int-flag.ts';

const int = intFlag('bench/link');

const { values } = parseArgs({
  options: {
    size: { type: 'string', default: String(16 * 1024 * 1024) },
    runs: { type: 'string', default: '3' },
    frame: { type: 'string', default: '4096' },
    json: { type: 'boolean', default: false },
  },
  strict: true,
});

const SIZE = int(values.size, 'size', 64 * 1024, 256 * 1024 * 1024);
const RUNS = int(values.runs, 'runs', 1, 20);
/**
 * Frame payload, each frame carrying one `data` message: 4 KiB by default, what fwpush sends on a
 * UART and before it has measured the line (laptop/upload-chunk.ts); 16384 is what it sends on a
 * fast line with the default grant.
 */
const FRAME = int(values.frame, 'frame', 256, 16_384);
const CHUNK = FRAME - DATA_MESSAGE_OVERHEAD;
/** A pty hands out at most this much per read. */
const READ = 4095;
/** The gateway's configured link settings (gateway/config.ts defaults), not copies of them. */
const UPLINK = parseConfig({}).uplink;
const WINDOW = UPLINK.window;
const ACK_DELAY_MS = UPLINK.ackDelayMs;
const ACK_EVERY = UPLINK.ackEvery;

interface Run { frames: number; acks: number; senderUs: number; receiverUs: number; cpuMsPerMiB: number }

async function run(image: Buffer): Promise<Run> {
  const toGateway: Uint8Array[] = [];
  const toLaptop: Uint8Array[] = [];
  const laptop = new ArqLink({ timers: realLinkTimers, output: (w, written) => { toGateway.push(w); written(); }, window: WINDOW, maxPayload: FRAME });
  const gateway = new ArqLink({
    timers: realLinkTimers, output: (w, written) => { toLaptop.push(w); written(); }, window: WINDOW, maxPayload: FRAME,
    ackDelayMs: ACK_DELAY_MS, ackEvery: ACK_EVERY,
  });
  let received = 0;
  let checksum = 0;
  gateway.on('message', (m) => {
    const msg = decodeLaptopMessage(m);
    if (msg.t !== 'data') throw new Error(`bench/link: unexpected ${msg.t}`);
    received += msg.data.length;
    checksum = (checksum + msg.data[0]!) | 0;
  });
  let senderMs = 0;
  let receiverMs = 0;
  const deliver = (queue: Uint8Array[], to: ArqLink): number => {
    if (queue.length === 0) return 0;
    const bytes = Buffer.concat(queue);
    queue.length = 0;
    const t = performance.now();
    for (let o = 0; o < bytes.length; o += READ) to.receive(bytes.subarray(o, o + READ));
    return performance.now() - t;
  };
  let off = 0;
  const cpu0 = process.cpuUsage();
  const deadline = Date.now() + 120_000;
  await new Promise<void>((resolve, reject) => {
    const turn = (): void => {
      const t = performance.now();
      while (off < image.length) {
        const data = image.subarray(off, Math.min(off + CHUNK, image.length));
        const more = laptop.send(encodeUplinkMessage({ t: 'data', off, data }));
        off += data.length;
        if (!more) break;
      }
      senderMs += performance.now() - t;
      receiverMs += deliver(toGateway, gateway);
      senderMs += deliver(toLaptop, laptop);
      if (received >= image.length) return resolve();
      if (Date.now() > deadline) return reject(new Error(`bench/link: ${received} of ${image.length} bytes after 120 s`));
      setImmediate(turn);
    };
    turn();
  });
  const cpu = process.cpuUsage(cpu0);
  const frames = laptop.stats.framesOut;
  const result = {
    frames, acks: gateway.stats.acksSent,
    senderUs: (senderMs * 1000) / frames, receiverUs: (receiverMs * 1000) / frames,
    cpuMsPerMiB: (cpu.user + cpu.system) / 1000 / (image.length / (1024 * 1024)),
  };
  laptop.close();
  gateway.close();
  if (laptop.stats.retransmits !== 0) throw new Error(`bench/link: ${laptop.stats.retransmits} frames sent twice on a lossless loopback`);
  return result;
}

const image = Buffer.from(makeSampleImage({ name: 'sensor-fw', version: '1.1.0', hw: 'sensor-v1', size: SIZE }));
const zeros = image.reduce((n, b) => n + (b === 0 ? 1 : 0), 0);
// a warm-up run (JIT, first allocations) that is not counted
await run(image.subarray(0, Math.min(SIZE, 1024 * 1024)));
const runs: Run[] = [];
for (let i = 0; i < RUNS; i++) runs.push(await run(image));
const median = (pick: (r: Run) => number): number => {
  const v = runs.map(pick).sort((a, b) => a - b);
  return v[Math.floor(v.length / 2)]!;
};
const round = (n: number): number => Math.round(n * 100) / 100;
const minMax = (pick: (r: Run) => number): [number, number] => [round(Math.min(...runs.map(pick))), round(Math.max(...runs.map(pick)))];
process.stderr.write(`bench/link: ${SIZE / (1024 * 1024)} MiB firmware-like image (${(zeros / SIZE * 100).toFixed(1)} % zero bytes) in ${FRAME}-byte frames, window ${WINDOW}, ACK after ${ACK_DELAY_MS} ms or every ${ACK_EVERY} frames (gateway/config.ts), ${RUNS} run(s) after a warm-up\n`);
process.stderr.write('| run | frames | ACKs | sender µs/frame | receiver µs/frame | CPU ms/MiB |\n| --- | --- | --- | --- | --- | --- |\n');
runs.forEach((r, i) => process.stderr.write(`| ${i + 1} | ${r.frames} | ${r.acks} | ${r.senderUs.toFixed(1)} | ${r.receiverUs.toFixed(1)} | ${r.cpuMsPerMiB.toFixed(1)} |\n`));
if (values.json) {
  process.stdout.write(`${JSON.stringify({
    bench: 'link', link_size: SIZE, link_frame: FRAME, link_frames: runs[0]!.frames, link_runs: RUNS,
    link_zero_byte_share: Math.round(zeros / SIZE * 10_000) / 10_000, link_window: WINDOW, link_ack_delay_ms: ACK_DELAY_MS, link_ack_every: ACK_EVERY,
    link_sender_us_per_frame: round(median((r) => r.senderUs)), link_sender_us_per_frame_min_max: minMax((r) => r.senderUs),
    link_receiver_us_per_frame: round(median((r) => r.receiverUs)), link_receiver_us_per_frame_min_max: minMax((r) => r.receiverUs),
    link_cpu_ms_per_mib: round(median((r) => r.cpuMsPerMiB)), link_cpu_ms_per_mib_min_max: minMax((r) => r.cpuMsPerMiB),
  })}\n`);
}
