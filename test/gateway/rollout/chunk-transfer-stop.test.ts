import assert from 'node:assert/strict';
import { parseConfig } from '../../../gateway/config.ts';
import { TokenBucket } from '../../../gateway/rollout/bandwidth.ts';
import { transferChunks } from '../../../gateway/rollout/chunk-transfer.ts';
import { ImageSource } from '../../../gateway/rollout/image-source.ts';
import { FwError } from '../../../protocol/errors.ts';
import { manifestForImage } from '../../../protocol/manifest.ts';
import type { GatewayMessage } from '../../../protocol/ota.ts';
import { drive, FakeTimers } from './fake.ts';

/**
 * A session stopped (a maintenance window closing, a cancel) while its chunks wait for their turn
 * in the site's bandwidth cap (rollout.siteBps): none of them is sent after the stop. Fake clock;
 * judged from the instants at which chunks reached the channel.
 */
describe('chunk transfer: stopped while chunks wait for the site bandwidth', () => {
  const CHUNK = 1024;
  const run = async (abortAtMs: number | undefined): Promise<{ sentAt: number[]; error: unknown }> => {
    const timers = new FakeTimers();
    const bytes = Buffer.alloc(8 * CHUNK, 7);
    const image = new ImageSource(manifestForImage(bytes, { name: 'fw', version: '1.1.0', hw: ['hw'], chunk: CHUNK }), bytes);
    // 1 KiB/s with a 1 KiB burst: the first chunk at once, then one a second
    const bandwidth = new TokenBucket(CHUNK, timers, CHUNK);
    const stop = new AbortController();
    if (abortAtMs !== undefined) timers.setTimeout(() => stop.abort(), abortAtMs);
    const sentAt: number[] = [];
    const transfer = transferChunks({
      deviceId: 'dev-1', image, chunk: CHUNK, sid: 3, from: 0, window: 8, acceptWindow: 8,
      config: parseConfig({ rollout: { ackTimeoutMs: 60_000 } }).rollout, timers,
      channel: { send: async (_id: string, m: GatewayMessage) => { if (m.t === 'chunk') sentAt.push(timers.now()); } },
      bandwidth, signal: stop.signal,
      // the whole window was handed over: the device acks everything at once (or the session's inbox is closed by the stop)
      expectAck: async () => {
        if (stop.signal.aborted) throw new FwError('E_CANCELLED', 'session ended');
        return { t: 'ack', sid: 3, next: 8 * CHUNK, missing: [] };
      },
      onHeld: () => undefined,
    });
    let error: unknown;
    await drive(timers, transfer, 60_000).catch((err: unknown) => { error = err; });
    return { sentAt, error };
  };

  it('not stopped: the 8 chunks go out one a second, as the cap allows', async () => {
    const { sentAt, error } = await run(undefined);
    assert.equal(error, undefined);
    assert.deepEqual(sentAt, [0, 1000, 2000, 3000, 4000, 5000, 6000, 7000]);
  });

  it('stopped at 2.5 s: the chunks sent are those whose turn came before it; none after', async () => {
    const { sentAt, error } = await run(2500);
    assert.deepEqual(sentAt, [0, 1000, 2000]);
    assert.ok(error instanceof FwError && error.code === 'E_CANCELLED', String(error));
  });
});
