import assert from 'node:assert/strict';
import { resumeRelease, resumeSingle, type ResumeStatus } from '../../../gateway/rollout/resume-decision.ts';
import type { Manifest } from '../../../protocol/manifest.ts';
import type { ComponentStatus, SlotState } from '../../../protocol/ota.ts';

const sha = (c: string): string => c.repeat(64);
const man = (v: string, d: string): Manifest => ({ name: 'fw', version: v, hw: ['hw'], size: 10, crc32: 0, sha256: sha(d), chunk: 64 });
const part = (component: string, v: string, d: string, agent = false) => ({ component, agent, image: { manifest: man(v, d) } });

function comp(name: string, run: [string, string], trial: boolean, next?: [SlotState, string]): ComponentStatus {
  return {
    name, layout: 'ab', version: run[0], sha256: sha(run[1]), slot: 'a', trial,
    slots: { a: { state: trial ? 'trial' : 'confirmed', version: run[0], sha256: sha(run[1]) }, b: next ? { state: next[0], version: '2.0.0', sha256: sha(next[1]) } : { state: 'empty' } },
  };
}
const status = (components: ComponentStatus[]): ResumeStatus => ({ version: components[0]!.version, slot: 'a', slots: components[0]!.slots!, trial: components[0]!.trial, components });

describe('resuming an update past activate after a gateway restart (resume-decision.ts)', () => {
  const app = part('app', '2.0.0', 'b');
  const net = part('net', '2.0.0', 'd');
  it('release: every part confirmed → done; all in trial → confirm them; pending → wait for the reboot, then confirm', () => {
    assert.deepEqual(resumeRelease(status([comp('app', ['2.0.0', 'b'], false), comp('net', ['2.0.0', 'd'], false)]), [app, net]), { kind: 'done' });
    assert.deepEqual(resumeRelease(status([comp('app', ['2.0.0', 'b'], true), comp('net', ['2.0.0', 'd'], true)]), [app, net]), { kind: 'confirm', left: [app, net] });
    assert.deepEqual(resumeRelease(status([comp('app', ['1.0.0', 'a'], false, ['pending', 'b']), comp('net', ['1.0.0', 'c'], false, ['pending', 'd'])]), [app, net]),
      { kind: 'reboot-then-confirm', left: [app, net] });
  });
  it('release: the agent step done (confirmed) and the rest still only ready → the normal attempt for the rest', () => {
    const agent = part('agent', '2.0.0', 'e', true);
    const d = resumeRelease(status([comp('app', ['1.0.0', 'a'], false, ['ready', 'b']), comp('agent', ['2.0.0', 'e'], false)]), [agent, app]);
    assert.deepEqual(d, { kind: 'normal', reverted: false });
    assert.deepEqual(resumeRelease(status([comp('app', ['1.0.0', 'a'], false, ['pending', 'b']), comp('agent', ['2.0.0', 'e'], false)]), [agent, app]),
      { kind: 'reboot-then-confirm', left: [app] }, 'the confirmed agent is not part of what is left');
  });
  it('release: a mixed set (one in trial, one neither pending nor running) is not resumed as activated', () => {
    assert.deepEqual(resumeRelease(status([comp('app', ['2.0.0', 'b'], true), comp('net', ['1.0.0', 'c'], false, ['ready', 'd'])]), [app, net]), { kind: 'normal', reverted: false });
  });
  it('single image: trial → confirm, confirmed → done, pending → reboot then confirm, bad → normal and says reverted', () => {
    const m = man('2.0.0', 'b');
    const s = (run: [string, string], trial: boolean, next: [SlotState, string] | undefined): ResumeStatus => {
      const c = comp('app', run, trial, next);
      return { version: c.version, slot: 'a', slots: c.slots!, trial };
    };
    assert.equal(resumeSingle(s(['2.0.0', 'b'], true, undefined), m).kind, 'confirm');
    assert.equal(resumeSingle(s(['2.0.0', 'b'], false, undefined), m).kind, 'done');
    assert.equal(resumeSingle(s(['1.0.0', 'a'], false, ['pending', 'b']), m).kind, 'reboot-then-confirm');
    assert.deepEqual(resumeSingle(s(['1.0.0', 'a'], false, ['bad', 'b']), m), { kind: 'normal', reverted: true });
    assert.deepEqual(resumeSingle(s(['1.0.0', 'a'], false, ['ready', 'b']), m), { kind: 'normal', reverted: false });
  });
});
