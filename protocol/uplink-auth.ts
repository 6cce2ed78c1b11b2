import { createHash, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { keyIdOf } from './signature.ts';

/**
 * Technician authentication on the uplink (docs/protocol.md §7.2.4): the gateway's `hello`
 * carries a fresh random `challenge`; the laptop answers `auth { keyId, sig }`, an Ed25519
 * signature over AUTH_DOMAIN || 0x00 || challenge with a technician key the gateway trusts.
 * Key ids and key parsing are those of signed manifests (protocol/signature.ts, §5.4.2).
 * Pure computation: no I/O, no randomness of its own (the gateway injects its source).
 */

/** Domain separation: a technician signature is never valid for anything else (§7.2.4). */
export const AUTH_DOMAIN = 'fwgate-uplink-auth-v1';
/** Bytes of the gateway's `hello.challenge` (§7.2.4). */
export const AUTH_CHALLENGE_BYTES = 32;
/** Bytes of an Ed25519 signature (`auth.sig`). */
export const AUTH_SIG_BYTES = 64;

/** The bytes a technician signs for one challenge: AUTH_DOMAIN (ASCII) || 0x00 || challenge. */
export function authSigningInput(challenge: Uint8Array): Uint8Array {
  return Buffer.concat([Buffer.from(AUTH_DOMAIN, 'ascii'), Buffer.from([0]), challenge]);
}

/** A technician's private key ready to answer challenges, with its key id. */
export interface TechnicianKey {
  readonly keyId: string;
  readonly privateKey: KeyObject;
}

export function technicianKey(privateKey: KeyObject): TechnicianKey {
  return { keyId: keyIdOf(createPublicKey(privateKey)), privateKey };
}

/** The `auth` answer to a challenge (§7.2.4). */
export function signChallenge(key: TechnicianKey, challenge: Uint8Array): { t: 'auth'; keyId: string; sig: Uint8Array } {
  return { t: 'auth', keyId: key.keyId, sig: Uint8Array.from(sign(null, authSigningInput(challenge), key.privateKey)) };
}

/** Whether `sig` is the key's signature over this challenge. */
export function verifyChallenge(publicKey: KeyObject, challenge: Uint8Array, sig: Uint8Array): boolean {
  if (sig.length !== AUTH_SIG_BYTES) return false;
  try {
    return verify(null, authSigningInput(challenge), publicKey, sig);
  } catch {
    return false;
  }
}

/* ------------------------------------------------------------------------------------------ */
/* Request-bound authorisation (§7.2.4, version 2): each authorised request carries `auth`.   */
/* ------------------------------------------------------------------------------------------ */

/** Domain of a request signature: never valid as a manifest signature or a v1 challenge answer. */
export const REQUEST_AUTH_DOMAIN = 'fwgate-uplink-request-v1';
/** Largest request counter `auth.n` (u32). */
export const MAX_REQUEST_COUNTER = 0xffff_ffff;

/** The `auth` field of an authorised request (§7.2.4): key id, session counter, signature. */
export interface RequestAuth {
  keyId: string;
  n: number;
  sig: Uint8Array;
}

/** Any uplink request: a CBOR map with a text `t`, possibly carrying `auth`. */
export type UplinkRequest = { t: string; auth?: RequestAuth | undefined } & Record<string, unknown>;

function head(major: number, value: number): number[] {
  if (value < 24) return [(major << 5) | value];
  if (value < 0x100) return [(major << 5) | 24, value];
  if (value < 0x1_0000) return [(major << 5) | 25, value >> 8, value & 0xff];
  if (value < 0x1_0000_0000) return [(major << 5) | 26, (value >>> 24) & 0xff, (value >>> 16) & 0xff, (value >>> 8) & 0xff, value & 0xff];
  const hi = Math.floor(value / 0x1_0000_0000);
  const lo = value >>> 0;
  return [(major << 5) | 27, (hi >>> 24) & 0xff, (hi >>> 16) & 0xff, (hi >>> 8) & 0xff, hi & 0xff, (lo >>> 24) & 0xff, (lo >>> 16) & 0xff, (lo >>> 8) & 0xff, lo & 0xff];
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

function canonicalParts(value: unknown, path: string): Uint8Array {
  if (value === null) return Uint8Array.of(0xf6);
  if (value === false) return Uint8Array.of(0xf4);
  if (value === true) return Uint8Array.of(0xf5);
  if (typeof value === 'number') {
    if (Number.isSafeInteger(value)) return Uint8Array.from(value >= 0 ? head(0, value) : head(1, -1 - value));
    if (!Number.isFinite(value)) throw new TypeError(`${path}: not a finite number`);
    const out = new Uint8Array(9);
    out[0] = 0xfb;
    new DataView(out.buffer).setFloat64(1, value);
    return out;
  }
  if (typeof value === 'string') {
    const utf8 = Buffer.from(value, 'utf8');
    return Buffer.concat([Uint8Array.from(head(3, utf8.length)), utf8]);
  }
  if (value instanceof Uint8Array) return Buffer.concat([Uint8Array.from(head(2, value.length)), value]);
  if (Array.isArray(value)) {
    return Buffer.concat([Uint8Array.from(head(4, value.length)), ...value.map((v, i) => canonicalParts(v, `${path}[${i}]`))]);
  }
  if (typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => [canonicalParts(k, path), canonicalParts(v, `${path}.${k}`)] as const)
      .sort((a, b) => compareBytes(a[0], b[0]));
    return Buffer.concat([Uint8Array.from(head(5, entries.length)), ...entries.flat()]);
  }
  throw new TypeError(`${path}: ${typeof value} has no canonical CBOR form`);
}

/**
 * The canonical bytes of a request (§7.2.4): the message without its `auth` key in CBOR core
 * deterministic encoding (RFC 8949 §4.2.1) — shortest heads, definite lengths, map keys sorted by
 * their encoded bytes, keys whose value is undefined left out. Independent of the order in which
 * the keys arrived on the wire or came out of a schema.
 *
 * Hand-written (about 50 lines) because cbor-x keeps insertion order and has no deterministic
 * mode; its output is only ever hashed, never decoded.
 */
export function canonicalRequestBytes(msg: UplinkRequest): Uint8Array {
  const { auth: _auth, ...content } = msg;
  return canonicalParts(content, msg.t);
}

/** SHA-256 of the canonical request bytes. */
export function requestDigest(msg: UplinkRequest): Uint8Array {
  return Uint8Array.from(createHash('sha256').update(canonicalRequestBytes(msg)).digest());
}

/**
 * The bytes a technician signs for one request: REQUEST_AUTH_DOMAIN (ASCII) || 0x00 ||
 * challenge (32) || n (u32, big-endian) || SHA-256 of the canonical request (32) — 93 bytes.
 */
export function requestSigningInput(challenge: Uint8Array, n: number, msg: UplinkRequest): Uint8Array {
  return signingInputForDigest(challenge, n, requestDigest(msg));
}

/** The signing input of §7.2.4 from the request's digest (the `request-signing-input` vectors of §10). */
export function signingInputForDigest(challenge: Uint8Array, n: number, digest: Uint8Array): Uint8Array {
  if (!Number.isInteger(n) || n < 1 || n > MAX_REQUEST_COUNTER) throw new RangeError(`request counter ${n} is outside 1..${MAX_REQUEST_COUNTER}`);
  const counter = new Uint8Array(4);
  new DataView(counter.buffer).setUint32(0, n);
  return Buffer.concat([Buffer.from(REQUEST_AUTH_DOMAIN, 'ascii'), Buffer.from([0]), challenge, counter, digest]);
}

/** The request with its `auth` (§7.2.4): signed over the session challenge, counter `n` and the request's content. */
export function signRequest<M extends UplinkRequest>(key: TechnicianKey, challenge: Uint8Array, n: number, msg: M): M & { auth: RequestAuth } {
  const sig = Uint8Array.from(sign(null, requestSigningInput(challenge, n, msg), key.privateKey));
  return { ...msg, auth: { keyId: key.keyId, n, sig } };
}

/** Whether the request's `auth.sig` is this key's signature over the challenge, `auth.n` and the request's content. */
export function verifyRequest(publicKey: KeyObject, challenge: Uint8Array, msg: UplinkRequest): boolean {
  const auth = msg.auth;
  if (auth === undefined || auth.sig.length !== AUTH_SIG_BYTES) return false;
  if (!Number.isInteger(auth.n) || auth.n < 1 || auth.n > MAX_REQUEST_COUNTER) return false;
  try {
    return verify(null, requestSigningInput(challenge, auth.n, msg), publicKey, auth.sig);
  } catch {
    return false;
  }
}

/**
 * Uplink request types that must carry `auth` (§7.2.4): the one list the gateway checks. A
 * request of these types without a valid `auth` is denied `unauthorised`.
 */
export const AUTHORISED_REQUEST_TYPES: readonly string[] = Object.freeze(['rts', 'cancel', 'retry', 'resume', 'plan', 'release-rts', 'release-live']);

/** Whether a message of this type must carry `auth`. */
export function needsRequestAuth(t: string): boolean {
  return AUTHORISED_REQUEST_TYPES.includes(t);
}
