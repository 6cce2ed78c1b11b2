import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseJournal } from '../../gateway/rollout/journal.ts';
import { bootedSlot, imagePush, makeSite, simEvents, startDevices, startFwpush, startGateway, type Site } from './site.ts';

/**
 * What a restarted fwgate finds on its disk (issue 17.6 and 17.7), with real processes: a
 * journal with one flipped byte in the middle of a finished campaign, and a queued campaign whose
 * stored image went bad while the gateway was down.
 */
describe('end to end: fwgate restarts onto damaged files (issue 17.6, 17.7)', function () {
  this.timeout(180_000);
  let site: Site | undefined;
  const TO = '1.1.0';

  afterEach(async () => {
    await site?.close();
    site = undefined;
  });

  it('17.6: one flipped byte in the middle of a finished campaign\'s journal — the records that verify are kept, the original set aside, the campaign is not run again', async () => {
    site = await makeSite('fwgate-journal-');
    const s = site;
    const first = startGateway(['--serial', s.pty.a, ...s.gwArgs]);
    s.procs.push({ stop: () => first.proc.stop(3000) });
    await first.proc.waitForLine(/^fwgate ready/, 30_000);
    const sim = await startDevices(s, 2);
    const { args } = await imagePush(s, TO, 64 * 1024);
    const push = startFwpush(args);
    assert.equal(await push.exited, 0, push.stdout().slice(-2000));
    const campaign = String(push.events.find((e) => e.event === 'complete')?.campaign);
    first.proc.child.kill('SIGKILL');
    await first.proc.exited;

    // flip one byte inside the JSON of a record in the middle (not the last line)
    const path = join(s.dir, 'gw', 'journal', `${campaign}.jsonl`);
    const text = await readFile(path, 'utf8');
    const lines = text.split('\n');
    const mid = Math.floor((lines.length - 1) / 2);
    const at = text.indexOf(lines[mid]!) + 12;
    const bytes = Buffer.from(text, 'utf8');
    bytes[at] = bytes[at]! ^ 0x01;
    await writeFile(path, bytes);
    const activatedBefore = simEvents(sim).filter((e) => e.type === 'activated').length;
    const offersBefore = simEvents(sim).filter((e) => e.type === 'offer-accepted').length;

    const second = startGateway(['--serial', s.pty.a, ...s.gwArgs]);
    s.procs.push({ stop: () => second.proc.stop(3000) });
    await second.proc.waitForLine(/^fwgate ready/, 30_000);
    // resuming happens before "ready": by now a re-run would have logged itself
    assert.ok(second.logs.some((l) => typeof l.msg === 'string' && l.msg.includes('CORRUPT journal') && l.msg.includes('not run again')), JSON.stringify(second.logs.slice(-10)));
    assert.ok(!second.logs.some((l) => l.msg === 'resuming an unfinished campaign'), 'the finished campaign is not resumed');
    const names = await readdir(join(s.dir, 'gw', 'journal'));
    const copy = names.find((n) => n.startsWith(`${campaign}.jsonl.corrupt-`));
    assert.ok(copy, `the original is set aside: ${names.join(', ')}`);
    assert.deepEqual(await readFile(join(s.dir, 'gw', 'journal', copy)), bytes);
    const kept = parseJournal(await readFile(path, 'utf8'));
    assert.equal(kept.state.records, lines.length - 2, 'every record but the flipped one');
    assert.equal(kept.state.complete?.updated, 2);
    // `fwpush status` reports no running campaign, and the devices were left alone
    const status = startFwpush(['--port', s.pty.b, 'status', '--json']);
    assert.equal(await status.exited, 0, status.stdout());
    await sim.stop(3000);
    assert.equal(simEvents(sim).filter((e) => e.type === 'offer-accepted').length, offersBefore);
    assert.equal(simEvents(sim).filter((e) => e.type === 'activated').length, activatedBefore);
    for (const i of [0, 1]) assert.deepEqual(await bootedSlot(s, i), { version: TO, state: 'confirmed' });
  });

  it('17.7: a queued campaign whose image is quarantined at restart is closed in its journal with the reason, and `fwpush status` reports it (exit 6)', async () => {
    // one maintenance window, weeks away: the push is queued
    site = await makeSite('fwgate-quarantine-', { windows: { list: [{ cron: '0 3 1 1 *', durationMin: 60, timeZone: 'UTC' }] } });
    const s = site;
    const first = startGateway(['--serial', s.pty.a, ...s.gwArgs]);
    s.procs.push({ stop: () => first.proc.stop(3000) });
    await first.proc.waitForLine(/^fwgate ready/, 30_000);
    const sim = await startDevices(s, 1);
    const { sha256, args } = await imagePush(s, TO, 64 * 1024, ['--in-window']);
    const push = startFwpush(args);
    assert.equal(await push.exited, 0, push.stdout().slice(-2000));
    const queued = push.events.find((e) => e.event === 'committed');
    const campaign = String(queued?.campaign);
    first.proc.child.kill('SIGKILL');
    await first.proc.exited;

    // the stored image rots while the gateway is down
    const bin = join(s.dir, 'gw', 'store', 'images', `${sha256}.bin`);
    const image = await readFile(bin);
    image[1000] = image[1000]! ^ 0xff;
    await writeFile(bin, image);

    const second = startGateway(['--serial', s.pty.a, ...s.gwArgs]);
    s.procs.push({ stop: () => second.proc.stop(3000) });
    await second.proc.waitForLine(/^fwgate ready/, 30_000);
    const status = startFwpush(['--port', s.pty.b, 'status', '--json']);
    const code = await status.exited;
    assert.equal(code, 6, status.stdout());
    const complete = status.events.find((e) => e.event === 'complete') as { campaign: string; closed?: { code: string; reason: string } } | undefined;
    assert.equal(complete?.campaign, campaign);
    assert.equal(complete?.closed?.code, 'image-unavailable');
    assert.match(complete!.closed!.reason, /failed verification .*re-push the image/);
    const summary = status.events.find((e) => e.event === 'summary');
    assert.match(String(summary?.message), /closed by the gateway without running/);

    const journal = parseJournal(await readFile(join(s.dir, 'gw', 'journal', `${campaign}.jsonl`), 'utf8'));
    assert.equal(journal.state.complete?.closed?.code, 'image-unavailable', 'the history says why');
    await sim.stop(3000);
    assert.equal(simEvents(sim).filter((e) => e.type === 'offer-accepted').length, 0, 'no device was offered the rotten image');
    assert.deepEqual(await bootedSlot(s, 0), { version: '1.0.0', state: 'confirmed' });
  });
});
