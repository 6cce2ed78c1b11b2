import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { isNoSpace, pausedMessage, rootCause } from '../../gateway/disk-full.ts';
import { DurableSteps } from '../../gateway/rollout/durable-steps.ts';
import { CampaignJournal, parseJournal, type JournalRecord } from '../../gateway/rollout/journal.ts';
import { FwError } from '../../protocol/errors.ts';
import { FakeClock } from '../protocol/link/helpers.ts';
import { fillDisk, mountSmallDisk, type SmallDisk } from '../helpers/tmpfs.ts';

const SHA = 'ab'.repeat(32);
const enospc = (): NodeJS.ErrnoException => Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });

describe('disk full (issue 17.4)', () => {
  it('ENOSPC is found anywhere in a cause chain and said in words', () => {
    const wrapped = new FwError('E_JOURNAL', 'journal x: write failed', { cause: enospc() });
    assert.ok(isNoSpace(wrapped));
    assert.equal(rootCause(wrapped), 'no space left on device');
    assert.ok(!isNoSpace(new Error('EIO')));
    const m = pausedMessage('c-1', rootCause(wrapped), 5000);
    assert.equal(m.code, 'E_DISK_FULL');
    assert.match(m.reason, /campaign c-1 paused: no space left on device/);
  });

  describe('DurableSteps: a step waits for its record; the campaign pauses while the disk refuses', () => {
    it('pauses once, tries again every retryMs, resumes when the disk takes the records, and only then lets the step go on', async () => {
      const clock = new FakeClock();
      let full = true;
      let tries = 0;
      const events: string[] = [];
      const steps = new DurableSteps({
        durable: () => {
          tries++;
          return full ? Promise.reject(new FwError('E_JOURNAL', 'write failed', { cause: enospc() })) : Promise.resolve();
        },
        timers: clock, retryMs: 1000, stopped: () => false,
        onPause: (reason) => events.push(`pause ${reason}`),
        onResume: (ms) => events.push(`resume after ${ms}`),
      });
      let stepDone = false;
      const a = steps.settle().then(() => { stepDone = true; });
      const b = steps.settle(); // a second step waiting at the same time: one pause, not two
      for (let i = 0; i < 5; i++) {
        await new Promise((r) => setImmediate(r));
        clock.advance(1000);
      }
      await new Promise((r) => setImmediate(r));
      assert.equal(stepDone, false, 'the step did not go on while the record was not durable');
      assert.equal(steps.paused, 'no space left on device');
      assert.deepEqual(events, ['pause no space left on device']);
      assert.ok(tries >= 6, `tried again every retryMs (${tries})`);
      full = false;
      clock.advance(1000);
      await Promise.all([a, b]);
      assert.ok(stepDone);
      assert.equal(steps.paused, undefined);
      assert.equal(events.length, 2);
      assert.match(events[1]!, /^resume after \d+/);
    });

    it('a campaign that stops (journal detached at shutdown) stops waiting', async () => {
      const clock = new FakeClock();
      let stopped = false;
      const steps = new DurableSteps({
        durable: () => Promise.reject(enospc()), timers: clock, retryMs: 1000, stopped: () => stopped, onPause: () => undefined, onResume: () => undefined,
      });
      const done = steps.settle();
      await new Promise((r) => setImmediate(r));
      stopped = true;
      clock.advance(1000);
      await done;
    });
  });

  describe('journal on a full file system (tmpfs; skipped unless root)', function () {
    let disk: SmallDisk | undefined;
    before(function () {
      disk = mountSmallDisk(512);
      if (!disk) this.skip();
    });
    after(() => disk?.unmount());

    it('a record the disk refuses is not durable (durable() rejects with ENOSPC), leaves no partial line, and is written in order once space returns', async () => {
      const dir = disk!.dir;
      const j = CampaignJournal.create(dir, 'c-full', SHA, 1);
      await j.record({ r: 'held', id: 'd1', bytes: 1 });
      const filler = fillDisk(dir);
      // the journal's last page may still have room: hints fill it until the disk refuses one
      let hints = 1;
      while (j.unwritten === 0 && hints < 10_000) void j.record({ r: 'held', id: 'd1', bytes: ++hints }, false);
      assert.equal(j.unwritten, 1, 'the disk refused a record');
      const recs: JournalRecord[] = [{ r: 'activating', id: 'd1' }, { r: 'activating', id: 'd2' }];
      const first = j.record(recs[0]!);
      await assert.rejects(first, (err: unknown) => isNoSpace(err) && /no space left on device/.test((err as Error).message));
      void j.record(recs[1]!).catch(() => undefined);
      assert.equal(j.unwritten, 3, 'all kept, in order');
      await assert.rejects(j.durable(), (err: unknown) => isNoSpace(err));
      // nothing half-written: the file parses with no torn tail
      const during = parseJournal(readFileSync(join(dir, 'c-full.jsonl'), 'utf8'));
      assert.equal(during.state.tornBytes, 0);
      assert.equal(during.state.activating.size, 0, 'the activation is not on disk');
      rmSync(filler);
      await j.durable();
      assert.equal(j.unwritten, 0);
      j.close();
      const after = parseJournal(readFileSync(join(dir, 'c-full.jsonl'), 'utf8'));
      assert.deepEqual([...after.state.activating], ['d1', 'd2']);
      assert.equal(after.state.held.get('d1'), hints, 'the refused hint came first, in order');
      assert.deepEqual(after.state.corruptLines, []);
    });
  });
});
