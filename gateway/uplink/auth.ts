import type { KeyObject } from 'node:crypto';
import { keyIdOf, parsePublicKey } from '../../protocol/signature.ts';
import { AUTH_CHALLENGE_BYTES, verifyChallenge } from '../../protocol/uplink-auth.ts';
import type { AuthMessage } from '../../protocol/uplink.ts';
import type { GatewayConfig } from '../config.ts';
import type { Logger } from '../log.ts';

/** Earlier challenges of a session kept to tell a replayed or stale signature from a bad one (§7.2.4). */
const KEPT_CHALLENGES = 8;

/**
 * The gateway's side of technician authentication (docs/protocol.md §7.2.4) for one uplink
 * session: issues a challenge with each hello, checks `auth`, and says why a request to send is
 * refused. Only the latest challenge authorises; earlier ones are kept only to name the problem.
 */
export class TechnicianAuth {
  private readonly keys = new Map<string, KeyObject>();
  private challenge: Uint8Array | undefined;
  private earlier: Uint8Array[] = [];
  private authorisedKey: string | undefined;
  /** Why the last `auth` failed; undefined when none was sent since the last hello. */
  private problem: string | undefined;
  /** `auth` messages that did not authorise (cumulative; metrics). */
  failures = 0;

  constructor(
    private readonly config: Pick<GatewayConfig['uplink'], 'technicianKeys' | 'allowUnauthenticated'>,
    private readonly log: Logger,
    private readonly random: (n: number) => Uint8Array,
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
      log.info({ technicianKeys: [...this.keys.keys()] }, 'uplink uploads need a technician key');
    }
  }

  /** A fresh challenge for the gateway's hello; the previous one no longer authorises. */
  newChallenge(): Uint8Array {
    this.reset();
    const challenge = this.random(AUTH_CHALLENGE_BYTES);
    this.challenge = challenge;
    return challenge;
  }

  /** A link reset or a dead link ends the session: nothing authorises until the next hello and auth. */
  reset(): void {
    if (this.challenge) this.earlier = [this.challenge, ...this.earlier].slice(0, KEPT_CHALLENGES);
    this.challenge = undefined;
    this.authorisedKey = undefined;
    this.problem = undefined;
  }

  /** Check an `auth` against the latest challenge; its outcome replaces the previous one. */
  check(msg: AuthMessage): void {
    this.authorisedKey = undefined;
    this.problem = this.problemWith(msg);
    if (this.problem === undefined) {
      this.authorisedKey = msg.keyId;
      this.log.info({ keyId: msg.keyId }, 'technician authenticated');
    } else {
      this.failures++;
      this.log.warn({ event: 'uplink.auth-failed', keyId: msg.keyId, problem: this.problem }, 'technician authentication failed');
    }
  }

  /** Why a request to send must be denied `unauthorised` (§7.3.1), or undefined when it may go on. */
  refusal(): string | undefined {
    if (this.config.allowUnauthenticated || this.authorisedKey !== undefined) return undefined;
    if (this.problem !== undefined) return this.problem;
    if (this.keys.size === 0) return 'this gateway trusts no technician key (uplink.technicianKeys is empty): no upload can be authorised';
    return 'not authenticated: send auth, signed with a technician key this gateway trusts, after its hello (fwpush --tech-key)';
  }

  private problemWith(msg: AuthMessage): string | undefined {
    const key = this.keys.get(msg.keyId);
    if (!key) return `technician key ${msg.keyId} is not trusted by this gateway (uplink.technicianKeys)`;
    if (this.challenge && verifyChallenge(key, this.challenge, msg.sig)) return undefined;
    if (this.earlier.some((c) => verifyChallenge(key, c, msg.sig))) {
      return `stale challenge: the signature by technician key ${msg.keyId} is for an earlier hello (replayed or late); sign the challenge of the latest hello`;
    }
    return `bad signature: the auth of technician key ${msg.keyId} does not verify over this session's challenge`;
  }
}
