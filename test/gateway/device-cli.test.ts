import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DeviceCredentials } from '../../gateway/device-auth.ts';
import { runEntry, type EntryRun } from '../helpers/run-entry.ts';

/** `fwgate device add` as a real process, bounded. */
function fwgate(args: string[], timeoutMs = 30_000): Promise<EntryRun> {
  return runEntry('gateway/cli.ts', args, { timeoutMs });
}

describe('fwgate device add', function () {
  this.timeout(60_000);
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fwgate-device-cli-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes scrypt hashes only (file 0600); --generate prints the password; a second add replaces the entry', async () => {
    const file = join(dir, 'devices.json');
    const gen = await fwgate(['device', 'add', 'dev-001', '--generate', '--devices', file]);
    assert.equal(gen.code, 0, gen.stderr);
    const password = gen.stdout.trim();
    assert.match(password, /^[A-Za-z0-9_-]{32}$/);
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    const set = await fwgate(['device', 'add', 'dev-002', '--password', 'pw-two', '--devices', file]);
    assert.equal(set.code, 0, set.stderr);
    assert.equal(set.stdout, '');
    const text = await readFile(file, 'utf8');
    assert.ok(!text.includes(password) && !text.includes('pw-two'));
    const creds = await DeviceCredentials.open(file);
    assert.equal(await creds.check('dev-001', password), 'ok');
    assert.equal(await creds.check('dev-002', 'pw-two'), 'ok');
    const again = await fwgate(['device', 'add', 'dev-002', '--password', 'pw-new', '--devices', file]);
    assert.match(again.stderr, /new password for dev-002/);
    const after = await DeviceCredentials.open(file);
    assert.equal(after.size, 2);
    assert.equal(await after.check('dev-002', 'pw-new'), 'ok');
    assert.equal(await after.check('dev-002', 'pw-two'), 'bad-password');
  });

  it('--group puts the device in groups (repeatable); a later add without --group keeps them, with --group replaces them; a bad name is a usage error', async () => {
    const file = join(dir, 'devices.json');
    const groupsOf = async (id: string): Promise<string[] | undefined> => (JSON.parse(await readFile(file, 'utf8')) as { id: string; groups?: string[] }[]).find((e) => e.id === id)?.groups;
    assert.equal((await fwgate(['device', 'add', 'dev-001', '--generate', '--group', 'north', '--group', 'pumps', '--devices', file])).code, 0);
    assert.deepEqual(await groupsOf('dev-001'), ['north', 'pumps']);
    assert.equal((await fwgate(['device', 'add', 'dev-001', '--password', 'x1', '--devices', file])).code, 0);
    assert.deepEqual(await groupsOf('dev-001'), ['north', 'pumps'], 'a new password keeps the groups');
    assert.equal((await fwgate(['device', 'add', 'dev-001', '--password', 'x2', '--group', 'south', '--devices', file])).code, 0);
    assert.deepEqual(await groupsOf('dev-001'), ['south']);
    const bad = await fwgate(['device', 'add', 'dev-001', '--password', 'x3', '--group', 'no spaces', '--devices', file]);
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /--group/);
    assert.deepEqual(await groupsOf('dev-001'), ['south'], 'unchanged');
  });

  it('usage errors exit 2 naming the problem', async () => {
    const file = join(dir, 'devices.json');
    for (const [args, pattern] of [
      [['device', 'add', 'dev-1', '--devices', file], /one of --password/],
      [['device', 'add', 'dev-1', '--generate', '--password', 'x', '--devices', file], /one of --password/],
      [['device', 'add', 'bad id', '--generate', '--devices', file], /not a valid device id/],
      [['device', 'add', 'dev-1', '--generate'], /no device list/],
    ] as const) {
      const r = await fwgate([...args]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, pattern);
    }
  });
});
