import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ScryptLimiter } from '../../gateway/auth-guard.ts';
import { DeviceCredentials, generatePassword, setDevicePassword } from '../../gateway/device-auth.ts';
import { LoginCache, MIN_PERSISTED_PASSWORD } from '../../gateway/login-cache.ts';
import { TEST_SCRYPT } from '../helpers/devices.ts';

/**
 * Verified logins across a restart (gateway/login-cache.ts, docs/security.md "Reconnect storms"):
 * a device whose password was verified once reconnects after a restart without a scrypt run;
 * a wrong password, a changed entry or a short password still take scrypt. Scrypt runs are counted
 * by the limiter every check goes through.
 */
describe('verified logins kept across a restart (login-cache.ts)', () => {
  let dir: string;
  /** Every credentials object a test opened: closed (pending writes done) before the folder goes. */
  let opened: DeviceCredentials[] = [];
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fwgate-logins-'));
  });
  afterEach(async () => {
    for (const c of opened) await c.close();
    opened = [];
    await rm(dir, { recursive: true, force: true });
  });

  /** A "gateway run": the device list and the login cache opened, as broker-setup.ts does. */
  async function run(logs: string[] = []): Promise<{ creds: DeviceCredentials; limiter: ScryptLimiter; cache: LoginCache }> {
    const limiter = new ScryptLimiter(1, 8);
    const cache = await LoginCache.open(join(dir, 'verified-logins.json'), { log: (l) => logs.push(l), saveDelayMs: 10 });
    const creds = await DeviceCredentials.open(join(dir, 'devices.json'), { limiter, logins: cache });
    opened.push(creds);
    return { creds, limiter, cache };
  }

  it('a device verified once logs in after a restart without scrypt; a wrong password still runs it and fails', async () => {
    const pw = generatePassword();
    await setDevicePassword(join(dir, 'devices.json'), 'dev-1', pw, TEST_SCRYPT);
    const first = await run();
    assert.equal(await first.creds.check('dev-1', pw), 'ok');
    assert.equal(first.limiter.runs, 1, 'the first login runs scrypt');
    await first.creds.close(); // the broker's close writes what is pending
    assert.equal((await stat(join(dir, 'verified-logins.json'))).mode & 0o777, 0o600, 'owner-only');
    assert.doesNotMatch(await readFile(join(dir, 'verified-logins.json'), 'utf8'), new RegExp(pw), 'the password itself is never written');

    const second = await run();
    assert.equal(await second.creds.check('dev-1', pw), 'ok');
    assert.equal(second.limiter.runs, 0, 'after the restart: no scrypt');
    assert.equal(await second.creds.check('dev-1', `${pw}x`), 'bad-password');
    assert.equal(second.limiter.runs, 1, 'a wrong password is checked with scrypt');
  });

  it('a changed password (new list entry) forgets the kept login; a short password is never kept', async () => {
    const path = join(dir, 'devices.json');
    const pw = generatePassword();
    await setDevicePassword(path, 'dev-1', pw, TEST_SCRYPT);
    const short = 'x'.repeat(MIN_PERSISTED_PASSWORD - 1);
    await setDevicePassword(path, 'dev-2', short, TEST_SCRYPT);
    const first = await run();
    assert.equal(await first.creds.check('dev-1', pw), 'ok');
    assert.equal(await first.creds.check('dev-2', short), 'ok');
    await first.creds.close();
    assert.equal(first.cache.size, 1, 'only the long password is kept');
    await setDevicePassword(path, 'dev-1', pw, TEST_SCRYPT); // same password, a new salt: a new entry
    const second = await run();
    assert.equal(await second.creds.check('dev-1', pw), 'ok');
    assert.equal(await second.creds.check('dev-2', short), 'ok');
    assert.equal(second.limiter.runs, 2, 'both checked with scrypt again');
  });

  it('an invalid or unreadable file is reported and ignored: logins are checked with scrypt, then kept again', async () => {
    const pw = generatePassword();
    await setDevicePassword(join(dir, 'devices.json'), 'dev-1', pw, TEST_SCRYPT);
    await writeFile(join(dir, 'verified-logins.json'), '{"format":1,"logins":{"dev-1":{"entry":"nope"}}}');
    const logs: string[] = [];
    const r = await run(logs);
    assert.match(logs.join('\n'), /verified logins .* is not a valid file; ignored/);
    assert.equal(await r.creds.check('dev-1', pw), 'ok');
    assert.equal(r.limiter.runs, 1);
    await r.creds.close();
    const again = await run();
    assert.equal(await again.creds.check('dev-1', pw), 'ok');
    assert.equal(again.limiter.runs, 0, 'the file was rewritten valid');
  });
});
