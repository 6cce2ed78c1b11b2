import type { KeyObject } from 'node:crypto';
import { keyIdOf, parsePublicKey } from '../../protocol/signature.ts';
import { AUTH_CHALLENGE_BYTES, verifyRequest, type UplinkRequest } from '../../protocol/uplink-auth.ts';
import type { AuthMessage } from '../../protocol/uplink.ts';
import type { GatewayConfig } from '../config.ts';
import type { Logger } from '../log.ts';

/** Earlier challenges of a session kept to tell a replayed or stale signature from a bad one (§7.2.4). */
const KEPT_CHALLENGES = 8;

/** Said to a laptop that still sends the session-wide `auth` of version 1 (§7.2.4). */
export const UPGRADE_FWPUSH =
  'this fwpush authenticates once per session (the old `auth` message), which this gateway no longer accepts because ' +
  'anyone on the serial line could ride such a session: upgrade fwpush, which signs each request';

/**
 * The gateway's side of technician authorisation (docs/protocol.md §7.2.4) for one uplink
 * session. Each hello brings a fresh challenge; every request of a type in
 * AUTHORISED_REQUEST_TYPES must carry `auth`: an Ed25519 signature over that challenge, a counter
 * above the last one authorised in the session, and the request's own content. Authorisation
 * lapses after `authIdleMs` without an authorised request, and ends at a new hello, a link reset
 * or a dead link.
 */
export class TechnicianAuth {
  private readonly keys = new Map<string, KeyObject>();
  private challenge: Uint8Array | undefined;
  private earlier: Uint8Array[] = [];
  /** Requests that were not authorised (cumulative; metrics). */
  failures = 0;
  /** Highest counter authorised since the challenge was issued. */
  private lastN = 0;
  /** When the challenge was issued or the last request was authorised. */
  private lastAt = 0;
  /** The laptop sent a version-1 `auth` since the hello. */
  private legacy = false;

  constructor(
    private readonly config: Pick<GatewayConfig['uplink'], 'technicianKeys' | 'allowUnauthenticated' | 'authIdleMs'>,
    private readonly log: Logger,
    private readonly random: (n: number) => Uint8Array,
    private readonly now: () => number = Date.now,
  ) {
    for (const k of config.technicianKeys) {
      const key = parsePublicKey(k.publicKey);
      this.keys.set(keyIdOf(key), key);
    }
    if (config.allowUnauthenticated) {
      log.warn('UNSAFE: uplink.allowUnauthenticated is on: any laptop on the serial port may upload firmware without a technician key (development only)');
    } else if (this.keys.size === 0) {
      log.warn('no technician keys configured (uplink.technicianKeys): every request to send will be denied (unauthorised)');
    } else {
      log.info({ technicianKeys: [...this.keys.keys()], authIdleMs: config.authIdleMs }, 'uplink uploads need a technician key');
    }
  }

  /** A fresh challenge for the gateway's hello; the previous one no longer authorises. */
  newChallenge(): Uint8Array {
    this.reset();
    const challenge = this.random(AUTH_CHALLENGE_BYTES);
    this.challenge = challenge;
    this.lastAt = this.now();
    return challenge;
  }

  /** A link reset or a dead link ends the session: nothing authorises until the next hello. */
  reset(): void {
    if (this.challenge) this.earlier = [this.challenge, ...this.earlier].slice(0, KEPT_CHALLENGES);
    this.challenge = undefined;
    this.lastN = 0;
    this.legacy = false;
  }

  /** A version-1 `auth` (§7.2.4): it authorises nothing; the next denied request says to upgrade fwpush. */
  noteLegacyAuth(msg: AuthMessage): void {
    this.legacy = true;
    this.log.warn({ keyId: msg.keyId }, 'laptop sent the old session-wide auth: its requests will be denied (upgrade fwpush)');
  }

  /**
   * Check one request's `auth`. Undefined when it is authorised (its counter is then used up);
   * otherwise why it must be denied `unauthorised` (§7.3.1 step 2).
   */
  authorise(msg: UplinkRequest): string | undefined {
    if (this.config.allowUnauthenticated) return undefined;
    const problem = this.problemWith(msg);
    if (problem !== undefined) {
      this.failures++;
      this.log.warn({ event: 'uplink.auth-failed', t: msg.t, keyId: msg.auth?.keyId, problem }, 'request not authorised');
      return problem;
    }
    this.lastN = msg.auth!.n;
    this.lastAt = this.now();
    this.log.info({ t: msg.t, keyId: msg.auth!.keyId, n: msg.auth!.n }, 'request authorised by technician key');
    return undefined;
  }

  private problemWith(msg: UplinkRequest): string | undefined {
    if (this.keys.size === 0) return 'this gateway trusts no technician key (uplink.technicianKeys is empty): no upload can be authorised';
    const auth = msg.auth;
    if (auth === undefined) {
      if (this.legacy) return UPGRADE_FWPUSH;
      return `not authenticated: the ${msg.t} carries no auth; sign it with a technician key this gateway trusts (fwpush --tech-key)`;
    }
    const key = this.keys.get(auth.keyId);
    if (!key) return `technician key ${auth.keyId} is not trusted by this gateway (uplink.technicianKeys)`;
    const challenge = this.challenge;
    if (challenge === undefined || !verifyRequest(key, challenge, msg)) {
      if (this.earlier.some((c) => verifyRequest(key, c, msg))) {
        return `stale challenge: the ${msg.t} signed by technician key ${auth.keyId} is for an earlier hello (replayed or late); sign with the challenge of the latest hello`;
      }
      if (challenge === undefined) return 'no session: send hello first';
      return `bad signature: the auth of technician key ${auth.keyId} does not verify over this session's challenge, counter and the ${msg.t} as received (altered on the way?)`;
    }
    if (auth.n <= this.lastN) return `replayed request: counter ${auth.n} is not above ${this.lastN}, the last this session authorised`;
    const idle = this.now() - this.lastAt;
    if (idle > this.config.authIdleMs) {
      this.reset();
      return `authorisation lapsed: no authorised request for ${idle} ms (uplink.authIdleMs ${this.config.authIdleMs}); start a new session (hello)`;
    }
    return undefined;
  }
}
