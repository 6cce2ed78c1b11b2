import assert from 'node:assert/strict';
import { makeTestKey, signed } from '../helpers/keys.ts';
import { Rig, sampleImage } from './helpers.ts';

/** The simulator's own checks (docs/protocol.md §6.5.3, §6.5.7, §6.7.1): the signature at offer (and again at verify), the seq at offer. */
describe('device-sim: signed images and anti-rollback seq', function () {
  const rig = new Rig();
  const vendor = makeTestKey();
  beforeEach(async () => rig.setUp());
  afterEach(async () => rig.tearDown());

  it('with a pinned key: an offer whose signature does not verify is rejected before anything is downloaded (invalid, "signature: …"); a good one is accepted and verifies', async () => {
    const { device } = await rig.online('dev-001', { pinnedKeys: [vendor.publicKeyPem] });
    const { image, manifest: plain } = sampleImage('1.1.0');
    const manifest = signed({ ...plain, seq: 2 }, vendor);
    const sig = manifest.signature!.sig;
    const bad = `${sig.slice(0, 40)}${sig[40] === 'f' ? 'e' : 'f'}${sig.slice(41)}`;
    for (const [sid, offer, why] of [
      [1, rig.gw.offerFor(1, manifest, { sig: bad }), /^signature: bad-signature/],
      [2, rig.gw.offerFor(2, { ...manifest, signature: undefined }), /^signature: unsigned/],
      [3, rig.gw.offerFor(3, signed({ ...plain, seq: 2 }, makeTestKey())), /^signature: unknown-key/],
      [4, rig.gw.offerFor(4, manifest, { force: true, downgrade: true, version: '1.1.1' }), /^signature: bad-signature/],
    ] as const) {
      await rig.gw.send('dev-001', offer);
      const r = await rig.gw.expect('dev-001', 'reject', (m) => m.sid === sid);
      assert.equal(r.code, 'invalid');
      assert.match(r.reason ?? '', why);
    }
    assert.equal(device.status()?.slots.b.state, 'empty', 'nothing was received or discarded');

    await rig.gw.deliver('dev-001', 5, image, manifest);
    assert.equal(device.status()?.slots.b.state, 'ready');
  });

  it('a verified staged image survives a rogue offer, and a new offer of the same manifest accepts it whole (next = size, nothing sent again)', async () => {
    const { device } = await rig.online('dev-001', { pinnedKeys: [vendor.publicKeyPem] });
    const a = sampleImage('1.1.0');
    const manifest = signed({ ...a.manifest, seq: 2 }, vendor);
    await rig.gw.deliver('dev-001', 1, a.image, manifest);
    assert.equal(device.status()?.slots.b.state, 'ready');
    // a rogue gateway offers another image, signed by no pinned key, forced: refused, the staged image kept
    const b = sampleImage('1.2.0');
    await rig.gw.send('dev-001', rig.gw.offerFor(2, signed({ ...b.manifest, seq: 9 }, makeTestKey()), { force: true }));
    assert.equal((await rig.gw.expect('dev-001', 'reject', (m) => m.sid === 2)).code, 'invalid');
    assert.equal(device.status()?.slots.b.state, 'ready');
    assert.equal(device.status()?.slots.b.version, '1.1.0');
    // the genuine campaign offers the same manifest again: accepted as already held
    await rig.gw.send('dev-001', rig.gw.offerFor(3, manifest));
    const accept = await rig.gw.expect('dev-001', 'accept', (m) => m.sid === 3);
    assert.equal(accept.next, manifest.size);
    await rig.gw.send('dev-001', { t: 'verify', sid: 3 });
    assert.equal((await rig.gw.expect('dev-001', 'verified', (m) => m.sid === 3)).ok, true);
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
