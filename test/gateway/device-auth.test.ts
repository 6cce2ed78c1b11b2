import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ScryptLimiter } from '../../gateway/auth-guard.ts';
import {
  checkPassword, DeviceCredentials, generatePassword, hashPassword, readDevicesFile, setDevicePassword, writeDevicesFile,
} from '../../gateway/device-auth.ts';
import { upTopicSender } from '../../gateway/up-topic.ts';
import { isFwError } from '../../protocol/errors.ts';
import { TEST_SCRYPT } from '../helpers/devices.ts';

/** The device list and password checks at their edges (docs/operations.md "Device credentials"). */
describe('gateway/device-auth: the device list and its checks', function () {
  this.timeout(30_000);
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fwgate-devauth-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('PHC strings: the cost is bounded (ln 10..20, r 1..32, p 1..16), the form exact', async () => {
    const phc = await hashPassword('pw', TEST_SCRYPT);
    assert.match(phc, /^\$scrypt\$ln=10,r=8,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/, 'base64 without padding');
    const [, , , salt, key] = phc.split('$');
    const with_ = (params: string): string => `$scrypt$${params}$${salt}$${key}`;
    for (const p of ['ln=9,r=8,p=1', 'ln=21,r=8,p=1', 'ln=10,r=0,p=1', 'ln=10,r=33,p=1', 'ln=10,r=8,p=0', 'ln=10,r=8,p=17', 'ln=100,r=8,p=1', 'ln=10,r=100,p=1', 'ln=10,r=8,p=100']) {
      assert.equal(await checkPassword('pw', with_(p)), false, p);
    }
    assert.equal(await checkPassword('pw', `x${phc}`), false, 'anchored at the start');
    assert.equal(await checkPassword('pw', `${phc}x`), false, 'anchored at the end');
    assert.equal(await checkPassword('pw', with_('ln=10,r=8,p=1')), true);
    const big = await hashPassword('pw', { ln: 10, r: 16, p: 10 });
    assert.equal(await checkPassword('pw', big), true, 'r and p of two digits, maxmem sized from N and r');
    assert.equal(await checkPassword('pw', await hashPassword('pw', { ln: 12, r: 8, p: 1 })), true);
    assert.match(generatePassword(), /^[A-Za-z0-9_-]{32}$/);
  });

  it('reading a list: missing file, bad JSON, a bad entry, a repeated id — each E_CONFIG naming it', async () => {
    const path = join(dir, 'd.json');
    const refused = async (re: RegExp): Promise<void> => {
      await assert.rejects(readDevicesFile(path), (e: unknown) => isFwError(e, 'E_CONFIG') && re.test(e.message));
    };
    await refused(/^cannot read device list .*d\.json/);
    await writeFile(path, '{');
    await refused(/^device list .*d\.json is not valid JSON/);
    const phc = await hashPassword('pw', TEST_SCRYPT);
    await writeFile(path, JSON.stringify([{ id: 'a b', scrypt: phc }]));
    await refused(/0\.id: must be a valid device id/);
    await writeFile(path, JSON.stringify([{ id: 'a', scrypt: 'plain' }]));
    await refused(/0\.scrypt: must be "\$scrypt\$ln=/);
    await writeFile(path, JSON.stringify([{ id: 'a', scrypt: phc }, { id: 'a', scrypt: phc }]));
    await refused(/1\.id: device a is listed twice/);
    await writeFile(path, JSON.stringify([{ id: 'a', scrypt: phc, extra: 1 }]));
    await refused(/device list/);
    await assert.rejects(DeviceCredentials.open(join(dir, 'none.json')), (e: unknown) => isFwError(e, 'E_CONFIG'));
  });

  it('writing: owner-only file; setDevicePassword adds then replaces, and refuses a bad id', async () => {
    const path = join(dir, 'd.json');
    assert.equal(await setDevicePassword(path, 'dev-1', 'one', TEST_SCRYPT), 'added');
    assert.equal(await setDevicePassword(path, 'dev-2', 'two', TEST_SCRYPT), 'added');
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    const before = await readDevicesFile(path);
    assert.equal(await setDevicePassword(path, 'dev-1', 'uno', TEST_SCRYPT), 'replaced');
    const after = await readDevicesFile(path);
    assert.deepEqual(after.map((e) => e.id), ['dev-1', 'dev-2'], 'replaced in place, the other kept');
    assert.notEqual(after[0]!.scrypt, before[0]!.scrypt);
    assert.equal(after[1]!.scrypt, before[1]!.scrypt);
    assert.equal(await checkPassword('uno', after[0]!.scrypt), true);
    await assert.rejects(setDevicePassword(path, '+', 'x', TEST_SCRYPT), (e: unknown) => isFwError(e, 'E_USAGE') && /"\+" is not a valid device id/.test(e.message));
    await writeFile(path, '{');
    await assert.rejects(setDevicePassword(path, 'dev-3', 'x', TEST_SCRYPT), (e: unknown) => isFwError(e, 'E_CONFIG'), 'a broken list is not overwritten');
    await writeDevicesFile(path, []);
    assert.equal((await readFile(path, 'utf8')).trim(), '[]');
  });

  it('reload: at most one stat a second, at once after a failed check; a broken file keeps the last good list, logged', async () => {
    const path = join(dir, 'd.json');
    await setDevicePassword(path, 'dev-1', 'one', TEST_SCRYPT);
    const clock = { now: 1_000_000 };
    const logs: string[] = [];
    const limiter = new ScryptLimiter(1, 8);
    const c = await DeviceCredentials.open(path, { now: () => clock.now, log: (l) => logs.push(l), limiter });
    assert.equal(c.size, 1);
    assert.equal(logs.length, 0, 'the first load is not logged');
    await setDevicePassword(path, 'dev-2', 'two', TEST_SCRYPT);
    assert.equal(c.has('dev-2'), false, 'not yet read');
    assert.equal(await c.check('dev-2', 'two'), 'ok', 'a failed check re-reads the changed file and checks again');
    assert.match(logs.at(-1)!, /device list .* reloaded: 2 device\(s\)/);
    assert.equal(c.cached('dev-2', 'two'), true);
    assert.equal(c.cached('dev-2', 'wrong'), false);
    assert.equal(c.cached('dev-9', 'two'), false);
    // an unchanged entry keeps what it remembered across a reload
    await setDevicePassword(path, 'dev-3', 'three', TEST_SCRYPT);
    const tick = 1_800_000_000; // whole seconds: an mtime that utimes sets exactly
    await utimes(path, tick, tick);
    clock.now += 1000;
    assert.equal(await c.check('dev-2', 'two'), 'ok');
    assert.equal(c.size, 3, 'a second later, a check stats the file and reloads it');
    assert.equal(c.cached('dev-2', 'two'), true, 'dev-2 unchanged: still remembered');
    const before = await stat(path);
    await setDevicePassword(path, 'dev-2', 'deux', TEST_SCRYPT);
    // as when both writes fall in one coarse clock tick: same mtime, same size (hashes of one length)
    await utimes(path, tick, tick);
    const after = await stat(path);
    assert.deepEqual([after.mtimeMs, after.size], [before.mtimeMs, before.size]);
    clock.now += 999;
    const runs = limiter.runs;
    assert.equal(await c.check('dev-1', 'one'), 'ok');
    assert.equal(c.cached('dev-2', 'two'), true, 'within the second: not re-read');
    assert.equal(await c.check('dev-2', 'deux'), 'ok', 'the failure forces the reload');
    assert.equal(c.cached('dev-2', 'two'), false, 'a changed entry forgets what it remembered');
    assert.ok(limiter.runs > runs);
    await writeFile(path, '[{');
    const t = new Date(Date.now() + 5000);
    await utimes(path, t, t);
    clock.now += 1000;
    assert.equal(await c.check('dev-1', 'one'), 'ok', 'a broken file keeps the last good list');
    assert.equal(c.size, 3);
    assert.match(logs.at(-1)!, /not reloaded, keeping 3 device\(s\)/);
  });

  it('whose message a publish is: the device of an up topic, published by itself or in-process; nothing else', () => {
    assert.equal(upTopicSender('fwgate/v1/dev/dev-a/up', 'dev-a'), 'dev-a');
    assert.equal(upTopicSender('fwgate/v1/dev/dev-a/up', null), 'dev-a');
    assert.equal(upTopicSender('fwgate/v1/dev/dev-a/up', 'dev-b'), undefined);
    assert.equal(upTopicSender('fwgate/v1/dev/dev-a/down', 'dev-a'), undefined);
    assert.equal(upTopicSender('fwgate/v1/dev/dev-a/down', null), undefined);
    assert.equal(upTopicSender('other/topic', null), undefined);
  });
});
