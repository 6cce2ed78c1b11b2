import { createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
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
