import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CampaignJournal, encodeRecord, parseJournal, repairJournal, type JournalRecord } from '../../gateway/rollout/journal.ts';
import { isFwError } from '../../protocol/errors.ts';
import { FsFaults, type Fault } from '../helpers/fs-faults-sync.ts';

/**
 * The campaign journal when the disk misbehaves and around its group commit (journal.ts,
 * docs/reliability.md "Disk full", "Gateway crash and the campaign journal"): refused and partial
 * writes, failed fdatasyncs, what is durable when, and the file being closed only once nothing
 * waits on it. Faults are injected (test/helpers/fs-faults-sync.ts), so every case runs anywhere.
 */

const SHA = 'ab'.repeat(32);
const held = (id: string, bytes: number): JournalRecord => ({ r: 'held', id, bytes });
const act = (id: string): JournalRecord => ({ r: 'activating', id });
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  void p.then(() => { done = true; }, () => { done = true; });
  for (let i = 0; i < 5; i++) await tick();
  return done;
}
/** Wait (event-loop turns, bounded) until `cond` holds: the thread pool's fdatasync has no promise of its own here. */
async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 2000 && !cond(); i++) await tick();
  assert.ok(cond(), `${what}: not within 2000 turns`);
}
const replay = (path: string) => parseJournal(readFileSync(path, 'utf8'), path).state;

describe('campaign journal under disk faults', () => {
  let dir: string;
  let fs: FsFaults;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'fwgate-journal-faults-'));
    fs = new FsFaults(dir);
    fs.start();
  });
  afterEach(() => {
    fs.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  describe('a write the disk refuses (ENOSPC, EIO)', () => {
    it('append: throws E_JOURNAL naming the file and the cause; the record is kept, not written', () => {
      const j = CampaignJournal.create(dir, 'c-1', SHA, 1);
      fs.onWrite = () => 'ENOSPC';
      assert.throws(() => j.append(act('d1')), (err: unknown) => isFwError(err, 'E_JOURNAL')
        && err.message === `journal ${j.path}: append failed: no space left on device (1 record(s) not written yet)`
        && (err.cause as NodeJS.ErrnoException).code === 'ENOSPC');
      assert.equal(j.unwritten, 1);
      assert.equal(replay(j.path).activating.size, 0);
    });

    it('record: written once the disk takes it again; durable() says why until then', async () => {
      const j = CampaignJournal.create(dir, 'c-1', SHA, 1);
      let full = true;
      fs.onWrite = () => (full ? 'EIO' : undefined);
      const first = j.record(act('d1'));
      await assert.rejects(first, (err: unknown) => isFwError(err, 'E_JOURNAL')
        && err.message === `journal ${j.path}: write failed: EIO: i/o error, write (1 record(s) not written yet)`);
      await assert.rejects(j.durable(), /write failed: EIO/);
      assert.equal(j.unwritten, 1);
      full = false;
      await j.durable();
      assert.equal(j.unwritten, 0);
      assert.deepEqual([...replay(j.path).activating], ['d1']);
      j.close();
    });

    it('records after a refused one wait behind it, even when the disk would take them: the file keeps their order', async () => {
      const j = CampaignJournal.create(dir, 'c-1', SHA, 1);
      let full = true;
      fs.onWrite = () => (full ? 'ENOSPC' : undefined);
      await j.record(act('d1')).catch(() => undefined);
      full = false;
      void j.record(act('d2'), false);
      assert.equal(j.unwritten, 2, 'd2 queued behind d1, not written before it');
      assert.equal(replay(j.path).activating.size, 0);
      await j.durable();
      assert.deepEqual([...replay(j.path).activating], ['d1', 'd2']);
      j.close();
    });

    it('a line the disk took only in part is cut back: never a partial line before whole ones', async () => {
      const j = CampaignJournal.create(dir, 'c-1', SHA, 1);
      // the disk takes 10 bytes of the line, then is full until space is freed
      let disk: 'part' | 'full' | 'ok' = 'part';
      fs.onWrite = () => {
        if (disk === 'part') {
          disk = 'full';
          return 10;
        }
        return disk === 'full' ? 'ENOSPC' : undefined;
      };
      await j.record(act('d1')).catch(() => undefined);
      const during = parseJournal(readFileSync(j.path, 'utf8'));
      assert.deepEqual([during.state.records, during.state.tornBytes], [1, 0], 'the 10 bytes were cut off');
      assert.equal(fs.count('ftruncate', j.path), 1);
      disk = 'ok';
      await j.durable();
      j.close();
      const after = parseJournal(readFileSync(j.path, 'utf8'));
      assert.deepEqual([after.state.records, after.state.tornBytes, after.state.corruptLines], [2, 0, []]);
    });

    it('a refused write that wrote nothing is not cut back (the file is as it was)', () => {
      const j = CampaignJournal.create(dir, 'c-1', SHA, 1);
      fs.onWrite = () => 'ENOSPC';
      void j.record(act('d1')).catch(() => undefined);
      assert.equal(fs.count('ftruncate'), 0);
      fs.onWrite = () => undefined;
      j.close();
    });

    it('a failed cut-back does not stop the record being rewritten whole at the same place', async () => {
      const j = CampaignJournal.create(dir, 'c-1', SHA, 1);
      let n = 0;
      fs.onWrite = () => (++n === 1 ? 10 : n === 2 ? 'ENOSPC' : undefined);
      fs.onFtruncate = () => 'EIO';
      void j.record(act('d1')).catch(() => undefined);
      await j.durable();
      j.close();
      const after = parseJournal(readFileSync(j.path, 'utf8'));
      assert.deepEqual([after.state.records, after.state.tornBytes, [...after.state.activating]], [2, 0, ['d1']]);
    });

    it('short writes are carried on until the whole line is written, each part at its place', async () => {
      const j = CampaignJournal.create(dir, 'c-1', SHA, 1);
      fs.onWrite = () => 7;
      for (let i = 1; i <= 3; i++) await j.record(held(`d${i}`, i * 4096));
      j.close();
      const s = replay(j.path);
      assert.deepEqual([...s.held], [['d1', 4096], ['d2', 8192], ['d3', 12_288]]);
      assert.equal(s.tornBytes, 0);
    });

    it('after close, records the disk refused stay unwritten and durable() still says why', async () => {
      const j = CampaignJournal.create(dir, 'c-1', SHA, 1);
      fs.onWrite = () => 'ENOSPC';
      void j.record(act('d1')).catch(() => undefined);
      j.close();
      assert.deepEqual(fs.open, [], 'closed');
      fs.onWrite = () => undefined;
      await assert.rejects(j.durable(), (err: unknown) => isFwError(err, 'E_JOURNAL') && /write failed: no space left on device \(1 record\(s\) not written yet\)$/.test(err.message));
    });
  });

  describe('fdatasync', () => {
    it('append is durable when it returns: one fdatasync on the calling thread; a hint has none', () => {
      const j = CampaignJournal.create(dir, 'c-1', SHA, 1);
      const before = fs.count('fdatasyncSync', j.path);
      j.append(act('d1'));
      assert.equal(fs.count('fdatasyncSync', j.path), before + 1);
      j.append(held('d1', 4096), false);
      assert.equal(fs.count('fdatasyncSync', j.path), before + 1);
      j.close();
    });

    it('a failed group commit rejects the records it covered (E_JOURNAL, with the cause); a record written meanwhile gets the next one', async () => {
      const j = CampaignJournal.create(dir, 'c-1', SHA, 1);
      fs.onFdatasync = () => 'hold';
      const a = j.record(act('d1'));
      const b = j.record(act('d2'));
      assert.equal(fs.waiting, 1, 'd2 waits for the next commit');
      const aDone = a.then(() => 'resolved', (err: unknown) => err);
      fs.release('EIO');
      const err = await aDone;
      assert.ok(isFwError(err, 'E_JOURNAL'), String(err));
      assert.equal(err.message, `journal ${j.path}: fdatasync failed`);
      assert.equal((err.cause as NodeJS.ErrnoException).code, 'EIO');
      assert.equal(await settled(b), false, 'd2 was not covered by the failed commit');
      assert.equal(fs.waiting, 1);
      fs.release();
      await b;
      assert.equal(j.groupCommits, 2);
      j.close();
    });

    it('a commit resolves only the records written before it started', async () => {
      const j = CampaignJournal.create(dir, 'c-1', SHA, 1);
      fs.onFdatasync = () => 'hold';
      const a = j.record(act('d1'));
      const b = j.record(act('d2'));
      fs.release();
      await a;
      assert.equal(await settled(b), false);
      fs.release();
      await b;
      j.close();
    });

    it('a commit that ends after a synchronous append does not make the journal forget what that append made durable', async () => {
      const j = CampaignJournal.create(dir, 'c-1', SHA, 1);
      fs.onFdatasync = () => 'hold';
      const a = j.record(act('d1'));
      j.append(act('d2'));
      await a;
      fs.release();
      for (let i = 0; i < 5; i++) await tick();
      await j.durable();
      assert.equal(j.groupCommits, 1, 'nothing new to commit');
      assert.equal(fs.waiting, 0);
      j.close();
    });

    it('records keep being committed after a commit that had no one left waiting', async () => {
      const j = CampaignJournal.create(dir, 'c-1', SHA, 1);
      await j.record(act('d1'));
      await j.record(act('d2'));
      await j.record(act('d3'));
      assert.equal(j.groupCommits, 3);
      j.close();
      assert.deepEqual([...replay(j.path).activating], ['d1', 'd2', 'd3']);
    });
  });

  describe('close', () => {
    it('with nothing waiting: the file is closed at once, and a second close does nothing', () => {
      const j = CampaignJournal.create(dir, 'c-1', SHA, 1);
      assert.deepEqual(fs.open, [j.path]);
      j.close();
      assert.deepEqual(fs.open, []);
      j.close();
      assert.equal(fs.count('close', j.path), 1);
    });

    it('a reopened journal closed before any record: the file is closed at once', () => {
      CampaignJournal.create(dir, 'c-1', SHA, 1).close();
      const path = join(dir, 'c-1.jsonl');
      const j = CampaignJournal.reopen(path, statSync(path).size);
      assert.deepEqual(fs.open, [path]);
      j.close();
      assert.deepEqual(fs.open, []);
    });

    it('with a commit running: records are refused at once, the file stays open until the commit ends', async () => {
      const j = CampaignJournal.create(dir, 'c-1', SHA, 1);
      fs.onFdatasync = () => 'hold';
      const done = j.record(act('d1'));
      j.close();
      assert.throws(() => j.record(act('d2')), (err: unknown) => isFwError(err, 'E_JOURNAL') && err.message === `journal ${j.path} is closed`);
      assert.deepEqual(fs.open, [j.path], 'not closed under a running fdatasync');
      fs.release();
      await done;
      await until(() => fs.open.length === 0, 'the file closed');
    });

    it('with a commit running that a synchronous append already made moot: closed when it ends', async () => {
      const j = CampaignJournal.create(dir, 'c-1', SHA, 1);
      fs.onFdatasync = () => 'hold';
      const a = j.record(act('d1'));
      j.append(act('d2'));
      await a;
      j.close();
      assert.deepEqual(fs.open, [j.path], 'the fdatasync still runs on it');
      fs.release();
      await until(() => fs.open.length === 0, 'the file closed');
    });

    it('closed with hints never committed: durable() says they cannot be made durable (it does not wait forever)', async () => {
      const j = CampaignJournal.create(dir, 'c-1', SHA, 1);
      await j.record(held('d1', 4096), false);
      await j.record(held('d1', 8192), false);
      j.close();
      await assert.rejects(j.durable(), (err: unknown) => isFwError(err, 'E_JOURNAL') && err.message === `journal ${j.path} is closed: 2 record(s) not durable`);
      assert.equal(j.groupCommits, 0);
    });

    it('closed with everything durable: durable() resolves', async () => {
      const j = CampaignJournal.create(dir, 'c-1', SHA, 1);
      await j.record(act('d1'));
      j.close();
      await j.durable();
    });

    for (const fault of ['ENOSPC', 'EIO'] as Fault[]) {
      it(`with a commit failing (${fault}): still closed once it ends`, async () => {
        const j = CampaignJournal.create(dir, 'c-1', SHA, 1);
        fs.onFdatasync = () => 'hold';
        const done = j.record(act('d1')).catch((err: unknown) => err);
        j.close();
        fs.release(fault);
        assert.ok(isFwError(await done, 'E_JOURNAL'));
        await until(() => fs.open.length === 0, 'the file closed');
      });
    }
  });

  describe('the directory and the rewrite', () => {
    it('create: the new journal\'s first record is fdatasync\'ed and its folder fsync\'ed', () => {
      const j = CampaignJournal.create(dir, 'c-1', SHA, 1);
      assert.deepEqual(fs.ops.map((o) => `${o.op} ${o.path === dir ? 'dir' : o.path === j.path ? 'journal' : o.path}`),
        ['open journal', 'write journal', 'fdatasyncSync journal', 'open dir', 'fsyncSync dir', 'close dir']);
      j.close();
    });

    it('repair: the verified lines are written to a temporary file and fsync\'ed, renamed over the journal, then the folder fsync\'ed', () => {
      const path = join(dir, 'c-1.jsonl');
      const text = `${encodeRecord({ r: 'campaign', id: 'c-1', sha256: SHA, at: 1 })}junk\n${encodeRecord(act('d1'))}`;
      writeFileSync(path, text);
      const { copy, validBytes } = repairJournal(path, text);
      const tmp = fs.ops.find((o) => o.op === 'open')!.path;
      assert.match(tmp, /c-1\.jsonl\.tmp-\d+$/);
      const name = (p: string): string => (p === dir ? 'dir' : p === path ? 'journal' : p === tmp ? 'tmp' : p);
      assert.deepEqual(fs.ops.map((o) => `${o.op} ${name(o.path)}`),
        ['open tmp', 'write tmp', 'fsyncSync tmp', 'close tmp', 'rename journal', 'open dir', 'fsyncSync dir', 'close dir']);
      assert.equal(readFileSync(copy, 'utf8'), text, 'the original, aside');
      assert.equal(validBytes, statSync(path).size);
      assert.deepEqual(parseJournal(readFileSync(path, 'utf8')).state.corruptLines, []);
    });
  });
});
