import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { FwError } from '../../protocol/errors.ts';
import { checkDigest, digestImage, hex32, keyIdHex, manifestForImage, parseManifest, signatureHex, type Manifest } from '../../protocol/manifest.ts';
import { KeyRing, keyIdOf, parsePrivateKey, parsePublicKey, rawPublicKey, signManifest } from '../../protocol/signature.ts';
import { makeTestKey } from '../helpers/keys.ts';

/**
 * The manifest's validation and image check (§5.2, §2.3) and the key handling of §5.4, held to
 * what they promise a user: each refusal names the field, expected and actual values, and the
 * check's outcome is the documented one (not merely "some error").
 */

const image = Uint8Array.from({ length: 300 }, (_, i) => (i * 13) & 0xff);
const manifest = manifestForImage(image, { name: 'sensor-fw', version: '1.2.0', hw: ['sensor-v1'] });

function fwError(fn: () => unknown): FwError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof FwError, `an FwError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected an FwError');
}

describe('protocol: manifest checks (§2.3, §5.2)', () => {
  it('manifestForImage: the digest of the bytes, the default chunk, and seq only when given', () => {
    assert.deepEqual({ size: manifest.size, crc32: manifest.crc32, sha256: manifest.sha256 }, digestImage(image));
    assert.equal(manifest.chunk, 4096);
    assert.ok(!('seq' in manifest));
    const withSeq = manifestForImage(image, { name: 'sensor-fw', version: '1.2.0', hw: ['sensor-v1'], seq: 0 });
    assert.equal(withSeq.seq, 0, 'seq 0 is kept');
  });

  it('checkDigest: size, then CRC-32, then SHA-256, each naming expected and actual', () => {
    const d = digestImage(image);
    checkDigest(manifest, d);
    const size = fwError(() => checkDigest(manifest, { ...d, size: 299 }));
    assert.equal(size.code, 'E_IMAGE_SIZE');
    assert.deepEqual(size.details, { expected: 300, actual: 299 });
    assert.match(size.message, /image is 299 bytes, manifest says 300/);
    const crc = fwError(() => checkDigest(manifest, { ...d, crc32: 0x1a }));
    assert.equal(crc.code, 'E_IMAGE_CRC');
    assert.deepEqual(crc.details, { expected: manifest.crc32, actual: 0x1a });
    assert.match(crc.message, new RegExp(`CRC-32 is 0x0000001a, manifest says ${hex32(manifest.crc32)}`));
    const sha = fwError(() => checkDigest(manifest, { ...d, sha256: 'ee'.repeat(32) }));
    assert.equal(sha.code, 'E_IMAGE_SHA256');
    assert.deepEqual(sha.details, { expected: manifest.sha256, actual: 'ee'.repeat(32) });
    assert.match(sha.message, new RegExp(`SHA-256 is ${'ee'.repeat(32)}, manifest says ${manifest.sha256}`));
  });

  it('hex32: 0x and 8 lowercase digits, negative numbers as unsigned', () => {
    assert.equal(hex32(0x1a), '0x0000001a');
    assert.equal(hex32(-1), '0xffffffff');
  });

  it('key id and signature: exactly 16 and 128 lowercase hex digits, anchored both ends', () => {
    assert.ok(keyIdHex.safeParse('0123456789abcdef').success);
    for (const bad of ['x0123456789abcdef', '0123456789abcdefx', '0123456789ABCDEF']) {
      const r = keyIdHex.safeParse(bad);
      assert.ok(!r.success, bad);
      assert.match(r.error.issues[0]!.message, /16 lowercase hex digits/);
    }
    const sig = 'ab'.repeat(64);
    assert.ok(signatureHex.safeParse(sig).success);
    for (const bad of [`x${sig}`, `${sig}x`]) {
      const r = signatureHex.safeParse(bad);
      assert.ok(!r.success, bad);
      assert.match(r.error.issues[0]!.message, /128 lowercase hex digits/);
    }
  });

  it('a refusal names the field and what it must be', () => {
    const base: Manifest = { ...manifest };
    const msg = (over: Record<string, unknown>): string => fwError(() => parseManifest({ ...base, ...over })).message;
    assert.match(msg({ name: 'fw!' }), /manifest.*name.*letters, digits/);
    assert.match(msg({ name: 'fw\nx' }), /name.*letters, digits/, 'the name pattern is anchored at its end');
    assert.match(msg({ hw: ['ok', '-bad'] }), /hw.*letters, digits/);
    assert.match(msg({ version: 'one' }), /version.*semantic version such as 1\.2\.3/);
    assert.equal(fwError(() => parseManifest({ ...base, size: 0 })).code, 'E_MANIFEST_INVALID');
  });
});

describe('protocol: signing keys (§5.4)', () => {
  const vendor = makeTestKey();
  const other = makeTestKey();

  it('parsePublicKey: PEM, raw hex and raw base64 (whitespace around allowed) give one key id', () => {
    const raw = rawPublicKey(vendor.publicKey);
    const pem = vendor.publicKey.export({ type: 'spki', format: 'pem' }).toString();
    for (const text of [pem, `  ${raw.toString('hex')}\n`, raw.toString('base64'), `\n${raw.toString('hex').toUpperCase()} `]) {
      assert.equal(keyIdOf(parsePublicKey(text)), vendor.keyId, JSON.stringify(text));
    }
  });

  it('parsePublicKey: a raw key of another length, hex with extra digits, or another algorithm is refused with E_CONFIG and why', () => {
    const raw = rawPublicKey(vendor.publicKey);
    const short = fwError(() => parsePublicKey(raw.subarray(0, 31).toString('base64')));
    assert.equal(short.code, 'E_CONFIG');
    assert.match(short.message, /not an Ed25519 public key.*32 bytes, got 31/);
    assert.ok(short.cause instanceof Error);
    assert.match(fwError(() => parsePublicKey(`00${raw.toString('hex')}`)).message, /32 bytes, got/, 'hex with a digit pair more is not 32 bytes');
    assert.match(fwError(() => parsePublicKey(`${raw.toString('hex')}00`)).message, /32 bytes, got/);
    const rsa = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const ec = fwError(() => parsePublicKey(rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString()));
    assert.equal(ec.code, 'E_CONFIG');
    assert.match(ec.message, /public key is ec, not ed25519/);
  });

  it('parsePrivateKey: PKCS#8 Ed25519 only, E_CONFIG naming the problem otherwise', () => {
    const pem = vendor.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    assert.equal(parsePrivateKey(pem).asymmetricKeyType, 'ed25519');
    const junk = fwError(() => parsePrivateKey('not a key'));
    assert.equal(junk.code, 'E_CONFIG');
    assert.match(junk.message, /not a private key in PEM: /);
    assert.ok(junk.cause instanceof Error);
    const ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const wrong = fwError(() => parsePrivateKey(ec.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()));
    assert.match(wrong.message, /private key is ec, not ed25519/);
  });

  it('KeyRing: size and key ids; each failure with its reason naming the key', () => {
    const ring = new KeyRing([vendor.publicKey, other.publicKey, vendor.publicKey]);
    assert.equal(ring.size, 2);
    assert.deepEqual(ring.keyIds.sort(), [vendor.keyId, other.keyId].sort());
    assert.deepEqual(new KeyRing([]).keyIds, []);
    assert.deepEqual(ring.check(manifest), { ok: false, failure: 'unsigned', reason: 'manifest has no signature' });
    const third = makeTestKey();
    const unknown = ring.check(signManifest(manifest, third.privateKey));
    assert.deepEqual(unknown, {
      ok: false, failure: 'unknown-key',
      reason: `manifest is signed by key ${third.keyId}, which is not trusted (trusted: ${ring.keyIds.join(', ')})`,
    });
    const none = new KeyRing([]).check(signManifest(manifest, third.privateKey));
    assert.ok(!none.ok && none.reason.endsWith('(trusted: none)'));
    const signed = signManifest(manifest, vendor.privateKey);
    assert.deepEqual(ring.check(signed), { ok: true, keyId: vendor.keyId });
    const bad = ring.check({ ...signed, signature: { keyId: vendor.keyId, sig: 'zz' } });
    assert.deepEqual(bad, { ok: false, failure: 'bad-signature', reason: `signature by key ${vendor.keyId} does not match the manifest (manifest or signature altered)` });
    const altered = ring.check({ ...signed, version: '1.2.1' });
    assert.ok(!altered.ok && altered.failure === 'bad-signature');
  });
});
