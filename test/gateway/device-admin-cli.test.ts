import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { authenticateClient, NOT_AUTHORIZED } from '../../gateway/broker-access.ts';
import { DeviceCredentials, setDevicePassword } from '../../gateway/device-auth.ts';

/** The least scrypt cost the file accepts: the test is about the list, not the hash. */
const FAST = { ln: 10, r: 8, p: 1 };
import { runEntry, type EntryRun } from '../helpers/run-entry.ts';

function fwgate(args: string[]): Promise<EntryRun> {
  return runEntry('gateway/cli.ts', args, { timeoutMs: 30_000 });
}

describe('fwgate device list / remove / disable / enable', function () {
  this.timeout(90_000);
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fwgate-device-admin-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('a disabled device is refused at CONNECT whatever it presents, and stays listed; enable and remove', async () => {
    const file = join(dir, 'devices.json');
    for (const id of ['dev-001', 'dev-002']) await setDevicePassword(file, id, `pw-${id}`, FAST);
    const off = await fwgate(['device', 'disable', 'dev-002', '--devices', file]);
    assert.equal(off.code, 0, off.stderr);
    assert.match(off.stderr, /dev-002 disabled/);

    const creds = await DeviceCredentials.open(file);
    assert.equal(await creds.check('dev-002', 'pw-dev-002'), 'disabled');
    assert.equal(await creds.check('dev-001', 'pw-dev-001'), 'ok');
    const access = { requireAuth: true, credentials: creds };
    for (const who of [
      { clientId: 'dev-002', username: 'dev-002', password: Buffer.from('pw-dev-002'), certificateCn: undefined },
      { clientId: 'dev-002', username: undefined, password: undefined, certificateCn: 'dev-002' },
    ]) assert.deepEqual(await authenticateClient(access, who), { ok: false, returnCode: NOT_AUTHORIZED, reason: 'disabled' });

    const [list, table] = await Promise.all([
      fwgate(['device', 'list', '--json', '--devices', file, '--data', join(dir, 'data')]),
      fwgate(['device', 'list', '--devices', file, '--data', join(dir, 'data')]),
    ]);
    assert.equal(list.code, 0, list.stderr);
    assert.deepEqual((JSON.parse(list.stdout) as { devices: unknown[] }).devices, [
      { id: 'dev-001', listed: true, disabled: false }, { id: 'dev-002', listed: true, disabled: true },
    ]);
    assert.match(table.stdout, /^dev-002 +yes +DISABLED/m);

    // a new password keeps it disabled; enable lets it in again
    await setDevicePassword(file, 'dev-002', 'pw-new', FAST);
    assert.equal(await (await DeviceCredentials.open(file)).check('dev-002', 'pw-new'), 'disabled');
    assert.equal((await fwgate(['device', 'enable', 'dev-002', '--devices', file])).code, 0);
    assert.equal(await (await DeviceCredentials.open(file)).check('dev-002', 'pw-new'), 'ok');

    assert.equal((await fwgate(['device', 'remove', 'dev-001', '--devices', file])).code, 0);
    assert.deepEqual((JSON.parse(await readFile(file, 'utf8')) as { id: string }[]).map((e) => e.id), ['dev-002']);
    const unknown = await fwgate(['device', 'remove', 'dev-009', '--devices', file]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /dev-009 is not in the device list/);
  });
});
