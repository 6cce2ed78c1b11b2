import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { encodeCbor } from './cbor.ts';
import { FwError, type ErrorCode } from './errors.ts';
import type { Manifest } from './manifest.ts';

/**
 * Signed manifests (docs/protocol.md §5.4): Ed25519 over a deterministic byte string rebuilt
 * from the manifest's fields. Pure: keys come in as values, nothing is read from disk here.
 */

/** Domain-separation string, the first element of the signed array (§5.4.1). */
export const SIGNATURE_DOMAIN = 'fwgate-manifest-v1';

/** DER prefix of an Ed25519 SubjectPublicKeyInfo; the raw 32-byte key follows (RFC 8410). */
const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

/** The fields a signature covers, in the order they are signed. */
export type SignedFields = Pick<Manifest, 'name' | 'version' | 'hw' | 'size' | 'crc32' | 'sha256' | 'chunk' | 'seq'>;

/**
 * The bytes an Ed25519 signature covers (§5.4.1): the CBOR encoding (§1.4) of the array
 * ["fwgate-manifest-v1", name, version, hw, size, crc32, sha256, chunk, seq], seq 0 when absent.
 */
export function signedBytes(m: SignedFields): Uint8Array {
  return encodeCbor([SIGNATURE_DOMAIN, m.name, m.version, [...m.hw], m.size, m.crc32, m.sha256, m.chunk, m.seq ?? 0]);
}

/** The raw 32-byte Ed25519 public key. */
export function rawPublicKey(key: KeyObject): Buffer {
  const der = key.export({ type: 'spki', format: 'der' });
  return der.subarray(der.length - 32);
}

/** Key id (§5.4.2): the first 16 hex digits of SHA-256 over the raw 32-byte public key. */
export function keyIdOf(key: KeyObject): string {
  return createHash('sha256').update(rawPublicKey(key)).digest('hex').slice(0, 16);
}

/**
 * An Ed25519 public key from text: SPKI PEM (`-----BEGIN PUBLIC KEY-----`), or the raw 32 bytes
 * as base64 or 64 hex digits. Throws E_CONFIG naming the problem.
 */
export function parsePublicKey(text: string): KeyObject {
  const t = text.trim();
  let key: KeyObject;
  try {
    if (t.startsWith('-----BEGIN')) key = createPublicKey(t);
    else {
      const raw = /^[0-9a-fA-F]{64}$/.test(t) ? Buffer.from(t, 'hex') : Buffer.from(t, 'base64');
      if (raw.length !== 32) throw new Error(`a raw Ed25519 public key is 32 bytes, got ${raw.length}`);
      key = createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, raw]), format: 'der', type: 'spki' });
    }
  } catch (cause) {
    throw new FwError('E_CONFIG', `not an Ed25519 public key (SPKI PEM, or 32 bytes base64 or hex): ${(cause as Error).message}`, { cause });
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new FwError('E_CONFIG', `public key is ${key.asymmetricKeyType ?? 'unknown'}, not ed25519`);
  return key;
}

/** An Ed25519 private key from PKCS#8 PEM. Throws E_CONFIG. */
export function parsePrivateKey(pem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (cause) {
    throw new FwError('E_CONFIG', `not a private key in PEM: ${(cause as Error).message}`, { cause });
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new FwError('E_CONFIG', `private key is ${key.asymmetricKeyType ?? 'unknown'}, not ed25519`);
  return key;
}

/** A new key pair as PEM text (PKCS#8 private, SPKI public) and its key id. */
export function generateSigningKey(): { privateKeyPem: string; publicKeyPem: string; keyId: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    keyId: keyIdOf(publicKey),
  };
}

/** The manifest with `signature` set (any earlier signature replaced). */
export function signManifest<M extends SignedFields>(m: M, privateKey: KeyObject): M & { signature: { keyId: string; sig: string } } {
  const sig = sign(null, signedBytes(m), privateKey).toString('hex');
  return { ...m, signature: { keyId: keyIdOf(createPublicKey(privateKey)), sig } };
}

/** Why a signature check failed (§5.4.3); each maps to a deny code (§7.3) and an error code (§9). */
export const SignatureFailures = {
  unsigned: 'E_MANIFEST_UNSIGNED',
  'unknown-key': 'E_MANIFEST_KEY_UNKNOWN',
  'bad-signature': 'E_MANIFEST_SIGNATURE',
} as const satisfies Record<string, ErrorCode>;
export type SignatureFailure = keyof typeof SignatureFailures;

export type SignatureCheck =
  | { ok: true; keyId: string }
  | { ok: false; failure: SignatureFailure; reason: string };

/** A set of trusted (gateway) or pinned (device) public keys, looked up by key id. */
export class KeyRing {
  readonly #keys = new Map<string, KeyObject>();

  constructor(keys: Iterable<KeyObject>) {
    for (const k of keys) this.#keys.set(keyIdOf(k), k);
  }

  get size(): number {
    return this.#keys.size;
  }

  get keyIds(): string[] {
    return [...this.#keys.keys()];
  }

  /**
   * Check a manifest's signature (§5.4.3), in this order: missing (`unsigned`), key id not in the
   * ring (`unknown-key`), signature does not verify over the signed bytes (`bad-signature`: the
   * manifest was altered after signing, or the signature bytes were).
   */
  check(m: SignedFields & { signature?: { keyId: string; sig: string } | undefined }): SignatureCheck {
    return this.checkBytes(signedBytes(m), m.signature, 'manifest');
  }

  /**
   * The same check over any signed byte string (a release manifest's, §5.5.3): `what` names the
   * document in the reasons.
   */
  checkBytes(bytes: Uint8Array, s: { keyId: string; sig: string } | undefined, what: string): SignatureCheck {
    if (!s) return { ok: false, failure: 'unsigned', reason: `${what} has no signature` };
    const key = this.#keys.get(s.keyId);
    if (!key) return { ok: false, failure: 'unknown-key', reason: `${what} is signed by key ${s.keyId}, which is not trusted (trusted: ${this.keyIds.join(', ') || 'none'})` };
    let good = false;
    try {
      good = verify(null, bytes, key, Buffer.from(s.sig, 'hex'));
    } catch {
      good = false;
    }
    if (!good) return { ok: false, failure: 'bad-signature', reason: `signature by key ${s.keyId} does not match the ${what} (${what} or signature altered)` };
    return { ok: true, keyId: s.keyId };
  }
}
