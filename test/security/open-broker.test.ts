import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { startTs, type Proc } from '../../scripts/lib/processes.ts';
import { writeDeviceList } from '../helpers/devices.ts';
import { makeTestPki } from '../helpers/pki.ts';
import { runEntry } from '../helpers/run-entry.ts';

/**
 * Issue 18 item 5 with real fwgate processes: the README's own site command (`--host 0.0.0.0`)
 * without a device list no longer gives an open broker on every interface; an open broker needs
 * `--insecure-open` (or an explicit `broker.requireAuth: false`) and says so loudly; with TLS
 * serving the site the plain listener is switched off or kept only on purpose.
 */
describe('security: no open or plaintext broker beyond loopback by default (issue 18 item 5)', function () {
  this.timeout(120_000);
  let dir: string;
  const procs: Proc[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fwgate-open-'));
  });
  afterEach(async () => {
    for (const p of procs.splice(0)) await p.stop();
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const base = (name: string): string[] => ['--data', join(dir, name), '--port', '0', '--log-format', 'json'];
  const configFile = async (name: string, config: unknown): Promise<string> => {
    const path = join(dir, `${name}.json`);
    await writeFile(path, JSON.stringify(config));
    return path;
  };
  const serve = async (args: string[]): Promise<Proc> => {
    const p = startTs('fwgate', 'gateway/cli.ts', args);
    procs.push(p);
    await p.waitForLine(/^fwgate ready: broker /, 30_000);
    return p;
  };

  it('the site command without a device list: refused (exit 2), naming --devices and --insecure-open', async () => {
    const r = await runEntry('gateway/cli.ts', [...base('refused'), '--host', '0.0.0.0']);
    assert.equal(r.code, 2, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stderr, /E_CONFIG: broker: refusing to listen on 0\.0\.0\.0 without device authentication/);
    assert.match(r.stderr, /--devices/);
    assert.match(r.stderr, /--insecure-open/);
    assert.doesNotMatch(r.stdout, /fwgate ready/);
  });

  it('--insecure-open: starts open, with a loud line; any client id connects without a password', async () => {
    const p = await serve([...base('open'), '--host', '0.0.0.0', '--insecure-open']);
    const line = await p.waitForLine(/^fwgate: INSECURE: the MQTT broker is OPEN on 0\.0\.0\.0/, 5000);
    assert.match(line, /--insecure-open/);
    const port = Number(/:(\d+)$/.exec(p.lines.find((l) => l.startsWith('fwgate ready'))!)![1]);
    const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: 'anyone', protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 10_000 });
    await c.endAsync();
  });

  it('an explicit broker.requireAuth: false (migration): starts, with a loud line', async () => {
    const config = await configFile('migration', { broker: { host: '0.0.0.0', requireAuth: false } });
    const p = await serve([...base('migration'), '--config', config]);
    await p.waitForLine(/^fwgate: INSECURE: the MQTT broker is OPEN on 0\.0\.0\.0: .*broker\.requireAuth: false/, 5000);
  });

  it('with a device list on the site address: starts, no INSECURE line', async () => {
    const devices = join(dir, 'devices.json');
    await writeDeviceList(devices, ['dev-a']);
    const p = await serve([...base('listed'), '--host', '0.0.0.0', '--devices', devices]);
    assert.ok(!p.lines.some((l) => /INSECURE/.test(l)), p.lines.join('\n'));
  });

  it('TLS for the site: the plain listener next to it must be asked for; broker.plain false serves mqtts only', async () => {
    const pki = await makeTestPki(dir, []);
    const devices = join(dir, 'devices-tls.json');
    await writeDeviceList(devices, ['dev-a']);
    const tls = { cert: pki.serverCert, key: pki.serverKey, port: 0 };
    const both = await configFile('tls-both', { broker: { host: '0.0.0.0', devicesFile: devices, tls } });
    const r = await runEntry('gateway/cli.ts', [...base('tls-both'), '--config', both]);
    assert.equal(r.code, 2, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stderr, /plain MQTT listener would listen on 0\.0\.0\.0 too: device passwords would cross the network in clear text/);
    const only = await configFile('tls-only', { broker: { host: '127.0.0.1', devicesFile: devices, tls, plain: false } });
    const p = await serve([...base('tls-only'), '--config', only]);
    assert.match(p.lines.find((l) => l.startsWith('fwgate ready'))!, /^fwgate ready: broker mqtts:\/\/127\.0\.0\.1:\d+$/);
  });
});
