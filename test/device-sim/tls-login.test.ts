import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Broker } from '../../gateway/broker.ts';
import { DeviceCredentials } from '../../gateway/device-auth.ts';
import { startTs, type Proc } from '../../scripts/lib/processes.ts';
import { writeDeviceList } from '../helpers/devices.ts';
import { makeTestPki, type TestPki } from '../helpers/pki.ts';
import { waitUntil } from '../helpers/wait.ts';

/**
 * fwsim's TLS login (docs/device-sim.md, docs/protocol.md §6.1.8), with the real fwsim process:
 * `--broker mqtts://…  --ca <ca.pem> --credentials <file>` connects to the gateway's mqtts listener,
 * trusting the throw-away CA, with the device's password; its status reaches the broker. Without
 * the password the broker refuses it (counted), without the CA it never gets past TLS.
 */
describe('fwsim: login over mqtts with a CA and a password (real process)', function () {
  this.timeout(120_000);
  let dir: string;
  let pki: TestPki;
  let broker: Broker | undefined;
  let passwords: Map<string, string>;
  const procs: Proc[] = [];
  const ups: string[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fwgate-simtls-'));
    pki = await makeTestPki(dir, []);
    passwords = await writeDeviceList(join(dir, 'devices.json'), ['tls-001']);
    await writeFile(join(dir, 'creds.json'), JSON.stringify({ 'tls-001': passwords.get('tls-001') }));
    await writeFile(join(dir, 'wrong.json'), JSON.stringify({ 'tls-001': 'not-the-password' }));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  beforeEach(async () => {
    ups.length = 0;
    broker = await Broker.start({
      host: '127.0.0.1', port: 0, maxPacketBytes: 131_072, maxClients: 10, logger: () => undefined,
      access: { requireAuth: true, credentials: await DeviceCredentials.open(join(dir, 'devices.json')) },
      tls: { port: 0, cert: await readFile(pki.serverCert), key: await readFile(pki.serverKey) },
    });
    await broker.subscribe('fwgate/v1/dev/+/up', (_topic, _payload, clientId) => ups.push(clientId ?? '?'));
  });
  afterEach(async () => {
    for (const p of procs.splice(0)) await p.stop(3000).catch(() => undefined);
    await broker?.close();
  });

  const fwsim = (extra: string[], data: string): Proc => {
    const p = startTs('fwsim', 'device-sim/cli.ts', ['--broker', broker!.tlsUrl!, '--prefix', 'tls', '--count', '1', '--data', join(dir, data), '--json', ...extra]);
    procs.push(p);
    return p;
  };

  it('with --ca and its password: connected over TLS, and its status reaches the broker', async () => {
    const sim = fwsim(['--ca', pki.ca, '--credentials', join(dir, 'creds.json')], 'ok');
    await sim.waitForLine((l) => l.includes('"type":"connected"'), 60_000);
    await waitUntil(() => ups.includes('tls-001'), 20_000, 'the device\'s status on its up topic');
    assert.equal(broker!.stats.authFailures, 0);
  });

  it('with a wrong password: refused by the broker (counted as an authentication failure)', async () => {
    const sim = fwsim(['--ca', pki.ca, '--credentials', join(dir, 'wrong.json')], 'wrong');
    await waitUntil(() => broker!.stats.authFailures >= 1, 60_000, 'the broker to refuse the wrong password');
    assert.ok(!sim.lines.some((l) => l.includes('"type":"connected"')), 'never connected');
    assert.ok(!ups.includes('tls-001'));
  });

  it('without --ca: the TLS handshake fails (the broker\'s certificate is not trusted), no MQTT session', async () => {
    const sim = fwsim(['--credentials', join(dir, 'creds.json')], 'noca');
    await sim.waitForLine((l) => /certificate|self[- ]signed|unable to verify/i.test(l), 60_000);
    assert.ok(!sim.lines.some((l) => l.includes('"type":"connected"')), 'never connected');
    assert.equal(broker!.stats.clients, 0);
  });
});
