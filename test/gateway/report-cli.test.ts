import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runEntry, type EntryRun } from '../helpers/run-entry.ts';

/** `fwgate report` as a real process (it starts no gateway), bounded; times in UTC. */
function fwgate(args: string[], timeoutMs = 30_000): Promise<EntryRun> {
  return runEntry('gateway/cli.ts', args, { timeoutMs, env: { TZ: 'UTC' } });
}

const T = Date.UTC(2026, 10, 22, 1, 30, 0);
const FILE = {
  format: 1, savedAt: T,
  devices: [
    { id: 'dev-002', hw: 'sensor-v1', version: '1.1.0', lastCheckIn: T - 30_000, online: true,
      lastResult: { campaign: 'c-0a1b2c3d', outcome: 'rolled-back', code: 'self-test-failed', reason: 'device came back on 1.1.0', version: '1.2.0', at: T - 45_000 } },
    { id: 'dev-001', hw: 'sensor-v1', version: '1.2.0', floor: '1.0.0', lastCheckIn: T - 12_000, online: true,
      lastResult: { campaign: 'c-0a1b2c3d', outcome: 'updated', code: 'ok', version: '1.2.0', at: T - 60_000 } },
    { id: 'dev-009', hw: 'sensor-v2', version: '2.0.1', lastCheckIn: T - 86_400_000, online: false },
  ],
};

describe('fwgate report (reads <data>/fleet.json, starts no gateway)', function () {
  this.timeout(60_000);
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fwgate-report-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('prints a table sorted by device id, times in local time with their age', async () => {
    await writeFile(join(dir, 'fleet.json'), JSON.stringify(FILE));
    const { code, stdout, stderr } = await fwgate(['report', '--data', dir]);
    assert.equal(code, 0, stderr);
    const lines = stdout.trimEnd().split('\n');
    assert.match(lines[0]!, new RegExp(`^Fleet report from ${join(dir, 'fleet.json')}, saved 2026-11-22 01:30:00 \\(.+ ago\\): 3 devices`));
    const table = lines.slice(2);
    assert.match(table[0]!, /^device\s+hw\s+version\s+floor\s+online\s+last check-in\s+last result\s+code\s+image\s+result at\s+campaign$/);
    assert.deepEqual(table.slice(1).map((l) => l.split(/\s+/)[0]), ['dev-001', 'dev-002', 'dev-009']);
    assert.match(table[1]!, /^dev-001\s+sensor-v1\s+1\.2\.0\s+1\.0\.0\s+yes\s+2026-11-22 01:29:48 \(.+ ago\)\s+updated\s+ok\s+1\.2\.0\s+2026-11-22 01:29:00 \(.+ ago\)\s+c-0a1b2c3d$/);
    assert.match(table[2]!, /^dev-002\s+sensor-v1\s+1\.1\.0\s+-\s+yes\s+2026-11-22 01:29:30 .*rolled-back\s+self-test-failed\s+1\.2\.0\s+2026-11-22 01:29:15 /);
    assert.match(table[3]!, /^dev-009\s+sensor-v2\s+2\.0\.1\s+-\s+no\s+2026-11-21 01:30:00 \(.+ ago\)\s+-$/);
  });

  it('--json prints one object with the devices sorted by id (works with the data directory from --config)', async () => {
    await writeFile(join(dir, 'fleet.json'), JSON.stringify(FILE));
    await writeFile(join(dir, 'site.json'), JSON.stringify({ dataDir: dir }));
    const { code, stdout, stderr } = await fwgate(['--config', join(dir, 'site.json'), 'report', '--json']);
    assert.equal(code, 0, stderr);
    assert.equal(stdout.trimEnd().split('\n').length, 1, 'one line');
    const out = JSON.parse(stdout) as { file: string; savedAt: number; devices: { id: string }[] };
    assert.equal(out.file, join(dir, 'fleet.json'));
    assert.equal(out.savedAt, T);
    assert.deepEqual(out.devices, [FILE.devices[1], FILE.devices[0], FILE.devices[2]]);
  });

  it('exits 1 with a clear message when the data directory has no fleet file, or does not exist', async () => {
    const none = await fwgate(['report', '--data', dir]);
    assert.equal(none.code, 1);
    assert.equal(none.stdout, '');
    assert.match(none.stderr, new RegExp(`no fleet report in ${dir}: ${join(dir, 'fleet.json')} does not exist`));
    const missing = await fwgate(['report', '--data', join(dir, 'nope'), '--json']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /the data directory .*nope does not exist/);
  });

  it('exits 1 naming the problem for a corrupt file, and leaves it where it is (only the gateway sets it aside)', async () => {
    await writeFile(join(dir, 'fleet.json'), '{"format":1,"devi');
    const { code, stderr } = await fwgate(['report', '--data', dir]);
    assert.equal(code, 1);
    assert.match(stderr, /E_STORE_IO: fleet file .*fleet\.json is not JSON/);
    assert.deepEqual(await readdir(dir), ['fleet.json']);
  });
});
