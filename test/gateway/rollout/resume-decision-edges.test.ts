import assert from 'node:assert/strict';
import { resumeRelease, resumeSingle, type ResumeStatus } from '../../../gateway/rollout/resume-decision.ts';
import type { Manifest } from '../../../protocol/manifest.ts';
import type { ComponentStatus, SlotState } from '../../../protocol/ota.ts';

/**
 * The edges of the decision a restarted gateway takes for a device whose update was past
 * `activate` (resume-decision.ts, docs/reliability.md "No second activation"): the running slot
 * either one, a digest that does not match, a device that reports no digest, components missing
 * or without slots. Only the target image counts: another image pending, bad or in trial is not
 * this activation.
 */

const sha = (c: string): string => c.repeat(64);
const man = (v: string, d: string): Manifest => ({ name: 'fw', version: v, hw: ['hw'], size: 10, crc32: 0, sha256: sha(d), chunk: 64 });
type Slot = ResumeStatus['slots']['a'];
const slot = (state: SlotState, version?: string, d?: string): Slot => ({ state, ...(version ? { version } : {}), ...(d ? { sha256: sha(d) } : {}) });

describe('resume decision, single image: which slot is the other one, and the digest', () => {
  const target = man('2.0.0', 'b');
  const on = (runs: 'a' | 'b', version: string, trial: boolean, slots: { a: Slot; b: Slot }): ResumeStatus => ({ version, slot: runs, slots, trial });

  it('running from slot b, the image pending in slot a: the reboot is under way', () => {
    assert.deepEqual(resumeSingle(on('b', '1.0.0', false, { a: slot('pending', '2.0.0', 'b'), b: slot('confirmed', '1.0.0', 'a') }), target),
      { kind: 'reboot-then-confirm', left: [undefined] });
  });

  it('running from slot b, the image bad in slot a: reverted, the normal attempt follows', () => {
    assert.deepEqual(resumeSingle(on('b', '1.0.0', false, { a: slot('bad', '2.0.0', 'b'), b: slot('confirmed', '1.0.0', 'a') }), target), { kind: 'normal', reverted: true });
  });

  it('the running slot is never taken for the other one', () => {
    // running from b with b pending would be nonsense for a device; the other slot (a) is ready
    assert.deepEqual(resumeSingle(on('b', '1.0.0', false, { a: slot('ready', '2.0.0', 'b'), b: slot('pending', '2.0.0', 'b') }), target), { kind: 'normal', reverted: false });
  });

  it('another image pending or bad in the other slot is not this activation', () => {
    assert.deepEqual(resumeSingle(on('a', '1.0.0', false, { a: slot('confirmed', '1.0.0', 'a'), b: slot('pending', '2.0.0', 'c') }), target), { kind: 'normal', reverted: false });
    assert.deepEqual(resumeSingle(on('a', '1.0.0', false, { a: slot('confirmed', '1.0.0', 'a'), b: slot('bad', '2.0.0', 'c') }), target), { kind: 'normal', reverted: false });
  });

  it('runs the target: its version, and its digest when the running slot reports one', () => {
    assert.deepEqual(resumeSingle(on('b', '2.0.0', true, { a: slot('confirmed', '1.0.0', 'a'), b: slot('trial', '2.0.0', 'b') }), target), { kind: 'confirm', left: [undefined] });
    assert.deepEqual(resumeSingle(on('b', '2.0.0', true, { a: slot('confirmed', '1.0.0', 'a'), b: slot('trial', '2.0.0') }), target),
      { kind: 'confirm', left: [undefined] }, 'no digest reported: the version says it');
    assert.deepEqual(resumeSingle(on('b', '2.0.0', false, { a: slot('confirmed', '1.0.0', 'a'), b: slot('confirmed', '2.0.0', 'c') }), target),
      { kind: 'normal', reverted: false }, 'the same version built otherwise is not the target');
  });
});

describe('resume decision, release: components missing, without slots, or in trial on another image', () => {
  const part = (component: string, d: string, agent = false) => ({ component, agent, image: { manifest: man('2.0.0', d) } });
  const app = part('app', 'b');
  const modem = part('modem', 'm');
  const ab = (name: string, run: [string, string], trial: boolean, next?: [SlotState, string]): ComponentStatus => ({
    name, layout: 'ab', version: run[0], sha256: sha(run[1]), slot: 'a', trial,
    slots: { a: slot(trial ? 'trial' : 'confirmed', run[0], run[1]), b: next ? slot(next[0], '2.0.0', next[1]) : slot('empty') },
  });
  const status = (components?: ComponentStatus[]): ResumeStatus => ({
    version: '1.0.0', slot: 'a', trial: false, slots: { a: slot('confirmed', '1.0.0', 'a'), b: slot('empty') }, ...(components ? { components } : {}),
  });

  it('a device that reports no components: nothing is in effect, the normal attempt follows', () => {
    assert.deepEqual(resumeRelease(status(), [app]), { kind: 'normal', reverted: false });
  });

  it('a part whose component the device does not report is neither done, nor in trial, nor pending', () => {
    assert.deepEqual(resumeRelease(status([ab('app', ['2.0.0', 'b'], true)]), [app, modem]), { kind: 'normal', reverted: false });
  });

  it('a component updated in place (layout single: no slots) has nothing pending', () => {
    const single: ComponentStatus = { name: 'modem', layout: 'single', version: '1.0.0', sha256: sha('n'), trial: false };
    assert.deepEqual(resumeRelease(status([ab('app', ['2.0.0', 'b'], true), single]), [app, modem]), { kind: 'normal', reverted: false });
    const singleWithSlot: ComponentStatus = { ...single, slot: 'a' };
    assert.deepEqual(resumeRelease(status([ab('app', ['2.0.0', 'b'], true), singleWithSlot]), [app, modem]), { kind: 'normal', reverted: false });
  });

  it('a component in trial on another image is not this activation\'s trial', () => {
    assert.deepEqual(resumeRelease(status([ab('app', ['2.0.0', 'b'], true), ab('modem', ['1.5.0', 'q'], true)]), [app, modem]), { kind: 'normal', reverted: false });
  });

  it('another image pending in a component\'s other slot is not this activation', () => {
    assert.deepEqual(resumeRelease(status([ab('app', ['2.0.0', 'b'], true), ab('modem', ['1.0.0', 'n'], false, ['pending', 'q'])]), [app, modem]), { kind: 'normal', reverted: false });
  });

  it('one part in trial and one pending: the reboot is under way for both (left in part order)', () => {
    assert.deepEqual(resumeRelease(status([ab('app', ['2.0.0', 'b'], true), ab('modem', ['1.0.0', 'n'], false, ['pending', 'm'])]), [app, modem]),
      { kind: 'reboot-then-confirm', left: [app, modem] });
  });
});
