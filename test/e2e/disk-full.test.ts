import assert from 'node:assert/strict';
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { parseJournal } from '../../gateway/rollout/journal.ts';
import { fillDisk, mountSmallExt4, type SmallDisk } from '../helpers/tmpfs.ts';
import { bootedSlot, imagePush, makeSite, simEvents, startDevices, startFwpush, startGateway, type Site } from './site.ts';

/**
 * Issue 17.4 with real processes and a real full disk: fwgate's data directory is a small ext4
 * file system (1 KiB blocks, loop device; needs root, else skipped), filled to the last byte
 * while the devices take the image. The devices' `activating` records cannot be written, so no
 * `activate` goes out: the campaign pauses, says "no space left on device" in the log and to
 * fwpush, and goes on by itself once space is freed. Judged from the devices' event sequence and
 * files and the journal.
 */
describe('end to end: the gateway\'s disk fills during a campaign (issue 17.4)', function () {
  this.timeout(180_000);
  const DEVICES = 6;
  const TO = '1.1.0';
  let site: Site | undefined;
  let disk: SmallDisk | undefined;

  before(function () {
    disk = mountSmallExt4(8 * 1024);
    if (!disk) this.skip();
  });
  after(() => disk?.unmount());
  afterEach(async () => {
    await site?.close();
    site = undefined;
  });

  it('no device is activated while the journal cannot be written; the campaign pauses, says why, and completes once space returns', async () => {
    const dataDir = join(disk!.dir, 'gw');
    site = await makeSite('fwgate-diskfull-', { rollout: { concurrency: DEVICES, journalRetryMs: 500 } }, dataDir);
    const s = site;
    const gw = startGateway(['--serial', s.pty.a, ...s.gwArgs]);
    s.procs.push({ stop: () => gw.proc.stop(3000) });
    await gw.proc.waitForLine(/^fwgate ready/, 30_000);
    const sim = await startDevices(s, DEVICES, ['--profile', 'wifi-poor']);
    // 2 MiB over wifi-poor links (250 kB/s each): ~8 s of transfer after the first offer is
    // accepted, so the disk is full long before any device could be activated, even when this
    // process is slow to react on a loaded host (256 KiB left ~1 s: a fresh-clone run on a loaded
    // host once saw two devices activated before the fill)
    const { args } = await imagePush(s, TO, 2 * 1024 * 1024);
    const push = startFwpush(args);
    s.procs.push({ stop: async () => { push.child.kill('SIGKILL'); await push.exited; } });

    // the transfers have begun: fill the disk to the last byte
    await sim.waitForLine((l) => l.includes('"type":"offer-accepted"'), 90_000);
    const filler = fillDisk(disk!.dir);
    const paused = await gw.waitForLog((l) => typeof l.msg === 'string' && l.msg.startsWith('campaign paused: no space left on device'), 90_000);
    const told = await push.saw((e) => e.event === 'error' && e.code === 'E_DISK_FULL', 30_000);
    assert.match(String(told.reason), /paused: no space left on device/);
    // every device has verified the image, so each would have been activated by now
    await sim.waitForLine(() => simEvents(sim).filter((e) => e.type === 'verified' && e.ok === true).length >= DEVICES, 90_000);
    const freedAt = sim.lines.length;
    const activatedBefore = simEvents(sim).filter((e) => e.type === 'activated');
    await rm(filler);

    await gw.waitForLog('campaign resumed: its journal is durable again', 30_000);
    const code = await push.exited;
    assert.equal(code, 0, push.stdout().slice(-3000));
    const complete = push.events.find((e) => e.event === 'complete');
    assert.equal(complete?.updated, DEVICES, JSON.stringify(complete));
    await sim.stop(3000);

    assert.equal(paused.campaign, complete?.campaign);
    assert.deepEqual(activatedBefore, [], `no device activated while the disk was full: ${JSON.stringify(activatedBefore)}`);
    const activations = simEvents(sim, freedAt).filter((e) => e.type === 'activated');
    assert.equal(activations.length, DEVICES, 'each device activated once, after the space returned');
    for (let i = 0; i < DEVICES; i++) assert.deepEqual(await bootedSlot(s, i), { version: TO, state: 'confirmed' });
    // every activation has its durable record, and the journal is whole (no partial line left by a refused write)
    const journal = parseJournal(await readFile(join(dataDir, 'journal', `${String(complete?.campaign)}.jsonl`), 'utf8'));
    assert.equal(journal.state.activating.size, DEVICES);
    assert.equal(journal.state.tornBytes, 0);
    assert.deepEqual(journal.state.corruptLines, []);
    assert.equal(journal.state.complete?.updated, DEVICES);
  });

  it('an upload that does not fit is abandoned with its partial removed (the stated rule), and fwpush says "no space left on device"', async () => {
    const dataDir = join(disk!.dir, 'gw2');
    site = await makeSite('fwgate-diskfull-', {}, dataDir);
    const s = site;
    const gw = startGateway(['--serial', s.pty.a, ...s.gwArgs]);
    s.procs.push({ stop: () => gw.proc.stop(3000) });
    await gw.proc.waitForLine(/^fwgate ready/, 30_000);
    const { sha256, args } = await imagePush(s, TO, 12 * 1024 * 1024); // larger than the whole file system
    const push = startFwpush(args);
    s.procs.push({ stop: async () => { push.child.kill('SIGKILL'); await push.exited; } });
    const code = await push.exited;
    assert.notEqual(code, 0);
    assert.match(push.stdout(), /E_DISK_FULL.*no space left on device on the gateway: upload abandoned at \d+ bytes and its partial removed/);
    await gw.waitForLog((l) => l.msg === 'upload abandoned: no space left on device; its partial is removed', 10_000);
    const partials = await readdir(join(dataDir, 'store', 'partial'));
    assert.deepEqual(partials.filter((n) => n.startsWith(sha256)), [], 'the partial is gone');
  });
});
