import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { isFwError } from '../../protocol/errors.ts';
import { checkDigest, digestImage, hex32, manifestForImage, parseManifest } from '../../protocol/manifest.ts';
import { generateSigningKey, KeyRing, keyIdOf, parsePrivateKey, parsePublicKey, signManifest } from '../../protocol/signature.ts';

/** The edges of key parsing, the key ring and the digest check (docs/protocol.md §2.3, §5.4). */
describe('protocol: keys, key ring and digest checks at their edges', () => {
  const k = generateSigningKey();
  const raw = (): Buffer => Buffer.from(parsePublicKey(k.publicKeyPem).export({ format: 'der', type: 'spki' })).subarray(-32);
  const config = (f: () => unknown, re: RegExp): void => {
    assert.throws(f, (e: unknown) => isFwError(e, 'E_CONFIG') && re.test(e.message));
  };

  it('a public key as PEM with spaces around, 64 hex digits (either case) or base64 of 32 bytes', () => {
    const id = keyIdOf(parsePublicKey(k.publicKeyPem));
    assert.equal(keyIdOf(parsePublicKey(`  \n${k.publicKeyPem}\n  `)), id);
    assert.equal(keyIdOf(parsePublicKey(raw().toString('hex'))), id);
    assert.equal(keyIdOf(parsePublicKey(raw().toString('hex').toUpperCase())), id);
    assert.equal(keyIdOf(parsePublicKey(` ${raw().toString('base64')} `)), id);
  });

  it('refuses a raw key of another length, hex of the wrong length, a non-Ed25519 key, and garbage — as E_CONFIG', () => {
    config(() => parsePublicKey(raw().subarray(0, 31).toString('base64')), /a raw Ed25519 public key is 32 bytes, got 31/);
    config(() => parsePublicKey(raw().toString('hex').slice(0, 62)), /32 bytes, got 46/); // not 64 hex digits: read as base64
    config(() => parsePublicKey('-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----'), /not an Ed25519 public key/);
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    config(() => parsePublicKey(ec.publicKey.export({ format: 'pem', type: 'spki' }).toString()), /^public key is ec, not ed25519$/);
    config(() => parsePrivateKey(ec.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString()), /^private key is ec, not ed25519$/);
    config(() => parsePrivateKey('not a key'), /^not a private key in PEM/);
    assert.equal(parsePrivateKey(k.privateKeyPem).asymmetricKeyType, 'ed25519');
  });

  it('the key ring: size, ids, and each refusal with its reason', () => {
    const other = generateSigningKey();
    const ring = new KeyRing([parsePublicKey(k.publicKeyPem), parsePublicKey(other.publicKeyPem)]);
    assert.equal(ring.size, 2);
    assert.deepEqual(ring.keyIds.sort(), [keyIdOf(parsePublicKey(k.publicKeyPem)), keyIdOf(parsePublicKey(other.publicKeyPem))].sort());
    const m = manifestForImage(new Uint8Array(100), { name: 'fw', version: '1.0.0', hw: ['hw1'], seq: 1 });
    const s = signManifest(m, parsePrivateKey(k.privateKeyPem));
    assert.deepEqual(ring.check(s), { ok: true, keyId: s.signature!.keyId });
    assert.deepEqual(new KeyRing([]).check(s), { ok: false, failure: 'unknown-key', reason: `manifest is signed by key ${s.signature!.keyId}, which is not trusted (trusted: none)` });
    const notHex = { ...s, signature: { keyId: s.signature!.keyId, sig: 'zz'.repeat(64) } };
    assert.equal(ring.check(notHex).ok, false);
    const short = { ...s, signature: { keyId: s.signature!.keyId, sig: s.signature!.sig.slice(0, 126) } };
    assert.deepEqual(ring.check(short), { ok: false, failure: 'bad-signature', reason: `signature by key ${s.signature!.keyId} does not match the manifest (manifest or signature altered)` });
    assert.deepEqual(ring.check({ ...s, signature: undefined }), { ok: false, failure: 'unsigned', reason: 'manifest has no signature' });
  });

  it('checkDigest: size, then CRC-32, then SHA-256, each naming expected and actual', () => {
    const image = new Uint8Array(64).map((_, i) => i);
    const m = manifestForImage(image, { name: 'fw', version: '1.0.0', hw: ['hw1'] });
    assert.doesNotThrow(() => checkDigest(m, digestImage(image)));
    const d = digestImage(image);
    assert.throws(() => checkDigest(m, { ...d, size: 63 }), (e: unknown) => isFwError(e, 'E_IMAGE_SIZE') && e.details?.expected === 64 && e.details.actual === 63 && /image is 63 bytes, manifest says 64/.test(e.message));
    assert.throws(() => checkDigest(m, { ...d, crc32: 1 }), (e: unknown) => isFwError(e, 'E_IMAGE_CRC') && e.details?.actual === 1 && /0x00000001/.test(e.message));
    assert.throws(() => checkDigest(m, { ...d, sha256: '0'.repeat(64) }), (e: unknown) => isFwError(e, 'E_IMAGE_SHA256') && e.details?.expected === m.sha256);
    assert.equal(hex32(0xdeadbeef), '0xdeadbeef');
    assert.equal(hex32(-1), '0xffffffff');
    assert.equal(manifestForImage(image, { name: 'fw', version: '1.0.0', hw: ['hw1'] }).seq, undefined);
    assert.equal(manifestForImage(image, { name: 'fw', version: '1.0.0', hw: ['hw1'], seq: 0 }).seq, 0);
  });

  it('manifest fields: names and models start with a letter or digit; key id 16 and signature 128 lowercase hex digits', () => {
    const image = new Uint8Array(64);
    const m = manifestForImage(image, { name: 'fw', version: '1.0.0', hw: ['hw1'] });
    const bad = (over: Record<string, unknown>, field: RegExp): void => {
      assert.throws(() => parseManifest({ ...m, ...over }), (e: unknown) => isFwError(e, 'E_MANIFEST_INVALID') && field.test(e.message));
    };
    bad({ name: '-fw' }, /name/);
    bad({ name: 'fw x' }, /name/);
    bad({ name: '' }, /name/);
    bad({ hw: ['.hw'] }, /hw\.0/);
    bad({ hw: ['hw 1'] }, /hw\.0/);
    bad({ hw: [] }, /hw/);
    bad({ signature: { keyId: 'ABCDEF0123456789', sig: 'a'.repeat(128) } }, /signature\.keyId: must be 16 lowercase hex digits/);
    bad({ signature: { keyId: 'abcdef012345678', sig: 'a'.repeat(128) } }, /signature\.keyId/);
    bad({ signature: { keyId: 'abcdef0123456789', sig: 'a'.repeat(127) } }, /signature\.sig: must be 128 lowercase hex digits/);
    bad({ signature: { keyId: 'abcdef0123456789', sig: 'A'.repeat(128) } }, /signature\.sig/);
    assert.equal(parseManifest({ ...m, name: 'a.b_c-1', hw: ['x.y_z-2'] }).name, 'a.b_c-1');
  });
});
