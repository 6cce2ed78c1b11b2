import assert from 'node:assert/strict';
import type { DeviceEvent } from '../../../gateway/device-channel.ts';
import { runsImage, runsInTrial, trialBootOf } from '../../../gateway/rollout/boot-report.ts';
import type { Manifest } from '../../../protocol/manifest.ts';

/**
 * Reading a boot report (boot-report.ts, docs/protocol.md §6.9, §6.15.3): which image a component
 * runs and whether in trial, from `boot.components` or, for a device without components, the
 * top-level keys (which describe `app`); and the boot a `status` in trial stands for when the boot
 * report itself was lost (§6.9.1).
 */

type Boot = Extract<DeviceEvent, { t: 'boot' }>;
type Status = Extract<DeviceEvent, { t: 'status' }>;
const sha = (c: string): string => c.repeat(64);
const man = (version: string, d: string): Manifest => ({ name: 'fw', version, hw: ['hw'], size: 10, crc32: 0, sha256: sha(d), chunk: 64 });
const target = man('2.0.0', 'b');
const boot = (over: Partial<Boot> = {}): Boot => ({ t: 'boot', version: '2.0.0', slot: 'b', sha256: sha('b'), trial: true, reverted: false, ...over });

describe('boot report: the image a device without components runs (top-level keys)', () => {
  const m = man('2.0.0', 'b');
  it('runs the image: its version and, when reported, its digest', () => {
    assert.equal(runsImage(boot(), undefined, m), true);
    assert.equal(runsImage(boot({ sha256: sha('c') }), undefined, m), false, 'same version, another digest');
    assert.equal(runsImage(boot({ version: '1.0.0' }), undefined, m), false, 'same digest, another version');
  });

  it('a boot report without sha256 (it is optional, §6.9) is judged by the version alone', () => {
    const { sha256: _s, ...noSha } = boot();
    assert.equal(runsImage(noSha, undefined, m), true);
    assert.equal(runsImage({ ...noSha, version: '1.0.0' }, undefined, m), false);
  });

  it('the single image is read from the top level even when the report also lists components', () => {
    const b = boot({ components: [{ name: 'net', version: '9.9.9', trial: false }] });
    assert.equal(runsImage(b, undefined, m), true);
    assert.equal(runsInTrial(b, undefined, m), true);
  });

  it('component `app` of a device that reports no components is the top level (§6.15)', () => {
    assert.equal(runsImage(boot(), 'app', m), true);
    assert.equal(runsInTrial(boot(), 'app', m), true);
  });

  it('any other component of a device that reports no components does not run', () => {
    assert.equal(runsImage(boot(), 'net', m), false, 'the top level describes app, not net');
    assert.equal(runsInTrial(boot(), 'net', m), false);
  });
});

describe('boot report: a component of a multi-component device (boot.components, §6.15.3)', () => {
  const net = man('2.0.0', 'd');
  const withNet = (c: Partial<NonNullable<Boot['components']>[number]>): Boot =>
    boot({ version: '1.0.0', sha256: sha('a'), trial: false, components: [{ name: 'app', version: '1.0.0', sha256: sha('a'), trial: false }, { name: 'net', version: '2.0.0', sha256: sha('d'), trial: true, ...c }] });

  it('is read from its own entry, not the top level', () => {
    assert.equal(runsImage(withNet({}), 'net', net), true);
    assert.equal(runsInTrial(withNet({}), 'net', net), true);
    assert.equal(runsImage(withNet({ sha256: sha('e') }), 'net', net), false);
    assert.equal(runsImage(withNet({ version: '1.9.0' }), 'net', net), false);
    assert.equal(runsImage(boot({ components: [{ name: 'app', version: '2.0.0', trial: true }] }), 'net', net), false, 'a component the report does not list');
  });

  it('`app` of a device that lists components is its entry in the list', () => {
    const app = man('1.0.0', 'a');
    const b = boot({ version: '1.0.0', sha256: sha('a'), components: [{ name: 'app', version: '1.0.0', sha256: sha('a'), trial: false }] });
    assert.equal(runsImage(b, 'app', app), true);
    assert.equal(runsInTrial(b, 'app', app), false, 'the entry says not in trial, whatever the top level says');
  });

  it('in trial: running the image and its trial flag set, both needed', () => {
    assert.equal(runsInTrial(withNet({ trial: false }), 'net', net), false, 'runs it confirmed');
    assert.equal(runsInTrial(withNet({ sha256: sha('e'), trial: true }), 'net', net), false, 'in trial on another image');
  });
});

describe('boot report: in trial on a single image', () => {
  const m = man('2.0.0', 'b');
  it('runs the image with trial true', () => {
    assert.equal(runsInTrial(boot(), undefined, m), true);
    assert.equal(runsInTrial(boot({ trial: false }), undefined, m), false);
    assert.equal(runsInTrial(boot({ version: '1.0.0', sha256: sha('a') }), undefined, m), false, 'a trial of another image');
  });
});

describe('boot report: the boot a status in trial stands for (§6.9.1)', () => {
  const status = (over: Partial<Status> = {}): Status => ({
    t: 'status', hw: 'hw', version: '2.0.0', slot: 'b', maxChunk: 1024, busy: false, trial: true,
    slots: { a: { state: 'confirmed', version: '1.0.0', sha256: sha('a') }, b: { state: 'trial', version: '2.0.0', sha256: sha('b') } }, ...over,
  });

  it('a trial boot, not reverted, on the status\'s slot with that slot\'s digest', () => {
    assert.deepEqual(trialBootOf(status()), { t: 'boot', version: '2.0.0', slot: 'b', sha256: sha('b'), trial: true, reverted: false });
    assert.deepEqual(trialBootOf(status({ slot: 'a', version: '1.0.0', trial: false })), { t: 'boot', version: '1.0.0', slot: 'a', sha256: sha('a'), trial: false, reverted: false });
  });

  it('without a digest for the slot, the boot has none (no sha256 key)', () => {
    const b = trialBootOf(status({ slots: { a: { state: 'confirmed' }, b: { state: 'trial', version: '2.0.0' } } }));
    assert.deepEqual(b, { t: 'boot', version: '2.0.0', slot: 'b', trial: true, reverted: false });
    assert.equal('sha256' in b, false);
    assert.equal(runsImage(b, undefined, target), true, 'judged by the version, as a boot report without sha256');
  });

  it('carries each component as a boot component: name, version, trial, and digest and slot when the status has them', () => {
    const b = trialBootOf(status({
      components: [
        { name: 'app', layout: 'ab', version: '2.0.0', sha256: sha('b'), slot: 'b', slots: { a: { state: 'confirmed' }, b: { state: 'trial' } }, trial: true },
        { name: 'modem', layout: 'single', version: '7.1', trial: false },
      ],
    }));
    assert.deepEqual(b.components, [
      { name: 'app', version: '2.0.0', sha256: sha('b'), slot: 'b', trial: true },
      { name: 'modem', version: '7.1', trial: false },
    ]);
    assert.equal('sha256' in b.components![1]!, false);
    assert.equal('slot' in b.components![1]!, false);
    assert.equal(runsInTrial(b, 'app', target), true);
  });

  it('a status without components gives a boot without components', () => {
    assert.equal('components' in trialBootOf(status()), false);
  });
});
