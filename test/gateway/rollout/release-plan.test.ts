import assert from 'node:assert/strict';
import type { DeviceRecord } from '../../../gateway/fleet.ts';
import { planDevice, runningComponents, selectForRelease } from '../../../gateway/rollout/release-plan.ts';
import type { ComponentStatus } from '../../../protocol/ota.ts';
import { parseReleaseManifest, type ReleaseManifest } from '../../../protocol/release.ts';

const sha = (c: string): string => c.repeat(64);

function release(version: string, components: ReleaseManifest['components'], extra: Partial<ReleaseManifest> = {}): ReleaseManifest {
  return parseReleaseManifest({ release: 'rel', version, hw: ['hw-a'], chunk: 1024, components, ...extra });
}
const comp = (component: string, version: string, digest: string, more: object = {}) => ({ component, name: `fw-${component}`, version, size: 1000, crc32: 1, sha256: sha(digest), ...more });

function dev(id: string, comps: [string, string, string][], more: Partial<DeviceRecord> = {}): DeviceRecord {
  const components: ComponentStatus[] = comps.map(([name, version, digest]) => ({
    name, layout: 'ab', version, sha256: sha(digest), slot: 'a', slots: { a: { state: 'confirmed', version, sha256: sha(digest) }, b: { state: 'empty' } }, trial: false,
    ...(name === 'agent' ? { agent: true as const } : {}),
  }));
  const app = comps.find(([n]) => n === 'app')!;
  return {
    id, hw: 'hw-a', version: app[1], slot: 'a', slots: { a: { state: 'confirmed', version: app[1], sha256: sha(app[2]) }, b: { state: 'empty' } },
    maxChunk: 1024, busy: false, trial: false, online: true, lastSeen: 0, components, ...more,
  };
}

const r11 = release('1.1.0', [comp('app', '1.1.0', 'b', { requires: { net: '>=1.5.0' } }), comp('net', '1.5.0', 'c')]);

describe('release plan: which components each device gets (§5.5.6, §7.5.9)', () => {
  it('sends only the components whose digest differs from what the device runs, and counts the bytes saved', () => {
    const p = planDevice(r11, dev('d1', [['app', '1.0.0', 'a'], ['net', '1.5.0', 'c']]), []);
    assert.ok('parts' in p);
    assert.deepEqual(p.parts.map((x) => x.component), ['app']);
    assert.deepEqual(p.skipped, ['net']);
    assert.equal(p.savedBytes, 1000);
    const q = planDevice(r11, dev('d2', [['app', '1.0.0', 'a'], ['net', '1.4.0', 'd']]), []);
    assert.ok('parts' in q);
    assert.deepEqual(q.parts.map((x) => x.component), ['app', 'net']);
    assert.deepEqual(q.skipped, []);
    assert.equal(q.savedBytes, 0);
  });

  it('offers a part as the component manifest of the release (the offer carries the release itself)', () => {
    const p = planDevice(r11, dev('d1', [['app', '1.0.0', 'a'], ['net', '1.5.0', 'c']]), []);
    assert.ok('parts' in p);
    assert.deepEqual(p.parts[0]!.manifest, { name: 'fw-app', version: '1.1.0', hw: ['hw-a'], size: 1000, crc32: 1, sha256: sha('b'), chunk: 1024 });
    assert.equal(p.parts[0]!.release, r11);
  });

  it('a device that already runs every component by digest is not-newer; a component it has no slot for is not sent', () => {
    const p = planDevice(r11, dev('d1', [['app', '1.1.0', 'b'], ['net', '1.5.0', 'c']]), []);
    assert.ok(!('parts' in p));
    assert.equal(p.code, 'not-newer');
    assert.match(p.reason, /app, net by digest/);
    const single = planDevice(release('2.0.0', [comp('app', '2.0.0', 'e')]), dev('d2', [['app', '1.0.0', 'a']], { components: undefined }), []);
    assert.ok('parts' in single);
    assert.deepEqual(single.parts.map((x) => x.component), ['app']);
  });

  it('a single-image device is one component, app, with its running slot digest', () => {
    const d = dev('d', [['app', '1.0.0', 'a']], { components: undefined });
    assert.deepEqual([...runningComponents(d)], [['app', { version: '1.0.0', sha256: sha('a') }]]);
  });

  it('refuses a device whose components would violate a requires: unmet-dependency naming the constraint', () => {
    const r = release('1.1.0', [comp('app', '1.1.0', 'b', { requires: { net: '>=1.6.0' } })]);
    const p = planDevice(r, dev('d1', [['app', '1.0.0', 'a'], ['net', '1.5.0', 'c']]), []);
    assert.ok(!('parts' in p));
    assert.equal(p.code, 'unmet-dependency');
    assert.match(p.reason, /app requires net >=1\.6\.0 \(it would run net 1\.5\.0\)/);
  });

  it('adds the newest component of another held release that meets the requires, and names it (via)', () => {
    const r = release('1.1.0', [comp('app', '1.1.0', 'b', { requires: { net: '>=1.6.0' } })]);
    const netOld = release('0.9.0', [comp('net', '1.6.0', 'e')], { release: 'net-only' });
    const netNew = release('1.0.0', [comp('net', '1.7.0', 'f')], { release: 'net-only' });
    const netTooNew = release('2.0.0', [comp('net', '1.5.1', '9')], { release: 'net-only' });
    const p = planDevice(r, dev('d1', [['app', '1.0.0', 'a'], ['net', '1.5.0', 'c']]), [netOld, netTooNew, netNew]);
    assert.ok('parts' in p);
    assert.deepEqual(p.parts.map((x) => [x.component, x.manifest.version, x.via]), [['app', '1.1.0', undefined], ['net', '1.7.0', 'net-only@1.0.0']]);
    assert.equal(p.parts[1]!.release, netNew);
    // a held release for another hardware model does not count
    const otherHw = release('1.0.0', [comp('net', '1.7.0', 'f')], { release: 'net-only', hw: ['hw-b'] });
    const q = planDevice(r, dev('d1', [['app', '1.0.0', 'a'], ['net', '1.5.0', 'c']]), [otherHw]);
    assert.ok(!('parts' in q));
    assert.equal(q.code, 'unmet-dependency');
  });

  it('a requires of a component the device already runs from the release still has to hold', () => {
    // app unchanged (same digest) requires net >= 2; the release brings net 1.9: refused
    const r = release('1.2.0', [comp('app', '1.1.0', 'b', { requires: { net: '>=2.0.0' } }), comp('net', '1.9.0', 'd')]);
    const p = planDevice(r, dev('d1', [['app', '1.1.0', 'b'], ['net', '1.5.0', 'c']]), []);
    assert.ok(!('parts' in p));
    assert.equal(p.code, 'unmet-dependency');
  });

  it('the agent goes first whatever its place in the release', () => {
    const r = release('2.0.0', [comp('app', '2.0.0', 'b'), comp('agent', '2.0.0', 'e', { agent: true }), comp('net', '2.0.0', 'f')]);
    const p = planDevice(r, dev('d1', [['app', '1.0.0', 'a'], ['net', '1.0.0', 'c'], ['agent', '1.0.0', 'd']]), []);
    assert.ok('parts' in p);
    assert.deepEqual(p.parts.map((x) => [x.component, x.agent]), [['agent', true], ['app', false], ['net', false]]);
  });

  it('other hardware, a floor above the app, and an older component without downgrade are excluded or held back', () => {
    assert.equal((planDevice(r11, dev('d', [['app', '1.0.0', 'a']], { hw: 'hw-z' }), []) as { code: string }).code, 'incompatible-hw');
    assert.equal((planDevice(r11, dev('d', [['app', '1.0.0', 'a'], ['net', '1.4.0', 'd']], { floor: '1.2.0' }), []) as { code: string }).code, 'below-floor');
    const older = release('1.1.0', [comp('app', '0.9.0', 'b')]);
    const p = planDevice(older, dev('d', [['app', '1.0.0', 'a']]), []);
    assert.ok(!('parts' in p));
    assert.equal(p.code, 'not-newer');
    assert.ok('parts' in planDevice(older, dev('d', [['app', '1.0.0', 'a']]), [], { downgrade: true }));
  });

  it('selectForRelease: online eligible devices with plans, offline ones planned but excluded as offline', () => {
    const s = selectForRelease(r11, [
      dev('on', [['app', '1.0.0', 'a'], ['net', '1.5.0', 'c']]),
      dev('off', [['app', '1.0.0', 'a'], ['net', '1.4.0', 'd']], { online: false }),
      dev('done', [['app', '1.1.0', 'b'], ['net', '1.5.0', 'c']]),
    ], []);
    assert.deepEqual(s.eligible.map((d) => d.id), ['on']);
    assert.deepEqual(s.excluded.map((x) => [x.id, x.code]), [['off', 'offline'], ['done', 'not-newer']]);
    assert.deepEqual([...s.plans.keys()], ['on', 'off']);
  });
});
