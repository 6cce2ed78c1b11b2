import junitModule, { type Builder } from 'junit-report-builder';
import type { ScenarioResult, SuiteResult } from './runner.ts';

/** The package is CommonJS (`module.exports = builder`) while its types declare an ES default export. */
const junit = ((junitModule as unknown as { default?: Builder }).default ?? junitModule) as unknown as Builder;

/** The human summary: one line per scenario, then the failed checks and notes of each that did not pass. */
export function summaryText(r: SuiteResult, reportDir: string): string {
  const lines = [`HIL suite on rig "${r.rig}": ${(r.durationMs / 1000).toFixed(1)} s, report in ${reportDir}`];
  if (r.setUpError) lines.push(`  rig set-up failed: ${r.setUpError}`);
  if (r.skipped) lines.push(`  SKIPPED: this rig cannot run here: ${r.skipped}`);
  const width = Math.max(...r.scenarios.map((s) => s.name.length), 8);
  for (const s of r.scenarios) {
    const passed = s.checks.filter((c) => c.ok).length;
    lines.push(`  ${mark(s)} ${s.name.padEnd(width)}  ${s.status.padEnd(7)} ${(s.durationMs / 1000).toFixed(1).padStart(6)} s  ${s.checks.length ? `${passed}/${s.checks.length} checks` : ''}${s.reason ? `  ${s.reason}` : ''}`);
  }
  for (const s of r.scenarios.filter((x) => x.status === 'failed' || x.status === 'error')) {
    lines.push('', `${s.name} — ${s.title}`, ...s.expects.map((e) => `  expects: ${e}`));
    for (const c of s.checks.filter((x) => !x.ok)) lines.push(`  FAILED ${c.name}: ${c.detail}`);
    for (const n of s.notes) lines.push(`  note: ${n}`);
    lines.push(`  consoles and timelines: ${s.dir}`);
  }
  const count = (st: string): number => r.scenarios.filter((s) => s.status === st).length;
  lines.push('', `${count('passed')} passed, ${count('failed')} failed, ${count('error')} errors, ${count('skipped')} skipped: ${r.ok ? 'OK' : 'NOT OK'}`);
  return `${lines.join('\n')}\n`;
}

function mark(s: ScenarioResult): string {
  return { passed: '✔', failed: '✘', error: '!', skipped: '-' }[s.status];
}

/** JUnit XML (one testsuite, one testcase per scenario; checks and notes in system-out) for the test engineer's CI. */
export function junitXml(r: SuiteResult): string {
  const b = junit.newBuilder();
  const suite = b.testSuite().name(`hil.${r.rig}`).timestamp(new Date(r.startedAt)).time(r.durationMs / 1000);
  for (const s of r.scenarios) {
    const tc = suite.testCase().className(`hil.${r.rig}`).name(s.name).time(s.durationMs / 1000);
    const out = [
      s.title, ...s.expects.map((e) => `expects: ${e}`),
      ...s.checks.map((c) => `${c.ok ? 'ok    ' : 'FAILED'} ${c.name}${c.detail ? `: ${c.detail}` : ''}`),
      ...s.notes.map((n) => `note: ${n}`), `report: ${s.dir}`,
    ].join('\n');
    tc.standardOutput(out);
    if (s.status === 'skipped') tc.skipped();
    else if (s.status === 'error') tc.error(s.reason ?? 'error', 'HilError');
    else if (s.status === 'failed') tc.failure(s.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}`).join('; '), 'CheckFailed');
  }
  return b.build();
}

