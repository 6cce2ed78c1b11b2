import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../gateway/config.ts';
import { controlCall } from '../../gateway/control.ts';
import { Gateway } from '../../gateway/gateway.ts';
import { silentLogger } from '../../gateway/log.ts';
import type { ImageStore } from '../../gateway/store.ts';
import { isFwError } from '../../protocol/errors.ts';
import { digestImage } from '../../protocol/manifest.ts';
import { componentManifest, releaseDigest, signRelease, type ReleaseManifest } from '../../protocol/release.ts';
import { generateSigningKey, parsePrivateKey } from '../../protocol/signature.ts';

/**
 * The release registry inside a real gateway (in-process, broker on an ephemeral port, no
 * devices): component images, which carry no signature of their own, survive a restart with
 * trusted keys because their verified release covers them; `fwgate release live` through the
 * control socket moves a deferred release live with its campaign (docs/operations.md "Releases").
 */
const vendor = generateSigningKey();
const key = parsePrivateKey(vendor.privateKeyPem);
const app = Buffer.alloc(3000, 7);
const net = Buffer.alloc(2000, 9);
const entry = (component: string, version: string, image: Buffer): ReleaseManifest['components'][number] => {
  const d = digestImage(image);
  return { component, name: `sensor-${component}`, version, size: d.size, crc32: d.crc32, sha256: d.sha256 };
};
const rel = (version: string, seq: number): ReleaseManifest => signRelease({
  release: 'sensor-release', version, hw: ['sensor-v1'], chunk: 1024, seq, components: [entry('app', version, app), entry('net', '1.5.0', net)],
}, key);

async function hold(store: ImageStore, release: ReleaseManifest): Promise<void> {
  for (const [c, image] of [[release.components[0]!, app], [release.components[1]!, net]] as const) {
    if (store.has(c.sha256)) continue;
    const up = await store.beginUpload(componentManifest(release, c));
    await up.write(0, image);
    await up.commit();
  }
}

describe('releases in a running gateway', function () {
  this.timeout(60_000);
  let data: string;
  let gw: Gateway | undefined;
  beforeEach(() => {
    data = mkdtempSync(join(tmpdir(), 'fwgate-relgw-'));
  });
  afterEach(async () => {
    await gw?.stop();
    gw = undefined;
    rmSync(data, { recursive: true, force: true });
  });
  const start = async (): Promise<Gateway> => {
    const config = parseConfig({ dataDir: data, broker: { port: 0 }, security: { trustedKeys: [{ publicKey: vendor.publicKeyPem }] }, log: { level: 'silent' } });
    gw = await Gateway.start({ config, log: silentLogger() });
    return gw;
  };

  it('component images of a stored release are not quarantined at the next start (the release\'s signature covers them)', async () => {
    const r = rel('1.0.0', 10);
    let g = await start();
    await hold(g.store, r);
    await g.releases.put(r, 'deferred');
    await g.stop();
    g = await start();
    for (const c of r.components) assert.ok(g.store.has(c.sha256), `component ${c.component} still stored`);
    assert.deepEqual((await g.releases.list()).map((x) => x.digest), [releaseDigest(r)]);
  });

  it('fwgate release live (control socket): deferred → live with its campaign; a lower live version is superseded; an unknown release is refused', async () => {
    const g = await start();
    const [r10, r11] = [rel('1.0.0', 10), rel('1.1.0', 11)];
    await hold(g.store, r10);
    await hold(g.store, r11);
    await g.releases.put(r10, 'live');
    await g.releases.put(r11, 'deferred');
    const a = await controlCall(data, { op: 'release-live', release: 'sensor-release', version: '1.1.0', policy: 'now' });
    assert.ok(a.ok, JSON.stringify(a));
    const onDisk = JSON.parse(readFileSync(join(data, 'releases', `${releaseDigest(r11)}.json`), 'utf8')) as { state: string; campaign: string };
    assert.equal(onDisk.state, 'live');
    assert.equal(onDisk.campaign, a.campaign);
    assert.ok(g.campaigns.some((c) => c.id === a.campaign), 'the campaign was created');
    assert.equal((await g.releases.byDigest(releaseDigest(r10)))?.state, 'superseded');
    const no = await controlCall(data, { op: 'release-live', release: 'sensor-release', version: '9.0.0' });
    assert.ok(!no.ok && no.code === 'E_UNKNOWN_RELEASE', JSON.stringify(no));
    await assert.rejects(g.control({ op: 'release-live', release: 'other', version: '1.0.0' }), (err) => isFwError(err, 'E_UNKNOWN_RELEASE'));
  });
});
