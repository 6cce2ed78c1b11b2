import assert from 'node:assert/strict';
import { junitXml, summaryText } from '../../hil/report.ts';
import type { SuiteResult } from '../../hil/runner.ts';
import { checkRollout, ScenarioContext } from '../../hil/scenario.ts';
import type { LaptopEvent } from '../../hil/laptop.ts';
import type { RigRuntime } from '../../hil/rig.ts';

const suite: SuiteResult = {
  rig: 'sim', startedAt: '2026-11-22T02:00:00.000Z', durationMs: 61_500, ok: false,
  scenarios: [
    { name: 'happy-path', title: 'Happy path', expects: ['all updated'], status: 'passed', checks: [{ name: 'fwpush exits 0', ok: true, detail: 'exit 0' }], notes: [], durationMs: 8000, dir: '/r/happy-path' },
    { name: 'bad-image', title: 'Bad image', expects: ['rolled back'], status: 'failed', checks: [{ name: 'dev-1: result <rolled-back>', ok: false, detail: 'updated & "ok"' }], notes: ['a note'], durationMs: 6000, dir: '/r/bad-image' },
    { name: 'gateway-restart', title: 'Restart', expects: [], status: 'skipped', checks: [], notes: [], durationMs: 0, reason: 'no restart command', dir: '/r/gateway-restart' },
    { name: 'device-offline', title: 'Offline', expects: [], status: 'error', checks: [], notes: [], durationMs: 180_000, reason: 'did not finish', dir: '/r/device-offline' },
  ],
};

describe('hil: report', () => {
  it('JUnit XML: one testcase per scenario, failures, skips and errors as JUnit has them, text escaped', () => {
    const xml = junitXml(suite);
    assert.match(xml, /<testsuite name="hil\.sim"[^>]* tests="4" failures="1" errors="1" skipped="1"/);
    assert.match(xml, /<testcase classname="hil\.sim" name="happy-path" time="8">/);
    assert.match(xml, /<failure message="dev-1: result &lt;rolled-back(>|&gt;): updated &amp; &quot;ok&quot;" type="CheckFailed"/);
    assert.match(xml, /name="gateway-restart"[^>]*>\s*<skipped\/>/);
    assert.match(xml, /<error message="did not finish" type="HilError"/);
    assert.match(xml, /FAILED dev-1: result <rolled-back>: updated & "ok"/, 'checks in system-out (CDATA)');
  });

  it('summary: a line per scenario, the failed checks with where to look, and the verdict', () => {
    const text = summaryText(suite, '/r');
    assert.match(text, /✔ happy-path\s+passed/);
    assert.match(text, /✘ bad-image\s+failed .* 0\/1 checks/);
    assert.match(text, /- gateway-restart\s+skipped .* no restart command/);
    assert.match(text, /FAILED dev-1: result <rolled-back>: updated & "ok"/);
    assert.match(text, /consoles and timelines: \/r\/bad-image/);
    assert.match(text, /1 passed, 1 failed, 1 errors, 1 skipped: NOT OK/);
  });

  it('checkRollout fails a device with two results, a missing result, the wrong outcome and a complete before a result', () => {
    const rig = { devices: [{ id: 'a' }, { id: 'b' }, { id: 'c' }] } as unknown as RigRuntime;
    const ctx = new ScenarioContext(rig);
    const ev = (event: string, rest: Record<string, unknown> = {}): LaptopEvent => ({ event, at: 0, ...rest });
    const events = [
      ev('result', { id: 'a', outcome: 'updated', code: 'ok', retries: 0 }),
      ev('result', { id: 'a', outcome: 'updated', code: 'ok', retries: 0 }),
      ev('complete'),
      ev('result', { id: 'b', outcome: 'rolled-back', code: 'self-test-failed', retries: 0 }),
    ];
    checkRollout(ctx, { code: 1, events, stderr: '' }, { exit: 0, results: () => ({ outcome: 'updated' }) });
    const failed = ctx.checks.filter((c) => !c.ok).map((c) => c.name);
    assert.deepEqual(failed, ['fwpush exits 0 (ok)', 'a: one final result', 'b: result updated', 'c: one final result', 'complete comes after the last result']);
    assert.equal(ctx.ok, false);
    assert.equal(new ScenarioContext(rig).ok, false, 'a scenario that checked nothing has not passed');
  });
});
