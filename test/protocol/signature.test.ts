import assert from 'node:assert/strict';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { parseManifest, type Manifest } from '../../protocol/manifest.ts';
import { KeyRing, keyIdOf, parsePublicKey, rawPublicKey, signedBytes, signManifest } from '../../protocol/signature.ts';
import { makeTestKey } from '../helpers/keys.ts';

/** docs/protocol.md §5.4: signed bytes, key id, the check and its three failures. */

const example: Manifest = parseManifest({
  name: 'sensor-fw', version: '1.2.0', hw: ['sensor-v1'], size: 200, crc32: 3976749440,
  sha256: '1901da1c9f699b48f6b2636e65cbf73abf99d0441ef67f5c540a42f7051dec6f', chunk: 64, seq: 7,
});

/** The fixed test key of §10.8: seed 00 01 … 1f. */
const seedKey = createPrivateKey({
  key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), Buffer.from([...Array(32).keys()])]), format: 'der', type: 'pkcs8',
});

describe('protocol: signed manifests (§5.4)', () => {
  const vendor = makeTestKey();
  const other = makeTestKey();
  const ring = new KeyRing([vendor.publicKey]);

  it('a signed manifest verifies and parses (round trip through JSON)', () => {
    const m = parseManifest(JSON.parse(JSON.stringify(signManifest(example, vendor.privateKey))));
    assert.equal(m.signature?.keyId, vendor.keyId);
    assert.deepEqual(ring.check(m), { ok: true, keyId: vendor.keyId });
  });

  it('missing signature -> unsigned; unknown key -> unknown-key; bad signature bytes -> bad-signature', () => {
    assert.equal(failure(ring.check(example)), 'unsigned');
    assert.equal(failure(ring.check(signManifest(example, other.privateKey))), 'unknown-key');
    const m = signManifest(example, vendor.privateKey);
    const flipped = `${m.signature.sig.slice(0, 10)}${m.signature.sig[10] === '0' ? '1' : '0'}${m.signature.sig.slice(11)}`;
    assert.equal(failure(ring.check({ ...m, signature: { ...m.signature, sig: flipped } })), 'bad-signature');
    // a signature claiming the trusted key id but made with another key
    const forged = signManifest(example, other.privateKey);
    assert.equal(failure(ring.check({ ...forged, signature: { ...forged.signature, keyId: vendor.keyId } })), 'bad-signature');
  });

  it('changing any signed field after signing -> bad-signature', () => {
    const m = signManifest(example, vendor.privateKey);
    const tampered: Partial<Manifest>[] = [
      { name: 'sensor-fx' }, { version: '1.2.1' }, { hw: ['sensor-v2'] }, { hw: ['sensor-v1', 'sensor-v2'] }, { size: 201 },
      { crc32: 1 }, { sha256: 'ab'.repeat(32) }, { chunk: 128 }, { seq: 6 }, { seq: undefined },
    ];
    for (const t of tampered) assert.equal(failure(ring.check({ ...m, ...t })), 'bad-signature', JSON.stringify(t));
  });

  it('property: flipping any bit of the signature is refused', () => {
    const m = signManifest(example, vendor.privateKey);
    const sig = Buffer.from(m.signature.sig, 'hex');
    fc.assert(fc.property(fc.integer({ min: 0, max: sig.length * 8 - 1 }), (bit) => {
      const b = Buffer.from(sig);
      b[bit >> 3]! ^= 1 << (bit & 7);
      return failure(ring.check({ ...m, signature: { keyId: m.signature.keyId, sig: b.toString('hex') } })) === 'bad-signature';
    }), { numRuns: 64 });
  });

  it('key rotation: a ring of two keys accepts either', () => {
    const both = new KeyRing([vendor.publicKey, other.publicKey]);
    assert.equal(both.check(signManifest(example, other.privateKey)).ok, true);
    assert.equal(both.check(signManifest(example, vendor.privateKey)).ok, true);
  });

  it('the fixed test key of §10.8: public key, key id, signed bytes and signature as the document gives them', () => {
    const pub = createPublicKey(seedKey);
    assert.equal(rawPublicKey(pub).toString('hex'), '03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8');
    assert.equal(keyIdOf(pub), '56475aa75463474c');
    const doc = readFileSync(fileURLToPath(new URL('../../docs/protocol.md', import.meta.url)), 'utf8');
    const bytesHex = /```vector name=signed-bytes-example kind=signed-bytes\nvalue: .*\nhex: ([0-9a-f]+)\n/.exec(doc)?.[1];
    assert.equal(Buffer.from(signedBytes(example)).toString('hex'), bytesHex);
    const rts = /```vector name=laptop-rts-signed kind=uplink-laptop\nvalue: (.*)\n/.exec(doc)?.[1];
    const documented = parseManifest((JSON.parse(rts!) as { manifest: unknown }).manifest);
    assert.deepEqual(signManifest(example, seedKey).signature, documented.signature, 'Ed25519 is deterministic');
    assert.equal(new KeyRing([parsePublicKey('A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=')]).check(documented).ok, true);
  });

  it('public keys as SPKI PEM, raw base64 or raw hex give the same key id; other text is refused', () => {
    const raw = rawPublicKey(vendor.publicKey);
    for (const text of [vendor.publicKeyPem, raw.toString('base64'), raw.toString('hex')]) assert.equal(keyIdOf(parsePublicKey(text)), vendor.keyId);
    assert.throws(() => parsePublicKey('AAAA'), /32 bytes/);
    assert.throws(() => parsePublicKey('-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----'), /Ed25519 public key/);
  });
});

function failure(r: ReturnType<KeyRing['check']>): string {
  return r.ok ? 'ok' : r.failure;
}
