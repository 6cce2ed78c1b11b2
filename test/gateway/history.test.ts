import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { detailOf, ImageNames, listCampaigns, readJournal, showCampaign, type JournalStateExt } from '../../gateway/history.ts';
import { encodeRecord, type JournalRecord } from '../../gateway/rollout/journal.ts';
import { isFwError } from '../../protocol/errors.ts';
import type { ResultMessage } from '../../protocol/uplink.ts';
import { complete, manifestOf, order, result, SHA_A, SHA_B, SHA_C, stateRec, storeImage, T0, writeJournal } from './history-fixtures.ts';

const WINDOW_POLICY = { mode: 'window' as const, force: true, downgrade: false, expiresAt: T0 + 7 * 86_400_000 };

describe('campaign history (gateway/history.ts: reads the journals, writes nothing)', () => {
  let data: string;
  beforeEach(() => { data = mkdtempSync(join(tmpdir(), 'fwgate-history-')); });
  afterEach(() => rmSync(data, { recursive: true, force: true }));

  const one = (id: string) => {
    const c = listCampaigns(data).find((x) => x.id === id);
    assert.ok(c, `campaign ${id} listed`);
    return c;
  };

  describe('state', () => {
    it('a journal with only its campaign record is queued; with an order, running; neither has ended', () => {
      writeJournal(data, { id: 'c-q', sha256: SHA_A, at: T0, policy: WINDOW_POLICY });
      writeJournal(data, { id: 'c-r', sha256: SHA_A, at: T0 + 1, records: [{ r: 'order', order: order('c-r', SHA_A, '1.1.0', ['d1']) }] });
      assert.equal(one('c-q').state, 'queued');
      assert.equal(one('c-q').ended, null);
      assert.equal(one('c-q').policy, 'window');
      assert.equal(one('c-q').expiresAt, WINDOW_POLICY.expiresAt);
      assert.equal(one('c-r').state, 'running');
      assert.equal(one('c-r').ended, null);
      assert.equal(one('c-r').policy, 'now', 'journals written before policies existed are now campaigns');
    });

    it('a completion without a state record: completed, or halted when it says so (with its reason); ended = the journal\'s last write', () => {
      const end = T0 + 3_600_000;
      writeJournal(data, { id: 'c-done', sha256: SHA_A, at: T0, records: [{ r: 'order', order: order('c-done', SHA_A, '1.1.0', []) }, complete('c-done')], mtime: end });
      writeJournal(data, { id: 'c-halt', sha256: SHA_A, at: T0, records: [complete('c-halt', true)], mtime: end + 1000 });
      assert.equal(one('c-done').state, 'completed');
      assert.equal(one('c-done').ended, end);
      assert.equal(one('c-done').stateReason, null);
      assert.equal(one('c-halt').state, 'halted');
      assert.equal(one('c-halt').ended, end + 1000);
      assert.equal(one('c-halt').stateReason, '2 of 3 finished devices rolled back');
    });

    it('the latest state record is the state, whatever else the journal holds; an ended one gives `ended` and its reason', () => {
      writeJournal(data, {
        id: 'c-wait', sha256: SHA_A, at: T0,
        records: [stateRec('running', T0 + 1), { r: 'order', order: order('c-wait', SHA_A, '1.1.0', ['d1']) }, stateRec('waiting', T0 + 2)],
      });
      writeJournal(data, { id: 'c-paused', sha256: SHA_A, at: T0, records: [stateRec('running', T0 + 1), stateRec('paused', T0 + 5)] });
      writeJournal(data, {
        id: 'c-cancel', sha256: SHA_A, at: T0, mtime: T0 + 999_999,
        records: [{ r: 'order', order: order('c-cancel', SHA_A, '1.1.0', ['d1']) }, stateRec('cancelled', T0 + 60_000, 'fwpush cancel'), complete('c-cancel')],
      });
      writeJournal(data, { id: 'c-exp', sha256: SHA_A, at: T0, records: [stateRec('waiting', T0 + 1), stateRec('expired', T0 + 86_400_000, 'rollout.campaignExpiryMs passed')] });
      assert.equal(one('c-wait').state, 'waiting');
      assert.equal(one('c-wait').ended, null);
      assert.equal(one('c-paused').state, 'paused');
      assert.equal(one('c-cancel').state, 'cancelled', 'the state record wins over the completion');
      assert.equal(one('c-cancel').ended, T0 + 60_000);
      assert.equal(one('c-cancel').stateReason, 'fwpush cancel');
      assert.equal(one('c-exp').state, 'expired');
      assert.equal(one('c-exp').ended, T0 + 86_400_000);
    });
  });

  describe('counts and devices', () => {
    it('counts each outcome; targets in the order without a result are pending', () => {
      writeJournal(data, {
        id: 'c-1', sha256: SHA_A, at: T0,
        records: [
          { r: 'order', order: order('c-1', SHA_A, '1.1.0', ['d1', 'd2', 'd3', 'd4', 'd5', 'd6'], [{ id: 'd7', code: 'not-newer', version: '1.1.0' }]) },
          { r: 'result', result: result('c-1', 'd7', 'skipped', 'not-newer') },
          { r: 'result', result: result('c-1', 'd1', 'updated', 'ok', { retries: 2 }) },
          { r: 'result', result: result('c-1', 'd2', 'failed', 'integrity-failure', { reason: 'sha256 mismatch' }) },
          { r: 'result', result: result('c-1', 'd3', 'rolled-back', 'self-test-failed') },
          { r: 'result', result: result('c-1', 'd4', 'skipped', 'busy', { retries: 2, durationMs: 0 }) },
          { r: 'held', id: 'd5', bytes: 4096 },
        ],
      });
      const c = one('c-1');
      assert.deepEqual(c.counts, { updated: 1, failed: 1, rolledBack: 1, skipped: 2, pending: 2, cancelled: 0, superseded: 0, expired: 0 });
      const d = showCampaign(data, 'c-1');
      assert.deepEqual(d.devices.map((r) => [r.id, r.outcome, r.rank, r.attempts]), [
        ['d1', 'updated', 1, 3], // retries + 1
        ['d2', 'failed', 2, 1],
        ['d3', 'rolled-back', 3, 1],
        ['d4', 'skipped', 4, 3], // offered three times, deferred as busy
        ['d5', 'pending', 5, 1], // it holds part of the image: offered
        ['d6', 'pending', 6, 0],
        ['d7', 'skipped', null, 0], // excluded: never offered
      ]);
      const d2 = d.devices[1]!;
      assert.deepEqual(
        { code: d2.code, reason: d2.reason, from: d2.from, to: d2.to, durationMs: d2.durationMs, excluded: d2.excluded },
        { code: 'integrity-failure', reason: 'sha256 mismatch', from: '1.0.0', to: '1.1.0', durationMs: 4000, excluded: false },
      );
      assert.equal(d.devices[6]!.excluded, true);
      assert.deepEqual({ code: d.devices[5]!.code, durationMs: d.devices[5]!.durationMs, from: d.devices[5]!.from, to: d.devices[5]!.to }, { code: null, durationMs: null, from: '1.0.0', to: null });
      assert.deepEqual(d.order, { ranked: 6, excluded: 1, excludedMore: 0 });
    });

    it('targets fixed at creation (campaign record) are pending before any order, and the image comes from its manifest', () => {
      writeJournal(data, { id: 'c-t', sha256: SHA_A, at: T0, policy: WINDOW_POLICY, manifest: manifestOf(SHA_A, 'sensor-fw', '2.0.0'), targets: ['d1', 'd2', 'd3'] });
      const c = one('c-t');
      assert.equal(c.state, 'queued');
      assert.deepEqual(c.counts, { updated: 0, failed: 0, rolledBack: 0, skipped: 0, pending: 3, cancelled: 0, superseded: 0, expired: 0 });
      assert.deepEqual(c.image, { name: 'sensor-fw', version: '2.0.0', sha256: SHA_A });
      assert.deepEqual(showCampaign(data, 'c-t').targets, ['d1', 'd2', 'd3']);
    });

    it('counts cancelled, superseded and expired results (the outcomes the lifecycle adds)', () => {
      writeJournal(data, { id: 'c-n', sha256: SHA_A, at: T0, records: [{ r: 'order', order: order('c-n', SHA_A, '1.1.0', ['d1', 'd2', 'd3', 'd4', 'd5']) }] });
      const j = readJournal(join(data, 'journal', 'c-n.jsonl'));
      const state: JournalStateExt = { ...j.state, results: new Map(j.state.results) };
      const add = (id: string, outcome: string, code: ResultMessage['code']): void => {
        state.results.set(id, { ...result('c-n', id, 'skipped', code), outcome: outcome as ResultMessage['outcome'], durationMs: 0 });
      };
      add('d1', 'cancelled', 'cancelled');
      add('d2', 'superseded', 'cancelled');
      add('d3', 'expired', 'offline');
      add('d4', 'cancelled', 'cancelled');
      const d = detailOf({ ...j, state }, new ImageNames(data));
      assert.deepEqual(d.counts, { updated: 0, failed: 0, rolledBack: 0, skipped: 0, pending: 1, cancelled: 2, superseded: 1, expired: 1 });
      assert.deepEqual(d.devices.map((r) => [r.id, r.outcome, r.attempts]), [['d1', 'cancelled', 0], ['d2', 'superseded', 0], ['d3', 'expired', 0], ['d4', 'cancelled', 0], ['d5', 'pending', 0]]);
    });
  });

  describe('image name and version', () => {
    it('from the campaign\'s manifest, else its order, else the stored image\'s manifest, else "?"', () => {
      storeImage(data, manifestOf(SHA_A, 'stored-fw', '0.9.0'));
      storeImage(data, manifestOf(SHA_C, 'stored-c', '3.0.0'));
      writeJournal(data, { id: 'c-m', sha256: SHA_A, at: T0, manifest: manifestOf(SHA_A, 'signed-fw', '1.2.0'), records: [{ r: 'order', order: order('c-m', SHA_A, '1.1.0', []) }] });
      writeJournal(data, { id: 'c-o', sha256: SHA_A, at: T0 + 1, records: [{ r: 'order', order: order('c-o', SHA_A, '1.1.0', []) }] });
      writeJournal(data, { id: 'c-s', sha256: SHA_C, at: T0 + 2 });
      writeJournal(data, { id: 'c-x', sha256: SHA_B, at: T0 + 3 });
      assert.deepEqual(listCampaigns(data).map((c) => [c.id, c.image.name, c.image.version]), [
        ['c-m', 'signed-fw', '1.2.0'], ['c-o', 'sensor-fw', '1.1.0'], ['c-s', 'stored-c', '3.0.0'], ['c-x', '?', '?'],
      ]);
    });

    it('a manifest on the campaign record for other bytes is ignored', () => {
      writeJournal(data, { id: 'c-m', sha256: SHA_A, at: T0, manifest: manifestOf(SHA_B, 'other', '9.9.9') });
      assert.deepEqual(one('c-m').image, { name: '?', version: '?', sha256: SHA_A });
    });
  });

  describe('reading', () => {
    it('lists oldest first; no journal directory is no campaign', () => {
      assert.deepEqual(listCampaigns(data), []);
      writeJournal(data, { id: 'c-b', sha256: SHA_A, at: T0 + 5 });
      writeJournal(data, { id: 'c-a', sha256: SHA_A, at: T0 + 9 });
      writeJournal(data, { id: 'c-c', sha256: SHA_A, at: T0 });
      assert.deepEqual(listCampaigns(data).map((c) => c.id), ['c-c', 'c-b', 'c-a']);
    });

    it('a record it does not know in the middle is skipped (what verifies after it counts, docs/reliability.md); one at the end is a torn tail', () => {
      const path = writeJournal(data, { id: 'c-1', sha256: SHA_A, at: T0, records: [{ r: 'order', order: order('c-1', SHA_A, '1.1.0', ['d1', 'd2']) }, { r: 'result', result: result('c-1', 'd1', 'updated', 'ok') }] });
      appendFileSync(path, encodeRecord({ r: 'nonsense', n: 2 } as unknown as JournalRecord));
      appendFileSync(path, encodeRecord({ r: 'result', result: result('c-1', 'd2', 'updated', 'ok') }));
      const d = showCampaign(data, 'c-1');
      assert.equal(d.counts.updated, 2);
      assert.equal(d.counts.pending, 0);
      appendFileSync(path, encodeRecord({ r: 'nonsense', n: 3 } as unknown as JournalRecord).slice(0, 20));
      assert.ok(showCampaign(data, 'c-1').tornBytes > 0, 'a torn last line');
    });

    it('a journal that cannot be read is left out of the list and named in a warning; show exits on it naming the file', () => {
      writeJournal(data, { id: 'c-ok', sha256: SHA_A, at: T0 });
      writeFileSync(join(data, 'journal', 'c-bad.jsonl'), encodeRecord({ r: 'held', id: 'd1', bytes: 1 }));
      writeFileSync(join(data, 'journal', 'c-new.jsonl'), ''); // being created by a gateway: left out without a word
      const warnings: string[] = [];
      assert.deepEqual(listCampaigns(data, (m) => warnings.push(m)).map((c) => c.id), ['c-ok']);
      assert.match(warnings.join('\n'), /E_JOURNAL: .*c-bad\.jsonl: first record is "held"/);
      assert.equal(warnings.length, 1);
      assert.throws(() => showCampaign(data, 'c-bad'), (err) => isFwError(err, 'E_JOURNAL') && /c-bad\.jsonl/.test(err.message));
    });

    it('an unknown id is a usage error naming the id and the journal directory; a path is no id', () => {
      mkdirSync(join(data, 'journal'));
      assert.throws(() => showCampaign(data, 'c-nope'), (err) => isFwError(err, 'E_USAGE') && err.message.includes('c-nope') && err.message.includes(join(data, 'journal')));
      assert.throws(() => showCampaign(data, '../fleet'), (err) => isFwError(err, 'E_USAGE'));
    });
  });
});
