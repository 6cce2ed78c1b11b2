import assert from 'node:assert/strict';
import { parseConfig } from '../../../gateway/config.ts';
import { Fleet, type LinkRecord } from '../../../gateway/fleet.ts';
import { silentLogger } from '../../../gateway/log.ts';
import { Campaign, recentLink } from '../../../gateway/rollout/campaign.ts';
import { ImageSource } from '../../../gateway/rollout/image-source.ts';
import { manifestForImage } from '../../../protocol/manifest.ts';
import type { GatewayMessage } from '../../../protocol/ota.ts';
import { drive, FakeSite, FakeTimers } from './fake.ts';

/** docs/protocol.md §7.5.2: figures measured recently enough are reused (one ping, no probe). */

const CHUNK = 1024;
const image = Buffer.alloc(4 * CHUNK, 9);
const manifest = manifestForImage(image, { name: 'fw', version: '1.1.0', hw: ['hw'], chunk: CHUNK });

/** Devices that answer everything and update fine. */
class Site extends FakeSite {
  sent: { id: string; msg: GatewayMessage }[] = [];
  override async send(id: string, msg: GatewayMessage): Promise<void> {
    this.sent.push({ id, msg });
    switch (msg.t) {
      case 'ping': return this.deliver(id, [{ t: 'pong', n: msg.n }]);
      case 'probe': return this.deliver(id, [{ t: 'probed', n: msg.n, size: msg.data.length }]);
      case 'offer': return this.deliver(id, [{ t: 'accept', sid: msg.sid, next: 0, chunk: CHUNK, window: 8 }]);
      case 'chunk': return this.deliver(id, [{ t: 'ack', sid: msg.sid, next: Math.min(msg.off + CHUNK, image.length), missing: [] }]);
      case 'verify': return this.deliver(id, [{ t: 'verified', sid: msg.sid, ok: true }]);
      case 'activate': return this.deliver(id, [{ t: 'activated', sid: msg.sid, slot: 'b' }, { t: 'boot', version: '1.1.0', slot: 'b', sha256: manifest.sha256, trial: true, reverted: false }]);
      case 'confirm': return this.deliver(id, [{ t: 'confirmed', sha256: msg.sha256, version: '1.1.0' }]);
      default: return;
    }
  }
  count(id: string, t: GatewayMessage['t']): number {
    return this.sent.filter((s) => s.id === id && s.msg.t === t).length;
  }
}

describe('probe reuse (rollout.probeMaxAgeMs, §7.5.2)', () => {
  const ids = ['d1', 'd2', 'd3'];
  const setup = (): { site: Site; fleet: Fleet; timers: FakeTimers; run: (over?: Record<string, unknown>) => Promise<void> } => {
    const timers = new FakeTimers();
    const site = new Site(timers);
    const fleet = new Fleet(site.asChannel(), () => timers.now());
    for (const id of ids) site.hello(id);
    let n = 0;
    const run = async (over: Record<string, unknown> = {}): Promise<void> => {
      const config = parseConfig({ rollout: { concurrency: 3, probePings: 3, probeBursts: 2, probeMaxAgeMs: 60_000, ...over } }).rollout;
      const campaign = new Campaign(`c-${++n}`, new ImageSource(manifest, image), { channel: site.asChannel(), fleet, config, timers, log: silentLogger() });
      const complete = await drive(timers, campaign.run(), 600_000);
      assert.equal(complete.updated, ids.length);
    };
    return { site, fleet, timers, run };
  };

  it('measures every device before the first campaign; right after it, one ping each and no probe, figures kept', async () => {
    const { site, fleet, run } = setup();
    await run();
    for (const id of ids) assert.deepEqual([site.count(id, 'ping'), site.count(id, 'probe') > 0], [3, true], id);
    const before = new Map(ids.map((id) => [id, { ...fleet.get(id)!.link! }]));
    site.sent = [];
    await run();
    for (const id of ids) {
      assert.deepEqual([site.count(id, 'ping'), site.count(id, 'probe')], [1, 0], `${id}: a reachability ping, no new measurement`);
      assert.equal(fleet.get(id)!.link!.measuredAt, before.get(id)!.measuredAt, 'the round trip was not re-measured');
    }
  });

  it('is off by default: the ranking measures before every campaign (issue: figures refreshed before each campaign)', () => {
    assert.equal(parseConfig({}).rollout.probeMaxAgeMs, 0);
  });

  it('with probeMaxAgeMs 0 every campaign measures every device', async () => {
    const { site, run } = setup();
    await run({ probeMaxAgeMs: 0 });
    site.sent = [];
    await run({ probeMaxAgeMs: 0 });
    for (const id of ids) assert.deepEqual([site.count(id, 'ping'), site.count(id, 'probe') > 0], [3, true], id);
  });

  it('reuses only figures with both a round trip and a throughput, each at most the age old', () => {
    const link: LinkRecord = { rttMs: 5, jitterMs: 1, measuredAt: 1000, bps: 1e6, bpsSource: 'transfer', bpsMeasuredAt: 1500 };
    assert.equal(recentLink(link, 60_000, 61_000), true);
    assert.equal(recentLink(link, 60_000, 61_001), false, 'round trip too old');
    assert.equal(recentLink({ ...link, bpsMeasuredAt: 500 }, 60_000, 61_000), false, 'throughput too old');
    assert.equal(recentLink({ ...link, bps: undefined, bpsMeasuredAt: undefined }, 60_000, 2000), false, 'no throughput figure');
    assert.equal(recentLink(link, 0, 1500), false, '0: never');
    assert.equal(recentLink(undefined, 60_000, 1500), false);
    assert.equal(recentLink(link, 60_000, 900), false, 'a figure from the future (clock set back) is not trusted');
  });
});
