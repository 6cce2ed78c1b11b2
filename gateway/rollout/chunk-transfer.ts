import { isFwError } from '../../protocol/errors.ts';
import type { GatewayConfig } from '../config.ts';
import type { DeviceChannel, DeviceEvent } from '../device-channel.ts';
import type { Timers } from '../waiter.ts';
import type { TokenBucket } from './bandwidth.ts';
import { encodeChunkMessage } from './chunk-message.ts';
import type { ImageSource } from './image-source.ts';
import { SessionFailure } from './session-failure.ts';

type Ev<T extends DeviceEvent['t']> = Extract<DeviceEvent, { t: T }>;

/** What one image's chunk transfer to one device needs (device-session.ts). */
export interface ChunkTransfer {
  deviceId: string;
  image: ImageSource;
  /** The chunk size the device accepted. */
  chunk: number;
  sid: number;
  /** The resume point the device's accept named. */
  from: number;
  /** Chunks in flight to start with, and the most the device's accept allows. */
  window: number;
  acceptWindow: number;
  config: GatewayConfig['rollout'];
  timers: Timers;
  channel: Pick<DeviceChannel, 'send'>;
  rttMs?: number;
  bandwidth?: TokenBucket;
  /** The session's stop (cancel, a window closing): no chunk is sent once it is aborted, not even one that was waiting for the site's bandwidth. */
  signal?: AbortSignal;
  /** The next `ack` of this sid, or E_DEVICE_TIMEOUT after `timeoutMs`. */
  expectAck(sid: number, timeoutMs: number): Promise<Ev<'ack'>>;
  /** The device holds the image up to `next` (called at the start and whenever it grows). */
  onHeld(next: number): void;
}

/**
 * Send the image's chunks from `from` until the device acks the whole image (docs/protocol.md
 * §6.6): a window of chunks in flight, raised to two ack batches for a device that acks in
 * batches (§6.6.2); the chunks an ack lists missing resent once at once and again only after a
 * guard time; on an ack timeout only the last chunk resent (§6.6.5), the attempt failed after
 * `maxAckTimeouts`. Returns the transfer's throughput, bytes/s, when it moved at least 4 chunks.
 */
export async function transferChunks(ctx: ChunkTransfer): Promise<number | undefined> {
const { config, timers, channel, image, chunk, sid } = ctx;
const size = image.size;
  let window = Math.max(1, ctx.window);
  const lastSent = new Float64Array(image.chunkCount(chunk)).fill(-Infinity);
  const resent = new Uint8Array(image.chunkCount(chunk));
  const resendGuardMs = Math.max(config.resendGuardMinMs, (ctx.rttMs ?? config.resendGuardMinMs) * config.resendGuardRtts);
  // §6.6.5: the ack wait, stretched on a slow round trip
  const ackWaitMs = Math.max(config.ackTimeoutMs, Math.ceil((ctx.rttMs ?? 0) * config.ackTimeoutRtts));
  let next = ctx.from;
  let cursor = next;
  let timeouts = 0;
  /** Most chunks one ack has moved `next` by with nothing missing: the device's ack batch. */
  let batch = 0;
  const startedAt = timers.now();
  const startedFrom = next;
  const send = async (off: number): Promise<void> => {
    const c = image.encodedChunk(off, chunk);
    if (ctx.bandwidth) await ctx.bandwidth.take(c.data.length);
    // stopped while the chunk waited for its turn in the site's bandwidth: it is not sent
    if (ctx.signal?.aborted) return;
    lastSent[off / chunk] = timers.now();
    // the chunk's CBOR is shared by every session; only the sid is spliced in (chunk-message.ts)
    await channel.send(ctx.deviceId, { t: 'chunk', sid, off, data: c.data, crc: c.crc }, encodeChunkMessage(sid, c.tail));
  };
  ctx.onHeld(next);
  while (next < size) {
    // The window's chunks are handed to the broker together (in order), not one per event-loop
    // turn: the device's socket then gets them in one write instead of one write per chunk.
    const sending: Promise<void>[] = [];
    while (cursor < size && cursor - next < window * chunk) {
      sending.push(send(cursor));
      cursor += chunk;
    }
    await Promise.all(sending);
    let ack: Ev<'ack'>;
    try {
      ack = await ctx.expectAck(sid, ackWaitMs);
    } catch (err) {
      if (!isFwError(err, 'E_DEVICE_TIMEOUT')) throw err;
      if (++timeouts >= config.maxAckTimeouts) {
        throw new SessionFailure('failed', 'connection-lost', `no chunk ack in ${timeouts} x ${ackWaitMs} ms`, false);
      }
      // §6.6.5: resend only the last chunk sent, not the window. Chunks reach the device in the
      // order sent, so its ack to this one lists in `missing` every chunk below it that it does
      // not hold; those are resent by the rule below (each was last sent ackTimeoutMs ago).
      await send(cursor - chunk);
      continue;
    }
    timeouts = 0;
    if (ack.next > size || (ack.next % chunk !== 0 && ack.next !== size)) {
      throw new SessionFailure('failed', 'rejected', `device acked offset ${ack.next}, not a chunk boundary of ${chunk}`, false);
    }
    if (ack.next > next) {
      const advanced = Math.ceil((ack.next - next) / chunk);
      if (ack.missing.length === 0 && advanced > batch) {
        batch = advanced;
        // §6.6.2: two ack batches in flight, never above accept.window or rollout.chunkWindow
        window = Math.max(window, Math.min(ctx.acceptWindow, config.chunkWindow, 2 * batch));
      }
      next = ack.next;
      ctx.onHeld(next);
    }
    if (cursor < next) cursor = next;
    const now = timers.now();
    // Acks are sent in the order chunks arrive (TCP keeps order), so a chunk listed as missing
    // was lost or bad: resend it at once the first time. Later acks may still list it until the
    // resend arrives; only resend again after a guard time.
    for (const m of ack.missing) {
      if (m < next || m >= cursor || m % chunk !== 0) continue;
      const i = m / chunk;
      if (resent[i] && now - lastSent[i]! < resendGuardMs) continue;
      resent[i] = 1;
      await send(m);
    }
  }
  const ms = timers.now() - startedAt;
  return size - startedFrom >= 4 * chunk && ms > 0 ? Math.round(((size - startedFrom) * 1000) / ms) : undefined;
}
