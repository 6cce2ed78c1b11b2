import assert from 'node:assert/strict';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { isFwError } from '../../protocol/errors.ts';
import { keyIdOf, parsePublicKey } from '../../protocol/signature.ts';
import {
  AUTH_CHALLENGE_BYTES, AUTH_DOMAIN, AUTH_SIG_BYTES, AUTHORISED_REQUEST_TYPES, authSigningInput, canonicalRequestBytes, needsRequestAuth,
  REQUEST_AUTH_DOMAIN, requestDigest, requestSigningInput, signChallenge, signRequest, technicianKey, verifyChallenge, verifyRequest,
  type UplinkRequest,
} from '../../protocol/uplink-auth.ts';
import { decodeGatewayUplinkMessage, decodeLaptopMessage, encodeUplinkMessage } from '../../protocol/uplink.ts';

/**
 * Technician authentication (docs/protocol.md §7.2.4): the signing input, the `auth` message and
 * the hello `challenge`, and the §10.7 vectors `laptop-auth` / `gateway-hello-challenge`, whose
 * signature must really verify with the RFC 8032 test key the document names.
 */

const RFC8032_SEED = '9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60';
const RFC8032_PUBLIC = 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a';
const rfcKey = technicianKey(createPrivateKey({ key: Buffer.from(`302e020100300506032b657004220420${RFC8032_SEED}`, 'hex'), format: 'der', type: 'pkcs8' }));
const rfcPublic = parsePublicKey(RFC8032_PUBLIC);

const doc = readFileSync(fileURLToPath(new URL('../../docs/protocol.md', import.meta.url)), 'utf8');
function vectorHex(name: string): Uint8Array {
  const m = new RegExp(`^\`\`\`vector name=${name} kind=[a-z-]+\\nvalue: .*\\nhex: ([0-9a-f]+)$`, 'm').exec(doc);
  assert.ok(m, `docs/protocol.md has vector ${name}`);
  return Uint8Array.from(Buffer.from(m[1]!, 'hex'));
}

const expectInvalid = (f: () => unknown, field: RegExp): void => {
  assert.throws(f, (e: unknown) => isFwError(e, 'E_MESSAGE_INVALID') && field.test(e.message));
};

describe('uplink technician authentication (docs/protocol.md §7.2.4)', () => {
  const challenge = Uint8Array.from({ length: AUTH_CHALLENGE_BYTES }, (_, i) => i);

  it('the signing input is "fwgate-uplink-auth-v1", 0x00, then the 32 challenge bytes (54 bytes)', () => {
    const input = authSigningInput(challenge);
    assert.equal(input.length, AUTH_DOMAIN.length + 1 + AUTH_CHALLENGE_BYTES);
    assert.equal(Buffer.from(input.subarray(0, AUTH_DOMAIN.length)).toString('ascii'), 'fwgate-uplink-auth-v1');
    assert.equal(input[AUTH_DOMAIN.length], 0);
    assert.ok(Buffer.from(input.subarray(AUTH_DOMAIN.length + 1)).equals(challenge));
  });

  it('the key id of the RFC 8032 test key is 21fe31dfa154a261, as the document says', () => {
    assert.equal(rfcKey.keyId, '21fe31dfa154a261');
    assert.equal(keyIdOf(createPublicKey(rfcKey.privateKey)), keyIdOf(rfcPublic));
  });

  it('vectors laptop-auth and gateway-hello-challenge: the auth signs the hello\'s challenge, and only it', () => {
    const hello = decodeGatewayUplinkMessage(vectorHex('gateway-hello-challenge'));
    const auth = decodeLaptopMessage(vectorHex('laptop-auth'));
    assert.ok(hello.t === 'hello' && hello.challenge && auth.t === 'auth');
    assert.equal(auth.keyId, keyIdOf(rfcPublic));
    assert.ok(verifyChallenge(rfcPublic, hello.challenge, auth.sig), 'the vector signature verifies');
    const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
    assert.equal(hex(encodeUplinkMessage(signChallenge(rfcKey, hello.challenge))), hex(vectorHex('laptop-auth')), 'Ed25519 is deterministic');
    for (let bit = 0; bit < AUTH_SIG_BYTES * 8; bit += 7) {
      const sig: Uint8Array = Uint8Array.from(auth.sig);
      sig[bit >> 3]! ^= 1 << (bit & 7);
      assert.equal(verifyChallenge(rfcPublic, hello.challenge, sig), false, `sig bit ${bit} flipped`);
    }
    for (let bit = 0; bit < AUTH_CHALLENGE_BYTES * 8; bit += 5) {
      const c: Uint8Array = Uint8Array.from(hello.challenge);
      c[bit >> 3]! ^= 1 << (bit & 7);
      assert.equal(verifyChallenge(rfcPublic, c, auth.sig), false, `challenge bit ${bit} flipped`);
    }
  });

  it('auth: keyId is 16 lowercase hex digits, sig exactly 64 bytes; both required', () => {
    const sig = new Uint8Array(AUTH_SIG_BYTES);
    const ok = decodeLaptopMessage(encodeUplinkMessage({ t: 'auth', keyId: '0123456789abcdef', sig }));
    assert.ok(ok.t === 'auth' && ok.keyId === '0123456789abcdef' && Buffer.from(ok.sig).equals(Buffer.from(sig)));
    const raw = (m: Record<string, unknown>): Uint8Array => encodeUplinkMessage(m as never);
    expectInvalid(() => decodeLaptopMessage(raw({ t: 'auth', keyId: '0123456789ABCDEF', sig })), /keyId/);
    expectInvalid(() => decodeLaptopMessage(raw({ t: 'auth', keyId: '0123456789abcde', sig })), /keyId/);
    expectInvalid(() => decodeLaptopMessage(raw({ t: 'auth', keyId: '0123456789abcdef', sig: new Uint8Array(63) })), /sig/);
    expectInvalid(() => decodeLaptopMessage(raw({ t: 'auth', keyId: '0123456789abcdef', sig: Buffer.from(sig).toString('hex') })), /sig/);
    expectInvalid(() => decodeLaptopMessage(raw({ t: 'auth', keyId: '0123456789abcdef' })), /sig/);
    expectInvalid(() => decodeLaptopMessage(raw({ t: 'auth', sig })), /keyId/);
  });

  it('hello.challenge: exactly 32 bytes when present', () => {
    const hello = { t: 'hello', proto: 1, role: 'gateway', agent: 'fwgate/0.1.0', maxFrame: 4096, window: 16, maxMessage: 1048576 };
    for (const n of [0, 31, 33]) {
      expectInvalid(() => decodeGatewayUplinkMessage(encodeUplinkMessage({ ...hello, challenge: new Uint8Array(n) } as never)), /challenge/);
    }
    assert.doesNotThrow(() => decodeGatewayUplinkMessage(encodeUplinkMessage({ ...hello, challenge: new Uint8Array(32) } as never)));
  });
});

describe('request-bound technician authorisation (docs/protocol.md §7.2.4)', () => {
  const challenge = Uint8Array.from({ length: AUTH_CHALLENGE_BYTES }, (_, i) => 255 - i);
  const manifest = {
    name: 'sensor-fw', version: '1.2.0', hw: ['sensor-v1'], size: 200, crc32: 3976749440,
    sha256: '1901da1c9f699b48f6b2636e65cbf73abf99d0441ef67f5c540a42f7051dec6f', chunk: 64,
  };
  const rts = { t: 'rts' as const, manifest, policy: 'window' as const, force: false };

  it('survives the wire: encoded by the laptop, decoded and validated by the gateway, it still verifies', () => {
    const signed = signRequest(rfcKey, challenge, 7, rts);
    const received = decodeLaptopMessage(encodeUplinkMessage(signed)) as UplinkRequest;
    assert.deepEqual(received.auth?.n, 7);
    assert.ok(verifyRequest(rfcPublic, challenge, received));
  });

  it('the canonical bytes ignore key order and absent values, at every depth', () => {
    const reordered = { force: false, manifest: Object.fromEntries(Object.entries(manifest).reverse()), policy: 'window', t: 'rts', downgrade: undefined };
    assert.deepEqual(canonicalRequestBytes(reordered as UplinkRequest), canonicalRequestBytes(rts));
    assert.deepEqual(requestDigest(reordered as UplinkRequest), requestDigest(rts));
  });

  it('the canonical bytes leave out auth and nothing else', () => {
    const signed = signRequest(rfcKey, challenge, 1, rts);
    assert.deepEqual(canonicalRequestBytes(signed), canonicalRequestBytes(rts));
    assert.notDeepEqual(canonicalRequestBytes({ ...rts, extra: 1 }), canonicalRequestBytes(rts));
  });

  it('canonical CBOR: shortest heads at each boundary, negative integers, floats, bytes, arrays, null and booleans', () => {
    const hex = (v: unknown): string => Buffer.from(canonicalRequestBytes({ t: 'x', v } as UplinkRequest)).toString('hex');
    const head = 'a2617461786176'; // {"t":"x","v": …} — "t" (6174) sorts before "v" (6176)
    const cases: [unknown, string][] = [
      [0, '00'], [23, '17'], [24, '1818'], [255, '18ff'], [256, '190100'], [65535, '19ffff'], [65536, '1a00010000'],
      [0xffff_ffff, '1affffffff'], [0x1_0000_0000, '1b0000000100000000'], [Number.MAX_SAFE_INTEGER, '1b001fffffffffffff'],
      [-1, '20'], [-24, '37'], [-25, '3818'], [-256, '38ff'], [-257, '390100'], [1.5, 'fb3ff8000000000000'],
      ['', '60'], ['é', '62c3a9'], [new Uint8Array([1, 2]), '420102'], [[1, [2]], '820181' + '02'], [null, 'f6'], [true, 'f5'], [false, 'f4'],
      [{ bb: 1, a: 2, c: 3 }, 'a3' + '6161' + '02' + '6163' + '03' + '626262' + '01'],
      ['x'.repeat(24), '7818' + '78'.repeat(24)],
    ];
    for (const [v, want] of cases) assert.equal(hex(v), head + want, JSON.stringify(v));
  });

  it('values without a canonical form are refused, naming the field', () => {
    assert.throws(() => canonicalRequestBytes({ t: 'x', v: Number.NaN }), /x\.v: not a finite number/);
    assert.throws(() => canonicalRequestBytes({ t: 'x', v: { w: () => 1 } }), /x\.v\.w: function has no canonical CBOR form/);
    assert.throws(() => canonicalRequestBytes({ t: 'x', v: [1n] }), /x\.v\[0\]: bigint/);
  });

  it('the signing input is "fwgate-uplink-request-v1", 0x00, challenge, n (u32 big-endian), SHA-256 of the canonical request (93 bytes)', () => {
    const input = requestSigningInput(challenge, 0x01020304, rts);
    assert.equal(input.length, 93);
    assert.equal(Buffer.from(input.subarray(0, 24)).toString('ascii'), REQUEST_AUTH_DOMAIN);
    assert.equal(input[24], 0);
    assert.deepEqual(Buffer.from(input.subarray(25, 57)), Buffer.from(challenge));
    assert.deepEqual([...input.subarray(57, 61)], [1, 2, 3, 4]);
    assert.deepEqual(Buffer.from(input.subarray(61)), Buffer.from(requestDigest(rts)));
    assert.throws(() => requestSigningInput(challenge, 0, rts), /outside 1\.\.4294967295/);
    assert.throws(() => requestSigningInput(challenge, 2 ** 32, rts), /outside/);
    assert.throws(() => requestSigningInput(challenge, 1.5, rts), /outside/);
    assert.ok(requestSigningInput(challenge, 2 ** 32 - 1, rts));
  });

  it('verifies only the same key, challenge, counter and content', () => {
    const signed = signRequest(rfcKey, challenge, 5, rts);
    assert.ok(verifyRequest(rfcPublic, challenge, signed));
    const other = technicianKey(createPrivateKey({ key: Buffer.from(`302e020100300506032b657004220420${'11'.repeat(32)}`, 'hex'), format: 'der', type: 'pkcs8' }));
    assert.ok(!verifyRequest(createPublicKey(other.privateKey), challenge, signed), 'another key');
    assert.ok(!verifyRequest(rfcPublic, new Uint8Array(32), signed), 'another challenge');
    assert.ok(!verifyRequest(rfcPublic, challenge, { ...signed, auth: { ...signed.auth, n: 6 } }), 'another counter');
    assert.ok(!verifyRequest(rfcPublic, challenge, { ...signed, force: true }), 'other content');
    assert.ok(!verifyRequest(rfcPublic, challenge, { ...signed, auth: undefined }), 'no auth');
    assert.ok(!verifyRequest(rfcPublic, challenge, { ...signed, auth: { ...signed.auth, sig: signed.auth.sig.subarray(0, 63) } }), 'short signature');
    assert.ok(!verifyRequest(rfcPublic, challenge, { ...signed, auth: { ...signed.auth, n: 0 } }), 'counter 0');
    assert.ok(!verifyRequest(rfcPublic, challenge, { ...signed, auth: { ...signed.auth, n: 2 ** 32 } }), 'counter past u32');
    assert.ok(!verifyRequest(rfcPublic, new Uint8Array(3), signed), 'a challenge of the wrong length');
  });

  it('rts and the campaign requests (cancel, retry, resume, plan, release-rts, release-live) need auth; status, data, commit and hello do not', () => {
    assert.deepEqual([...AUTHORISED_REQUEST_TYPES], ['rts', 'cancel', 'retry', 'resume', 'plan', 'release-rts', 'release-live']);
    for (const t of ['rts', 'cancel', 'retry', 'resume', 'plan', 'release-rts', 'release-live']) assert.ok(needsRequestAuth(t), t);
    for (const t of ['status', 'data', 'commit', 'hello', 'auth']) assert.ok(!needsRequestAuth(t), t);
  });

  it('the auth field is validated on the wire: key id, counter 1..2^32-1, 64-byte sig, no other key', () => {
    const signed = signRequest(rfcKey, challenge, 1, rts);
    const send = (auth: unknown): unknown => decodeLaptopMessage(encodeUplinkMessage({ ...signed, auth } as never));
    expectInvalid(() => send({ ...signed.auth, n: 0 }), /auth\.n/);
    expectInvalid(() => send({ ...signed.auth, keyId: 'XYZ' }), /auth\.keyId/);
    expectInvalid(() => send({ ...signed.auth, sig: new Uint8Array(63) }), /auth\.sig/);
    expectInvalid(() => send({ ...signed.auth, extra: 1 }), /auth/);
  });
});
