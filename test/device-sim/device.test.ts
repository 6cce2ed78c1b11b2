import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { encodeCbor } from '../../protocol/cbor.ts';
import { crc32 } from '../../protocol/crc.ts';
import { makeSampleImage } from '../../firmware-samples/image-format.ts';
import { DeviceFiles } from '../../device-sim/bootloader.ts';
import { EventLog, Rig, sampleImage } from './helpers.ts';

describe('device-sim: device', function () {
  const rig = new Rig();
  beforeEach(async () => rig.setUp());
  afterEach(async () => rig.tearDown());

  it('boots a blank device at the factory version and reports boot then status', async () => {
    const device = rig.device('dev-001', { hw: 'sensor-v2', factoryVersion: '1.2.3', maxChunk: 8192 });
    const log = new EventLog(device);
    const out = await device.start();
    assert.ok(out);
    assert.equal(out.factory, true);
    const boot = await rig.gw.expect('dev-001', 'boot');
    const factory = makeSampleImage({ name: 'sensor-fw', version: '1.2.3', hw: 'sensor-v2', size: 16 * 1024 });
    const sha = createHash('sha256').update(factory).digest('hex');
    assert.deepEqual(boot, { t: 'boot', version: '1.2.3', slot: 'a', sha256: sha, trial: false, reverted: false });
    const status = await rig.gw.expect('dev-001', 'status');
    assert.deepEqual(status, {
      t: 'status', hw: 'sensor-v2', version: '1.2.3', slot: 'a',
      slots: { a: { state: 'confirmed', version: '1.2.3', sha256: sha }, b: { state: 'empty' } },
      maxChunk: 8192, busy: false, trial: false,
    });
    // boot precedes status, and boot is sent once
    const order = rig.gw.received.filter((r) => r.id === 'dev-001').map((r) => r.msg.t);
    assert.deepEqual(order.slice(0, 2), ['boot', 'status']);
    await log.next('connected');
    // the files: slot A holds the factory image, state.json is a valid record
    assert.deepEqual(new Uint8Array(await readFile(join(rig.dir.path, 'dev-001', 'slot-a.bin'))), factory);
    const rec = await new DeviceFiles(join(rig.dir.path, 'dev-001'), 1 << 20).loadState();
    assert.equal(rec?.slots.a.state, 'confirmed');
    assert.equal(rec?.active, 'a');
    assert.equal(rec?.bootCount, 1);
    assert.equal(rig.gw.decodeErrors.length, 0);
  });

  it('runs a full update: offer, windowed chunks, verify, activate, trial boot, confirm; survives a restart', async () => {
    const { device, log } = await rig.online('dev-001', { window: 4 });
    const { image, manifest } = sampleImage('1.1.0');
    await rig.gw.send('dev-001', rig.gw.offerFor(7, manifest));
    const accept = await rig.gw.expect('dev-001', 'accept');
    assert.deepEqual(accept, { t: 'accept', sid: 7, next: 0, chunk: 4096, window: 4 });
    const receiving = await rig.gw.expect('dev-001', 'status');
    assert.equal(receiving.slots.b.state, 'receiving');

    const r = await rig.gw.transfer('dev-001', 7, image, accept);
    assert.equal(r.resent, 0);
    assert.equal(r.acks.at(-1)?.next, image.length);
    assert.ok(r.acks.every((a) => a.missing.length === 0));
    assert.equal(device.stats.chunks, Math.ceil(image.length / 4096));

    await rig.gw.send('dev-001', { t: 'verify', sid: 7 });
    assert.deepEqual(await rig.gw.expect('dev-001', 'verified'), { t: 'verified', sid: 7, ok: true });
    assert.equal((await rig.gw.expect('dev-001', 'status')).slots.b.state, 'ready');

    await rig.gw.send('dev-001', { t: 'activate', sid: 7 });
    assert.deepEqual(await rig.gw.expect('dev-001', 'activated'), { t: 'activated', sid: 7, slot: 'b' });
    await log.next('rebooting');
    const boot = await rig.gw.expect('dev-001', 'boot');
    assert.deepEqual(boot, { t: 'boot', version: '1.1.0', slot: 'b', sha256: manifest.sha256, trial: true, reverted: false });
    const trialStatus = await rig.gw.expect('dev-001', 'status');
    assert.equal(trialStatus.trial, true);
    assert.equal(trialStatus.slots.b.state, 'trial');

    await rig.gw.send('dev-001', { t: 'confirm', sha256: manifest.sha256 });
    assert.deepEqual(await rig.gw.expect('dev-001', 'confirmed'), { t: 'confirmed', sha256: manifest.sha256, version: '1.1.0' });
    const st = await rig.gw.expect('dev-001', 'status');
    assert.equal(st.version, '1.1.0');
    assert.equal(st.slot, 'b');
    assert.equal(st.trial, false);
    assert.equal(st.slots.b.state, 'confirmed');
    assert.equal(st.slots.a.state, 'confirmed', 'the old image stays a valid fallback');

    // confirm again: idempotent
    await rig.gw.send('dev-001', { t: 'confirm', sha256: manifest.sha256 });
    await rig.gw.expect('dev-001', 'confirmed');

    // restart from the files: still the new version, not in trial
    await device.stop();
    rig.gw.drain('dev-001');
    const again = await rig.online('dev-001');
    assert.equal(again.device.running?.version, '1.1.0');
    const b2 = rig.gw.all('dev-001', 'boot').at(-1);
    assert.deepEqual(b2, { t: 'boot', version: '1.1.0', slot: 'b', sha256: manifest.sha256, trial: false, reverted: false });
    assert.equal(rig.gw.decodeErrors.length, 0);
  });

  it('rejects offers: busy, incompatible hardware, not newer, no space', async () => {
    const { device } = await rig.online('dev-001', { factoryVersion: '1.1.0', slotCapacity: 128 * 1024 });
    const { manifest } = sampleImage('2.0.0');

    device.setFaults({ busy: true });
    assert.equal((await rig.gw.expect('dev-001', 'status')).busy, true, 'status follows the busy flag');
    await rig.gw.send('dev-001', rig.gw.offerFor(1, manifest));
    assert.equal((await rig.gw.expect('dev-001', 'reject', (m) => m.sid === 1)).code, 'busy');
    device.setFaults({ busy: false });
    assert.equal((await rig.gw.expect('dev-001', 'status')).busy, false);

    await rig.gw.send('dev-001', rig.gw.offerFor(2, manifest, { hw: ['sensor-v2', 'sensor-v3'] }));
    assert.equal((await rig.gw.expect('dev-001', 'reject', (m) => m.sid === 2)).code, 'incompatible');
    await rig.gw.send('dev-001', rig.gw.offerFor(3, manifest, { version: '1.1.0' }));
    assert.equal((await rig.gw.expect('dev-001', 'reject', (m) => m.sid === 3)).code, 'not-newer');
    await rig.gw.send('dev-001', rig.gw.offerFor(4, manifest, { version: '1.0.9' }));
    assert.equal((await rig.gw.expect('dev-001', 'reject', (m) => m.sid === 4)).code, 'not-newer');
    await rig.gw.send('dev-001', rig.gw.offerFor(5, manifest, { version: '1.2.0-rc.1' }));
    assert.equal((await rig.gw.expect('dev-001', 'accept', (m) => m.sid === 5)).next, 0, 'a newer pre-release is newer');
    await rig.gw.send('dev-001', rig.gw.offerFor(6, manifest, { size: 128 * 1024 + 1 }));
    assert.equal((await rig.gw.expect('dev-001', 'reject', (m) => m.sid === 6)).code, 'no-space');
  });

  it('counts and ignores malformed and unknown messages, and keeps working', async () => {
    const { device, log } = await rig.online('dev-001');
    await rig.gw.sendRaw('dev-001', Uint8Array.from([0xff, 0x00, 0x13]));       // not CBOR
    await rig.gw.sendRaw('dev-001', encodeCbor({ t: 'reboot-now' }));            // unknown type
    await rig.gw.sendRaw('dev-001', encodeCbor([1, 2, 3]));                      // not a map
    await rig.gw.sendRaw('dev-001', encodeCbor({ t: 'offer', sid: 1 }));         // missing fields
    await rig.gw.sendRaw('dev-001', encodeCbor({ t: 'ping', n: -1 }));           // out of range
    await rig.gw.sendRaw('dev-001', new Uint8Array(0));                          // empty
    await log.next('invalid', () => device.stats.invalid === 6);
    assert.equal(device.stats.invalid, 6);

    const pad = new Uint8Array(64 * 1024).map((_, i) => i * 7);
    await rig.gw.send('dev-001', { t: 'ping', n: 42, pad });
    const pong = await rig.gw.expect('dev-001', 'pong');
    assert.equal(pong.n, 42);
    assert.deepEqual(new Uint8Array(pong.pad!), pad);
    await rig.gw.send('dev-001', { t: 'ping', n: 43 });
    assert.deepEqual(await rig.gw.expect('dev-001', 'pong'), { t: 'pong', n: 43 });
    await rig.gw.send('dev-001', { t: 'query' });
    assert.equal((await rig.gw.expect('dev-001', 'status')).version, '1.0.0');

    // valid but not applicable: chunk for an unknown sid, activate without a ready slot
    await rig.gw.send('dev-001', { t: 'chunk', sid: 99, off: 0, data: new Uint8Array(64), crc: 0 });
    await rig.gw.send('dev-001', { t: 'activate', sid: 99 });
    await rig.gw.send('dev-001', { t: 'query' });
    await rig.gw.expect('dev-001', 'status');
    assert.equal(device.stats.ignored, 2);
    assert.equal(device.stats.errors, 0);
    assert.equal(rig.gw.all('dev-001', 'ack').length, 0);
    assert.equal(device.connected, true);
  });

  it('aborts a transfer: aborted, slot back to its previous state, a new offer starts at 0', async () => {
    const { device } = await rig.online('dev-001', { window: 2 });
    const { image, manifest } = sampleImage('1.1.0');
    await rig.gw.send('dev-001', rig.gw.offerFor(1, manifest));
    await rig.gw.expect('dev-001', 'accept');
    await rig.gw.send('dev-001', { t: 'abort', sid: 1 });
    assert.deepEqual(await rig.gw.expect('dev-001', 'aborted'), { t: 'aborted', sid: 1 });
    assert.equal(device.status()?.slots.b.state, 'empty');

    await rig.gw.send('dev-001', rig.gw.offerFor(2, manifest));
    const accept = await rig.gw.expect('dev-001', 'accept', (a) => a.sid === 2);
    const data = image.subarray(0, 4096);
    await rig.gw.send('dev-001', { t: 'chunk', sid: 2, off: 0, data, crc: crc32(data) });
    assert.equal((await rig.gw.expect('dev-001', 'ack')).next, 4096);
    await rig.gw.send('dev-001', { t: 'abort', sid: 2 });
    await rig.gw.expect('dev-001', 'aborted');
    assert.equal(device.status()?.slots.b.state, 'empty');
    await rig.gw.send('dev-001', rig.gw.offerFor(3, manifest));
    assert.equal((await rig.gw.expect('dev-001', 'accept', (a) => a.sid === 3)).next, 0);
    assert.equal(accept.next, 0);
  });

  it('refuses a verify before every byte is held, and resends make it whole', async () => {
    await rig.online('dev-001');
    const { image, manifest } = sampleImage('1.1.0');
    await rig.gw.send('dev-001', rig.gw.offerFor(1, manifest));
    await rig.gw.expect('dev-001', 'accept');
    await rig.gw.send('dev-001', { t: 'verify', sid: 1 });
    const v = await rig.gw.expect('dev-001', 'verified');
    assert.equal(v.ok, false);
    assert.equal(v.code, 'incomplete');
    await rig.gw.deliver('dev-001', 2, image, manifest);
  });

  it('fails verify with sha256 when the offer digest does not match the image, and discards it', async () => {
    const { device } = await rig.online('dev-001');
    const { image, manifest } = sampleImage('1.1.0');
    const bad = { ...manifest, sha256: manifest.sha256.replace(/.$/, (c) => (c === '0' ? '1' : '0')) };
    await rig.gw.send('dev-001', rig.gw.offerFor(1, bad));
    const accept = await rig.gw.expect('dev-001', 'accept');
    await rig.gw.transfer('dev-001', 1, image, accept);
    await rig.gw.send('dev-001', { t: 'verify', sid: 1 });
    const v = await rig.gw.expect('dev-001', 'verified');
    assert.equal(v.ok, false);
    assert.equal(v.code, 'sha256');
    assert.equal(device.status()?.slots.b.state, 'empty');
    await rig.gw.send('dev-001', rig.gw.offerFor(2, bad));
    assert.equal((await rig.gw.expect('dev-001', 'accept', (a) => a.sid === 2)).next, 0, 're-offer starts clean');
  });
});
