import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { DeviceChannel, DeviceEvent } from '../../gateway/device-channel.ts';
import { Fleet } from '../../gateway/fleet.ts';
import type { StatusMessage } from '../../protocol/ota.ts';

class FakeChannel extends EventEmitter<{ event: [string, DeviceEvent] }> {}

const status = (version: string, over: Partial<StatusMessage> = {}): StatusMessage => ({
  t: 'status', hw: 'sensor-v1', version, slot: 'a',
  slots: { a: { state: 'confirmed', version }, b: { state: 'empty' } }, maxChunk: 4096, busy: false, trial: false, ...over,
});

describe('fleet registry', () => {
  it('builds records from status, tracks presence, and keeps one record per device id across reconnects', () => {
    const ch = new FakeChannel();
    let now = 1000;
    const fleet = new Fleet(ch as unknown as DeviceChannel, () => now);
    ch.emit('event', 'ghost', { t: 'online' });
    assert.equal(fleet.size, 0, 'a device is listed only after its first status');

    ch.emit('event', 'dev-2', status('1.0.0'));
    ch.emit('event', 'dev-1', status('1.0.0'));
    assert.deepEqual(fleet.list().map((d) => d.id), ['dev-1', 'dev-2']);
    fleet.updateLink('dev-1', { rttMs: 12, jitterMs: 1, measuredAt: 5 });

    now = 2000;
    ch.emit('event', 'dev-1', { t: 'offline' });
    assert.equal(fleet.get('dev-1')!.online, false);
    assert.deepEqual(fleet.online().map((d) => d.id), ['dev-2']);

    now = 3000;
    ch.emit('event', 'dev-1', status('1.1.0', { slot: 'b', trial: true }));
    const rec = fleet.get('dev-1')!;
    assert.equal(fleet.size, 2);
    assert.deepEqual([rec.version, rec.slot, rec.trial, rec.online, rec.lastSeen], ['1.1.0', 'b', true, true, 3000]);
    assert.equal(rec.link?.rttMs, 12, 'measured figures survive a reconnect');
  });
});
