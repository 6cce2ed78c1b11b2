import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTs, type Proc } from '../../scripts/lib/processes.ts';
import { runEntry, type EntryRun } from '../helpers/run-entry.ts';
import { complete, manifestOf, order, result, SHA_A, SHA_B, SHA_C, stateRec, storeImage, T0, writeFleet, writeJournal } from './history-fixtures.ts';

/** `fwgate <args>` as a real process (it starts no gateway), bounded; times in UTC. */
function fwgate(args: string[]): Promise<EntryRun> {
  return runEntry('gateway/cli.ts', args, { timeoutMs: 30_000, env: { TZ: 'UTC' } });
}

const SUMMARY_KEYS = ['id', 'image', 'policy', 'state', 'stateReason', 'created', 'ended', 'expiresAt', 'counts', 'file'];
const COUNT_KEYS = ['updated', 'failed', 'rolledBack', 'skipped', 'pending', 'cancelled', 'superseded', 'expired'];

/**
 * sensor-fw 1.0.0 (A): what d2 runs, named by an ended campaign; 1.1.0 (B): a campaign waits for d2;
 * 0.9.0 (C): nobody. (The images' bytes are not their manifests': a gateway started on this would
 * quarantine them.)
 */
function fixture(data: string): void {
  storeImage(data, manifestOf(SHA_A, 'sensor-fw', '1.0.0'));
  storeImage(data, manifestOf(SHA_B, 'sensor-fw', '1.1.0'));
  storeImage(data, manifestOf(SHA_C, 'sensor-fw', '0.9.0'));
  writeFleet(data, [{ id: 'd1', hw: 'sensor-v1', version: '1.1.0' }, { id: 'd2', hw: 'sensor-v1', version: '1.0.0' }]);
  writeJournal(data, { id: 'c-old', sha256: SHA_A, at: T0 - 3_600_000, records: [{ r: 'order', order: order('c-old', SHA_A, '1.0.0', ['d1', 'd2']) }, { r: 'result', result: result('c-old', 'd1', 'updated', 'ok') }, { r: 'result', result: result('c-old', 'd2', 'rolled-back', 'self-test-failed') }, complete('c-old', true)], mtime: T0 - 60_000 });
  writeJournal(data, {
    id: 'c-new', sha256: SHA_B, at: T0, policy: { mode: 'window', force: false, downgrade: false, expiresAt: T0 + 86_400_000 },
    records: [{ r: 'order', order: order('c-new', SHA_B, '1.1.0', ['d1', 'd2']) }, { r: 'result', result: result('c-new', 'd1', 'updated', 'ok', { retries: 1, durationMs: 2500 }) }, stateRec('waiting', T0 + 5000)],
  });
}

describe('fwgate campaigns / campaign show / images / images prune (real processes over a data directory)', function () {
  this.timeout(120_000);
  let data: string;
  let gateway: Proc | undefined;
  beforeEach(() => {
    data = mkdtempSync(join(tmpdir(), 'fwgate-history-cli-'));
  });
  afterEach(async () => {
    await gateway?.stop(5000);
    gateway = undefined;
    rmSync(data, { recursive: true, force: true });
  });

  it('campaigns --json prints one JSON array, oldest first, with every documented key; the table shows the same', async () => {
    fixture(data);
    const { code, stdout, stderr } = await fwgate(['campaigns', '--data', data, '--json']);
    assert.equal(code, 0, stderr);
    assert.equal(stdout.trimEnd().split('\n').length, 1, 'one line');
    const list = JSON.parse(stdout) as Record<string, unknown>[];
    assert.ok(Array.isArray(list));
    for (const c of list) {
      assert.deepEqual(Object.keys(c), SUMMARY_KEYS);
      assert.deepEqual(Object.keys(c.counts as object), COUNT_KEYS);
    }
    assert.deepEqual(list[0], {
      id: 'c-old', image: { name: 'sensor-fw', version: '1.0.0', sha256: SHA_A }, policy: 'now', state: 'halted', stateReason: '2 of 3 finished devices rolled back',
      created: T0 - 3_600_000, ended: T0 - 60_000, expiresAt: null,
      counts: { updated: 1, failed: 0, rolledBack: 1, skipped: 0, pending: 0, cancelled: 0, superseded: 0, expired: 0 }, file: join(data, 'journal', 'c-old.jsonl'),
    });
    assert.deepEqual([list[1]!.id, list[1]!.policy, list[1]!.state, list[1]!.ended, list[1]!.expiresAt, list[1]!.counts], ['c-new', 'window', 'waiting', null, T0 + 86_400_000, { updated: 1, failed: 0, rolledBack: 0, skipped: 0, pending: 1, cancelled: 0, superseded: 0, expired: 0 }]);

    const table = await fwgate(['campaigns', '--data', data]);
    assert.equal(table.code, 0, table.stderr);
    const lines = table.stdout.trimEnd().split('\n');
    assert.match(lines[0]!, new RegExp(`^2 campaigns in ${data}`));
    assert.match(lines[2]!, /^campaign\s+image\s+policy\s+state\s+created\s+ended\s+results$/);
    assert.match(lines[3]!, /^c-old\s+sensor-fw 1\.0\.0\s+now\s+halted\s+2026-11-22 00:00:00\s+2026-11-22 00:59:00\s+1 updated, 1 rolled back$/);
    assert.match(lines[4]!, /^c-new\s+sensor-fw 1\.1\.0\s+window\s+waiting\s+2026-11-22 01:00:00\s+-\s+1 updated, 1 pending$/);
  });

  it('campaign show: per-device rows (--json and table); exit 2 naming the id and the journal directory when unknown; exit 1 naming an unreadable journal', async () => {
    fixture(data);
    const { code, stdout, stderr } = await fwgate(['campaign', 'show', 'c-new', '--data', data, '--json']);
    assert.equal(code, 0, stderr);
    const d = JSON.parse(stdout) as { devices: Record<string, unknown>[]; order: unknown; state: string };
    assert.equal(d.state, 'waiting');
    assert.deepEqual(d.order, { ranked: 2, excluded: 0, excludedMore: 0 });
    assert.deepEqual(d.devices, [
      { id: 'd1', outcome: 'updated', code: 'ok', reason: null, from: '1.0.0', to: '1.1.0', attempts: 2, durationMs: 2500, rank: 1, excluded: false, activating: false },
      { id: 'd2', outcome: 'pending', code: null, reason: null, from: '1.0.0', to: null, attempts: 0, durationMs: null, rank: 2, excluded: false, activating: false },
    ]);

    const table = await fwgate(['--data', data, 'campaign', 'show', 'c-old']);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^Campaign c-old: sensor-fw 1\.0\.0 \(sha256 a{64}\)\npolicy now; state halted \(2 of 3 finished devices rolled back\)\n/);
    assert.match(table.stdout, /\n2\s+d2\s+rolled-back\s+self-test-failed\s+1\.0\.0\s+1\.1\.0\s+1\s+4\.0 s\n/);

    const unknown = await fwgate(['campaign', 'show', 'c-nope', '--data', data, '--json']);
    assert.equal(unknown.code, 2);
    assert.equal(unknown.stdout, '');
    assert.match(unknown.stderr, new RegExp(`no campaign c-nope: no journal c-nope\\.jsonl in ${join(data, 'journal')}`));

    writeFileSync(join(data, 'journal', 'c-bad.jsonl'), 'garbage\n');
    const bad = await fwgate(['campaign', 'show', 'c-bad', '--data', data]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, new RegExp(`E_JOURNAL: ${join(data, 'journal', 'c-bad.jsonl')}: no campaign record`));
  });

  it('images --json lists each image with the devices that run it and the campaigns that name it', async () => {
    fixture(data);
    const { code, stdout, stderr } = await fwgate(['images', '--data', data, '--json']);
    assert.equal(code, 0, stderr);
    const list = JSON.parse(stdout) as { sha256: string; name: string; version: string; hw: string[]; size: number; storedAt: string; devices: string[]; campaigns: unknown[] }[];
    const by = new Map(list.map((i) => [i.sha256, i]));
    assert.deepEqual([...by.keys()].sort(), [SHA_A, SHA_B, SHA_C]);
    assert.deepEqual(by.get(SHA_A)!.devices, ['d2']);
    assert.deepEqual(by.get(SHA_A)!.campaigns, [{ id: 'c-old', state: 'halted', ended: true }]);
    assert.deepEqual(by.get(SHA_B)!.devices, ['d1']);
    assert.deepEqual(by.get(SHA_B)!.campaigns, [{ id: 'c-new', state: 'waiting', ended: false }]);
    assert.deepEqual([by.get(SHA_C)!.devices, by.get(SHA_C)!.campaigns], [[], []]);
    assert.deepEqual([by.get(SHA_C)!.name, by.get(SHA_C)!.version, by.get(SHA_C)!.hw, by.get(SHA_C)!.size], ['sensor-fw', '0.9.0', ['sensor-v1'], 16]);
    assert.ok(!Number.isNaN(Date.parse(by.get(SHA_C)!.storedAt)));
  });

  it('works while a gateway runs on the data directory; prune is refused then, and removes only the unused image once it has stopped', async () => {
    gateway = startTs('fwgate', 'gateway/cli.ts', ['--data', data, '--port', '0', '--allow-unsigned', '--log-level', 'warn']);
    await gateway.waitForLine(/^fwgate ready/, 60_000);
    fixture(data); // after its start-up, which would quarantine the fixture's images and close c-new (its image gone)

    const list = await fwgate(['campaigns', '--data', data, '--json']);
    assert.equal(list.code, 0, list.stderr);
    assert.deepEqual((JSON.parse(list.stdout) as { id: string }[]).map((c) => c.id), ['c-old', 'c-new']);
    const refused = await fwgate(['images', 'prune', '--data', data]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, new RegExp(`images prune refused: the data directory ${data} is in use by fwgate gateway \\(pid ${gateway.child.pid}`));
    assert.equal(readdirSync(join(data, 'store', 'images')).length, 6, 'nothing removed');

    assert.equal(await gateway.stop(5000), 0);
    gateway = undefined;
    assert.equal(existsSync(join(data, 'fwgate.pid')), false, 'a clean stop removes the pid file');
    const pruned = await fwgate(['images', 'prune', '--data', data, '--json']);
    assert.equal(pruned.code, 0, pruned.stderr);
    const report = JSON.parse(pruned.stdout) as { dryRun: boolean; images: { sha256: string; remove: boolean }[]; freedBytes: number };
    assert.equal(report.dryRun, false);
    assert.deepEqual(report.images.filter((i) => i.remove).map((i) => i.sha256), [SHA_C]);
    assert.deepEqual(readdirSync(join(data, 'store', 'images')).sort(), [`${SHA_A}.bin`, `${SHA_A}.json`, `${SHA_B}.bin`, `${SHA_B}.json`]);
    assert.equal(existsSync(join(data, 'fwgate.pid')), false, 'prune releases the data directory');
  });
});
