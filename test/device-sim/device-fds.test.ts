import assert from 'node:assert/strict';
import { readFile, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { Rig, sampleImage } from './helpers.ts';

/** Descriptors of this process open on a file under `dir` (from /proc/self/fd; Linux). */
async function fdsUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const fd of await readdir('/proc/self/fd')) {
    const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '');
    if (target.startsWith(`${dir}/`)) out.push(target);
  }
  return out.sort();
}

describe('device-sim: a device keeps its transfer files open only for the transfer (without fsync)', function () {
  const rig = new Rig();
  beforeEach(async () => rig.setUp());
  afterEach(async () => rig.tearDown());
  before(function () {
    if (process.platform !== 'linux') this.skip();
  });

  it('slot and progress files stay open during a transfer and are closed at verify, across the reboot and at shutdown', async () => {
    const { device, log } = await rig.online('dev-001', { window: 4 });
    const devDir = join(rig.dir.path, 'dev-001');
    assert.deepEqual(await fdsUnder(devDir), [], 'nothing open after boot');
    const { image, manifest } = sampleImage('1.1.0', { size: 40 * 4096 });
    await rig.gw.send('dev-001', rig.gw.offerFor(7, manifest));
    const accept = await rig.gw.expect('dev-001', 'accept');
    await rig.gw.transfer('dev-001', 7, image, accept);
    assert.deepEqual(await fdsUnder(devDir), [join(devDir, 'slot-b.bin'), join(devDir, 'transfer.json')], 'one each for the whole transfer');
    assert.equal(device.files.openFiles, 2);
    await rig.gw.send('dev-001', { t: 'verify', sid: 7 });
    assert.equal((await rig.gw.expect('dev-001', 'verified')).ok, true);
    assert.deepEqual(await fdsUnder(devDir), [], 'closed at the end of the transfer');
    assert.deepEqual(new Uint8Array(await readFile(join(devDir, 'slot-b.bin'))), image, 'every flush reached the slot');
    await rig.gw.send('dev-001', { t: 'activate', sid: 7 });
    await log.next('rebooting');
    await log.next('booted', (e) => e.trial);
    assert.deepEqual(await fdsUnder(devDir), []);
    await rig.gw.send('dev-001', { t: 'confirm', sha256: manifest.sha256 });
    await rig.gw.expect('dev-001', 'confirmed');
    await device.stop();
    assert.equal(device.files.openFiles, 0);
    assert.deepEqual(await fdsUnder(devDir), []);
  });

  it('closes them on an abort, a power cut and a shutdown in the middle of a transfer', async () => {
    const { device, log } = await rig.online('dev-001', { window: 4 });
    const devDir = join(rig.dir.path, 'dev-001');
    const { image, manifest } = sampleImage('1.1.0', { size: 40 * 4096 });
    const half = image.subarray(0, 20 * 4096);
    const partly = async (sid: number): Promise<void> => {
      await rig.gw.send('dev-001', rig.gw.offerFor(sid, manifest));
      const accept = await rig.gw.expect('dev-001', 'accept', (a) => a.sid === sid);
      await rig.gw.transfer('dev-001', sid, half, { ...accept, next: 0 }); // acked up to half of the image
      assert.equal((await fdsUnder(devDir)).length, 2, 'open during the transfer');
    };

    await partly(1);
    await rig.gw.send('dev-001', { t: 'abort', sid: 1 });
    await rig.gw.expect('dev-001', 'aborted');
    assert.deepEqual(await fdsUnder(devDir), [], 'closed by the abort');

    await partly(2);
    device.powerCut();
    assert.deepEqual(await fdsUnder(devDir), [], 'closed by the power cut');
    await log.next('booted');
    await log.next('connected');
    await rig.gw.expect('dev-001', 'status');

    // the same image again: resumed at half, the rest written (and the files opened again)
    await rig.gw.send('dev-001', rig.gw.offerFor(3, manifest));
    const accept = await rig.gw.expect('dev-001', 'accept', (a) => a.sid === 3);
    assert.equal(accept.next, half.length);
    await rig.gw.transfer('dev-001', 3, image, accept);
    assert.equal((await fdsUnder(devDir)).length, 2, 'open during the transfer');
    await device.stop();
    assert.deepEqual(await fdsUnder(devDir), [], 'closed by the shutdown');
    assert.equal(device.files.openFiles, 0);
  });
});
