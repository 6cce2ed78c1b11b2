import assert from 'node:assert/strict';
import { componentsText, preflightText, summarise } from '../../laptop/render.ts';
import type { CompleteMessage, ResultMessage } from '../../protocol/uplink.ts';

/** fwpush's view of a release campaign (docs/protocol.md §7.5.9, §7.8.3, §7.3.7). */
describe('fwpush output for a release campaign', () => {
  const image = { name: 'sensor-release', version: '1.1.0', sha256: 'a'.repeat(64) };
  const result = (id: string, components?: string[]): ResultMessage => ({
    t: 'result', campaign: 'c-1', id, outcome: 'updated', code: 'ok', from: '1.0.0', to: '1.1.0', durationMs: 10, retries: 0, ...(components ? { components } : {}),
  });

  it('the order line says what a device gets, what came from another release, and the bytes saved', () => {
    assert.equal(componentsText({ id: 'd', rank: 1, from: '1.0.0', components: [{ name: 'app', version: '1.1.0', size: 10 }], savedBytes: 131072 }), '  gets app 1.1.0; saves 128.0 KiB');
    assert.equal(componentsText({ id: 'd', rank: 1, from: '1.0.0', components: [{ name: 'app', version: '1.1.0', size: 10 }, { name: 'net', version: '1.6.0', size: 5, via: 'net-fix@1.6.0' }], savedBytes: 0 }),
      '  gets app 1.1.0, net 1.6.0 (via net-fix@1.6.0)');
    assert.equal(componentsText({ id: 'd', rank: 1, from: '1.0.0' }), '', 'a single-image campaign adds nothing');
  });

  it('the summary takes the component counts from complete, or counts the updated devices\' components before it', () => {
    const complete: CompleteMessage = { t: 'complete', campaign: 'c-1', devices: 2, updated: 2, failed: 0, rolledBack: 0, skipped: 0, durationMs: 5, componentsSent: 3, componentsSkipped: 1 };
    const order = { t: 'order' as const, campaign: 'c-1', image, devices: [{ id: 'a', rank: 1, from: '1.0.0' }, { id: 'b', rank: 2, from: '1.0.0' }], excluded: [] };
    const s = summarise({ campaign: 'c-1', image, order, results: [result('a', ['app']), result('b', ['app', 'net'])], durationMs: 5, complete });
    assert.deepEqual([s.componentsSent, s.componentsSkipped], [3, 1]);
    const early = summarise({ campaign: 'c-1', image, order, results: [result('a', ['app']), result('b', ['app', 'net'])], durationMs: 5 });
    assert.deepEqual([early.componentsSent, early.componentsSkipped], [3, undefined]);
    const single = summarise({ campaign: 'c-1', image, order, results: [result('a'), result('b')], durationMs: 5 });
    assert.equal('componentsSent' in single, false, 'no component counts for a single image');
  });

  it('the pre-flight line counts the devices a requires refuses', () => {
    const p = { eligibleOnline: 3, eligibleOffline: 0, notNewer: 0, otherHw: 0, belowFloor: 0, busy: 0, notTargeted: 0 };
    assert.match(preflightText({ ...p, unmetDependency: 2 }), /2 refused: a component they would run lacks what it requires \(unmet-dependency\)/);
    assert.doesNotMatch(preflightText({ ...p, unmetDependency: 0 }), /unmet/);
  });
});
