import assert from 'node:assert/strict';
import { buildDeviceC } from '../../scripts/lib/device-c.ts';
import { runEntry } from '../helpers/run-entry.ts';

describe('device-c: npm run demo with C devices (real processes)', function () {
  this.timeout(180_000);
  before(async () => { await buildDeviceC(); });

  it('npm run demo -- --devices 4 --c-devices 2 --json ends with updated 6, failed 0, C devices in the order and on 1.1.0 by their own files', async () => {
    const r = await runEntry('scripts/demo.ts', ['--devices', '4', '--c-devices', '2', '--json'], { timeoutMs: 150_000 });
    assert.equal(r.code, 0, `demo exit code; stderr:\n${r.stderr}`);
    const lines = r.stdout.trim().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
    const summary = lines.at(-1)!;
    assert.deepEqual([summary.event, summary.ok, summary.devices, summary.updated, summary.failed], ['summary', true, 6, 6, 0]);
    assert.deepEqual((summary.order as string[]).filter((id) => id.startsWith('c-dev-')).sort(), ['c-dev-001', 'c-dev-002']);
    assert.match(r.stderr, /C devices 2\/2/, 'the demo read both C devices\' own files');
  });
});
