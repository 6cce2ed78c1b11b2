import assert from 'node:assert/strict';
import type { SimEvent } from '../../device-sim/device.ts';
import type { GatewayUplinkMessage } from '../../protocol/uplink.ts';
import { Rig, sampleImage } from '../helpers/rig.ts';
import { waitUntil } from '../helpers/wait.ts';

/**
 * Maintenance windows end to end (docs/operations.md "Maintenance windows"): a real gateway,
 * broker and simulated devices; only the windows' wall clock is fake, so no test waits for a
 * window — it moves the clock.
 */
class FakeWallClock {
  private t: number;
  private seq = 0;
  private readonly due = new Map<number, { at: number; fn: () => void }>();
  constructor(iso: string) {
    this.t = Date.parse(iso);
  }
  now = (): number => this.t;
  setTimeout = (fn: () => void, ms: number): unknown => {
    const id = ++this.seq;
    this.due.set(id, { at: this.t + Math.max(0, ms), fn });
    return id;
  };
  clearTimeout = (h: unknown): void => {
    this.due.delete(h as number);
  };
  /** Move to `iso`, firing what falls due on the way, in time order. */
  moveTo(iso: string): void {
    const to = Date.parse(iso);
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const e of this.due) if (e[1].at <= to && (!next || e[1].at < next[1].at)) next = e;
      if (!next) break;
      this.due.delete(next[0]);
      this.t = Math.max(this.t, next[1].at);
      next[1].fn();
    }
    this.t = to;
  }
}

/** One window a day, 02:00–03:00 UTC. */
const WINDOWS = { list: [{ cron: '0 2 * * *', durationMin: 60, timeZone: 'UTC' }] };

const ofType = <T extends GatewayUplinkMessage['t']>(events: GatewayUplinkMessage[], t: T): Extract<GatewayUplinkMessage, { t: T }>[] =>
  events.filter((e): e is Extract<GatewayUplinkMessage, { t: T }> => e.t === t);

describe('integration: maintenance windows, check-in and deferred devices', function () {
  this.timeout(60_000);
  let rig: Rig | undefined;
  afterEach(async () => {
    await rig?.stop();
    rig = undefined;
  });

  /**
   * Every device event, stamped with the (fake) wall-clock time it happened at: the wall clock only
   * moves when a test moves it, so an event stamped before a window opens happened outside it —
   * whenever it is looked at. No sleep is needed to prove that something did not happen early.
   */
  function eventsOf(r: Rig, clock: FakeWallClock): Map<string, (SimEvent & { wallAt: number })[]> {
    const seen = new Map<string, (SimEvent & { wallAt: number })[]>();
    for (const d of r.sims.devices) d.on('event', (e) => seen.set(d.id, [...(seen.get(d.id) ?? []), { ...e, wallAt: clock.now() }]));
    return seen;
  }

  /** The wall-clock times of `type` events of every device, in order. */
  const stamps = (seen: Map<string, (SimEvent & { wallAt: number })[]>, type: SimEvent['type']): number[] => [...seen.values()].flat().filter((e) => e.type === type).map((e) => e.wallAt);

  it('an upload outside a window is stored and queued with the next opening; nothing starts until the window opens', async () => {
    const clock = new FakeWallClock('2026-11-22T01:00:00Z');
    rig = await Rig.start({ devices: 2, config: { windows: WINDOWS }, wallClock: clock });
    const seen = eventsOf(rig, clock);
    const { image, manifest } = sampleImage({ version: '1.1.0', size: 16 * 1024 });
    await rig.client.connect();
    const { campaign, committed } = await rig.client.push(manifest, image);
    assert.equal(committed.queued?.nextWindowAt, Date.parse('2026-11-22T02:00:00Z'), JSON.stringify(committed));
    const opens = Date.parse('2026-11-22T02:00:00Z');
    let orderAt: number | undefined;
    rig.client.on('event', (e) => { if (e.t === 'order') orderAt ??= clock.now(); });

    clock.moveTo('2026-11-22T02:00:00Z');
    const complete = await rig.client.follow(campaign);
    assert.equal(complete.updated, 2, JSON.stringify(complete));
    const offers = stamps(seen, 'offer-accepted');
    assert.equal(offers.length, 2, 'one offer per device');
    assert.ok(offers.every((at) => at >= opens), `no offer before the window opened: ${offers.map((t) => new Date(t).toISOString()).join(', ')}`);
    assert.ok(orderAt !== undefined && orderAt >= opens, 'the order is announced when the window opens, not before');
    for (const d of rig.sims.devices) assert.equal(d.running?.version, '1.1.0');
  });

  it('a device offline during the campaign is updated when it checks in; a busy one is deferred, rechecked and updated', async () => {
    const clock = new FakeWallClock('2026-11-22T02:05:00Z');
    rig = await Rig.start({
      devices: 3, config: { windows: WINDOWS, rollout: { busyRecheckMs: 500, offlineWaitMs: 500 } }, wallClock: clock,
      faults: (i) => (i === 1 ? { busy: true } : undefined),
    });
    const seen = eventsOf(rig, clock);
    const offline = rig.sims.devices[2]!;
    await offline.stop();
    await waitUntil(() => !rig!.gateway.fleet.get(offline.id)?.online, 10_000, 'the gateway to see the device go');
    const { image, manifest } = sampleImage({ version: '1.1.0', size: 16 * 1024 });
    await rig.client.connect();
    const { campaign, committed } = await rig.client.push(manifest, image);
    assert.equal(committed.queued, undefined, 'inside a window the campaign starts at once');

    // the online, idle device is updated; the busy one refuses and waits; the offline one waits
    await waitUntil(() => ofType(rig!.events, 'result').some((r) => r.id === rig!.sims.devices[0]!.id), 20_000, 'the first device');
    const busy = rig.sims.devices[1]!;
    await waitUntil(() => (seen.get(busy.id) ?? []).some((e) => e.type === 'offer-rejected'), 10_000, 'the busy refusal');
    assert.equal(ofType(rig.events, 'result').filter((r) => r.id !== rig!.sims.devices[0]!.id).length, 0, 'waiting devices have no result yet');
    busy.setFaults({ busy: false });
    await offline.start();

    const complete = await rig.client.follow(campaign);
    assert.deepEqual([complete.devices, complete.updated], [3, 3], JSON.stringify(complete));
    assert.ok((seen.get(busy.id) ?? []).filter((e) => e.type === 'offer-accepted').length >= 1, 'the busy device was offered again and took it');
    assert.ok((seen.get(offline.id) ?? []).some((e) => e.type === 'tasks'), 'the device that checked in was told its pending tasks');
    for (const d of rig.sims.devices) assert.equal(d.running?.version, '1.1.0');
    assert.equal(ofType(rig.events, 'result').length, 3, 'one result per device');
  });

  it('the window-fit check defers an activation that would not finish before the close; the next window activates it', async () => {
    const clock = new FakeWallClock('2026-11-22T02:59:58Z'); // 2 s left: less than reboot estimate + confirm timeout
    rig = await Rig.start({ devices: 1, config: { windows: WINDOWS }, wallClock: clock });
    const seen = eventsOf(rig, clock);
    const dev = rig.sims.devices[0]!;
    const { image, manifest } = sampleImage({ version: '1.1.0', size: 16 * 1024 });
    await rig.client.connect();
    const { campaign } = await rig.client.push(manifest, image);
    await waitUntil(() => (seen.get(dev.id) ?? []).some((e) => e.type === 'verified'), 20_000, 'the image verified on the device');

    clock.moveTo('2026-11-23T02:00:00Z');
    const complete = await rig.client.follow(campaign);
    assert.equal(complete.updated, 1, JSON.stringify(complete));
    assert.deepEqual(stamps(seen, 'activated'), [Date.parse('2026-11-23T02:00:00Z')], 'activated once, when the next window opened — not late in the first');
    const accepted = (seen.get(dev.id) ?? []).filter((e): e is Extract<SimEvent, { type: 'offer-accepted' }> & { wallAt: number } => e.type === 'offer-accepted');
    assert.equal(accepted.at(-1)?.next, image.length, 'the second window did not transfer the image again');
  });

  it('a transfer stopped by the window closing continues in the next window from what the device holds', async () => {
    const clock = new FakeWallClock('2026-11-22T02:30:00Z');
    rig = await Rig.start({
      devices: 1, config: { windows: WINDOWS }, wallClock: clock,
      profiles: () => ({ name: 'slow', latencyMs: 5, jitterMs: 0, downBps: 100_000, upBps: 100_000, lossPct: 0 }),
    });
    const seen = eventsOf(rig, clock);
    const dev = rig.sims.devices[0]!;
    const { image, manifest } = sampleImage({ version: '1.1.0', size: 256 * 1024 });
    await rig.client.connect();
    const { campaign } = await rig.client.push(manifest, image);
    await waitUntil(() => ofType(rig!.events, 'progress').some((p) => p.id === dev.id && p.phase === 'transferring' && p.bytes > 32 * 1024), 20_000, 'the transfer under way');
    clock.moveTo('2026-11-22T03:00:00Z');
    await waitUntil(() => ofType(rig!.events, 'progress').filter((p) => p.id === dev.id).at(-1)?.phase === 'queued', 10_000, 'the device back to queued at the close');
    const heldAtClose = ofType(rig.events, 'progress').filter((p) => p.id === dev.id && p.phase === 'transferring').at(-1)?.bytes ?? 0;
    assert.ok(heldAtClose < image.length);

    clock.moveTo('2026-11-23T02:00:00Z');
    const complete = await rig.client.follow(campaign);
    assert.equal(complete.updated, 1, JSON.stringify(complete));
    const accepted = (seen.get(dev.id) ?? []).filter((e): e is Extract<SimEvent, { type: 'offer-accepted' }> & { wallAt: number } => e.type === 'offer-accepted');
    assert.ok(accepted.length >= 2 && accepted.at(-1)!.resumed && accepted.at(-1)!.next > 0, `resumed in the next window: ${JSON.stringify(accepted)}`);
  });

  it('a device that never checks in ends expired when the campaign expires; complete comes then', async () => {
    const clock = new FakeWallClock('2026-11-22T02:05:00Z');
    rig = await Rig.start({ devices: 2, config: { windows: WINDOWS }, wallClock: clock });
    const gone = rig.sims.devices[1]!;
    await gone.stop();
    await waitUntil(() => !rig!.gateway.fleet.get(gone.id)?.online, 10_000, 'the gateway to see the device go');
    const { image, manifest } = sampleImage({ version: '1.1.0', size: 16 * 1024 });
    await rig.client.connect();
    const { campaign } = await rig.client.push(manifest, image);
    await waitUntil(() => ofType(rig!.events, 'result').some((r) => r.id === rig!.sims.devices[0]!.id), 20_000, 'the online device');
    assert.equal(ofType(rig.events, 'complete').length, 0, 'the campaign waits for the offline device');
    clock.moveTo('2026-11-29T02:06:00Z'); // past the default expiry of 7 days
    const complete = await rig.client.follow(campaign);
    assert.deepEqual([complete.updated, complete.skipped, complete.expired], [1, 0, 1], JSON.stringify(complete));
    const r = ofType(rig.events, 'result').find((x) => x.id === gone.id);
    assert.deepEqual([r?.outcome, r?.code], ['expired', 'expired']);
    assert.match(r?.reason ?? '', /expired/);
  });

  it('force: a busy device is updated at once instead of deferred', async () => {
    const clock = new FakeWallClock('2026-11-22T02:05:00Z');
    rig = await Rig.start({ devices: 2, config: { windows: WINDOWS }, wallClock: clock, faults: (i) => (i === 0 ? { busy: true } : undefined) });
    const { image, manifest } = sampleImage({ version: '1.1.0', size: 16 * 1024 });
    await rig.client.connect();
    const { campaign } = await rig.client.push(manifest, image, { force: true });
    const complete = await rig.client.follow(campaign);
    assert.equal(complete.updated, 2, JSON.stringify(complete));
    assert.equal(rig.sims.devices[0]!.faults.busy, true, 'still busy: it was forced, not waited for');
  });

  it('downloadEarly: outside a window the image is transferred and verified, the activation waits for the window', async () => {
    const clock = new FakeWallClock('2026-11-22T01:00:00Z');
    rig = await Rig.start({ devices: 1, config: { windows: WINDOWS, rollout: { downloadEarly: true } }, wallClock: clock });
    const seen = eventsOf(rig, clock);
    const dev = rig.sims.devices[0]!;
    const { image, manifest } = sampleImage({ version: '1.1.0', size: 16 * 1024 });
    await rig.client.connect();
    const { campaign, committed } = await rig.client.push(manifest, image);
    assert.equal(committed.queued, undefined, 'with downloadEarly the campaign starts at once');
    await waitUntil(() => (seen.get(dev.id) ?? []).some((e) => e.type === 'verified'), 20_000, 'the image verified outside the window');
    assert.ok(stamps(seen, 'verified').every((at) => at < Date.parse('2026-11-22T02:00:00Z')), 'transferred and verified before the window');
    clock.moveTo('2026-11-22T02:00:00Z');
    const complete = await rig.client.follow(campaign);
    assert.equal(complete.updated, 1, JSON.stringify(complete));
    assert.deepEqual(stamps(seen, 'activated'), [Date.parse('2026-11-22T02:00:00Z')], 'activated once, when the window opened');
  });

  it('a newer upload for the same hardware supersedes a queued campaign; status lists what is queued', async () => {
    const clock = new FakeWallClock('2026-11-22T01:00:00Z');
    rig = await Rig.start({ devices: 2, config: { windows: WINDOWS }, wallClock: clock });
    await rig.client.connect();
    const first = sampleImage({ version: '1.1.0', size: 16 * 1024 });
    const a = await rig.client.push(first.manifest, first.image);
    const second = sampleImage({ version: '1.2.0', size: 16 * 1024 });
    const b = await rig.client.push(second.manifest, second.image);
    assert.equal(b.committed.supersedes, a.campaign);
    const state = rig.gateway.campaignState()[0]!;
    assert.equal(state.t, 'state');
    assert.deepEqual(state.t === 'state' ? state.queued?.map((q) => [q.campaign, q.image.version, q.nextWindowAt]) : undefined, [[b.campaign, '1.2.0', Date.parse('2026-11-22T02:00:00Z')]]);

    clock.moveTo('2026-11-22T02:00:00Z');
    const complete = await rig.client.follow(b.campaign);
    assert.equal(complete.updated, 2);
    for (const d of rig.sims.devices) assert.equal(d.running?.version, '1.2.0');
    assert.equal(ofType(rig.events, 'order').filter((o) => o.campaign === a.campaign).length, 0, 'the superseded campaign never ran');
  });
});

describe('integration: version policy (downgrades only when asked)', function () {
  this.timeout(60_000);
  let rig: Rig | undefined;
  afterEach(async () => {
    await rig?.stop();
    rig = undefined;
  });

  it('an older image is not-newer for every device unless the upload allows downgrades; with it they run the older image', async () => {
    rig = await Rig.start({ devices: 2, device: { factoryVersion: '1.2.0' } });
    await rig.client.connect();
    const older = sampleImage({ version: '1.1.0', size: 16 * 1024 });
    const plain = await rig.client.push(older.manifest, older.image);
    const refused = await rig.client.follow(plain.campaign);
    assert.deepEqual([refused.updated, refused.skipped], [0, 2]);
    assert.ok(ofType(rig.events, 'result').filter((r) => r.campaign === plain.campaign).every((r) => r.code === 'not-newer'));

    const down = await rig.client.push(older.manifest, older.image, { downgrade: true });
    const complete = await rig.client.follow(down.campaign);
    assert.equal(complete.updated, 2, JSON.stringify(complete));
    for (const d of rig.sims.devices) assert.equal(d.running?.version, '1.1.0');
  });
});
