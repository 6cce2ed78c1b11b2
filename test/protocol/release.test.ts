import assert from 'node:assert/strict';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { isFwError } from '../../protocol/errors.ts';
import { decodeCbor } from '../../protocol/cbor.ts';
import {
  checkReleaseSignature, componentManifest, describeUnmet, parseReleaseManifest, RELEASE_SIGNATURE_DOMAIN, releaseDigest,
  releaseIdentity, releaseSignedBytes, signRelease, unmetRequirements, type ReleaseManifest,
} from '../../protocol/release.ts';
import { KeyRing, signedBytes } from '../../protocol/signature.ts';

/** The fixed test key of docs/protocol.md §10.8: seed 00 01 … 1f. */
const testKey = createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), Buffer.from([...Array(32).keys()])]), format: 'der', type: 'pkcs8' });
const ring = new KeyRing([createPublicKey(testKey)]);
const sha = (c: string): string => c.repeat(64);
const base = {
  release: 'sensor-rel', version: '1.1.0', hw: ['sensor-v1'], chunk: 64, seq: 8,
  components: [
    { component: 'app', name: 'sensor-app', version: '1.1.0', size: 200, crc32: 3976749440, sha256: '1901da1c9f699b48f6b2636e65cbf73abf99d0441ef67f5c540a42f7051dec6f', requires: { net: '>=1.5.0' } },
    { component: 'net', name: 'sensor-net', version: '1.5.0', size: 100, crc32: 1, sha256: sha('b') },
  ],
};
const rel = (over: object = {}): ReleaseManifest => parseReleaseManifest({ ...base, ...over });
const refused = (v: unknown, field: RegExp): void => {
  assert.throws(() => parseReleaseManifest(v), (e: unknown) => isFwError(e, 'E_MANIFEST_INVALID') && field.test((e as Error).message));
};

describe('release manifests (docs/protocol.md §5.5)', () => {
  it('the signature of the doc example with the test key is the one §10.8 states', () => {
    const signed = signRelease(rel(), testKey);
    assert.equal(signed.signature!.keyId, '56475aa75463474c');
    assert.equal(signed.signature!.sig, '21cfc18bf120999c34d4de9ede2b0eb131934c4630ec02f84191da54cc21d62af24e3c0dc948148fe70e79f115b3829a478e379f254b5f67c42c68895b600701');
    assert.equal(releaseDigest(signed), '92726f83a38beac830f2bc7f18688a45a341beeb8d217fd1ef38ac2d114c7dad');
    assert.deepEqual(checkReleaseSignature(ring, signed), { ok: true, keyId: '56475aa75463474c' });
  });

  it('any change to a signed field breaks the signature: component digest, requires, agent flag, seq, hw', () => {
    const signed = signRelease(rel(), testKey);
    const tamper = (f: (r: ReleaseManifest) => void): ReleaseManifest => {
      const r = structuredClone(signed);
      f(r);
      return r;
    };
    for (const [what, r] of [
      ['net digest', tamper((r) => { r.components[1]!.sha256 = sha('c'); })],
      ['requires range', tamper((r) => { r.components[0]!.requires = { net: '>=1.4.0' }; })],
      ['agent flag', tamper((r) => { r.components[1]!.agent = true; })],
      ['seq', tamper((r) => { r.seq = 9; })],
      ['hw', tamper((r) => { r.hw = ['sensor-v2']; })],
      ['component name', tamper((r) => { r.components[1]!.component = 'modem'; })],
    ] as const) {
      const c = checkReleaseSignature(ring, r);
      assert.equal(c.ok, false, what);
      assert.equal(!c.ok && c.failure, 'bad-signature', what);
    }
    const { signature: _s, ...unsigned } = signed;
    assert.equal((checkReleaseSignature(ring, unsigned) as { failure: string }).failure, 'unsigned');
    assert.equal((checkReleaseSignature(new KeyRing([]), signed) as { failure: string }).failure, 'unknown-key');
  });

  it('requires pairs are signed in component order whatever their order in the file', () => {
    const a = rel({ components: [{ ...base.components[0], requires: { net: '>=1.5.0', dsp: '^2.0.0' } }, base.components[1]] });
    const b = rel({ components: [{ ...base.components[0], requires: { dsp: '^2.0.0', net: '>=1.5.0' } }, base.components[1]] });
    assert.deepEqual(releaseSignedBytes(a), releaseSignedBytes(b));
    const arr = decodeCbor(releaseSignedBytes(a)) as unknown[];
    assert.equal(arr[0], RELEASE_SIGNATURE_DOMAIN);
    assert.deepEqual((arr[6] as unknown[][])[0]![6], [['dsp', '^2.0.0'], ['net', '>=1.5.0']]);
  });

  it('a release signature cannot pass as a manifest signature (different domain)', () => {
    const signed = signRelease(rel(), testKey);
    const m = { ...componentManifest(signed, signed.components[0]!), signature: signed.signature };
    assert.equal((ring.check(m) as { failure: string }).failure, 'bad-signature');
    assert.notDeepEqual(Buffer.from(signedBytes(m)).subarray(0, 24), Buffer.from(releaseSignedBytes(signed)).subarray(0, 24));
  });

  it('refuses, naming the field: a repeated component, two agents, self-requires, a bad range, a bad component name, no components', () => {
    refused({ ...base, components: [base.components[0], { ...base.components[1], component: 'app' }] }, /components\.1\.component: component "app" is listed twice/);
    refused({ ...base, components: [{ ...base.components[0], agent: true }, { ...base.components[1], agent: true }] }, /at most one component may be the agent/);
    refused({ ...base, components: [{ ...base.components[0], requires: { app: '>=1.0.0' } }] }, /requires\.app: a component cannot require itself/);
    refused({ ...base, components: [{ ...base.components[0], requires: { net: 'newest please' } }] }, /requires\.net: must be a semver range/);
    refused({ ...base, components: [{ ...base.components[0], component: 'App' }] }, /components\.0\.component/);
    refused({ ...base, components: [] }, /components/);
    refused({ ...base, extra: 1 }, /extra|unrecognized/i);
  });

  it('component manifests carry the release hw, chunk and seq; the identity sums the sizes and names the digest', () => {
    const r = rel();
    assert.deepEqual(componentManifest(r, r.components[1]!), { name: 'sensor-net', version: '1.5.0', hw: ['sensor-v1'], size: 100, crc32: 1, sha256: sha('b'), chunk: 64, seq: 8 });
    const id = releaseIdentity(r);
    assert.equal(id.name, 'sensor-rel');
    assert.equal(id.size, 300);
    assert.equal(id.sha256, releaseDigest(r));
  });

  it('unmetRequirements: semver ranges over the versions a device would run, a missing component unmet', () => {
    const installed = [{ component: 'app', requires: { net: '>=1.5.0 <2.0.0', dsp: '^3.1.0' } }];
    assert.deepEqual(unmetRequirements(installed, new Map([['net', '1.5.0'], ['dsp', '3.4.1']])), []);
    const u = unmetRequirements(installed, new Map([['net', '2.0.0']]));
    assert.deepEqual(u.map((x) => [x.requires, x.have]), [['net', '2.0.0'], ['dsp', undefined]]);
    assert.equal(describeUnmet(u[0]!), 'app requires net >=1.5.0 <2.0.0 (it would run net 2.0.0)');
    assert.equal(describeUnmet(u[1]!), 'app requires dsp ^3.1.0 (the device has no dsp component)');
    assert.deepEqual(unmetRequirements([{ component: 'app', requires: { net: '>=1.5.0' } }], new Map([['net', '1.6.0-rc.1']])), [], 'pre-releases count');
  });
});
