import type { Fleet } from './fleet.ts';
import type { Logger } from './log.ts';

type Level = 'fatal' | 'error' | 'warn' | 'info' | 'debug';

/**
 * The broker reports in lines (gateway/broker.ts, device-auth.ts, broker-setup.ts); this gives each
 * a level and a stable `event` name for log processors: lifecycle at info, refusals and drops at
 * warn, listener and aedes errors at error. The rules are matched in order; an unknown line is a
 * warning (as every line was before), so nothing is lost.
 */
const RULES: { re: RegExp; level: Level; event: string; fields?: (m: RegExpExecArray) => Record<string, unknown> }[] = [
  { re: /^broker: listening on .* without authentication/, level: 'warn', event: 'broker.no-auth' },
  { re: /^broker: listening on (\S+)(?: and (\S+))?/, level: 'info', event: 'broker.listening', fields: (m) => ({ url: m[1], ...(m[2] ? { tlsUrl: m[2] } : {}) }) },
  { re: /^broker: closed$/, level: 'info', event: 'broker.closed' },
  { re: /^broker: close timed out/, level: 'warn', event: 'broker.close-timeout' },
  { re: /^broker: device list .* reloaded/, level: 'info', event: 'broker.devices-reloaded' },
  { re: /^broker: device list .* not reloaded/, level: 'error', event: 'broker.devices-reload-failed' },
  { re: /^broker: refused (\S+) from (\S+): .*clients connected$/, level: 'warn', event: 'broker.refused', fields: (m) => ({ client: m[1], remote: m[2], reason: 'client-cap' }) },
  { re: /^broker: refused (\S+) from (\S+): (?:credential check failed|.*\(CONNACK \d\))/, level: 'warn', event: 'broker.auth-failed', fields: (m) => ({ client: m[1], remote: m[2] }) },
  { re: /^broker: refused a (publish|subscription) of (\S+)/, level: 'warn', event: 'broker.denied', fields: (m) => ({ what: m[1], client: m[2] }) },
  { re: /^broker: dropped a connection from (\S+): over/, level: 'warn', event: 'broker.rate-limited', fields: (m) => ({ remote: m[1] }) },
  { re: /^broker: dropped (?:client )?(\S+)/, level: 'warn', event: 'broker.dropped', fields: (m) => ({ client: m[1] }) },
  { re: /^broker: TLS handshake/, level: 'info', event: 'broker.tls-handshake-failed' },
  { re: /^broker: (?:aedes error|listener error|TLS listener error|subscriber of)/, level: 'error', event: 'broker.error' },
];

/** A broker logger (`(line) => void`) that writes structured events through `log`. */
export function brokerLogger(log: Logger): (line: string) => void {
  return (line) => {
    for (const r of RULES) {
      const m = r.re.exec(line);
      if (!m) continue;
      log[r.level]({ event: r.event, ...r.fields?.(m) }, line.replace(/^broker: /, ''));
      return;
    }
    log.warn({ event: 'broker.other' }, line.replace(/^broker: /, ''));
  };
}

/**
 * Device presence in the log: `device.online` (info) when a device reports its first status or
 * reconnects, `device.offline` (info) when it leaves the broker.
 */
export function logPresence(fleet: Fleet, log: Logger): void {
  const online = new Set<string>();
  const up = (d: { id: string; hw: string; version: string }): void => {
    if (online.has(d.id)) return;
    online.add(d.id);
    log.info({ event: 'device.online', device: d.id, hw: d.hw, version: d.version }, 'device online');
  };
  fleet.on('status', up);
  fleet.on('online', up);
  fleet.on('offline', (d) => {
    if (!online.delete(d.id)) return;
    log.info({ event: 'device.offline', device: d.id }, 'device offline');
  });
}
