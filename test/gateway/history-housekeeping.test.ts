import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../gateway/config.ts';
import { Gateway } from '../../gateway/gateway.ts';
import { pruneImages } from '../../gateway/image-housekeeping.ts';
import { silentLogger } from '../../gateway/log.ts';
import { acquirePidFile, liveHolder, PID_FILE } from '../../gateway/pid-file.ts';
import { pruneJournals } from '../../gateway/retention.ts';
import { isFwError } from '../../protocol/errors.ts';
import { complete, manifestOf, order, SHA_A, SHA_B, SHA_C, SHA_D, stateRec, storeImage, T0, writeFleet, writeJournal } from './history-fixtures.ts';

const DAY = 86_400_000;

/** A live process that is not this one (its pid stands for another gateway). */
async function otherProcess(): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  await new Promise<void>((resolve, reject) => child.once('spawn', resolve).once('error', reject));
  return child;
}

async function ended(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGKILL');
  await exited;
}

/** The start time of a process in clock ticks (field 22 of /proc/<pid>/stat). */
function startTicks(pid: number): number {
  const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(text.slice(text.lastIndexOf(')') + 2).split(' ')[19]);
}

describe('history housekeeping: pid file, journal retention, image prune', function () {
  this.timeout(60_000);
  let data: string;
  let child: ChildProcess | undefined;
  beforeEach(() => { data = mkdtempSync(join(tmpdir(), 'fwgate-housekeeping-')); });
  afterEach(async () => {
    if (child) await ended(child);
    child = undefined;
    rmSync(data, { recursive: true, force: true });
  });

  describe('pid file (gateway/pid-file.ts)', () => {
    it('is refused while another live process holds it, and taken over once that process is dead', async () => {
      child = await otherProcess();
      writeFileSync(join(data, PID_FILE), JSON.stringify({ pid: child.pid, what: 'gateway', at: T0, startTicks: startTicks(child.pid!) }));
      assert.equal(liveHolder(data)?.pid, child.pid);
      assert.throws(() => acquirePidFile(data, 'images prune'), (err) => isFwError(err, 'E_CONFIG') && err.message.includes(`pid ${child!.pid}`) && err.message.includes(data));
      await ended(child);
      assert.equal(liveHolder(data), undefined, 'a dead holder holds nothing');
      const pid = acquirePidFile(data, 'images prune');
      assert.equal(JSON.parse(readFileSync(join(data, PID_FILE), 'utf8')).pid, process.pid);
      pid.release();
      assert.equal(existsSync(join(data, PID_FILE)), false, 'released: removed');
    });

    it('a pid now used by another process (another start time) is stale', async () => {
      child = await otherProcess();
      writeFileSync(join(data, PID_FILE), JSON.stringify({ pid: child.pid, what: 'gateway', at: T0, startTicks: startTicks(child.pid!) - 1 }));
      assert.equal(liveHolder(data), undefined);
      acquirePidFile(data, 'gateway').release();
    });

    it('a gateway holds it from start to a clean stop, refuses to start while another holds it, and applies retention at start-up', async () => {
      for (let i = 0; i < 3; i++) writeJournal(data, { id: `c-${i}`, sha256: SHA_A, at: T0 + i, records: [complete(`c-${i}`)], mtime: T0 + i * 1000 });
      const config = parseConfig({ dataDir: data, broker: { port: 0 }, security: { allowUnsigned: true }, storage: { keepCampaigns: { count: 1, maxAgeDays: 0 } } });

      child = await otherProcess();
      writeFileSync(join(data, PID_FILE), JSON.stringify({ pid: child.pid, what: 'gateway', at: T0 }));
      const refused = Gateway.start({ config, log: silentLogger() }).then(async (gw) => {
        await gw.stop();
        assert.fail('a second gateway started on a data directory held by a live process');
      });
      await assert.rejects(refused, (err) => isFwError(err, 'E_CONFIG') && err.message.includes(`pid ${child!.pid}`));
      assert.deepEqual(readdirSync(join(data, 'journal')).sort(), ['c-0.jsonl', 'c-1.jsonl', 'c-2.jsonl'], 'a refused start touches nothing');
      await ended(child);

      const gw = await Gateway.start({ config, log: silentLogger() });
      try {
        assert.equal(liveHolder(data)?.pid, process.pid);
        assert.equal(liveHolder(data)?.what, 'gateway');
        assert.deepEqual(readdirSync(join(data, 'journal')), ['c-2.jsonl'], 'the newest ended campaign is kept');
      } finally {
        await gw.stop();
      }
      assert.equal(existsSync(join(data, PID_FILE)), false, 'removed at a clean stop');
    });
  });

  describe('journal retention (pruneJournals)', () => {
    const now = T0 + 400 * DAY;
    beforeEach(() => {
      // ended: e-0 (oldest) .. e-4 (newest), each a day apart; two unfinished campaigns older than all of them
      for (let i = 0; i < 5; i++) writeJournal(data, { id: `e-${i}`, sha256: SHA_A, at: T0 + i * DAY, records: [complete(`e-${i}`)], mtime: T0 + 300 * DAY + i * DAY });
      writeJournal(data, { id: 'u-queued', sha256: SHA_A, at: T0 - 10 * DAY });
      writeJournal(data, { id: 'u-waiting', sha256: SHA_A, at: T0 - 9 * DAY, records: [{ r: 'order', order: order('u-waiting', SHA_A, '1.1.0', ['d1']) }, stateRec('waiting', T0 - 9 * DAY)] });
    });
    const left = (): string[] => readdirSync(join(data, 'journal')).sort();

    it('keeps the newest `count` ended campaigns and every unfinished one', () => {
      const removed = pruneJournals(join(data, 'journal'), { count: 2, maxAgeDays: 0 }, now);
      assert.deepEqual(removed.map((r) => [r.id, r.why]), [['e-0', 'count'], ['e-1', 'count'], ['e-2', 'count']]);
      assert.deepEqual(left(), ['e-3.jsonl', 'e-4.jsonl', 'u-queued.jsonl', 'u-waiting.jsonl']);
    });

    it('removes ended campaigns older than maxAgeDays, never an unfinished one however old', () => {
      const removed = pruneJournals(join(data, 'journal'), { count: 0, maxAgeDays: 98 }, now); // cut: day 302
      assert.deepEqual(removed.map((r) => [r.id, r.why]), [['e-0', 'age'], ['e-1', 'age']]);
      assert.deepEqual(left(), ['e-2.jsonl', 'e-3.jsonl', 'e-4.jsonl', 'u-queued.jsonl', 'u-waiting.jsonl']);
      assert.deepEqual(pruneJournals(join(data, 'journal'), { count: 1, maxAgeDays: 1 }, now + 1000 * DAY).map((r) => r.id), ['e-2', 'e-3', 'e-4']);
      assert.deepEqual(left(), ['u-queued.jsonl', 'u-waiting.jsonl']);
    });

    it('a dry run removes nothing; an unreadable journal is left and named; 0 means no limit', () => {
      writeFileSync(join(data, 'journal', 'x-bad.jsonl'), 'not a journal\n');
      const warnings: string[] = [];
      assert.equal(pruneJournals(join(data, 'journal'), { count: 1, maxAgeDays: 0 }, now, { dryRun: true, warn: (m) => warnings.push(m) }).length, 4);
      assert.equal(left().length, 8);
      assert.match(warnings.join('\n'), /x-bad\.jsonl/);
      assert.deepEqual(pruneJournals(join(data, 'journal'), { count: 0, maxAgeDays: 0 }, now), []);
      assert.equal(left().length, 8);
    });
  });

  describe('image prune (pruneImages)', () => {
    const keepAll = { count: 0, maxAgeDays: 0 };
    const images = (): string[] => readdirSync(join(data, 'store', 'images')).sort();

    it('removes only what no device runs, no unfinished campaign needs and no kept journal names', async () => {
      storeImage(data, manifestOf(SHA_A, 'fw', '1.0.0')); // dev-1 runs it
      storeImage(data, manifestOf(SHA_B, 'fw', '1.1.0')); // a waiting campaign needs it
      storeImage(data, manifestOf(SHA_C, 'fw', '1.2.0')); // an ended campaign's kept journal names it
      storeImage(data, manifestOf(SHA_D, 'fw', '0.9.0')); // nobody: removed
      writeFleet(data, [{ id: 'dev-1', hw: 'sensor-v1', version: '1.0.0' }, { id: 'dev-2', hw: 'other-hw', version: '0.9.0' }]);
      writeJournal(data, { id: 'c-wait', sha256: SHA_B, at: T0, records: [stateRec('waiting', T0)] });
      writeJournal(data, { id: 'c-old', sha256: SHA_C, at: T0, records: [complete('c-old')] });

      const dry = await pruneImages(data, keepAll, { dryRun: true });
      assert.deepEqual(dry.images.filter((e) => e.remove).map((e) => e.sha256), [SHA_D]);
      assert.equal(images().length, 8, 'a dry run removes nothing');

      const report = await pruneImages(data, keepAll, { dryRun: false });
      const why = Object.fromEntries(report.images.map((e) => [e.sha256, e.keptBecause]));
      assert.deepEqual(why[SHA_A], ['device dev-1 runs it']);
      assert.deepEqual(why[SHA_B], ['campaign c-wait (waiting) needs it']);
      assert.deepEqual(why[SHA_C], ['kept journal of campaign c-old (completed) names it']);
      assert.deepEqual(why[SHA_D], []);
      assert.equal(report.freedBytes, 16);
      assert.deepEqual(images(), [`${SHA_A}.bin`, `${SHA_A}.json`, `${SHA_B}.bin`, `${SHA_B}.json`, `${SHA_C}.bin`, `${SHA_C}.json`]);
    });

    it('a device runs an image under a version a campaign released the same bytes as (a new signed manifest)', async () => {
      storeImage(data, manifestOf(SHA_A, 'fw', '1.0.0'));
      storeImage(data, manifestOf(SHA_B, 'fw', '2.0.0'));
      writeFileSync(join(data, 'store', 'images', `${SHA_B}.m2.json`), JSON.stringify(manifestOf(SHA_B, 'fw', '2.0.1'))); // a second manifest kept beside it
      writeFleet(data, [{ id: 'dev-1', hw: 'sensor-v1', version: '1.0.1' }, { id: 'dev-2', hw: 'sensor-v1', version: '2.0.1' }]);
      writeJournal(data, { id: 'c-new', sha256: SHA_A, at: T0, manifest: manifestOf(SHA_A, 'fw', '1.0.1'), records: [complete('c-new')], mtime: T0 });
      const report = await pruneImages(data, { count: 0, maxAgeDays: 1 }, { dryRun: false, now: T0 + 10 * DAY });
      assert.deepEqual(report.journals.map((j) => j.id), ['c-new'], 'retention first: its journal goes');
      assert.deepEqual(report.images.map((e) => [e.sha256, e.keptBecause]), [[SHA_A, ['device dev-1 runs it']], [SHA_B, ['device dev-2 runs it']]]);
      assert.equal(images().length, 5);
    });

    it('journals that retention removes keep no image; an unreadable journal keeps every image', async () => {
      storeImage(data, manifestOf(SHA_A, 'fw', '1.0.0'));
      writeJournal(data, { id: 'c-1', sha256: SHA_A, at: T0, records: [complete('c-1')], mtime: T0 });
      writeJournal(data, { id: 'c-2', sha256: SHA_B, at: T0, records: [complete('c-2')], mtime: T0 + 1000 });
      writeFileSync(join(data, 'journal', 'c-3.jsonl'), 'torn');
      const blocked = await pruneImages(data, { count: 1, maxAgeDays: 0 }, { dryRun: true });
      assert.deepEqual(blocked.images.map((e) => e.keptBecause), [['a journal cannot be read (it might name it)']]);
      rmSync(join(data, 'journal', 'c-3.jsonl'));
      const report = await pruneImages(data, { count: 1, maxAgeDays: 0 }, { dryRun: false });
      assert.deepEqual(report.journals.map((j) => j.id), ['c-1']);
      assert.deepEqual(report.images.map((e) => [e.sha256, e.remove]), [[SHA_A, true]]);
      assert.deepEqual(images(), []);
    });
  });
});
