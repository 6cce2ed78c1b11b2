import { isValidDeviceId, parseDeviceTopic, topics } from '../protocol/topics.ts';
import type { FailureBackoff } from './auth-guard.ts';
import type { CredentialCheck } from './device-auth.ts';

/**
 * Who may connect to the broker and what each client may publish and subscribe to
 * (docs/protocol.md §6.1.8). Pure decisions; gateway/broker.ts applies them in the aedes hooks.
 */

/** What the broker needs of a device list (gateway/device-auth.ts DeviceCredentials). */
export interface CredentialVerifier {
  has(id: string): boolean;
  check(id: string, password: string): Promise<CredentialCheck>;
  /** Listed but disabled (`fwgate device disable`): refused at CONNECT whatever it presents. */
  disabled?(id: string): boolean;
  /** The password the device last logged in with, checked from memory without scrypt. */
  cached?(id: string, password: string): boolean;
  /** Write what must outlive the process (the verified logins, gateway/login-cache.ts); the broker calls it when it closes. */
  close?(): Promise<void>;
}

export interface AccessOptions {
  /** Every client must authenticate (password or client certificate). */
  requireAuth: boolean;
  /** The device list; none = no passwords can be checked. */
  credentials?: CredentialVerifier;
  /** Failure backoff per address and client id before a password check (gateway/auth-guard.ts). */
  backoff?: FailureBackoff;
}

/** Return codes of a refused CONNECT [MQTT-3.2.2-3, table 3.1]. */
export const IDENTIFIER_REJECTED = 2;
export const SERVER_UNAVAILABLE = 3;
export const BAD_CREDENTIALS = 4;
export const NOT_AUTHORIZED = 5;

export interface ConnectIdentity {
  clientId: string;
  username: string | undefined;
  password: Buffer | undefined;
  /** CN of a client certificate that verified against the TLS listener's CA; undefined otherwise. */
  certificateCn: string | undefined;
  /** The remote address (no port), for the failure backoff. */
  address?: string;
}

export type AuthVerdict =
  | { ok: true; via: 'certificate' | 'password' | 'anonymous' }
  | { ok: false; returnCode: typeof IDENTIFIER_REJECTED | typeof SERVER_UNAVAILABLE | typeof BAD_CREDENTIALS | typeof NOT_AUTHORIZED; reason: string };

/**
 * §6.1.8 rules 0-4, in order:
 *  0. the client id must be a device id (§1.8: 1-64 of letters, digits, ".", "_", "-", starting with
 *     a letter or digit) whatever the mode — open, requireAuth false or true: the ACLs substitute it
 *     into topics, so "+", "#", "/", an empty or an over-long id would widen them (2, identifier rejected);
 *  1. a verified client certificate authenticates the client whose id is its CN (a user name, if
 *     sent, must be that id too; the password is not checked); another id: not authorized (5);
 *  2. a user name must equal the client id (else 5); a password is then checked against the device
 *     list: wrong password or unknown id: bad user name or password (4) — the two are not told apart;
 *     while the address or the id backs off after failures (opts.backoff), no check runs: server
 *     unavailable (3), unless the password is the one remembered for the device;
 *  3. no credentials: refused (5) when authentication is required or the id is in the device list;
 *  4. otherwise admitted anonymously (requireAuth false: unlisted ids, or no device list at all).
 */
export async function authenticateClient(opts: AccessOptions, who: ConnectIdentity): Promise<AuthVerdict> {
  const { clientId, username, password, certificateCn } = who;
  if (!isValidDeviceId(clientId)) {
    return { ok: false, returnCode: IDENTIFIER_REJECTED, reason: `client id ${JSON.stringify(clientId.slice(0, 80))} is not a device id (1-64 letters, digits, ".", "_", "-")` };
  }
  if (username !== undefined && username !== clientId) {
    return { ok: false, returnCode: NOT_AUTHORIZED, reason: `user name "${username}" is not the client id` };
  }
  if (opts.credentials?.disabled?.(clientId)) return { ok: false, returnCode: NOT_AUTHORIZED, reason: 'disabled' };
  if (certificateCn !== undefined) {
    return certificateCn === clientId
      ? { ok: true, via: 'certificate' }
      : { ok: false, returnCode: NOT_AUTHORIZED, reason: `client certificate is for "${certificateCn}"` };
  }
  const listed = opts.credentials?.has(clientId) === true;
  if (password !== undefined && opts.credentials && (listed || opts.requireAuth)) {
    const pw = password.toString('utf8');
    const address = who.address ?? '?';
    const wait = opts.backoff?.refusal(address, clientId);
    if (wait !== undefined) {
      // no scrypt while backing off; a device whose password is remembered still gets in
      if (opts.credentials.cached?.(clientId, pw) === true) return { ok: true, via: 'password' };
      return { ok: false, returnCode: SERVER_UNAVAILABLE, reason: wait };
    }
    const result = await opts.credentials.check(clientId, pw);
    if (result === 'disabled') return { ok: false, returnCode: NOT_AUTHORIZED, reason: 'disabled' };
    if (result === 'ok') {
      opts.backoff?.succeeded(address, clientId);
      return { ok: true, via: 'password' };
    }
    opts.backoff?.failed(address, clientId);
    return { ok: false, returnCode: BAD_CREDENTIALS, reason: result };
  }
  if (opts.requireAuth || listed) return { ok: false, returnCode: NOT_AUTHORIZED, reason: 'no credentials' };
  return { ok: true, via: 'anonymous' };
}

/**
 * A client may publish only on its own up topic, `fwgate/v1/dev/{clientId}/up`, and never
 * retained. Returns why not, or null when allowed. (In-process publishes of the gateway do not
 * pass here: they alone reach the `down` topics.)
 */
export function publishRefusal(clientId: string, topic: string, retain: boolean): string | null {
  const t = parseDeviceTopic(topic);
  if (!t || t.kind !== 'up' || t.deviceId !== clientId) return `may not publish on ${topic}`;
  if (retain) return 'may not publish retained messages';
  return null;
}

/** A client may subscribe only to its own down topic, exactly (no wildcards). Why not, or null. */
export function subscribeRefusal(clientId: string, topicFilter: string): string | null {
  return topicFilter === topics.down(clientId) ? null : `may not subscribe to ${topicFilter}`;
}
