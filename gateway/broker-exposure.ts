import { FwError } from '../protocol/errors.ts';
import type { GatewayConfig } from './config.ts';

/**
 * Who can reach the broker's listeners, and whether the gateway may start that way
 * (docs/operations.md "Open broker"). Pure: the config in, a verdict out.
 *
 *  - Without device authentication (no device list, no client certificates, or
 *    `broker.requireAuth: false`) on an address beyond loopback, the gateway refuses to start
 *    unless the operator said so: `--insecure-open` (`broker.insecureOpen`) or an explicit
 *    `broker.requireAuth: false`. It then starts with a loud line.
 *  - With a TLS listener and the plain one on an address beyond loopback, device passwords would
 *    cross the LAN in clear text: `broker.plain` must then be said explicitly (false: TLS only;
 *    true: keep the plain listener, with a loud line).
 */

export interface Exposure {
  /** Loud start-up lines (logged as warnings and printed by the CLI). */
  warnings: string[];
}

/** 127.0.0.0/8, ::1, localhost, and IPv4-mapped loopback (::ffff:127.x.y.z). */
export function isLoopback(host: string): boolean {
  const h = host.toLowerCase();
  return h === 'localhost' || h === '::1' || h.startsWith('127.') || h.startsWith('::ffff:127.');
}

/** The addresses the broker listens on: the plain listener (unless broker.plain is false) and the TLS one. */
export function listenerHosts(b: GatewayConfig['broker']): { plain: string | undefined; tls: string | undefined } {
  return { plain: b.plain === false ? undefined : b.host, tls: b.tls ? (b.tls.host ?? b.host) : undefined };
}

/** Throws E_CONFIG naming the setting when the broker may not start this way; else the loud lines to print. */
export function checkExposure(b: GatewayConfig['broker']): Exposure {
  const warnings: string[] = [];
  const hosts = listenerHosts(b);
  const exposed = [hosts.plain, hosts.tls].filter((h): h is string => h !== undefined && !isLoopback(h));
  const certificates = b.tls?.ca !== undefined && b.tls.requestCert;
  const requireAuth = b.requireAuth ?? (b.devicesFile !== undefined || certificates);
  if (!requireAuth && exposed.length > 0) {
    if (!b.insecureOpen && b.requireAuth !== false) {
      throw new FwError('E_CONFIG', `broker: refusing to listen on ${exposed.join(', ')} without device authentication: any client that reaches it could connect. ` +
        'Give a device list (--devices / broker.devicesFile; `fwgate device add`) or client certificates (broker.tls.ca + requestCert), ' +
        'or listen on 127.0.0.1; to run open on purpose (lab), pass --insecure-open (broker.insecureOpen: true)');
    }
    warnings.push(`INSECURE: the MQTT broker is OPEN on ${exposed.join(', ')}: no device authentication (${b.insecureOpen ? '--insecure-open' : 'broker.requireAuth: false'}); any client that reaches it can connect as any device id`);
  }
  if (b.tls && hosts.plain !== undefined && !isLoopback(hosts.plain)) {
    if (b.plain === undefined) {
      throw new FwError('E_CONFIG', `broker: the TLS listener serves the site, and the plain MQTT listener would listen on ${hosts.plain} too: ` +
        'device passwords would cross the network in clear text. Set broker.plain: false (TLS only), or broker.host: 127.0.0.1 with broker.tls.host ' +
        'set to the site address, or broker.plain: true to keep the plain listener on purpose');
    }
    warnings.push(`INSECURE: the plain MQTT listener on ${hosts.plain}:${b.port} is on next to TLS (broker.plain: true): passwords sent there cross the network in clear text`);
  }
  return { warnings };
}
