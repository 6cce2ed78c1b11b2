import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeSampleImage } from '../../firmware-samples/image-format.ts';
import { EXIT } from '../../laptop/render.ts';
import { generateSigningKey } from '../../protocol/signature.ts';
import { closeSerialPort } from '../../transport/serial-port.ts';
import { Rig } from '../helpers/rig.ts';
import { jsonLines, startFwpush } from './run-fwpush.ts';

/**
 * The request to send is granted only to an authorised laptop (docs/protocol.md §7.2.4, §7.3.1):
 * real fwpush processes on the laptop end of a real pty pair against a gateway that trusts the
 * rig's technician key only.
 */
describe('fwpush --tech-key against a real gateway (pty, MQTT, simulated device)', function () {
  this.timeout(120_000);
  let rig: Rig;
  let image: string;
  let strangerKey: string;
  const push = (...extra: string[]): string[] => ['--port', rig.pty.b, image, '--name', 'sensor-fw', '--version', '1.1.0', '--hw', 'sensor-v1', ...extra];

  before(async () => {
    rig = await Rig.start({ devices: 1 });
    rig.laptopLink.close(); // fwpush opens the laptop end itself
    await closeSerialPort(rig.laptopPort);
    image = join(rig.dir, 'sensor-fw-1.1.0.bin');
    await writeFile(image, makeSampleImage({ name: 'sensor-fw', version: '1.1.0', hw: 'sensor-v1', size: 16 * 1024 }));
    strangerKey = join(rig.dir, 'stranger.key');
    await writeFile(strangerKey, generateSigningKey().privateKeyPem, { mode: 0o600 });
  });
  after(async () => {
    await rig?.stop();
  });

  it('without --tech-key: denied unauthorised with the reason and a hint, exit 4 (refused), nothing stored', async () => {
    const r = await startFwpush(push()).exited;
    assert.equal(r.code, EXIT.refused, `${r.stdout}\n${r.stderr}`);
    const out = `${r.stdout}\n${r.stderr}`;
    assert.match(out, /gateway refused the upload \(unauthorised\): not authenticated/);
    assert.match(out, /--tech-key/);
    assert.equal(rig.gateway.store.list().length, 0);
  });

  it('with a key the gateway does not trust: denied unauthorised naming the key, exit 4 (--json)', async () => {
    const r = await startFwpush(push('--tech-key', strangerKey, '--json')).exited;
    assert.equal(r.code, EXIT.refused, `${r.stdout}\n${r.stderr}`);
    const error = jsonLines(r.stdout).find((l) => l.event === 'error');
    assert.ok(error, r.stdout);
    assert.match(String(error.message), /\(unauthorised\): technician key [0-9a-f]{16} is not trusted/);
    assert.match(String(error.hint), /uplink\.technicianKeys/);
    assert.equal(rig.gateway.store.list().length, 0);
  });

  it('with an unreadable key file: a usage error, exit 2, before any connection', async () => {
    const r = await startFwpush(push('--tech-key', join(rig.dir, 'no-such.key'))).exited;
    assert.equal(r.code, EXIT.usage, `${r.stdout}\n${r.stderr}`);
    assert.match(`${r.stdout}\n${r.stderr}`, /cannot read technician key/);
  });

  it('with the trusted technician key: granted, pushed and rolled out, exit 0', async () => {
    const r = await startFwpush(push('--tech-key', rig.techKeyPath)).exited;
    assert.equal(r.code, EXIT.ok, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /^Done: 1\/1 targeted devices updated/m);
    assert.equal(rig.gateway.store.list().length, 1);
  });
});
