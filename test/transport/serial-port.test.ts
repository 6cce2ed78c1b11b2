import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPtyPair } from '../../scripts/lib/pty-pair.ts';
import { closeSerialPortWithin, openSerialPort, ttyIdentity, watchPortPath } from '../../transport/serial-port.ts';

describe('transport: serial port path watch (a pulled adapter, a remade pty pair)', function () {
  this.timeout(20_000);
  let dir: string;
  beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'fwgate-port-')); });
  afterEach(async () => { await rm(dir, { recursive: true, force: true }); });

  /** Starts watching (resolves once the watch is set up) and gives the promise of its report. */
  const watching = async (path: string, intervalMs: number): Promise<{ gone: Promise<string> }> => {
    let report: (why: string) => void = () => undefined;
    const gone = new Promise<string>((resolve) => { report = resolve; });
    await watchPortPath(path, intervalMs, (why) => report(why));
    return { gone };
  };

  it('reports "disappeared" when the tty goes away, and a change when another device takes its path', async () => {
    const pair = await createPtyPair(dir);
    assert.ok(await ttyIdentity(pair.a), 'an open pty has an identity');
    const port = await openSerialPort(pair.a, 115_200);
    port.on('error', () => undefined);
    const first = await watching(pair.a, 50);
    await pair.close();
    assert.equal(await first.gone, 'disappeared');
    assert.equal(await ttyIdentity(pair.a), undefined);
    assert.equal(await closeSerialPortWithin(port, 1_000), true);

    // another device at the same path: a symlink (like /dev/serial/by-id/...) re-pointed
    await mkdir(join(dir, 'one'));
    await mkdir(join(dir, 'two'));
    const one = await createPtyPair(join(dir, 'one'));
    const two = await createPtyPair(join(dir, 'two'));
    const link = join(dir, 'adapter');
    await symlink(one.a, link);
    try {
      const second = await watching(link, 50);
      await rm(link);
      await symlink(two.a, link);
      const why = await second.gone;
      // 'replaced' when the link was re-pointed between two checks (the usual case), else 'disappeared'
      assert.ok(why === 'replaced' || why === 'disappeared', why);
      assert.equal(await ttyIdentity(link), await ttyIdentity(two.a));
    } finally {
      await one.close();
      await two.close();
    }
  });

  it('a path that does not exist is not watched (nothing to lose); stop() ends a watch', async () => {
    let called = false;
    const stop = await watchPortPath(join(dir, 'none.tty'), 20, () => { called = true; });
    stop();
    const pair = await createPtyPair(dir);
    const stop2 = await watchPortPath(pair.a, 20, () => { called = true; });
    stop2();
    await pair.close();
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(called, false);
  });
});
