import assert from 'node:assert/strict';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { isFwError } from '../../protocol/errors.ts';
import { keyIdOf, parsePublicKey } from '../../protocol/signature.ts';
import {
  AUTH_CHALLENGE_BYTES, AUTH_DOMAIN, AUTH_SIG_BYTES, authSigningInput, signChallenge, technicianKey, verifyChallenge,
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
