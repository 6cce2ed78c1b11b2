import assert from 'node:assert/strict';
import { appendFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CampaignJournal, encodeRecord, findUnfinished, parseJournal, type JournalRecord } from '../../gateway/rollout/journal.ts';
import type { OrderMessage, ResultMessage } from '../../protocol/uplink.ts';

const SHA = 'ab'.repeat(32);
const result = (id: string): ResultMessage => ({ t: 'result', campaign: 'c-1', id, outcome: 'updated', code: 'ok', from: '1.0.0', to: '1.1.0', durationMs: 10, retries: 0 });

describe('campaign journal', () => {
  let dir: string;
  beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'fwgate-journal-')); });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('records what a restarted gateway needs: order, activations, held bytes, results, completion', () => {
    const j = CampaignJournal.create(dir, 'c-1', SHA, 1000);
    j.append({ r: 'order', order: { t: 'order', campaign: 'c-1', image: { name: 'fw', version: '1.1.0', sha256: SHA }, devices: [{ id: 'd1', rank: 1, from: '1.0.0' }], excluded: [] } });
    j.append({ r: 'held', id: 'd1', bytes: 4096 });
    j.append({ r: 'held', id: 'd1', bytes: 8192 });
    j.append({ r: 'activating', id: 'd1' });
    j.append({ r: 'result', result: result('d2') });
    j.close();
    const [u, ...more] = findUnfinished(dir, () => assert.fail('no warning expected'));
    assert.equal(more.length, 0);
    assert.equal(u!.state.id, 'c-1');
    assert.equal(u!.state.sha256, SHA);
    assert.equal(u!.state.startedAt, 1000);
    assert.deepEqual(u!.state.order?.devices.map((d) => d.id), ['d1']);
    assert.equal(u!.state.held.get('d1'), 8192, 'the last held record wins');
    assert.deepEqual([...u!.state.activating], ['d1']);
    assert.deepEqual([...u!.state.results.keys()], ['d2']);
    assert.equal(u!.state.records, 6);
  });

  it('a completed campaign is not unfinished', () => {
    const j = CampaignJournal.create(dir, 'c-1', SHA);
    j.append({ r: 'complete', complete: { t: 'complete', campaign: 'c-1', devices: 0, updated: 0, failed: 0, rolledBack: 0, skipped: 0, durationMs: 5 } });
    j.close();
    assert.deepEqual(findUnfinished(dir, () => undefined), []);
  });

  it('stops at a torn tail (a crash mid-append), reports it and cuts it off on reopen', () => {
    const j = CampaignJournal.create(dir, 'c-1', SHA);
    j.append({ r: 'held', id: 'd1', bytes: 100 });
    j.close();
    const path = join(dir, 'c-1.jsonl');
    const good = readFileSync(path).length;
    const torn = encodeRecord({ r: 'activating', id: 'd1' });
    appendFileSync(path, torn.slice(0, torn.length - 5)); // no newline: torn
    const warnings: string[] = [];
    const [u] = findUnfinished(dir, (m) => warnings.push(m));
    assert.equal(u!.validBytes, good);
    assert.equal(u!.state.activating.size, 0, 'the torn record does not count');
    assert.match(warnings.join('\n'), /torn record/);
    const again = CampaignJournal.reopen(u!.path, u!.validBytes);
    again.append({ r: 'held', id: 'd1', bytes: 200 });
    again.close();
    const reread = parseJournal(readFileSync(path, 'utf8'));
    assert.equal(reread.state.tornBytes, 0);
    assert.equal(reread.state.held.get('d1'), 200);
  });

  it('a bad LAST record is a torn append: cut off, nothing after it', () => {
    const recs: JournalRecord[] = [{ r: 'campaign', id: 'c-1', sha256: SHA, at: 1 }, { r: 'held', id: 'd1', bytes: 1 }];
    const lines = recs.map(encodeRecord);
    lines[1] = lines[1]!.replace('"bytes":1', '"bytes":9'); // the CRC no longer matches
    const { state, validBytes } = parseJournal(lines.join(''));
    assert.equal(validBytes, Buffer.byteLength(lines[0]!));
    assert.equal(state.held.size, 0);
    assert.equal(state.records, 1);
    assert.deepEqual(state.corruptLines, []);
  });

  it('a bad record in the middle is corruption: the records after it that verify are kept (issue 17.6)', () => {
    const recs: JournalRecord[] = [{ r: 'campaign', id: 'c-1', sha256: SHA, at: 1 }, { r: 'held', id: 'd1', bytes: 1 }, { r: 'held', id: 'd2', bytes: 2 }];
    const lines = recs.map(encodeRecord);
    lines[1] = lines[1]!.replace('"bytes":1', '"bytes":9');
    const { state, validBytes } = parseJournal(lines.join(''));
    assert.deepEqual(state.corruptLines, [2]);
    assert.equal(state.records, 2);
    assert.equal(state.held.get('d2'), 2);
    assert.equal(state.tornBytes, 0);
    assert.equal(validBytes, Buffer.byteLength(lines.join('')));
  });

  it('a completed campaign with a flipped byte in its middle is not run again; the original is copied aside and the journal rewritten with what verifies', () => {
    const result = { t: 'result', campaign: 'c-2', id: 'd1', outcome: 'updated', code: 'ok', from: '1.0.0', to: '1.1.0', durationMs: 5, retries: 0 } as const;
    const recs: JournalRecord[] = [
      { r: 'campaign', id: 'c-2', sha256: SHA, at: 1 }, { r: 'activating', id: 'd1' }, { r: 'result', result },
      { r: 'complete', complete: { t: 'complete', campaign: 'c-2', devices: 1, updated: 1, failed: 0, rolledBack: 0, skipped: 0, durationMs: 9 } },
    ];
    const lines = recs.map(encodeRecord);
    lines[1] = lines[1]!.replace('"d1"', '"e1"'); // one flipped byte
    const path = join(dir, 'c-2.jsonl');
    writeFileSync(path, lines.join(''));
    const warnings: string[] = [];
    assert.deepEqual(findUnfinished(dir, (m) => warnings.push(m)), [], 'the completed campaign is not resumed');
    assert.match(warnings.join('\n'), /CORRUPT journal: line\(s\) 2 .*completed: not run again/);
    const copies = readdirSync(dir).filter((n) => n.startsWith('c-2.jsonl.corrupt-'));
    assert.equal(copies.length, 1, 'the original is kept aside');
    assert.equal(readFileSync(join(dir, copies[0]!), 'utf8'), lines.join(''));
    const reread = parseJournal(readFileSync(path, 'utf8'));
    assert.deepEqual(reread.state.corruptLines, []);
    assert.equal(reread.state.records, 3);
    assert.equal(reread.state.results.size, 1);
    assert.ok(reread.state.complete);
  });

  it('an unfinished campaign with a corrupt middle line resumes from the records that verify, and appends after them', () => {
    const recs: JournalRecord[] = [{ r: 'campaign', id: 'c-3', sha256: SHA, at: 1 }, { r: 'held', id: 'd1', bytes: 1 }, { r: 'activating', id: 'd2' }];
    const lines = recs.map(encodeRecord);
    lines[1] = lines[1]!.replace('"bytes":1', '"bytes":7');
    writeFileSync(join(dir, 'c-3.jsonl'), lines.join(''));
    const [u] = findUnfinished(dir, () => undefined);
    assert.deepEqual([...u!.state.activating], ['d2']);
    const j = CampaignJournal.reopen(u!.path, u!.validBytes);
    j.append({ r: 'activating', id: 'd3' });
    j.close();
    const reread = parseJournal(readFileSync(u!.path, 'utf8'));
    assert.deepEqual([...reread.state.activating], ['d2', 'd3']);
    assert.deepEqual(reread.state.corruptLines, []);
  });

  it('sets an unreadable journal aside as .corrupt and reports it, keeping its bytes', () => {
    writeFileSync(join(dir, 'c-9.jsonl'), 'not a journal\n');
    const warnings: string[] = [];
    assert.deepEqual(findUnfinished(dir, (m) => warnings.push(m)), []);
    assert.ok(existsSync(join(dir, 'c-9.jsonl.corrupt')));
    assert.equal(readFileSync(join(dir, 'c-9.jsonl.corrupt'), 'utf8'), 'not a journal\n');
    assert.match(warnings[0]!, /unreadable journal.*no campaign record/);
  });

  it('refuses to create a journal that exists (one file per campaign)', () => {
    CampaignJournal.create(dir, 'c-1', SHA).close();
    assert.throws(() => CampaignJournal.create(dir, 'c-1', SHA), /EEXIST/);
  });

  describe('group commit (record / durable)', () => {
    it('writes each record at once, in call order, and shares one fdatasync among the records written while one runs', async () => {
      const j = CampaignJournal.create(dir, 'c-1', SHA, 1000);
      const order: OrderMessage = { t: 'order', campaign: 'c-1', image: { name: 'fw', version: '1.1.0', sha256: SHA }, devices: [], excluded: [] };
      const settled: string[] = [];
      const first = j.record({ r: 'order', order }).then(() => settled.push('order'));
      const rest = ['d1', 'd2', 'd3', 'd4'].map((id) => j.record({ r: 'activating', id }).then(() => settled.push(id)));
      // written before any commit completed: a reader (or a crash that keeps the page cache) sees them in order
      const { state } = parseJournal(readFileSync(j.path, 'utf8'));
      assert.equal(state.records, 6);
      assert.deepEqual([...state.activating], ['d1', 'd2', 'd3', 'd4']);
      assert.deepEqual(settled, [], 'durability is never reported synchronously: it comes from the thread pool');
      await Promise.all([first, ...rest]);
      assert.deepEqual(settled, ['order', 'd1', 'd2', 'd3', 'd4'], 'a record is durable no later than the ones written after it');
      assert.equal(j.groupCommits, 2, 'one fdatasync for the first record, one for the four written while it ran');
      await j.durable();
      assert.equal(j.groupCommits, 2, 'nothing new to commit');
      j.close();
    });

    it('a hint (durable false) does not commit; the next durable record covers it', async () => {
      const j = CampaignJournal.create(dir, 'c-1', SHA, 1000);
      await j.record({ r: 'held', id: 'd1', bytes: 4096 }, false);
      assert.equal(j.groupCommits, 0);
      await j.record({ r: 'activating', id: 'd1' });
      assert.equal(j.groupCommits, 1);
      j.close();
    });

    it('close waits for a running commit, settles it, then refuses further records', async () => {
      const j = CampaignJournal.create(dir, 'c-1', SHA, 1000);
      const done = j.record({ r: 'complete', complete: { t: 'complete', campaign: 'c-1', devices: 0, updated: 0, failed: 0, rolledBack: 0, skipped: 0, durationMs: 1 } });
      j.close();
      await done;
      assert.throws(() => j.append({ r: 'held', id: 'd1', bytes: 1 }), /closed/);
      assert.throws(() => j.record({ r: 'held', id: 'd1', bytes: 1 }), /closed/);
      assert.deepEqual(findUnfinished(dir, () => assert.fail('no warning expected')), [], 'the completion was written');
    });

    it('a synchronous append makes the records waiting for a commit durable too', async () => {
      const j = CampaignJournal.create(dir, 'c-1', SHA, 1000);
      const waiting = j.record({ r: 'activating', id: 'd1' });
      j.append({ r: 'activating', id: 'd2' });
      await waiting;
      await j.durable(); // resolves at once: everything written is durable
      j.close();
      assert.deepEqual([...parseJournal(readFileSync(j.path, 'utf8')).state.activating], ['d1', 'd2']);
    });
  });
});
