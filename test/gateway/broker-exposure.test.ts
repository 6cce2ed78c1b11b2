import assert from 'node:assert/strict';
import { checkExposure, isLoopback, listenerHosts } from '../../gateway/broker-exposure.ts';
import { parseConfig, type ConfigInput } from '../../gateway/config.ts';
import { isFwError } from '../../protocol/errors.ts';

/** Issue 18 item 5 in isolation: which broker configurations may start, and which say so loudly. */

const tls = { cert: 'c.pem', key: 'k.pem' };
const broker = (b: ConfigInput['broker']): ReturnType<typeof parseConfig>['broker'] => parseConfig({ broker: b }).broker;
const refused = (b: ConfigInput['broker'], re: RegExp): void => {
  assert.throws(() => checkExposure(broker(b)), (e: unknown) => isFwError(e, 'E_CONFIG') && re.test(e.message), JSON.stringify(b));
};
const warnings = (b: ConfigInput['broker']): string[] => checkExposure(broker(b)).warnings;

describe('gateway/broker-exposure: open or plaintext brokers beyond loopback (issue 18 item 5)', () => {
  it('loopback addresses', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', 'localhost', 'LOCALHOST', '::1', '::ffff:127.0.0.1']) assert.ok(isLoopback(h), h);
    for (const h of ['0.0.0.0', '::', '192.168.1.10', '10.0.0.1', '::ffff:10.0.0.1', 'gateway.local', '128.0.0.1']) assert.ok(!isLoopback(h), h);
  });

  it('defaults (loopback, no device list): starts quietly', () => {
    assert.deepEqual(warnings({}), []);
    assert.deepEqual(warnings({ tls }), [], 'TLS on loopback too');
  });

  it('no authentication beyond loopback: refused, naming the way out', () => {
    refused({ host: '0.0.0.0' }, /refusing to listen on 0\.0\.0\.0 without device authentication.*--devices.*--insecure-open/);
    refused({ host: '192.168.1.10', tls }, /192\.168\.1\.10, 192\.168\.1\.10/);
    refused({ host: '127.0.0.1', tls: { ...tls, host: '0.0.0.0' } }, /refusing to listen on 0\.0\.0\.0 without/);
  });

  it('--insecure-open or an explicit requireAuth false: starts, with a loud line', () => {
    assert.match(warnings({ host: '0.0.0.0', insecureOpen: true }).join('\n'), /^INSECURE: the MQTT broker is OPEN on 0\.0\.0\.0: no device authentication \(--insecure-open\)/);
    assert.match(warnings({ host: '0.0.0.0', requireAuth: false }).join('\n'), /OPEN on 0\.0\.0\.0: .*\(broker\.requireAuth: false\)/);
    assert.match(warnings({ host: '0.0.0.0', requireAuth: false, devicesFile: 'd.json' }).join('\n'), /OPEN/, 'migration mode is open too');
    assert.deepEqual(warnings({ host: '127.0.0.1', insecureOpen: true }), [], 'nothing to say on loopback');
  });

  it('authentication (device list or client certificates) beyond loopback: starts quietly', () => {
    assert.deepEqual(warnings({ host: '0.0.0.0', devicesFile: 'd.json' }), []);
    assert.deepEqual(warnings({ host: '127.0.0.1', tls: { ...tls, host: '0.0.0.0', ca: 'ca.pem', requestCert: true } }), []);
    assert.deepEqual(warnings({ host: '0.0.0.0', devicesFile: 'd.json', requireAuth: true }), []);
  });

  it('TLS with the plain listener beyond loopback: broker.plain must be said; false turns it off, true keeps it loudly', () => {
    refused({ host: '0.0.0.0', devicesFile: 'd.json', tls }, /plain MQTT listener would listen on 0\.0\.0\.0 too.*broker\.plain: false/);
    assert.deepEqual(warnings({ host: '0.0.0.0', devicesFile: 'd.json', tls, plain: false }), []);
    assert.match(warnings({ host: '0.0.0.0', port: 1884, devicesFile: 'd.json', tls, plain: true }).join('\n'), /^INSECURE: the plain MQTT listener on 0\.0\.0\.0:1884 is on next to TLS/);
    assert.deepEqual(warnings({ host: '127.0.0.1', devicesFile: 'd.json', tls: { ...tls, host: '0.0.0.0' } }), [], 'plain on loopback, TLS on the LAN');
    assert.deepEqual(listenerHosts(broker({ host: '0.0.0.0', devicesFile: 'd.json', tls, plain: false })), { plain: undefined, tls: '0.0.0.0' });
    assert.deepEqual(listenerHosts(broker({ host: '10.0.0.2' })), { plain: '10.0.0.2', tls: undefined });
  });

  it('plain: false without TLS is a config error', () => {
    assert.throws(() => parseConfig({ broker: { plain: false } }), (e: unknown) => isFwError(e, 'E_CONFIG') && /broker\.plain: plain: false needs broker\.tls/.test(e.message));
  });
});
