import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CampaignJournal, encodeRecord, findUnfinished, journalDir, parseJournal, type JournalRecord } from '../../gateway/rollout/journal.ts';
import { crc32 } from '../../protocol/crc.ts';
import { isFwError } from '../../protocol/errors.ts';
import { manifestForImage } from '../../protocol/manifest.ts';

/**
 * Replaying a campaign journal from its file (journal.ts, docs/reliability.md "Gateway crash and
 * the campaign journal", "A corrupt journal"): every field a record holds comes back; a line that
 * is not `<crc32, 8 lowercase hex> <JSON record>` is refused (a torn tail, or corruption named by
 * its line number); a file that cannot be a journal is refused with E_JOURNAL naming the file, and
 * set aside by findUnfinished.
 */

const SHA = 'ab'.repeat(32);
const campaign = (over: Record<string, unknown> = {}): JournalRecord => ({ r: 'campaign', id: 'c-1', sha256: SHA, at: 1000, ...over }) as JournalRecord;
/** A line with a valid CRC over any text (a record the CRC cannot tell from a good one). */
const signed = (json: string): string => `${crc32(Buffer.from(json, 'utf8')).toString(16).padStart(8, '0')} ${json}\n`;
const lines = (...recs: (JournalRecord | string)[]): string => recs.map((r) => (typeof r === 'string' ? r : encodeRecord(r))).join('');
const act = (id: string): JournalRecord => ({ r: 'activating', id });

describe('journal replay: every field comes back', () => {
  let dir: string;
  beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'fwgate-journal-replay-')); });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('the campaign record: policy, manifest, targets, waves, gate, pause, retryOf', () => {
    const manifest = manifestForImage(Buffer.alloc(64, 1), { name: 'fw', version: '1.1.0', hw: ['hw'] });
    const policy = { mode: 'window' as const, force: true, downgrade: false, expiresAt: 9_000_000 };
    const j = CampaignJournal.create(dir, 'c-7', SHA, 1234, policy, {
      manifest, targets: ['dev-1', 'dev-22'], waves: [{ count: 1 }, { pct: 50 }], waveGate: 50, wavePause: true, retryOf: 'c-6',
    });
    j.close();
    const [u] = findUnfinished(dir, () => assert.fail('no warning expected'));
    const s = u!.state;
    assert.deepEqual([s.id, s.sha256, s.startedAt], ['c-7', SHA, 1234]);
    assert.deepEqual(s.policy, policy);
    assert.deepEqual(s.manifest, manifest);
    assert.deepEqual(s.targets, ['dev-1', 'dev-22']);
    assert.deepEqual(s.waves, [{ count: 1 }, { pct: 50 }]);
    assert.deepEqual([s.waveGate, s.wavePause, s.retryOf], [50, true, 'c-6']);
  });

  it('a `now` policy, and the bounds of the wave gate (1 and 100)', () => {
    for (const waveGate of [1, 100]) {
      const { state } = parseJournal(lines(campaign({ policy: { mode: 'now', force: false, downgrade: true, expiresAt: 0 }, waveGate })));
      assert.deepEqual([state.policy?.mode, state.waveGate], ['now', waveGate]);
    }
  });

  it('state records: the latest is the campaign\'s state; the wave is the highest one named', () => {
    const { state } = parseJournal(lines(
      campaign(),
      { r: 'state', state: 'running', at: 2000, wave: 1 },
      { r: 'state', state: 'waiting', at: 3000, wave: 3, reason: 'wave 2 done' },
      { r: 'state', state: 'running', at: 4000, wave: 2 },
      { r: 'state', state: 'paused', at: 5000, reason: 'operator' },
    ));
    assert.deepEqual(state.lastState, { state: 'paused', at: 5000, reason: 'operator' });
    assert.equal(state.wave, 3);
    assert.equal(state.activating.size, 0);
    const first = parseJournal(lines(campaign(), { r: 'state', state: 'running', at: 2000, wave: 2 })).state;
    assert.equal(first.wave, 2);
    const none = parseJournal(lines(campaign(), { r: 'state', state: 'queued', at: 2000 })).state;
    assert.equal(none.wave, undefined);
  });

  it('a CRC with leading zero digits is written with them and read back', () => {
    const recs: JournalRecord[] = [];
    for (let b = 0; recs.length < 3 && b < 10_000; b++) {
      const rec: JournalRecord = { r: 'held', id: 'd1', bytes: b };
      if (encodeRecord(rec).startsWith('0')) recs.push(rec);
    }
    assert.equal(recs.length, 3);
    for (const rec of recs) assert.match(encodeRecord(rec), /^0[0-9a-f]{7} \{/);
    const { state } = parseJournal(lines(campaign(), ...recs));
    assert.deepEqual([state.records, state.tornBytes, state.corruptLines], [4, 0, []]);
  });
});

describe('journal replay: lines that are not records', () => {
  const good = act('d9');
  /** The bad line between the campaign record and a good one: corruption on line 2. */
  const corruptAt2 = (bad: string): void => {
    const text = lines(campaign(), bad, good);
    const { state, validBytes } = parseJournal(text);
    assert.deepEqual(state.corruptLines, [2], JSON.stringify(bad));
    assert.equal(state.records, 2);
    assert.deepEqual([...state.activating], ['d9']);
    assert.equal(validBytes, Buffer.byteLength(text));
  };

  it('a CRC that does not match, or is not 8 lowercase hex digits', () => {
    const line = encodeRecord(act('d1'));
    corruptAt2(line.replace(/^(.)/, (c) => (c === '0' ? '1' : '0')));
    const lettered = ['d1', 'd2', 'd3', 'd4', 'd5'].map((id) => encodeRecord(act(id))).find((l) => /[a-f]/.test(l.slice(0, 8)))!;
    corruptAt2(`${lettered.slice(0, 8).toUpperCase()}${lettered.slice(8)}`);
    corruptAt2(line.slice(1));
    corruptAt2(line.replace(' ', '  '));
  });

  it('anything before the CRC, or after the JSON (an editor\'s CRLF)', () => {
    corruptAt2(`x${encodeRecord(act('d1'))}`);
    corruptAt2(`${encodeRecord(act('d1')).slice(0, -1)}\r\n`);
  });

  it('an empty line, also as the very first line (the campaign record after it still counts)', () => {
    corruptAt2('\n');
    const { state } = parseJournal(`\n${lines(campaign(), act('d1'))}`);
    assert.deepEqual([state.id, state.corruptLines, [...state.activating]], ['c-1', [1], ['d1']]);
  });

  it('a valid CRC over text that is not JSON, or JSON that is not a record', () => {
    corruptAt2(signed('{"r":"activating","id":"d1"'));
    corruptAt2(signed('{"r":"bogus","id":"d1"}'));
    corruptAt2(signed('{"r":"activating","id":""}'));
    corruptAt2(signed('{"r":"held","id":"d1","bytes":-1}'));
    corruptAt2(signed('{"r":"held","id":"d1","bytes":1.5}'));
    corruptAt2(signed('{"r":"state","state":"running","at":1,"wave":0}'));
    corruptAt2(signed('{"r":"state","state":"resting","at":1}'));
  });

  it('a campaign record out of bounds is no campaign record: the journal cannot be read', () => {
    const bad: Record<string, unknown>[] = [
      { sha256: `${SHA}0` }, { sha256: `x${SHA}` }, { sha256: `${SHA}x` }, { sha256: SHA.toUpperCase() },
      { policy: { mode: 'later', force: false, downgrade: false, expiresAt: 0 } }, { policy: { mode: 'now' } },
      { targets: ['dev-1', ''] }, { waveGate: 0 }, { waveGate: 101 }, { retryOf: '' }, { id: '' },
    ];
    for (const over of bad) {
      assert.throws(() => parseJournal(lines(campaign(over), act('d1')), '/data/journal/c-1.jsonl'),
        (err: unknown) => isFwError(err, 'E_JOURNAL') && err.message === '/data/journal/c-1.jsonl: first record is "activating", expected "campaign"', JSON.stringify(over));
    }
  });
});

describe('journal replay: files that cannot be a journal (E_JOURNAL, the file named)', () => {
  it('a first record that is not the campaign\'s', () => {
    assert.throws(() => parseJournal(lines(act('d1'), campaign()), '/data/journal/c-1.jsonl'),
      (err: unknown) => isFwError(err, 'E_JOURNAL') && err.message === '/data/journal/c-1.jsonl: first record is "activating", expected "campaign"');
  });

  it('no campaign record at all (empty, or only bad lines); the file is called "journal" when not named', () => {
    for (const text of ['', 'not a journal\n', signed('{}')]) {
      assert.throws(() => parseJournal(text, '/data/journal/c-1.jsonl'), (err: unknown) => isFwError(err, 'E_JOURNAL') && err.message === '/data/journal/c-1.jsonl: no campaign record');
    }
    assert.throws(() => parseJournal(''), (err: unknown) => isFwError(err, 'E_JOURNAL') && err.message === 'journal: no campaign record');
  });

  it('a second campaign record', () => {
    assert.throws(() => parseJournal(lines(campaign(), act('d1'), campaign({ id: 'c-2' }))),
      (err: unknown) => isFwError(err, 'E_JOURNAL') && err.message === 'journal of c-1: a second campaign record');
  });
});

describe('journal replay: findUnfinished over a folder', () => {
  let dir: string;
  beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'fwgate-journal-find-')); });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('oldest campaign first, whatever the file names', () => {
    writeFileSync(join(dir, 'a.jsonl'), lines(campaign({ id: 'a', at: 3000 })));
    writeFileSync(join(dir, 'b.jsonl'), lines(campaign({ id: 'b', at: 1000 })));
    writeFileSync(join(dir, 'c.jsonl'), lines(campaign({ id: 'c', at: 2000 })));
    assert.deepEqual(findUnfinished(dir, () => undefined).map((u) => u.state.id), ['b', 'c', 'a']);
  });

  it('reads only *.jsonl: copies set aside and other files are left alone', () => {
    writeFileSync(join(dir, 'c-1.jsonl'), lines(campaign()));
    for (const name of ['c-0.jsonl.corrupt', 'c-1.jsonl.corrupt-1700000000000', 'c-1.jsonl.tmp-77', 'notes.txt']) writeFileSync(join(dir, name), 'junk\n');
    const warnings: string[] = [];
    assert.deepEqual(findUnfinished(dir, (m) => warnings.push(m)).map((u) => u.state.id), ['c-1']);
    assert.deepEqual(warnings, []);
    assert.deepEqual(readdirSync(dir).sort(), ['c-0.jsonl.corrupt', 'c-1.jsonl', 'c-1.jsonl.corrupt-1700000000000', 'c-1.jsonl.tmp-77', 'notes.txt']);
  });

  it('an unreadable journal: renamed *.corrupt, and the warning names the file and why', () => {
    const path = join(dir, 'c-1.jsonl');
    writeFileSync(path, lines(act('d1'), campaign()));
    const warnings: string[] = [];
    assert.deepEqual(findUnfinished(dir, (m) => warnings.push(m)), []);
    assert.deepEqual(warnings, [`${path}: unreadable journal (E_JOURNAL: ${path}: first record is "activating", expected "campaign"); renamed to c-1.jsonl.corrupt`]);
    assert.ok(existsSync(`${path}.corrupt`) && !existsSync(path));
  });

  it('warnings come in file-name order', () => {
    for (const name of ['c-3', 'c-1', 'c-2']) writeFileSync(join(dir, `${name}.jsonl`), 'junk\n');
    const warnings: string[] = [];
    findUnfinished(dir, (m) => warnings.push(m));
    assert.deepEqual(warnings.map((w) => /\/(c-\d)\.jsonl:/.exec(w)![1]), ['c-1', 'c-2', 'c-3']);
  });

  it('a corrupt unfinished journal: the warning lists every bad line and the records kept', () => {
    const path = join(dir, 'c-1.jsonl');
    writeFileSync(path, lines(campaign(), 'junk\n', act('d1'), 'more junk\n', act('d2')));
    const warnings: string[] = [];
    const [u] = findUnfinished(dir, (m) => warnings.push(m));
    const copy = readdirSync(dir).find((n) => n.startsWith('c-1.jsonl.corrupt-'))!;
    assert.deepEqual(warnings, [`${path}: CORRUPT journal: line(s) 2, 4 fail their CRC with verified records after them; `
      + `kept the 3 records that verify (the campaign resumes from them), original copied to ${join(dir, copy)}`]);
    assert.deepEqual([...u!.state.activating], ['d1', 'd2']);
    assert.equal(u!.validBytes, statSync(path).size);
  });

  it('a torn tail: the warning says how many bytes, the journal is resumed without them', () => {
    const path = join(dir, 'c-1.jsonl');
    const torn = encodeRecord(act('d2')).slice(0, 20);
    writeFileSync(path, lines(campaign(), act('d1')) + torn);
    const warnings: string[] = [];
    const [u] = findUnfinished(dir, (m) => warnings.push(m));
    assert.deepEqual(warnings, [`${path}: 20 bytes of a torn record at the end (a crash mid-append); ignored`]);
    assert.equal(u!.validBytes, statSync(path).size - 20);
  });
});

describe('journalDir', () => {
  let dir: string;
  beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'fwgate-journal-dir-')); });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('is <dataDir>/journal, created with its parents, and found again', async () => {
    const data = join(dir, 'var', 'lib', 'fwgate');
    assert.equal(await journalDir(data), join(data, 'journal'));
    assert.ok(statSync(join(data, 'journal')).isDirectory());
    assert.equal(await journalDir(data), join(data, 'journal'), 'a second call finds it');
  });
});
