import assert from 'node:assert/strict';
import { parseConfig } from '../../gateway/config.ts';
import type { DeviceEvent } from '../../gateway/device-channel.ts';
import { Fleet } from '../../gateway/fleet.ts';
import { silentLogger } from '../../gateway/log.ts';
import { Campaign, rollbackThresholdPassed, ROLLBACK_THRESHOLD_MIN } from '../../gateway/rollout/campaign.ts';
import { ImageSource } from '../../gateway/rollout/image-source.ts';
import { isFwError } from '../../protocol/errors.ts';
import { manifestForImage } from '../../protocol/manifest.ts';
import type { GatewayMessage } from '../../protocol/ota.ts';
import type { CompleteMessage, ProgressMessage, ResultMessage } from '../../protocol/uplink.ts';
import { drive, FakeSite, FakeTimers } from './rollout/fake.ts';

/** docs/protocol.md §7.8.1: the rollback threshold and the halt it causes. */

describe('rollback threshold arithmetic (§7.8.1)', () => {
  const passed = (rolledBack: number, finished: number, pct = 20, min?: number): boolean =>
    rollbackThresholdPassed({ rolledBack, finished }, pct, min);

  it('needs at least 2 rolled-back devices: one early rollback does not stop a rollout', () => {
    assert.equal(ROLLBACK_THRESHOLD_MIN, 2);
    assert.equal(passed(1, 1), false, '1 of 1 is 100 %, but only one device');
    assert.equal(passed(1, 50, 1), false);
    assert.equal(passed(2, 2), true, 'the first two finished both rolled back');
  });

  it('compares rolled back with the percentage of the finished devices, reaching it is enough', () => {
    assert.equal(passed(2, 10), true, '2 of 10 = 20 %');
    assert.equal(passed(2, 11), false, '2 of 11 < 20 %');
    assert.equal(passed(3, 15), true);
    assert.equal(passed(3, 16), false);
    assert.equal(passed(10, 40, 25), true);
    assert.equal(passed(10, 41, 25), false);
    assert.equal(passed(5, 5, 100), true, '100 %: only when every finished device rolled back');
    assert.equal(passed(5, 6, 100), false);
  });

  it('0 % never stops a campaign; exact integer arithmetic (no float edge)', () => {
    assert.equal(passed(50, 50, 0), false);
    // 7 % of 100 is 7.000000000000001 in floating point; 7 of 100 must pass
    assert.equal(passed(7, 100, 7), true);
    assert.equal(passed(29, 100, 29), true);
  });

  it('is a rollout setting with a default of 20 %, 0..100', () => {
    assert.equal(parseConfig({}).rollout.rollbackThreshold, 20);
    assert.equal(parseConfig({ rollout: { rollbackThreshold: 0 } }).rollout.rollbackThreshold, 0);
    for (const bad of [-1, 101, 12.5, '20']) {
      assert.throws(() => parseConfig({ rollout: { rollbackThreshold: bad } }), (err: unknown) => isFwError(err, 'E_CONFIG') && /rollout\.rollbackThreshold/.test((err as Error).message));
    }
  });
});

// ---- a campaign against scripted devices, on a fake clock ----

const CHUNK = 1024;
const image = Buffer.alloc(8 * CHUNK, 3);
const manifest = manifestForImage(image, { name: 'fw', version: '1.1.0', hw: ['hw'], chunk: CHUNK });

/**
 * What a device does, by the order in which devices are first offered the image (the campaign
 * chooses the start order, so roles follow it rather than device ids):
 * - `fail-now` / `fail-late`: takes the image, activates, and comes back reverted by a failed
 *   self-test at once / 2000 ms after `activate`;
 * - `slow-ok`: takes the image and boots it in trial 5000 ms after `activate`, then confirms;
 * - `hold`: accepts the offer and never acknowledges a chunk (a transfer in progress).
 */
type Role = 'fail-now' | 'fail-late' | 'slow-ok' | 'hold';

class ScriptedSite extends FakeSite {
  readonly sent: { id: string; msg: GatewayMessage; at: number }[] = [];
  readonly offered: string[] = [];
  private readonly held = new Map<string, Set<number>>();

  constructor(timers: FakeTimers, private readonly roles: readonly Role[]) {
    super(timers);
  }

  override async send(id: string, msg: GatewayMessage): Promise<void> {
    this.sent.push({ id, msg, at: this.timers.now() });
    if (msg.t === 'offer' && !this.offered.includes(id)) this.offered.push(id);
    const role = this.roles[this.offered.indexOf(id)] ?? 'hold';
    switch (msg.t) {
      case 'ping': return this.deliver(id, [{ t: 'pong', n: msg.n }]);
      case 'probe': return this.deliver(id, [{ t: 'probed', n: msg.n, size: msg.data.length }]);
      case 'offer': return this.deliver(id, [{ t: 'accept', sid: msg.sid, next: 0, chunk: CHUNK, window: 8 }]);
      case 'chunk': {
        if (role === 'hold') return;
        const held = this.held.get(id) ?? new Set<number>();
        this.held.set(id, held.add(msg.off));
        let next = 0;
        while (held.has(next)) next += CHUNK;
        return this.deliver(id, [{ t: 'ack', sid: msg.sid, next: Math.min(next, image.length), missing: [] }]);
      }
      case 'verify': return this.deliver(id, [{ t: 'verified', sid: msg.sid, ok: true }]);
      case 'activate': {
        this.deliver(id, [{ t: 'activated', sid: msg.sid, slot: 'b' }]);
        const reverted: DeviceEvent = { t: 'boot', version: '1.0.0', slot: 'a', trial: false, reverted: true, reason: 'self-test failed' };
        if (role === 'fail-now') return this.deliver(id, [reverted], 10);
        if (role === 'fail-late') return this.deliver(id, [reverted], 2000);
        return this.deliver(id, [{ t: 'boot', version: '1.1.0', slot: 'b', sha256: manifest.sha256, trial: true, reverted: false }], 5000);
      }
      case 'confirm': return this.deliver(id, [{ t: 'confirmed', sha256: msg.sha256, version: '1.1.0' }]);
      default: return;
    }
  }
}

interface Run {
  site: ScriptedSite;
  complete: CompleteMessage;
  results: ResultMessage[];
  progress: ProgressMessage[];
  /** Every event, in order, by type. */
  order: string[];
  ids: string[];
}

async function runCampaign(roles: Role[], devices: number, rollout: Record<string, unknown>): Promise<Run> {
  const timers = new FakeTimers();
  const site = new ScriptedSite(timers, roles);
  const fleet = new Fleet(site.asChannel(), () => timers.now());
  const ids = Array.from({ length: devices }, (_, i) => `dev-${String(i + 1).padStart(2, '0')}`);
  for (const id of ids) site.hello(id);
  const config = parseConfig({
    rollout: { concurrency: 2, probePings: 1, probeBursts: 1, ackTimeoutMs: 60_000, maxAttempts: 1, rebootTimeoutMs: 20_000, ...rollout },
  }).rollout;
  const campaign = new Campaign('c-test', new ImageSource(manifest, image), { channel: site.asChannel(), fleet, config, timers, log: silentLogger() });
  const results: ResultMessage[] = [];
  const progress: ProgressMessage[] = [];
  const order: string[] = [];
  campaign.on('result', (r) => { results.push(r); order.push('result'); });
  campaign.on('progress', (p) => { progress.push(p); order.push('progress'); });
  campaign.on('totals', () => order.push('totals'));
  campaign.on('complete', () => order.push('complete'));
  const complete = await drive(timers, campaign.run(), 120_000);
  return { site, complete, results, progress, order, ids };
}

describe('a campaign halted by the rollback threshold (§7.8.1), scripted devices', () => {
  it('stops at the threshold: unverified transfers stopped, a rebooting device finishes, the rest never offered', async () => {
    const { site, complete, results, progress, order, ids } = await runCampaign(['fail-now', 'fail-late', 'slow-ok', 'hold', 'hold'], 7, {});
    const [failNow, failLate, slowOk, hold1, hold2] = site.offered;
    assert.equal(site.offered.length, 5, `offered: ${site.offered.join(', ')}`);
    const notStarted = ids.filter((id) => !site.offered.includes(id));
    assert.equal(notStarted.length, 2);

    // exactly one result per device; completion last, after the last result and totals
    assert.deepEqual(results.map((r) => r.id).sort(), ids);
    assert.equal(order.at(-1), 'complete');
    assert.equal(order.at(-2), 'totals');

    const by = new Map(results.map((r) => [r.id, r]));
    assert.deepEqual([by.get(failNow!)?.outcome, by.get(failLate!)?.outcome], ['rolled-back', 'rolled-back']);
    assert.deepEqual([by.get(slowOk!)?.outcome, by.get(slowOk!)?.code], ['updated', 'ok'], 'a device rebooting at the halt finishes its update');
    for (const id of [hold1!, hold2!]) {
      const r = by.get(id)!;
      assert.deepEqual([r.outcome, r.code], ['skipped', 'campaign-halted'], id);
      assert.match(r.reason ?? '', /before this device was activated \(2 of 2 finished devices rolled back \(counted as 4: 50 % of the 7 targets\), threshold 20 %\)/);
      assert.ok(r.durationMs > 0);
    }
    for (const id of notStarted) {
      const r = by.get(id)!;
      assert.deepEqual([r.outcome, r.code, r.durationMs, r.from, r.to], ['skipped', 'campaign-halted', 0, '1.0.0', '1.1.0'], id);
      assert.match(r.reason ?? '', /before this device started \(2 of 2 finished devices rolled back \(counted as 4: 50 % of the 7 targets\), threshold 20 %\)/);
      assert.equal(site.sent.filter((s) => s.id === id && s.msg.t !== 'ping' && s.msg.t !== 'probe').length, 0, `${id} was sent nothing but the measurement`);
    }
    // every device's last progress is final and matches its result
    const last = new Map(progress.map((p) => [p.id, p.phase]));
    for (const id of ids) assert.equal(last.get(id), by.get(id)!.outcome === 'updated' ? 'done' : by.get(id)!.outcome, id);

    // after the halt no offer and no activate went out
    const haltAt = site.sent.find((s) => s.id === failLate && s.msg.t === 'activate')!.at + 2000;
    const late = site.sent.filter((s) => s.at >= haltAt && (s.msg.t === 'offer' || s.msg.t === 'activate'));
    assert.deepEqual(late, []);

    assert.deepEqual(complete.halted, { code: 'rollback-threshold', reason: '2 of 2 finished devices rolled back (counted as 4: 50 % of the 7 targets), threshold 20 %', rolledBack: 2, finished: 2, thresholdPct: 20 });
    assert.deepEqual([complete.devices, complete.updated, complete.rolledBack, complete.failed, complete.skipped], [7, 1, 2, 0, 4]);
  });

  it('one rollback alone does not halt (at least 2), and a threshold of 0 never does', async () => {
    const one = await runCampaign(['fail-now', 'slow-ok', 'slow-ok', 'slow-ok'], 4, {});
    assert.equal(one.complete.halted, undefined);
    assert.deepEqual([one.complete.updated, one.complete.rolledBack], [3, 1]);
    assert.equal(one.results.filter((r) => r.code === 'campaign-halted').length, 0);

    const off = await runCampaign(['fail-now', 'fail-now', 'fail-now', 'fail-now'], 4, { rollbackThreshold: 0 });
    assert.equal(off.complete.halted, undefined);
    assert.equal(off.complete.rolledBack, 4, 'every device was tried');
    assert.equal(off.site.offered.length, 4);
  });
});
