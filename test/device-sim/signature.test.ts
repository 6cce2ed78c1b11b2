import assert from 'node:assert/strict';
import { makeTestKey, signed } from '../helpers/keys.ts';
import { Rig, sampleImage } from './helpers.ts';

/** The simulator's own checks (docs/protocol.md §6.5.7, §6.7.1): the signature at verify, the seq at offer. */
describe('device-sim: signed images and anti-rollback seq', function () {
  const rig = new Rig();
  const vendor = makeTestKey();
  beforeEach(async () => rig.setUp());
  afterEach(async () => rig.tearDown());

  it('with a pinned key: bad signature bytes fail verify with code signature and the image is discarded; a good one verifies', async () => {
    const { device } = await rig.online('dev-001', { pinnedKeys: [vendor.publicKeyPem] });
    const { image, manifest: plain } = sampleImage('1.1.0');
    const manifest = signed({ ...plain, seq: 2 }, vendor);
    const sig = manifest.signature!.sig;
    const bad = `${sig.slice(0, 40)}${sig[40] === 'f' ? 'e' : 'f'}${sig.slice(41)}`;
    await rig.gw.send('dev-001', rig.gw.offerFor(1, manifest, { sig: bad }));
    await rig.gw.transfer('dev-001', 1, image, await rig.gw.expect('dev-001', 'accept', (m) => m.sid === 1));
    await rig.gw.send('dev-001', { t: 'verify', sid: 1 });
    const v = await rig.gw.expect('dev-001', 'verified', (m) => m.sid === 1);
    assert.deepEqual([v.ok, v.code], [false, 'signature']);
    assert.match(v.reason ?? '', /bad-signature/);
    assert.equal(device.status()?.slots.b.state, 'empty');

    await rig.gw.send('dev-001', rig.gw.offerFor(2, { ...manifest, signature: undefined }));
    await rig.gw.transfer('dev-001', 2, image, await rig.gw.expect('dev-001', 'accept', (m) => m.sid === 2));
    await rig.gw.send('dev-001', { t: 'verify', sid: 2 });
    assert.match((await rig.gw.expect('dev-001', 'verified', (m) => m.sid === 2)).reason ?? '', /unsigned/);

    await rig.gw.deliver('dev-001', 3, image, manifest);
    assert.equal(device.status()?.slots.b.state, 'ready');
  });

  it('refuses an offer whose seq is below the seq of the image it confirmed (seq-rollback); an equal seq is accepted', async () => {
    const { device } = await rig.online('dev-001', { pinnedKeys: [vendor.publicKeyPem] });
    const a = sampleImage('1.1.0');
    const m = signed({ ...a.manifest, seq: 4 }, vendor);
    await rig.gw.deliver('dev-001', 1, a.image, m);
    await rig.gw.send('dev-001', { t: 'activate', sid: 1 });
    await rig.gw.expect('dev-001', 'activated');
    await rig.gw.expect('dev-001', 'boot', (b) => b.version === '1.1.0', 15_000);
    await rig.gw.send('dev-001', { t: 'confirm', sha256: m.sha256 });
    await rig.gw.expect('dev-001', 'confirmed');

    const b = sampleImage('1.2.0');
    await rig.gw.send('dev-001', rig.gw.offerFor(2, signed({ ...b.manifest, seq: 3 }, vendor)));
    const r = await rig.gw.expect('dev-001', 'reject', (x) => x.sid === 2);
    assert.equal(r.code, 'seq-rollback');
    assert.match(r.reason ?? '', /seq 3 is below the installed seq 4/);
    await rig.gw.send('dev-001', rig.gw.offerFor(3, signed({ ...b.manifest, seq: 4 }, vendor)));
    assert.equal((await rig.gw.expect('dev-001', 'accept', (x) => x.sid === 3)).next, 0);
    assert.equal(device.running?.version, '1.1.0');
  });
});
