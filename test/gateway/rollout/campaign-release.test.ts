import assert from 'node:assert/strict';
import { parseConfig } from '../../../gateway/config.ts';
import type { DeviceEvent } from '../../../gateway/device-channel.ts';
import { Fleet } from '../../../gateway/fleet.ts';
import { silentLogger } from '../../../gateway/log.ts';
import { Campaign } from '../../../gateway/rollout/campaign.ts';
import { ImageSource } from '../../../gateway/rollout/image-source.ts';
import { manifestForImage } from '../../../protocol/manifest.ts';
import type { BootComponent, ComponentStatus, GatewayMessage } from '../../../protocol/ota.ts';
import { componentManifest, parseReleaseManifest, releaseIdentity } from '../../../protocol/release.ts';
import type { OrderMessage, ProgressMessage, ResultMessage } from '../../../protocol/uplink.ts';
import { drive, FakeSite, FakeTimers } from './fake.ts';

/**
 * A release campaign (docs/protocol.md §6.15, §7.5.9): each device gets the components it lacks,
 * planned again when its turn comes; the order names them, a result lists the components kept,
 * the completion counts the components sent and skipped.
 */
const CHUNK = 256;
const imgs = { app: Buffer.alloc(4 * CHUNK, 1), net: Buffer.alloc(2 * CHUNK, 2) };
const m = (c: keyof typeof imgs, v: string) => manifestForImage(imgs[c], { name: `fw-${c}`, version: v, hw: ['hw'], chunk: CHUNK });
const pick = (x: ReturnType<typeof m>) => ({ name: x.name, version: x.version, size: x.size, crc32: x.crc32, sha256: x.sha256 });
const release = parseReleaseManifest({
  release: 'rel', version: '2.0.0', hw: ['hw'], chunk: CHUNK,
  components: [{ component: 'app', ...pick(m('app', '2.0.0')) }, { component: 'net', ...pick(m('net', '2.0.0')) }],
});
const OLD = 'f'.repeat(64);
const NEW = { app: m('app', '2.0.0').sha256, net: m('net', '2.0.0').sha256 };

/** Multi-component devices (app, net; A/B each) that take what they are offered and confirm it. */
class ReleaseSite extends FakeSite {
  readonly sent: { id: string; msg: GatewayMessage }[] = [];
  readonly running = new Map<string, Map<string, { version: string; sha256: string; trial: boolean }>>();
  private readonly offers = new Map<number, { component: string; version: string; sha256: string }>();

  report(id: string, comps: Record<string, { version: string; sha256: string }>, hw = 'hw'): void {
    this.running.set(id, new Map(Object.entries(comps).map(([k, v]) => [k, { ...v, trial: false }])));
    this.deliver(id, [{ t: 'status', hw, version: comps.app!.version, slot: 'a', slots: { a: { state: 'confirmed', version: comps.app!.version }, b: { state: 'empty' } }, maxChunk: 4096, busy: false, trial: false, components: this.components(id) }], 0, true);
  }

  private components(id: string): ComponentStatus[] {
    return [...this.running.get(id)!].map(([name, r]) => ({ name, layout: 'ab', version: r.version, sha256: r.sha256, slot: 'a', trial: r.trial }));
  }

  private boot(id: string): DeviceEvent {
    const app = this.running.get(id)!.get('app')!;
    const comps: BootComponent[] = [...this.running.get(id)!].map(([name, r]) => ({ name, version: r.version, sha256: r.sha256, slot: 'a', trial: r.trial }));
    return { t: 'boot', version: app.version, slot: 'a', sha256: app.sha256, trial: app.trial, reverted: false, components: comps };
  }

  override async send(id: string, msg: GatewayMessage): Promise<void> {
    this.sent.push({ id, msg });
    switch (msg.t) {
      case 'ping': return this.deliver(id, [{ t: 'pong', n: msg.n }]);
      case 'probe': return this.deliver(id, [{ t: 'probed', n: msg.n, size: msg.data.length }]);
      case 'offer':
        this.offers.set(msg.sid, { component: msg.component ?? 'app', version: msg.version, sha256: msg.sha256 });
        return this.deliver(id, [{ t: 'accept', sid: msg.sid, next: 0, chunk: CHUNK, window: 8 }]);
      case 'chunk': {
        const size = imgs[this.offers.get(msg.sid)!.component as keyof typeof imgs].length;
        return this.deliver(id, [{ t: 'ack', sid: msg.sid, next: Math.min(size, msg.off + msg.data.length), missing: [] }]);
      }
      case 'verify': return this.deliver(id, [{ t: 'verified', sid: msg.sid, ok: true }]);
      case 'activate': {
        for (const s of [msg.sid, ...(msg.with ?? [])]) {
          const o = this.offers.get(s)!;
          this.running.get(id)!.set(o.component, { version: o.version, sha256: o.sha256, trial: true });
        }
        return this.deliver(id, [{ t: 'activated', sid: msg.sid, slot: 'b' }, this.boot(id)]);
      }
      case 'confirm':
        for (const r of this.running.get(id)!.values()) r.trial = false;
        return this.deliver(id, [{ t: 'confirmed', sha256: msg.sha256, version: '2.0.0' }]);
      default: return;
    }
  }

  offered(id: string): string[] {
    return this.sent.filter((s) => s.id === id && s.msg.t === 'offer').map((s) => (s.msg as { component?: string }).component ?? 'app');
  }
}

function releaseCampaign(downgrade = false) {
  const timers = new FakeTimers(1_000_000);
  const site = new ReleaseSite(timers);
  const fleet = new Fleet(site.asChannel(), () => timers.now());
  const config = parseConfig({ rollout: { concurrency: 1, probePings: 1, probeBursts: 1, maxAttempts: 1 } }).rollout;
  const images = new Map(release.components.map((c) => [c.sha256, new ImageSource(componentManifest(release, c), imgs[c.component as keyof typeof imgs])]));
  const campaign = new Campaign('c-rel', new ImageSource(releaseIdentity(release), Buffer.alloc(0)), {
    channel: site.asChannel(), fleet, config, timers, log: silentLogger(), ...(downgrade ? { downgrade } : {}),
    release: { manifest: release, held: [], loadImage: async (mf) => images.get(mf.sha256)! },
  });
  const results: ResultMessage[] = [];
  const progress: ProgressMessage[] = [];
  campaign.on('result', (r) => results.push(r));
  campaign.on('progress', (p) => progress.push(p));
  return { timers, site, fleet, campaign, results, progress, run: () => drive(timers, campaign.run(), 10_000_000) };
}

describe('campaign: a release (fake clock, §6.15, §7.5.9)', () => {
  it('each device gets the components it lacks; the order, results and completion say which', async () => {
    const r = releaseCampaign();
    r.site.report('r1', { app: { version: '1.0.0', sha256: OLD }, net: { version: '1.0.0', sha256: OLD } });
    r.site.report('r2', { app: { version: '1.0.0', sha256: OLD }, net: { version: '2.0.0', sha256: NEW.net } });
    r.site.report('r3', { app: { version: '1.0.0', sha256: OLD } }, 'other');
    let order: OrderMessage | undefined;
    r.campaign.on('order', (o) => { order = o; });
    assert.equal(r.campaign.size, imgs.app.length + imgs.net.length, "the release's bytes");
    const complete = await r.run();
    assert.deepEqual(order!.devices.map((d) => [d.id, d.components?.map((c) => c.name), d.savedBytes]), [['r1', ['app', 'net'], 0], ['r2', ['app'], imgs.net.length]]);
    assert.deepEqual(order!.excluded.map((x) => [x.id, x.code]), [['r3', 'incompatible-hw']]);
    assert.deepEqual(r.site.offered('r1').sort(), ['app', 'net']);
    assert.deepEqual(r.site.offered('r2'), ['app']);
    const by = new Map(r.results.map((x) => [x.id, x]));
    assert.deepEqual([by.get('r1')!.outcome, by.get('r1')!.kept], ['updated', undefined]);
    assert.deepEqual([by.get('r2')!.outcome, by.get('r2')!.kept], ['updated', ['net']]);
    assert.deepEqual([complete.updated, complete.skipped, complete.componentsSent, complete.componentsSkipped], [2, 1, 3, 1]);
    assert.equal(r.fleet.get('r1')!.deviceMsPerMiB, undefined, 'no device time learned from a release (its parts vary by device)');
    assert.equal(r.progress.filter((p) => p.id === 'r2').at(-1)!.bytes, imgs.app.length + imgs.net.length, 'done: the release counted whole');
  });

  it('a device that changed before its turn is planned again: one that already runs the release is skipped then', async () => {
    const r = releaseCampaign();
    r.site.report('r1', { app: { version: '1.0.0', sha256: OLD }, net: { version: '1.0.0', sha256: OLD } });
    r.site.report('r2', { app: { version: '1.0.0', sha256: OLD }, net: { version: '1.0.0', sha256: OLD } });
    r.campaign.once('order', () => r.site.report('r2', { app: { version: '2.0.0', sha256: NEW.app }, net: { version: '2.0.0', sha256: NEW.net } }));
    const complete = await r.run();
    const r2 = r.results.find((x) => x.id === 'r2')!;
    assert.deepEqual([r2.outcome, r2.code, r2.durationMs], ['skipped', 'not-newer', 0]);
    assert.ok((r2.reason ?? '').length > 0);
    assert.deepEqual(r.site.offered('r2'), []);
    assert.deepEqual([complete.updated, complete.skipped], [1, 1]);
  });

  it('a downgrade release takes a device running newer components', async () => {
    const newer = { app: { version: '3.0.0', sha256: OLD }, net: { version: '3.0.0', sha256: OLD } };
    const plain = releaseCampaign();
    plain.site.report('r1', newer);
    const c1 = await plain.run();
    assert.equal(c1.updated, 0);
    const down = releaseCampaign(true);
    down.site.report('r1', newer);
    const c2 = await down.run();
    assert.equal(c2.updated, 1);
    assert.equal(down.site.sent.filter((s) => s.msg.t === 'offer').every((s) => (s.msg as { downgrade?: boolean }).downgrade === true), true);
  });
});
