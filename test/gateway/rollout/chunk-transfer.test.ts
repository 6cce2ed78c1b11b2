import assert from 'node:assert/strict';
import { parseConfig } from '../../../gateway/config.ts';
import type { DeviceEvent } from '../../../gateway/device-channel.ts';
import { transferChunks, type ChunkTransfer } from '../../../gateway/rollout/chunk-transfer.ts';
import { ImageSource } from '../../../gateway/rollout/image-source.ts';
import { SessionFailure } from '../../../gateway/rollout/session-failure.ts';
import { FwError } from '../../../protocol/errors.ts';
import { manifestForImage } from '../../../protocol/manifest.ts';
import type { GatewayMessage } from '../../../protocol/ota.ts';

/**
 * One image's chunk transfer (chunk-transfer.ts, docs/protocol.md §6.6) driven ack by ack: the
 * test plays the device, answering each wait for an ack with a scripted `ack` (or a timeout) on a
 * manual clock, and sees every chunk sent, in order.
 */

const CHUNK = 1024;
type Ack = Extract<DeviceEvent, { t: 'ack' }>;
const ack = (next: number, missing: number[] = []): Ack => ({ t: 'ack', sid: 9, next: next * CHUNK, missing: missing.map((k) => k * CHUNK) });

interface Turn {
  /** Chunks (index) sent since the previous wait for an ack. */
  sent: number[];
  /** The wait asked for, ms. */
  waitMs: number;
}

interface Run {
  result?: number | undefined;
  error?: unknown;
  /** Chunk indexes in send order. */
  sent: number[];
  turns: Turn[];
  /** What onHeld was told, in chunks. */
  held: number[];
}

/**
 * Run a transfer of `chunks` chunks (the last one `lastBytes` long when given). `device` answers
 * the n-th wait for an ack (0-based): an ack, `timeout` (the wait runs out: the clock moves by the
 * wait), or an error to throw. `stepMs`: the clock moves this much before each ack.
 */
async function run(opts: {
  chunks: number; lastBytes?: number; from?: number; window: number; acceptWindow?: number; rttMs?: number; startAt?: number; stepMs?: number | ((n: number) => number);
  over?: Record<string, unknown>; device: (n: number, turn: Turn) => Ack | 'timeout' | Error;
}): Promise<Run> {
  const size = (opts.chunks - 1) * CHUNK + (opts.lastBytes ?? CHUNK);
  const bytes = Buffer.alloc(size, 5);
  const image = new ImageSource(manifestForImage(bytes, { name: 'fw', version: '1.1.0', hw: ['hw'], chunk: CHUNK }), bytes);
  const config = parseConfig({ rollout: { ackTimeoutMs: 1000, maxAckTimeouts: 3, chunkWindow: 32, ...opts.over } }).rollout;
  let t = opts.startAt ?? 0;
  const out: Run = { sent: [], turns: [], held: [] };
  let since: number[] = [];
  let n = 0;
  const ctx: ChunkTransfer = {
    deviceId: 'dev-1', image, chunk: CHUNK, sid: 9, from: (opts.from ?? 0) * CHUNK, window: opts.window, acceptWindow: opts.acceptWindow ?? 32, config,
    timers: { now: () => t, setTimeout: () => assert.fail('no timer expected'), clearTimeout: () => undefined },
    channel: {
      send: async (_id: string, msg: GatewayMessage): Promise<void> => {
        assert.equal(msg.t, 'chunk');
        if (msg.t !== 'chunk') return;
        assert.equal(msg.sid, 9);
        out.sent.push(msg.off / CHUNK);
        since.push(msg.off / CHUNK);
      },
    },
    ...(opts.rttMs !== undefined ? { rttMs: opts.rttMs } : {}),
    expectAck: async (sid, waitMs) => {
      assert.equal(sid, 9);
      const turn = { sent: since, waitMs };
      since = [];
      out.turns.push(turn);
      if (n > 200) assert.fail('runaway transfer');
      const a = opts.device(n, turn);
      const step = typeof opts.stepMs === 'function' ? opts.stepMs(n) : opts.stepMs ?? 0;
      n++;
      if (a === 'timeout') {
        t += waitMs;
        throw new FwError('E_DEVICE_TIMEOUT', `chunk ack from dev-1`);
      }
      if (a instanceof Error) throw a;
      t += step;
      return a;
    },
    onHeld: (next) => out.held.push(next / CHUNK),
  };
  try {
    out.result = await transferChunks(ctx);
  } catch (err) {
    out.error = err;
  }
  return out;
}

/** Acks each window whole: next = everything sent so far. */
const acksAll = (_n: number, turn: Turn): Ack => ack(Math.max(...turn.sent) + 1);

describe('chunk transfer: the window and what the device acks (§6.6)', () => {
  it('sends a window of chunks, then as many as the ack freed; held starts at the resume point and grows with each ack', async () => {
    const r = await run({ chunks: 10, window: 4, acceptWindow: 4, device: acksAll });
    assert.equal(r.error, undefined);
    assert.deepEqual(r.turns.map((x) => x.sent), [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]);
    assert.deepEqual(r.held, [0, 4, 8, 10]);
  });

  it('resumes from `from`: nothing below it is sent', async () => {
    const r = await run({ chunks: 6, from: 4, window: 4, device: acksAll });
    assert.deepEqual(r.sent, [4, 5]);
    assert.deepEqual(r.held, [4, 6]);
  });

  it('a window of 0 still sends one chunk at a time', async () => {
    const r = await run({ chunks: 3, window: 0, acceptWindow: 0, device: acksAll });
    assert.deepEqual(r.turns.map((x) => x.sent), [[0], [1], [2]]);
  });

  it('an ack that does not move next (it only lists a chunk missing) leaves held as it is', async () => {
    const r = await run({
      chunks: 4, window: 4,
      device: (n) => [ack(0, [0]), ack(4)][n]!,
    });
    assert.deepEqual(r.held, [0, 4], 'onHeld only when next grows');
    assert.deepEqual(r.sent, [0, 1, 2, 3, 0]);
  });

  it('a stale ack below what an earlier ack said never moves held back nor sends held chunks again', async () => {
    const r = await run({
      chunks: 8, window: 4,
      device: (n) => [ack(4), ack(2), ack(8)][n]!,
    });
    assert.equal(r.error, undefined);
    assert.deepEqual(r.held, [0, 4, 8]);
    assert.deepEqual(r.sent, [0, 1, 2, 3, 4, 5, 6, 7], 'each chunk once');
  });

  it('a device that holds more than was sent (its ack is past the cursor) is not sent what it holds', async () => {
    // the device already held chunks 0..7 from an earlier attempt and acks next = 8 to chunk 0
    const r = await run({ chunks: 12, window: 4, device: (n) => [ack(8), ack(12)][n]! });
    assert.deepEqual(r.turns.map((x) => x.sent), [[0, 1, 2, 3], [8, 9, 10, 11]]);
    assert.deepEqual(r.held, [0, 8, 12]);
  });

  it('an ack at the end of an image whose last chunk is short is the end, not a bad boundary', async () => {
    const r = await run({ chunks: 3, lastBytes: 100, window: 4, device: () => ({ t: 'ack', sid: 9, next: 2 * CHUNK + 100, missing: [] }) });
    assert.equal(r.error, undefined);
    assert.deepEqual(r.held, [0, (2 * CHUNK + 100) / CHUNK]);
  });

  it('an ack off a chunk boundary, or past the image, fails the attempt as rejected (retried)', async () => {
    for (const [next, text] of [[1000, 'device acked offset 1000, not a chunk boundary of 1024'], [5 * CHUNK, 'device acked offset 5120, not a chunk boundary of 1024']] as const) {
      const r = await run({ chunks: 4, window: 4, device: () => ({ t: 'ack', sid: 9, next, missing: [] }) });
      assert.ok(r.error instanceof SessionFailure, String(r.error));
      assert.deepEqual([r.error.outcome, r.error.code, r.error.message, r.error.terminal], ['failed', 'rejected', text, false]);
      assert.deepEqual(r.held, [0], 'nothing counted as held');
    }
  });

  it('an ack past the end of a short last chunk is refused too', async () => {
    const r = await run({ chunks: 3, lastBytes: 100, window: 4, device: () => ack(3) });
    assert.ok(r.error instanceof SessionFailure);
    assert.equal(r.error.code, 'rejected');
  });
});

describe('chunk transfer: chunks an ack lists missing', () => {
  it('resends a missing chunk at once, only those between next and the last chunk sent, on a chunk boundary', async () => {
    const r = await run({
      chunks: 8, window: 4,
      // after chunks 0..3: next 1, missing: 0 (below next), 2 (a real hole), 4 and 6 (never sent), half a chunk
      device: (n) => [{ t: 'ack', sid: 9, next: CHUNK, missing: [0, 2 * CHUNK, 4 * CHUNK, 6 * CHUNK, 2 * CHUNK + 512] } as Ack, ack(4), ack(8)][n]!,
    });
    assert.equal(r.error, undefined);
    assert.deepEqual(r.turns.map((x) => x.sent), [[0, 1, 2, 3], [2, 4], [5, 6, 7]]);
  });

  it('a chunk listed missing again is resent only once the resend guard (resendGuardRtts x RTT, at least resendGuardMinMs) has passed', async () => {
    // RTT 100 ms x 4 = 400 ms guard (above the 20 ms minimum); the device keeps listing chunk 1
    const times = [0, 0, 300, 100, 100, 0];
    const r = await run({
      chunks: 4, window: 4, rttMs: 100, over: { resendGuardRtts: 4, resendGuardMinMs: 20 }, stepMs: (n) => times[n] ?? 0,
      device: (n) => [ack(1, [1]), ack(1, [1]), ack(1, [1]), ack(1, [1]), ack(1, [1]), ack(4)][n]!,
    });
    // ack 0 at 0 ms: resent at once; ack 1 at 0 ms, ack 2 at 300 ms: within the guard; ack 3 at 400 ms: resent; ack 4 at 500 ms: within
    assert.deepEqual(r.turns.map((x) => x.sent), [[0, 1, 2, 3], [1], [], [], [1], []]);
  });

  it('without a measured RTT the guard is resendGuardRtts x resendGuardMinMs', async () => {
    // 20 ms x 4 = 80 ms: a listing at 60 ms is within it, one at 80 ms is not
    const times = [0, 60, 20, 0];
    const r = await run({
      chunks: 4, window: 4, over: { resendGuardRtts: 4, resendGuardMinMs: 20 }, stepMs: (n) => times[n] ?? 0,
      device: (n) => [ack(1, [1]), ack(1, [1]), ack(1, [1]), ack(4)][n]!,
    });
    assert.deepEqual(r.turns.map((x) => x.sent), [[0, 1, 2, 3], [1], [], [1]]);
  });
});

describe('chunk transfer: the window grows for a device that acks in batches (§6.6.2)', () => {
  it('a clean ack that moves next by k chunks raises the window to 2k, within accept.window and chunkWindow', async () => {
    const r = await run({ chunks: 16, window: 2, acceptWindow: 16, device: acksAll });
    // ack of 2 -> window 4 (4 - 0 in flight after next 2: chunks 2..5); ack of 4 -> window 8
    assert.deepEqual(r.turns.map((x) => x.sent), [[0, 1], [2, 3, 4, 5], [6, 7, 8, 9, 10, 11, 12, 13], [14, 15]]);
  });

  it('never above accept.window, nor rollout.chunkWindow', async () => {
    const a = await run({ chunks: 16, window: 4, acceptWindow: 6, device: acksAll });
    assert.deepEqual(a.turns.map((x) => x.sent.length), [4, 6, 6]);
    const b = await run({ chunks: 16, window: 4, acceptWindow: 16, over: { chunkWindow: 5 }, device: acksAll });
    assert.deepEqual(b.turns.map((x) => x.sent.length), [4, 5, 5, 2]);
  });

  it('an ack that lists chunks missing does not raise it, however far it moves next', async () => {
    // window 8: chunk 6 lost; the ack moves next by 6 and lists 6 missing: 6 resent, the window stays 8 (up to 13);
    // the clean ack of 8 chunks after it raises it to 16
    const r = await run({ chunks: 30, window: 8, acceptWindow: 16, device: (n) => [ack(6, [6]), ack(14), ack(30)][n]! });
    assert.deepEqual(r.turns.map((x) => x.sent), [[0, 1, 2, 3, 4, 5, 6, 7], [6, 8, 9, 10, 11, 12, 13], [14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29]]);
  });
});

describe('chunk transfer: ack timeouts (§6.6.5)', () => {
  it('waits ackTimeoutMs, or ackTimeoutRtts round trips when longer (rounded up)', async () => {
    const fast = await run({ chunks: 1, window: 1, rttMs: 5, device: acksAll });
    assert.equal(fast.turns[0]!.waitMs, 1000);
    const slow = await run({ chunks: 1, window: 1, rttMs: 333.3, over: { ackTimeoutRtts: 4 }, device: acksAll });
    assert.equal(slow.turns[0]!.waitMs, 1334);
    const unmeasured = await run({ chunks: 1, window: 1, device: acksAll });
    assert.equal(unmeasured.turns[0]!.waitMs, 1000);
  });

  it('on a timeout resends only the last chunk sent; the ack to it lists the holes, which are resent', async () => {
    const r = await run({ chunks: 4, window: 4, device: (n) => (['timeout', ack(1, [1, 2]), ack(4)] as const)[n]! });
    assert.equal(r.error, undefined);
    assert.deepEqual(r.turns.map((x) => x.sent), [[0, 1, 2, 3], [3], [1, 2]]);
  });

  it('fails the attempt after maxAckTimeouts timeouts in a row: failed / connection-lost, retried', async () => {
    const r = await run({ chunks: 4, window: 4, device: () => 'timeout' });
    assert.ok(r.error instanceof SessionFailure);
    assert.deepEqual([r.error.outcome, r.error.code, r.error.message, r.error.terminal], ['failed', 'connection-lost', 'no chunk ack in 3 x 1000 ms', false]);
    assert.deepEqual(r.turns.map((x) => x.sent), [[0, 1, 2, 3], [3], [3]], 'two resends, the third timeout ends it');
  });

  it('an ack in between starts the count again', async () => {
    const r = await run({ chunks: 4, window: 1, device: (n) => (['timeout', 'timeout', ack(1), 'timeout', 'timeout', ack(2), ack(3), ack(4)] as const)[n]! });
    assert.equal(r.error, undefined);
    assert.deepEqual(r.held, [0, 1, 2, 3, 4]);
  });

  it('another error while waiting (the device went offline) ends the transfer as it is', async () => {
    const offline = new FwError('E_DEVICE_OFFLINE', 'dev-1 went offline while waiting for chunk ack');
    const r = await run({ chunks: 4, window: 4, device: () => offline });
    assert.equal(r.error, offline);
  });
});

describe('chunk transfer: the throughput it reports', () => {
  it('bytes moved per second of the transfer, rounded', async () => {
    // 8 KiB in two acks 50 ms apart, starting at t = 1000: 8192 B / 0.1 s
    const r = await run({ chunks: 8, window: 4, startAt: 1000, stepMs: 50, device: acksAll });
    assert.equal(r.result, 81_920);
    const third = await run({ chunks: 4, window: 4, startAt: 1000, stepMs: 3, device: acksAll });
    assert.equal(third.result, Math.round((4 * CHUNK * 1000) / 3));
  });

  it('counts only what this transfer moved (from the resume point), when at least 4 chunks', async () => {
    const four = await run({ chunks: 10, from: 6, window: 4, startAt: 1000, stepMs: 40, device: acksAll });
    assert.equal(four.result, (4 * CHUNK * 1000) / 40);
    const three = await run({ chunks: 10, from: 7, window: 4, startAt: 1000, stepMs: 40, device: acksAll });
    assert.equal(three.result, undefined, '3 chunks are too few to measure');
  });

  it('none when no time passed', async () => {
    const r = await run({ chunks: 8, window: 4, startAt: 1000, stepMs: 0, device: acksAll });
    assert.equal(r.result, undefined);
  });
});
