import assert from 'node:assert/strict';
import { join } from 'node:path';
import { generate } from '../../firmware-samples/generate.ts';
import { main as fwsign } from '../../laptop/fwsign.ts';
import { readReleaseDescription } from '../../laptop/release-description.ts';
import { closeSerialPort } from '../../transport/serial-port.ts';
import { testKeyFiles } from '../helpers/keys.ts';
import { Rig } from '../helpers/rig.ts';
import { jsonLines, startFwpush } from './run-fwpush.ts';
import { EXIT } from '../../laptop/render.ts';

/**
 * fwpush's release commands as a technician runs them (docs/operations.md "Releases"): real
 * fwpush processes on one end of a real pty pair, the gateway on the other, the sample release
 * pair signed with `fwsign release`. What the gateway stored is read from its registry.
 */
describe('fwpush release / release live against a real gateway (pty)', function () {
  this.timeout(180_000);
  let rig: Rig;
  let port: string;
  const out = (f: string): string => join(rig.dir, 'samples', f);

  before(async () => {
    rig = await Rig.start({ devices: 1 });
    rig.laptopLink.close();
    await closeSerialPort(rig.laptopPort);
    port = rig.pty.b;
    await generate(join(rig.dir, 'samples'), 16 * 1024, 1024);
    const log = console.log;
    console.log = () => undefined;
    try {
      for (const v of ['1.0.0', '1.1.0']) {
        assert.equal(await fwsign(['release', out(`release-${v}.json`), '--key', testKeyFiles().key, '--out', out(`signed-${v}.json`)]), 0);
      }
    } finally {
      console.log = log;
    }
  });
  after(async () => {
    await rig?.stop();
  });

  it('--deferred stores release 1.0.0 without a campaign; release 1.1.0 then uploads only app (net is already there)', async () => {
    const first = await startFwpush(['--port', port, '--tech-key', rig.techKeyPath, 'release', out('release-1.0.0.json'), '--manifest', out('signed-1.0.0.json'), '--deferred']).exited;
    assert.equal(first.code, 0, `${first.stdout}\n${first.stderr}`);
    assert.match(first.stdout, /^Release: uploading app, net$/m);
    assert.match(first.stdout, /deferred: no campaign until/);
    assert.deepEqual((await rig.gateway.releases.list()).map((r) => [r.manifest.version, r.state, r.campaign]), [['1.0.0', 'deferred', undefined]]);

    const second = await startFwpush(['--port', port, '--tech-key', rig.techKeyPath, 'release', out('release-1.1.0.json'), '--manifest', out('signed-1.1.0.json'), '--deferred', '--json']).exited;
    assert.equal(second.code, 0, `${second.stdout}\n${second.stderr}`);
    const lines = jsonLines(second.stdout);
    const grant = lines.find((l) => l.event === 'release-grant') as { send: { component: string }[]; stored: string[] } | undefined;
    assert.deepEqual(grant?.send.map((c) => c.component), ['app']);
    assert.deepEqual(grant?.stored, ['net']);
    const app = (await readReleaseDescription(out('release-1.1.0.json'))).images.get('app')!;
    const uploads = lines.filter((l) => l.event === 'upload') as { sent: number; total: number }[];
    assert.equal(uploads.at(-1)?.total, app.length, 'the upload is app\'s bytes only');
    assert.equal(uploads.at(-1)?.sent, app.length);
    assert.ok(lines.some((l) => l.event === 'committed' && l.deferred === true));
  });

  it('release live starts the stored release (accepted, registry live with the campaign); an unknown one is refused', async () => {
    const live = await startFwpush(['--port', port, '--tech-key', rig.techKeyPath, 'release', 'live', 'sensor-release', '1.1.0', '--now', '--json']).exited;
    const accepted = jsonLines(live.stdout).find((l) => l.event === 'accepted') as { request: string; campaign: string } | undefined;
    assert.equal(accepted?.request, 'release-live', `${live.stdout}\n${live.stderr}`);
    const rec = (await rig.gateway.releases.list()).find((r) => r.manifest.version === '1.1.0');
    assert.equal(rec?.state, 'live');
    assert.equal(rec?.campaign, accepted.campaign);
    const unknown = await startFwpush(['--port', port, '--tech-key', rig.techKeyPath, 'release', 'live', 'sensor-release', '9.9.9']).exited;
    assert.equal(unknown.code, EXIT.refused, `${unknown.stdout}\n${unknown.stderr}`);
    assert.match(`${unknown.stdout}${unknown.stderr}`, /unknown-release.*no stored release sensor-release 9\.9\.9/);
  });

  it('release live needs a name and a version (usage, exit 2)', async () => {
    const r = await startFwpush(['--port', port, 'release', 'live', 'sensor-release']).exited;
    assert.equal(r.code, 2);
    assert.match(`${r.stdout}${r.stderr}`, /release live needs the release name and version/);
  });
});
