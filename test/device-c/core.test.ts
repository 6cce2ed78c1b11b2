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
});
