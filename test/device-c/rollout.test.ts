import assert from 'node:assert/strict';
import { join } from 'node:path';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import type { ConfigInput } from '../../gateway/config.ts';
import { makeTestPki } from '../helpers/pki.ts';
import type { CompleteMessage, ResultMessage } from '../../protocol/uplink.ts';
import { testKeyFiles } from '../helpers/keys.ts';
import { Rig, sampleImage } from '../helpers/rig.ts';
import { waitUntil } from '../helpers/wait.ts';
import { buildDeviceC } from '../../scripts/lib/device-c.ts';
import { CDevice } from './c-device.ts';

/**
 * End to end with real processes: C devices (device-c, `fwdevice`, one process each, libmosquitto
 * with password login, files, libsodium) mixed into an fwsim fleet, updated by a real fwgate
 * through its broker, the image pushed over a real pty. Outcomes are judged from the gateway's
 * results and from each C device's own files (`fwdevice show`).
 */
describe('device-c: C devices in a mixed rollout with fwsim devices (real processes)', function () {
  this.timeout(180_000);
  let rig: Rig | undefined;
  const devices: CDevice[] = [];
  let bin: string;

  before(async () => { bin = (await buildDeviceC()).fwdevice; });
  afterEach(async () => {
    for (const d of devices.splice(0)) await d.stop();
    await rig?.stop();
    rig = undefined;
  });

  async function start(fwsim: number, cIds: string[], cArgs: (id: string, rig: Rig) => string[] = () => [], config?: ConfigInput): Promise<{ rig: Rig; c: CDevice[] }> {
    const r = await Rig.start({ devices: fwsim, extraDeviceIds: cIds, ...(config ? { config } : {}) });
    rig = r;
    const creds = join(r.dir, 'c-credentials.json');
    await writeFile(creds, JSON.stringify(Object.fromEntries(r.passwords)));
    const c = cIds.map((id) => new CDevice(bin, id, join(r.dir, 'c-devices', id), [
      '--broker', r.gateway.broker.url, '--credentials', creds, '--pinned-key', testKeyFiles().pub,
      '--hw', 'sensor-v1', '--version', '1.0.0', '--factory-size', '4096', '--boot-delay', '50', ...cArgs(id, r),
    ]));
    devices.push(...c);
    for (const d of c) d.start();
    await waitUntil(() => r.gateway.fleet.online().length === fwsim + cIds.length, 20_000, 'every device registered');
    return { rig: r, c };
  }

  it('updates C devices and fwsim devices together; each C device runs the new image, confirmed, from its own files', async () => {
    const { rig: r, c } = await start(2, ['c-01', 'c-02']);
    const { image, manifest } = sampleImage({ version: '1.1.0', size: 96 * 1024 });
    await r.client.connect();
    const { campaign } = await r.client.push(manifest, image);
    const complete: CompleteMessage = await r.client.follow(campaign);
    const results = r.events.filter((e): e is ResultMessage => e.t === 'result');
    assert.deepEqual(results.map((x) => [x.id, x.outcome, x.code]).sort(), [
      ['c-01', 'updated', 'ok'], ['c-02', 'updated', 'ok'], ['dev-001', 'updated', 'ok'], ['dev-002', 'updated', 'ok'],
    ]);
    assert.equal(complete.updated, 4);
    for (const d of c) {
      const s = await d.state();
      assert.equal(s.active, 'b', d.id);
      assert.deepEqual([s.slots.b.state, s.slots.b.version, s.slots.b.sha256, s.trial, s.seq], ['confirmed', '1.1.0', manifest.sha256, false, 1], d.id);
      assert.deepEqual([s.slots.a.state, s.slots.a.version], ['confirmed', '1.0.0'], d.id);
      assert.ok(d.events.some((e) => e.type === 'booted' && e.trial === true), `${d.id} booted in trial`);
    }
  });

  it('logs in over TLS (mqtts, the broker\'s CA, hostname checked) with its password, and is updated', async () => {
    const pkiDir = await mkdtemp(join(tmpdir(), 'fwgate-c-tls-'));
    try {
      const pki = await makeTestPki(pkiDir, []);
      const { rig: r, c } = await start(1, ['c-tls'], (_id, g) => ['--ca', pki.ca, '--broker', g.gateway.broker.tlsUrl!],
        { broker: { tls: { port: 0, cert: pki.serverCert, key: pki.serverKey } } });
      assert.match(r.gateway.broker.tlsUrl!, /^mqtts:/);
      const { image, manifest } = sampleImage({ version: '1.1.0', size: 32 * 1024 });
      await r.client.connect();
      const { campaign } = await r.client.push(manifest, image);
      const complete = await r.client.follow(campaign);
      assert.equal(complete.updated, 2, JSON.stringify(complete));
      assert.deepEqual([(await c[0]!.state()).slots.b.state, (await c[0]!.state()).slots.b.version], ['confirmed', '1.1.0']);
    } finally {
      await rm(pkiDir, { recursive: true, force: true });
    }
  });
});
