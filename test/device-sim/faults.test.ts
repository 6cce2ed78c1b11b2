import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from '../../protocol/crc.ts';
import { DeviceFiles } from '../../device-sim/bootloader.ts';
import { PowerCutPhases } from '../../device-sim/faults.ts';
import { Rig, sampleImage } from './helpers.ts';

/** The slot-state record parses and names a bootable, confirmed-or-trial active slot. */
async function assertValidState(rig: Rig, id: string): Promise<void> {
  const files = new DeviceFiles(join(rig.dir.path, id), 1 << 24);
  const rec = await files.loadState();
  assert.ok(rec, 'state.json exists');
  assert.ok(['confirmed', 'trial'].includes(rec.slots[rec.active].state), `active slot ${rec.active} is ${rec.slots[rec.active].state}`);
}

describe('device-sim: faults', function () {
  const rig = new Rig();
  beforeEach(async () => rig.setUp());
  afterEach(async () => rig.tearDown());

  it('corruptChunk: the bad chunk is named in missing, a resend completes the image', async () => {
    const { device } = await rig.online('dev-001', { window: 4, faults: { corruptChunk: 3 } });
    const { image, manifest } = sampleImage('1.1.0');
    await rig.gw.send('dev-001', rig.gw.offerFor(1, manifest));
    const accept = await rig.gw.expect('dev-001', 'accept');
    const r = await rig.gw.transfer('dev-001', 1, image, accept);
    const third = 2 * accept.chunk;
    const named = r.acks.find((a) => a.missing.includes(third));
    assert.ok(named, 'an ack lists the corrupted chunk as missing');
    assert.equal(named.next, third, 'nothing at or above the bad chunk counts as contiguous');
    assert.equal(r.resent, 1, 'only the bad chunk was resent');
    assert.equal(device.stats.badChunks, 1);
    await rig.gw.send('dev-001', { t: 'verify', sid: 1 });
    assert.equal((await rig.gw.expect('dev-001', 'verified')).ok, true);
  });

  it('dropAfterChunks: the link drops, the device reconnects, a re-offer resumes (accept.next > 0)', async () => {
    const { device, log } = await rig.online('dev-001', { window: 8, faults: { dropAfterChunks: 5 } });
    const { image, manifest } = sampleImage('1.1.0');
    await rig.gw.send('dev-001', rig.gw.offerFor(1, manifest));
    const accept = await rig.gw.expect('dev-001', 'accept');
    for (let i = 0; i < 8; i++) {
      const off = i * accept.chunk;
      const data = image.subarray(off, off + accept.chunk);
      await rig.gw.send('dev-001', { t: 'chunk', sid: 1, off, data, crc: crc32(data) });
    }
    await log.next('dropped');
    await log.next('connected', (e) => e.reconnect);
    const st = await rig.gw.expect('dev-001', 'status', (s) => s.slots.b.state === 'receiving');
    assert.equal(st.version, '1.0.0');
    assert.equal(rig.gw.all('dev-001', 'boot').length, 1, 'boot is reported once per boot, not per connect');
    assert.equal(device.stats.reconnects, 1);
    assert.equal(device.stats.drops, 1);

    await rig.gw.send('dev-001', rig.gw.offerFor(2, manifest));
    const resumed = await rig.gw.expect('dev-001', 'accept', (a) => a.sid === 2);
    assert.equal(resumed.next, 5 * accept.chunk, 'resumes after the 5 chunks it acked');
    await rig.gw.transfer('dev-001', 2, image, resumed);
    await rig.gw.send('dev-001', { t: 'verify', sid: 2 });
    assert.equal((await rig.gw.expect('dev-001', 'verified')).ok, true);
  });

  it('resumes after a power cycle from the progress file; a different image starts over', async () => {
    const { device, log } = await rig.online('dev-001', { window: 4 });
    const { image, manifest } = sampleImage('1.1.0');
    await rig.gw.send('dev-001', rig.gw.offerFor(1, manifest));
    const accept = await rig.gw.expect('dev-001', 'accept');
    for (let i = 0; i < 6; i++) {
      const data = image.subarray(i * 4096, (i + 1) * 4096);
      await rig.gw.send('dev-001', { t: 'chunk', sid: 1, off: i * 4096, data, crc: crc32(data) });
      await rig.gw.expect('dev-001', 'ack');
    }
    device.powerCut();
    await log.next('booted');
    await rig.gw.expect('dev-001', 'boot', (b) => b.version === '1.0.0' && !b.reverted);
    await rig.gw.send('dev-001', rig.gw.offerFor(2, manifest));
    assert.equal((await rig.gw.expect('dev-001', 'accept', (a) => a.sid === 2)).next, 6 * 4096);
    // re-offer with a smaller chunk size: holdings are converted, not lost
    await rig.gw.send('dev-001', rig.gw.offerFor(3, manifest, { chunk: 1024 }));
    const small = await rig.gw.expect('dev-001', 'accept', (a) => a.sid === 3);
    assert.equal(small.chunk, 1024);
    assert.equal(small.next, 6 * 4096);
    const other = sampleImage('1.2.0');
    await rig.gw.send('dev-001', rig.gw.offerFor(4, other.manifest));
    assert.equal((await rig.gw.expect('dev-001', 'accept', (a) => a.sid === 4)).next, 0, 'another sha256 discards the progress');
    assert.equal(accept.next, 0);
  });

  it('self-test failure (image header): the device comes back reverted on the old version', async () => {
    const { device, log } = await rig.online('dev-001');
    const { image, manifest } = sampleImage('1.1.0', { selftest: 'fail' });
    await rig.gw.deliver('dev-001', 1, image, manifest);
    await rig.gw.send('dev-001', { t: 'activate', sid: 1 });
    await rig.gw.expect('dev-001', 'activated');
    const boot = await rig.gw.expect('dev-001', 'boot', (b) => b.reverted);
    assert.deepEqual({ ...boot, sha256: undefined }, { t: 'boot', version: '1.0.0', slot: 'a', sha256: undefined, trial: false, reverted: true, reason: 'self-test failed' });
    const st = await rig.gw.expect('dev-001', 'status', (s) => s.slots.b.state === 'bad');
    assert.equal(st.version, '1.0.0');
    assert.equal(st.trial, false);
    assert.equal((await log.next('reverted')).reason, 'self-test failed');
    assert.equal(device.running?.version, '1.0.0');
    await assertValidState(rig, 'dev-001');
  });

  it('failSelfTest fault reverts a good image; the same image then installs once the fault is cleared', async () => {
    const { device } = await rig.online('dev-001', { faults: { failSelfTest: true } });
    const { image, manifest } = sampleImage('1.1.0');
    await rig.gw.deliver('dev-001', 1, image, manifest);
    await rig.gw.send('dev-001', { t: 'activate', sid: 1 });
    assert.equal((await rig.gw.expect('dev-001', 'boot', (b) => b.reverted)).version, '1.0.0');
    device.setFaults({ failSelfTest: false });
    await rig.gw.expect('dev-001', 'status');
    await rig.gw.deliver('dev-001', 2, image, manifest);
    await rig.gw.send('dev-001', { t: 'activate', sid: 2 });
    const boot = await rig.gw.expect('dev-001', 'boot', (b) => b.trial);
    assert.equal(boot.version, '1.1.0');
  });

  it('an unconfirmed trial reverts on its own after trialTimeoutMs', async () => {
    const { device, log } = await rig.online('dev-001', { trialTimeoutMs: 300 });
    const { image, manifest } = sampleImage('1.1.0');
    await rig.gw.deliver('dev-001', 1, image, manifest);
    await rig.gw.send('dev-001', { t: 'activate', sid: 1 });
    assert.equal((await rig.gw.expect('dev-001', 'boot', (b) => b.trial)).version, '1.1.0');
    await log.next('trial-timeout', undefined, 3_000);
    const boot = await rig.gw.expect('dev-001', 'boot', (b) => b.reverted, 3_000);
    assert.equal(boot.version, '1.0.0');
    assert.equal(boot.slot, 'a');
    assert.match(boot.reason ?? '', /trial not confirmed within 300 ms/);
    // a late confirm changes nothing
    await rig.gw.send('dev-001', { t: 'confirm', sha256: manifest.sha256 });
    await rig.gw.send('dev-001', { t: 'query' });
    const st = await rig.gw.expect('dev-001', 'status', (s) => s.slots.b.state === 'bad');
    assert.equal(st.version, '1.0.0');
    assert.equal(rig.gw.all('dev-001', 'confirmed').length, 0);
    assert.equal(device.running?.version, '1.0.0');
  });

  it('refuses a new offer while the running image is in trial (its fallback must survive)', async () => {
    await rig.online('dev-001');
    const { image, manifest } = sampleImage('1.1.0');
    await rig.gw.deliver('dev-001', 1, image, manifest);
    await rig.gw.send('dev-001', { t: 'activate', sid: 1 });
    await rig.gw.expect('dev-001', 'boot', (b) => b.trial);
    await rig.gw.send('dev-001', rig.gw.offerFor(2, sampleImage('1.2.0').manifest));
    assert.equal((await rig.gw.expect('dev-001', 'reject')).code, 'busy');
  });

  describe('power cuts', function () {
    it('a cut before flush loses the unflushed chunks, state.json stays valid, the transfer resumes from what was acked', async () => {
      const { device, log } = await rig.online('dev-001', { window: 8, flushBatch: 8 });
      const { image, manifest } = sampleImage('1.1.0');
      await rig.gw.send('dev-001', rig.gw.offerFor(1, manifest));
      const accept = await rig.gw.expect('dev-001', 'accept');
      for (let i = 0; i < 3; i++) {
        const data = image.subarray(i * 4096, (i + 1) * 4096);
        await rig.gw.send('dev-001', { t: 'chunk', sid: 1, off: i * 4096, data, crc: crc32(data) });
        await rig.gw.expect('dev-001', 'ack');
      }
      device.setFaults({ powerCutAt: 'chunk-write' });
      for (let i = 3; i < 8; i++) {
        const data = image.subarray(i * 4096, (i + 1) * 4096);
        await rig.gw.send('dev-001', { t: 'chunk', sid: 1, off: i * 4096, data, crc: crc32(data) });
      }
      const cut = await log.next('power-cut');
      assert.equal(cut.phase, 'chunk-write');
      assert.ok(cut.lostWrites >= 1, 'at least one buffered write was lost');
      await log.next('booted');
      await assertValidState(rig, 'dev-001');
      const acked = Math.max(...rig.gw.all('dev-001', 'ack').map((a) => a.next));
      await rig.gw.expect('dev-001', 'boot', (b) => !b.reverted && b.version === '1.0.0');
      await rig.gw.send('dev-001', rig.gw.offerFor(2, manifest));
      const resumed = await rig.gw.expect('dev-001', 'accept', (a) => a.sid === 2);
      assert.ok(resumed.next >= acked, `accept.next ${resumed.next} covers every acked byte (${acked})`);
      assert.equal(resumed.next, 3 * 4096, 'the chunks buffered at the cut are gone; nothing after it was handled');
      assert.ok(cut.lostWrites <= 5);
      await rig.gw.transfer('dev-001', 2, image, resumed);
      await rig.gw.send('dev-001', { t: 'verify', sid: 2 });
      assert.equal((await rig.gw.expect('dev-001', 'verified')).ok, true);
      assert.equal(accept.next, 0);
    });

    it('a cut in the middle of the activation write leaves the old state; the device boots the old image', async () => {
      const { device, log } = await rig.online('dev-001');
      const { image, manifest } = sampleImage('1.1.0');
      await rig.gw.deliver('dev-001', 1, image, manifest);
      device.setFaults({ powerCutAt: 'activation' });
      await rig.gw.send('dev-001', { t: 'activate', sid: 1 });
      await log.next('power-cut');
      const boot = await rig.gw.expect('dev-001', 'boot', (b) => b.version === '1.0.0');
      assert.equal(boot.reverted, false);
      assert.equal(rig.gw.all('dev-001', 'activated').length, 0);
      const files = await readdir(join(rig.dir.path, 'dev-001'));
      assert.ok(!files.includes('state.json.tmp'), 'the half-done update was cleaned up at boot');
      const st = await rig.gw.expect('dev-001', 'status', (s) => s.slots.b.state === 'ready');
      assert.equal(st.slot, 'a');
      // the gateway retries: the verified image is still there; a re-offer re-binds it to the new sid
      await rig.gw.send('dev-001', rig.gw.offerFor(2, manifest));
      assert.equal((await rig.gw.expect('dev-001', 'accept', (a) => a.sid === 2)).next, image.length);
      await rig.gw.send('dev-001', { t: 'verify', sid: 2 });
      assert.equal((await rig.gw.expect('dev-001', 'verified', (v) => v.sid === 2)).ok, true);
      await rig.gw.send('dev-001', { t: 'activate', sid: 1 });
      await rig.gw.send('dev-001', { t: 'query' });
      await rig.gw.expect('dev-001', 'status', (s) => s.slots.b.state === 'ready');
      assert.equal(device.stats.ignored, 1, 'activate under the old sid is ignored');
      await rig.gw.send('dev-001', { t: 'activate', sid: 2 });
      assert.equal((await rig.gw.expect('dev-001', 'boot', (b) => b.trial)).version, '1.1.0');
    });

    it('a verified image survives a power cut: activate with the same sid after the reboot', async () => {
      const { device, log } = await rig.online('dev-001');
      const { image, manifest } = sampleImage('1.1.0');
      await rig.gw.deliver('dev-001', 1, image, manifest);
      await rig.gw.expect('dev-001', 'status', (s) => s.slots.b.state === 'ready');
      device.powerCut();
      await log.next('connected');
      await rig.gw.expect('dev-001', 'boot', (b) => b.version === '1.0.0');
      await rig.gw.expect('dev-001', 'status', (s) => s.slots.b.state === 'ready');
      await rig.gw.send('dev-001', { t: 'activate', sid: 1 });
      assert.equal((await rig.gw.expect('dev-001', 'boot', (b) => b.trial)).version, '1.1.0');
    });

    const cases: { phase: (typeof PowerCutPhases)[number]; expect: string }[] = [
      { phase: 'after-transfer', expect: 'old image; a re-offer finds every byte held' },
      { phase: 'first-boot', expect: 'reverted: an unconfirmed trial gets no second boot' },
      { phase: 'before-confirm', expect: 'reverted: an unconfirmed trial gets no second boot' },
    ];
    for (const c of cases) {
      it(`a cut at ${c.phase}: ${c.expect}`, async () => {
        const { device, log } = await rig.online('dev-001', { faults: { powerCutAt: c.phase } });
        const { image, manifest } = sampleImage('1.1.0');
        await rig.gw.send('dev-001', rig.gw.offerFor(1, manifest));
        const accept = await rig.gw.expect('dev-001', 'accept');
        if (c.phase === 'after-transfer') {
          // the cut comes right after the last flush: the final acks may never reach the wire
          for (let off = 0; off < image.length; off += accept.chunk) {
            const data = image.subarray(off, off + accept.chunk);
            await rig.gw.send('dev-001', { t: 'chunk', sid: 1, off, data, crc: crc32(data) });
          }
          await log.next('transfer-complete');
          await log.next('power-cut');
          await rig.gw.expect('dev-001', 'boot', (b) => !b.reverted && b.version === '1.0.0');
          await rig.gw.send('dev-001', rig.gw.offerFor(2, manifest));
          assert.equal((await rig.gw.expect('dev-001', 'accept', (a) => a.sid === 2)).next, image.length);
          await rig.gw.send('dev-001', { t: 'verify', sid: 2 });
          assert.equal((await rig.gw.expect('dev-001', 'verified')).ok, true);
        } else {
          await rig.gw.transfer('dev-001', 1, image, accept);
          await rig.gw.send('dev-001', { t: 'verify', sid: 1 });
          assert.equal((await rig.gw.expect('dev-001', 'verified')).ok, true);
          await rig.gw.send('dev-001', { t: 'activate', sid: 1 });
          if (c.phase === 'before-confirm') {
            await rig.gw.expect('dev-001', 'boot', (b) => b.trial);
            await rig.gw.send('dev-001', { t: 'confirm', sha256: manifest.sha256 });
          }
          await log.next('power-cut');
          const boot = await rig.gw.expect('dev-001', 'boot', (b) => b.reverted);
          assert.equal(boot.version, '1.0.0');
          assert.equal(boot.slot, 'a');
          assert.equal(rig.gw.all('dev-001', 'confirmed').length, 0);
        }
        await assertValidState(rig, 'dev-001');
        assert.equal(device.stats.powerCuts, 1);
      });
    }
  });
});
