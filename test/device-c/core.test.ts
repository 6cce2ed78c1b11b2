import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { buildDeviceC } from '../../scripts/lib/device-c.ts';

/**
 * The C core's state machine over an in-memory port (device-c/tests/core_tests.c): transfer and
 * acks (§6.6), a power cut that loses unflushed writes and the resume from the durable record,
 * also at another chunk size (§6.5.4), verify and signatures (§6.7.1, §5.4.3), trial, confirm and
 * seq (§6.9, §6.10, §6.5.7), reverts, abort (§6.11.1), the refusal order (§6.5.3), the capped
 * missing list. The program prints one line per check and exits 1 on any failure.
 */
describe('device-c: the core state machine over an in-memory port', function () {
  this.timeout(120_000);

  it('passes every check of device-c/tests/core_tests.c', async () => {
    const { coreTests } = await buildDeviceC();
    const r = await promisify(execFile)(coreTests).catch((err: { stdout?: string; code?: number }) => err);
    const out = (r as { stdout?: string }).stdout ?? '';
    const failed = out.split('\n').filter((l) => l.startsWith('FAIL'));
    assert.deepEqual(failed, [], out);
    const m = /^(\d+) checks, 0 failed$/m.exec(out);
    assert.ok(m && Number(m[1]) >= 40, out);
  });

  it('fwdevice: a bad flag is a usage error (exit 2) naming it; `show` of a blank folder prints null and exits 1', async () => {
    const { fwdevice } = await buildDeviceC();
    const run = (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => new Promise((resolve) => {
      execFile(fwdevice, args, (err, stdout, stderr) => resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
    });
    const cases: [string[], RegExp][] = [
      [['--broker', 'mqtt://127.0.0.1:1', '--id', '-x', '--dir', '/tmp/none'], /--id: "-x" is not a device id/],
      [['--broker', 'http://h:1', '--id', 'a', '--dir', '/tmp/none'], /--broker: "http:\/\/h:1"/],
      [['--broker', 'mqtt://h:1', '--id', 'a', '--dir', '/tmp/none', '--version', '1.0'], /--version: "1.0" is not a semantic version/],
      [['--broker', 'mqtt://h:1', '--id', 'a', '--dir', '/tmp/none', '--pinned-key', '/nonexistent.pub'], /--pinned-key: \/nonexistent.pub/],
      [['--broker', 'mqtt://h:1', '--id', 'a', '--dir', '/tmp/none', '--window', '0'], /--window: must be an integer 1..256/],
      [['--broker', 'mqtt://h:1', '--id', 'a'], /--dir are required/],
      [['--nope'], /unknown option --nope/],
    ];
    for (const [args, message] of cases) {
      const r = await run(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
    }
    const blank = await run(['show', '--dir', '/nonexistent-fwdevice-dir']);
    assert.deepEqual([blank.code, blank.stdout.trim()], [1, 'null']);
  });
});
