import assert from 'node:assert/strict';
import { TokenBucket } from '../../../gateway/rollout/bandwidth.ts';
import { Rig, sampleImage } from '../../helpers/rig.ts';
import { FakeTimers, drive } from './fake.ts';

/**
 * The site bandwidth cap (`rollout.siteBps`, docs/protocol.md §7.5.7): every device session takes
 * its chunk bytes from one token bucket of max(16384, siteBps / 20) bytes.
 */
describe('rollout: the site bandwidth cap (rollout.siteBps, §7.5.7)', function () {
  this.timeout(60_000);

  it('the bucket: by fake time t at most burst + siteBps × t bytes have gone, in the order asked, and no sooner than that allows', async () => {
    const timers = new FakeTimers();
    const bps = 64 * 1024;
    const burst = 16 * 1024;
    const bucket = new TokenBucket(bps, timers);
    const grants: { i: number; at: number }[] = [];
    const all = Promise.all(Array.from({ length: 64 }, (_, i) => bucket.take(4096).then(() => grants.push({ i, at: timers.now() }))));
    await drive(timers, all, 60_000);
    assert.deepEqual(grants.map((g) => g.i), grants.map((_, i) => i), 'served in the order asked');
    grants.forEach((g, k) => {
      const sent = (k + 1) * 4096;
      assert.ok(sent <= burst + (bps * g.at) / 1000 + 1e-6, `${sent} bytes by ${g.at} ms: over the cap`);
    });
    const end = grants.at(-1)!.at;
    assert.ok(end >= ((64 * 4096 - burst) * 1000) / bps, `all 256 KiB by ${end} ms`);
    assert.ok(end <= ((64 * 4096 - burst) * 1000) / bps + 64, `the cap does not hold bytes back beyond it (${end} ms)`);
    const big = new TokenBucket(10 * 1024 * 1024, new FakeTimers());
    assert.equal((big as unknown as { burstBytes: number }).burstBytes, 10 * 1024 * 1024 / 20, 'the burst is siteBps / 20 when that is more than 16 KiB');
  });

  it('end to end: a campaign under siteBps sends its chunk bytes no faster than the cap (two devices, one bucket)', async () => {
    const siteBps = 64 * 1024;
    const rig = await Rig.start({ devices: 2, config: { rollout: { siteBps, concurrency: 2 } } });
    try {
      const { image, manifest } = sampleImage({ version: '1.1.0', size: 64 * 1024 });
      await rig.client.connect();
      // measured from before the push: anything slower (a loaded machine) only lengthens it, so this bound cannot flake
      const t0 = performance.now();
      const { campaign } = await rig.client.push(manifest, image);
      const complete = await rig.client.follow(campaign);
      const elapsed = performance.now() - t0;
      assert.equal(complete.updated, 2, JSON.stringify(complete));
      const floor = ((2 * image.length - 16 * 1024) * 1000) / siteBps;
      assert.ok(elapsed >= floor, `128 KiB of chunks in ${elapsed.toFixed(0)} ms: faster than ${siteBps} B/s allows (at least ${floor.toFixed(0)} ms)`);
    } finally {
      await rig.stop();
    }
  });
});
