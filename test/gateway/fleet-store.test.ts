import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import type { DeviceChannel, DeviceEvent } from '../../gateway/device-channel.ts';
import { Fleet } from '../../gateway/fleet.ts';
import { FLEET_FILE, FleetStore, fitFleet, readFleetFile } from '../../gateway/fleet-store.ts';
import { silentLogger, type Logger } from '../../gateway/log.ts';
import { encodeCbor } from '../../protocol/cbor.ts';
import { MAX_ORDER_ENTRIES, MAX_UPLINK_MESSAGE } from '../../protocol/limits.ts';
import type { StatusMessage } from '../../protocol/ota.ts';
import { decodeGatewayUplinkMessage, encodeUplinkMessage, type FleetEntry, type ResultMessage } from '../../protocol/uplink.ts';
import { FakeTimers } from './rollout/fake.ts';

class FakeChannel extends EventEmitter<{ event: [string, DeviceEvent] }> {}

const T0 = Date.UTC(2026, 10, 22, 1, 0, 0);

const status = (version: string, over: Partial<StatusMessage> = {}): StatusMessage => ({
  t: 'status', hw: 'sensor-v1', version, slot: 'a',
  slots: { a: { state: 'confirmed', version }, b: { state: 'empty' } }, maxChunk: 4096, busy: false, trial: false, ...over,
});

const result = (id: string, over: Partial<ResultMessage> = {}): ResultMessage => ({
  t: 'result', campaign: 'c-0001', id, outcome: 'updated', code: 'ok', from: '1.0.0', to: '1.1.0', durationMs: 1200, retries: 0, ...over,
});

/** A logger whose warnings and errors the test can read. */
function capturingLogger(): { log: Logger; lines: { level: number; msg: string }[] } {
  const lines: { level: number; msg: string }[] = [];
  const out = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(JSON.parse(chunk.toString()) as { level: number; msg: string });
      cb();
    },
  });
  return { log: pino({ level: 'warn' }, out), lines };
}

/** The slot fields a status of status() leaves in the file. */
function slotsOf(version: string): object {
  return { slot: 'a', slots: { a: { state: 'confirmed', version }, b: { state: 'empty' } }, maxChunk: 4096 };
}

describe('fleet store (fleet.json)', () => {
  let dir: string;
  let timers: FakeTimers;
  let wall: number;
  const stores: FleetStore[] = [];
  const open = async (log: Logger = silentLogger()): Promise<FleetStore> => {
    const s = await FleetStore.open({ dataDir: dir, log, timers, now: () => wall });
    stores.push(s);
    return s;
  };

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fwgate-fleet-'));
    timers = new FakeTimers();
    wall = T0;
  });
  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('round trip: status, presence and results are written and loaded again, devices offline until they report', async () => {
    const ch = new FakeChannel();
    const fleet = new Fleet(ch as unknown as DeviceChannel, () => wall);
    const store = await open();
    store.attach(fleet);
    ch.emit('event', 'dev-2', status('1.0.0'));
    wall += 1000;
    ch.emit('event', 'dev-1', status('1.0.0', { floor: '0.9.0' }));
    wall += 1000;
    store.noteResult(result('dev-1', { reason: 'x'.repeat(400) }));
    store.noteResult(result('ghost')); // a device the fleet never listed: no record made up
    ch.emit('event', 'dev-2', { t: 'offline' });
    wall += 5000;
    ch.emit('event', 'dev-2', { t: 'online' }); // a connection is a check-in
    ch.emit('event', 'dev-2', { t: 'offline' });
    await store.flush();

    const file = await readFleetFile(join(dir, FLEET_FILE));
    assert.ok(file);
    assert.deepEqual(file.devices.map((d) => d.id), ['dev-1', 'dev-2'], 'sorted by id, only devices with a status');
    const [d1, d2] = file.devices;
    assert.deepEqual({ ...d1, lastResult: { ...d1!.lastResult, reason: d1!.lastResult?.reason?.length } }, {
      id: 'dev-1', hw: 'sensor-v1', version: '1.0.0', floor: '0.9.0', lastCheckIn: T0 + 1000, online: true, ...slotsOf('1.0.0'),
      lastResult: { campaign: 'c-0001', outcome: 'updated', code: 'ok', reason: 256, version: '1.1.0', at: T0 + 2000 },
    });
    assert.deepEqual(d2, { id: 'dev-2', hw: 'sensor-v1', version: '1.0.0', lastCheckIn: T0 + 7000, online: false, ...slotsOf('1.0.0') });

    // a later status keeps the last result and takes the new version
    wall += 1000;
    ch.emit('event', 'dev-1', status('1.1.0'));
    assert.deepEqual([store.get('dev-1')?.version, store.get('dev-1')?.floor, store.get('dev-1')?.lastResult?.campaign], ['1.1.0', undefined, 'c-0001']);

    await store.close();
    const again = await open();
    assert.deepEqual(again.list().map((d) => [d.id, d.version, d.online, d.lastResult?.outcome]), [
      ['dev-1', '1.1.0', false, 'updated'], // online at the close: offline once the gateway stops
      ['dev-2', '1.0.0', false, undefined],
    ]);
    const msg = again.message();
    assert.deepEqual(msg, {
      t: 'fleet', now: wall,
      devices: [
        { id: 'dev-1', hw: 'sensor-v1', version: '1.1.0', online: false, lastCheckIn: T0 + 8000, lastResult: { campaign: 'c-0001', outcome: 'updated', code: 'ok', version: '1.1.0', at: T0 + 2000 } },
        { id: 'dev-2', hw: 'sensor-v1', version: '1.0.0', online: false, lastCheckIn: T0 + 7000 },
      ],
    });
    assert.deepEqual(decodeGatewayUplinkMessage(encodeUplinkMessage(msg)), msg, 'a valid uplink message (§7.11.4)');
  });

  it('a restart restores every known device into the registry, offline, with its slots and learned link, reboot and device figures', async () => {
    const ch = new FakeChannel();
    const fleet = new Fleet(ch as unknown as DeviceChannel, () => wall);
    const store = await open();
    store.attach(fleet);
    ch.emit('event', 'dev-1', status('1.0.0', { maxChunk: 2048, slot: 'b', slots: { a: { state: 'bad' }, b: { state: 'confirmed', version: '1.0.0' } } }));
    fleet.updateLink('dev-1', { rttMs: 12, jitterMs: 1, measuredAt: T0, bps: 50_000, bpsSource: 'probe', bpsMeasuredAt: T0 });
    fleet.setRebootMs('dev-1', 2345);
    fleet.setDeviceMsPerMiB('dev-1', 678);
    await store.close();

    const ch2 = new FakeChannel();
    const fleet2 = new Fleet(ch2 as unknown as DeviceChannel, () => wall);
    (await open()).attach(fleet2);
    const d = fleet2.get('dev-1');
    assert.ok(d, 'the device is a target before it reconnects');
    assert.deepEqual(
      { online: d.online, slot: d.slot, slots: d.slots, maxChunk: d.maxChunk, link: d.link, rebootMs: d.rebootMs, deviceMsPerMiB: d.deviceMsPerMiB, lastSeen: d.lastSeen },
      {
        online: false, slot: 'b', slots: { a: { state: 'bad' }, b: { state: 'confirmed', version: '1.0.0' } }, maxChunk: 2048,
        link: { rttMs: 12, jitterMs: 1, measuredAt: T0, bps: 50_000, bpsSource: 'probe', bpsMeasuredAt: T0 }, rebootMs: 2345, deviceMsPerMiB: 678, lastSeen: T0,
      },
    );
    // its first status in this run replaces the restored record in place
    ch2.emit('event', 'dev-1', status('1.0.0'));
    assert.equal(fleet2.get('dev-1')?.online, true);
    assert.equal(fleet2.get('dev-1')?.link?.bps, 50_000, 'learned figures kept at the check-in');
  });

  it('a device that failed or rolled back twice in a row is suspect (flagged in the report) until it updates', async () => {
    const store = await open();
    store.checkIn({ id: 'dev-1', hw: 'sensor-v1', version: '1.0.0' });
    store.noteResult(result('dev-1', { outcome: 'rolled-back', code: 'self-test-failed', campaign: 'c-1' }));
    assert.equal(store.isSuspect('dev-1'), false, 'one failure is bad luck');
    store.checkIn({ id: 'dev-1', hw: 'sensor-v1', version: '1.0.0' }); // a check-in keeps the streak
    store.noteResult(result('dev-1', { outcome: 'failed', code: 'integrity-failure', campaign: 'c-2' }));
    assert.equal(store.isSuspect('dev-1'), true);
    assert.equal(store.message().devices[0]?.suspect, true);
    store.noteResult(result('dev-1', { outcome: 'skipped', code: 'busy', campaign: 'c-3' }));
    assert.equal(store.isSuspect('dev-1'), true, 'a skip is no evidence either way');
    store.noteResult(result('dev-1', { campaign: 'c-4' }));
    assert.equal(store.isSuspect('dev-1'), false, 'an update clears it');
    assert.equal(store.message().devices[0]?.suspect, undefined);
  });

  it('writes at most once per interval, the changes of the interval together, and once more at close', async () => {
    const store = await open();
    const path = join(dir, FLEET_FILE);
    const versionOnDisk = async (): Promise<string | undefined> => (await readFleetFile(path))?.devices[0]?.version;

    store.checkIn({ id: 'dev-1', hw: 'sensor-v1', version: '1.0.0' });
    assert.equal(await timers.step(0), true, 'the first change is written at once');
    await store.settled();
    assert.equal(store.stats.writes, 1);
    assert.equal(await versionOnDisk(), '1.0.0');

    timers.setTimeout(() => undefined, 100);
    await timers.step(100); // t = 100
    store.checkIn({ id: 'dev-1', hw: 'sensor-v1', version: '1.0.1' });
    store.checkIn({ id: 'dev-1', hw: 'sensor-v1', version: '1.0.2' });
    assert.equal(await timers.step(999), false, 'nothing due before a second has passed since the last write');
    assert.equal(store.stats.writes, 1);
    assert.equal(await versionOnDisk(), '1.0.0');
    assert.equal(await timers.step(1000), true);
    await store.settled();
    assert.equal(timers.now(), 1000);
    assert.equal(store.stats.writes, 2, 'both changes in one write');
    assert.equal(await versionOnDisk(), '1.0.2');

    assert.equal(await timers.step(10_000), false, 'no change, no write');
    store.checkIn({ id: 'dev-1', hw: 'sensor-v1', version: '1.0.3' });
    await store.close();
    assert.equal(store.stats.writes, 3, 'close writes what is pending');
    assert.equal(await versionOnDisk(), '1.0.3');
    assert.equal((await readFleetFile(path))?.devices[0]?.online, false);
    store.checkIn({ id: 'dev-1', hw: 'sensor-v1', version: '9.9.9' }); // after close: ignored
    assert.equal(await timers.step(10_000), false);
    assert.equal(await versionOnDisk(), '1.0.3');
    assert.deepEqual((await readdir(dir)).sort(), [FLEET_FILE], 'no temp file left behind');
  });

  it('the devices connected when the previous run stopped (clean close or killed) are named at the next start, once', async () => {
    const ch = new FakeChannel();
    const fleet = new Fleet(ch as unknown as DeviceChannel, () => wall);
    const store = await open();
    store.attach(fleet);
    for (const id of ['dev-1', 'dev-2', 'dev-3']) ch.emit('event', id, status('1.0.0'));
    ch.emit('event', 'dev-2', { t: 'offline' });
    await store.close();
    const file = await readFleetFile(join(dir, FLEET_FILE));
    assert.deepEqual(file?.devices.map((d) => [d.id, d.online, d.connectedAtStop]), [
      ['dev-1', false, true], ['dev-2', false, undefined], ['dev-3', false, true],
    ], 'a clean stop lists everyone offline, the connected ones marked');

    // second run: dev-1 comes back, then the process is killed (no close) after a write
    const second = await open();
    assert.deepEqual(second.connectedAtLastStop, ['dev-1', 'dev-3']);
    assert.equal(second.get('dev-1')?.connectedAtStop, undefined, 'the mark is not carried in memory');
    const fleet2 = new Fleet(new FakeChannel() as unknown as DeviceChannel, () => wall);
    second.attach(fleet2);
    second.checkIn({ id: 'dev-1', hw: 'sensor-v1', version: '1.0.0' });
    await second.flush();
    stores.splice(stores.indexOf(second), 1); // killed: never closed

    const third = await open();
    assert.deepEqual(third.connectedAtLastStop, ['dev-1'], 'connected at the kill (the file says online); dev-3 never came back, so it is not expected again');
  });

  for (const [what, content] of [['not JSON', '{"format":1,"devi'], ['JSON of the wrong shape', '{"format":1,"savedAt":1,"devices":[{"id":""}]}']] as const) {
    it(`sets a corrupt file aside (${what}) with a warning and starts empty`, async () => {
      const path = join(dir, FLEET_FILE);
      await writeFile(path, content);
      await writeFile(`${path}.tmp-123-abcd`, 'a torn write');
      const { log, lines } = capturingLogger();
      const store = await open(log);
      assert.deepEqual(store.list(), []);
      assert.equal(existsSync(path), false);
      assert.equal(await readFile(`${path}.corrupt`, 'utf8'), content, 'set aside, not deleted');
      assert.equal(existsSync(`${path}.tmp-123-abcd`), false, 'temp files of a crash are removed');
      assert.equal(lines.length, 1);
      assert.equal(lines[0]!.level, 40);
      assert.match(lines[0]!.msg, /fleet file unreadable: set aside/);
      store.checkIn({ id: 'dev-1', hw: 'sensor-v1', version: '1.0.0' });
      await store.flush();
      assert.equal((await readFleetFile(path))?.devices.length, 1, 'a new file is written');
    });
  }

  it('a resumed campaign\'s journaled results fill in what the file lacks, and never replace a result of that campaign', async () => {
    const store = await open();
    store.checkIn({ id: 'dev-1', hw: 'sensor-v1', version: '1.0.0' });
    store.checkIn({ id: 'dev-2', hw: 'sensor-v1', version: '1.0.0' });
    store.noteResult(result('dev-1', { campaign: 'c-0002', outcome: 'failed', code: 'timeout' }));
    wall += 60_000;
    store.fillResults([
      result('dev-1', { campaign: 'c-0002', outcome: 'updated', code: 'ok' }),
      result('dev-2', { campaign: 'c-0002', outcome: 'rolled-back', code: 'self-test-failed' }),
    ]);
    assert.deepEqual(store.list().map((d) => [d.id, d.lastResult?.outcome, d.lastResult?.at]), [
      ['dev-1', 'failed', T0], ['dev-2', 'rolled-back', T0 + 60_000],
    ]);
  });

  it('fitFleet keeps the message within MAX_ORDER_ENTRIES and 90 % of MAX_UPLINK_MESSAGE, counting the rest in `more` (§7.11.4.2)', () => {
    const long = (prefix: string, i: number, n = 64): string => `${prefix}${String(i).padStart(6, '0')}`.padEnd(n, 'x');
    const entry = (i: number): FleetEntry => ({
      id: long('d', i), hw: long('hw', i), version: long('v', i), online: i % 2 === 0, lastCheckIn: T0 + i,
      lastResult: { campaign: long('c', i), outcome: 'rolled-back', code: 'retries-exhausted', version: long('v', i), at: T0 + i },
    });
    const devices = Array.from({ length: MAX_ORDER_ENTRIES + 5 }, (_, i) => entry(i));
    const fitted = fitFleet({ t: 'fleet', now: T0, devices });
    const bytes = encodeCbor(fitted).length;
    assert.ok(bytes <= MAX_UPLINK_MESSAGE * 0.9, `${bytes} bytes`);
    assert.ok(fitted.devices.length > 0 && fitted.devices.length < MAX_ORDER_ENTRIES);
    assert.equal(fitted.devices.length + fitted.more!, devices.length);
    assert.deepEqual(fitted.devices, devices.slice(0, fitted.devices.length), 'the first devices in id order');
    assert.equal(decodeGatewayUplinkMessage(encodeUplinkMessage(fitted)).t, 'fleet');

    const small = fitFleet({ t: 'fleet', now: T0, devices: devices.slice(0, 3) });
    assert.equal(small.devices.length, 3);
    assert.equal('more' in small, false, 'no `more` when every device is listed');
    const many = fitFleet({ t: 'fleet', now: T0, devices: Array.from({ length: MAX_ORDER_ENTRIES + 1 }, (_, i) => ({ id: `d${i}`, hw: 'h', version: '1.0.0', online: true, lastCheckIn: 0 })) });
    assert.deepEqual([many.devices.length, many.more], [MAX_ORDER_ENTRIES, 1], 'small entries: capped at MAX_ORDER_ENTRIES');
  });
});
