import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pruneImages } from '../../gateway/image-housekeeping.ts';
import { ReleaseRegistry, type RottenRecord } from '../../gateway/releases.ts';
import { ImageStore } from '../../gateway/store.ts';
import { digestImage } from '../../protocol/manifest.ts';
import { componentManifest, releaseDigest, signRelease, type ReleaseManifest } from '../../protocol/release.ts';
import { generateSigningKey, KeyRing, parsePrivateKey, parsePublicKey } from '../../protocol/signature.ts';
import { runEntry } from '../helpers/run-entry.ts';

/**
 * The release registry (gateway/releases.ts, docs/operations.md "Releases"): one durable record per
 * release under <dataDir>/releases named by the release's digest, verified whenever read back
 * (schema, digest, signature); a rotten record is reported and skipped, the others still served.
 */

const vendor = generateSigningKey();
const key = parsePrivateKey(vendor.privateKeyPem);
const ring = new KeyRing([parsePublicKey(vendor.publicKeyPem)]);
const sha = (c: string): string => c.repeat(64);

const release = (version: string, seq: number): ReleaseManifest => signRelease({
  release: 'sensor-release', version, hw: ['sensor-v1'], chunk: 256, seq,
  components: [
    { component: 'app', name: 'sensor-app', version, size: 3000, crc32: 1, sha256: sha(version.at(-1)!) },
    { component: 'net', name: 'sensor-net', version: '1.5.0', size: 2500, crc32: 2, sha256: sha('e') },
  ],
}, key);

describe('release registry (gateway/releases.ts)', () => {
  let dir: string;
  let clock: number;
  let reported: RottenRecord[];
  const open = (o: { allowUnsigned?: boolean } = {}): Promise<ReleaseRegistry> =>
    ReleaseRegistry.open({ dir, keyRing: ring, allowUnsigned: o.allowUnsigned ?? false, now: () => clock, report: (r) => reported.push(r) });
  beforeEach(async () => {
    dir = join(await mkdtemp(join(tmpdir(), 'fwgate-releases-')), 'releases');
    clock = 1_700_000_000_000;
    reported = [];
  });
  afterEach(async () => rm(join(dir, '..'), { recursive: true, force: true }));

  it('put writes <digest>.json; a new registry on the same directory reads it back verified', async () => {
    const r = await open();
    const rel = release('1.0.0', 10);
    await r.put(rel, 'deferred');
    assert.deepEqual(await readdir(dir), [`${releaseDigest(rel)}.json`]);
    const again = await open();
    const [stored] = await again.list();
    assert.deepEqual(stored, { manifest: rel, digest: releaseDigest(rel), state: 'deferred', storedAt: clock });
    assert.deepEqual(await again.get('sensor-release', '1.0.0'), stored);
    assert.equal(await again.get('sensor-release', '2.0.0'), undefined);
  });

  it('setState moves deferred → live with its campaign and time, durably on disk', async () => {
    const r = await open();
    const rel = release('1.0.0', 10);
    await r.put(rel, 'deferred');
    clock += 5000;
    await r.setState(releaseDigest(rel), 'live', 'c-1234');
    const onDisk = JSON.parse(await readFile(join(dir, `${releaseDigest(rel)}.json`), 'utf8')) as Record<string, unknown>;
    assert.equal(onDisk.state, 'live');
    assert.equal(onDisk.campaign, 'c-1234');
    assert.equal(onDisk.liveAt, clock);
    assert.equal(onDisk.storedAt, clock - 5000);
    await assert.rejects(r.setState(sha('0'), 'live'), /E_UNKNOWN_RELEASE|no stored release/);
  });

  it('supersedeOlder: live releases of the same name with a lower version become superseded, others stay', async () => {
    const r = await open();
    const [a, b, c] = [release('1.0.0', 10), release('1.1.0', 11), release('1.2.0', 12)];
    await r.put(a, 'live');
    await r.put(b, 'deferred');
    await r.put(c, 'live');
    const sup = await r.supersedeOlder(c);
    assert.deepEqual(sup.map((x) => x.manifest.version), ['1.0.0']);
    const states = Object.fromEntries((await (await open()).list()).map((x) => [x.manifest.version, x.state]));
    assert.deepEqual(states, { '1.0.0': 'superseded', '1.1.0': 'deferred', '1.2.0': 'live' });
  });

  it('a rotten record (altered on disk, garbage, wrong name, bad signature) is reported once and skipped; the others are served', async () => {
    const r = await open();
    const good = release('1.0.0', 10);
    const victim = release('1.1.0', 11);
    await r.put(good, 'live');
    await r.put(victim, 'deferred');
    const victimFile = join(dir, `${releaseDigest(victim)}.json`);
    const rec = JSON.parse(await readFile(victimFile, 'utf8')) as { manifest: ReleaseManifest };
    rec.manifest.components[0]!.size = 3001; // a flipped size: the digest no longer matches the name
    await writeFile(victimFile, JSON.stringify(rec));
    await writeFile(join(dir, `${sha('a')}.json`), '{"manifest": ');
    const unsignedDigestName = (() => {
      const { signature: _s, ...u } = release('1.3.0', 13);
      return { u, name: `${releaseDigest(u)}.json` };
    })();
    await writeFile(join(dir, unsignedDigestName.name), JSON.stringify({ manifest: unsignedDigestName.u, state: 'deferred', storedAt: 1 }));
    const again = await open();
    assert.deepEqual((await again.list()).map((x) => x.manifest.version), ['1.0.0']);
    const byFile = Object.fromEntries(again.problems.map((p) => [p.file.slice(dir.length + 1), p.reason]));
    assert.match(byFile[`${releaseDigest(victim)}.json`]!, /E_RELEASE_RECORD: its release's digest is [0-9a-f]{64}, not the record's name/);
    assert.match(byFile[`${sha('a')}.json`]!, /E_RELEASE_RECORD: unreadable/);
    assert.match(byFile[unsignedDigestName.name]!, /E_RELEASE_RECORD: its signature does not verify: release manifest has no signature/);
    assert.equal(reported.length, 3, 'each reported when found');
    await again.list();
    assert.equal(reported.length, 3, 'and not again at every read');
    // an unsigned record is fine in development mode
    assert.deepEqual((await (await open({ allowUnsigned: true })).list()).map((x) => x.manifest.version).sort(), ['1.0.0', '1.3.0']);
  });

  it('covers: a component image of a verified release needs no signature of its own', async () => {
    const r = await open();
    const rel = release('1.0.0', 10);
    await r.put(rel, 'deferred');
    assert.equal(r.covers(componentManifest(rel, rel.components[1]!)), true);
    assert.equal(r.covers({ ...componentManifest(rel, rel.components[1]!), crc32: 3 }), false);
    assert.equal(r.covers({ ...componentManifest(rel, rel.components[1]!), sha256: sha('f') }), false);
  });

  it('fwgate images prune keeps the component images a stored release names (a deferred release is not emptied)', async () => {
    const data = join(dir, '..');
    const store = await ImageStore.open({ dir: join(data, 'store'), maxImageSize: 1 << 20 });
    const image = Buffer.alloc(500, 3);
    const other = Buffer.alloc(600, 4);
    const d = digestImage(image);
    const rel = signRelease({ release: 'sensor-release', version: '1.0.0', hw: ['sensor-v1'], chunk: 256, seq: 1, components: [{ component: 'net', name: 'sensor-net', version: '1.5.0', ...d }] }, key);
    for (const [img, m] of [[image, componentManifest(rel, rel.components[0]!)], [other, { ...componentManifest(rel, rel.components[0]!), ...digestImage(other), name: 'loose' }]] as const) {
      const up = await store.beginUpload(m);
      await up.write(0, img);
      await up.commit();
    }
    await (await open()).put(rel, 'deferred');
    const report = await pruneImages(data, { count: 0, maxAgeDays: 0 }, { dryRun: true });
    const bySha = Object.fromEntries(report.images.map((e) => [e.sha256, e]));
    assert.equal(bySha[d.sha256]?.remove, false);
    assert.deepEqual(bySha[d.sha256]?.keptBecause, ['release sensor-release 1.0.0 (deferred) names it']);
    assert.equal(bySha[digestImage(other).sha256]?.remove, true, 'an image no release names is still pruned');
  });

  it('fwgate releases --json lists the stored releases with state, components and campaign; a rotten record is named on stderr, exit 1', async function () {
    this.timeout(60_000);
    const r = await open();
    const rel = release('1.0.0', 10);
    await r.put(rel, 'deferred');
    await r.setState(releaseDigest(rel), 'live', 'c-abcd');
    const data = join(dir, '..');
    const pub = join(data, 'vendor.pub');
    await writeFile(pub, vendor.publicKeyPem);
    const ok = await runEntry('gateway/cli.ts', ['releases', '--json', '--data', data, '--trusted-key', pub, '--log-level', 'silent']);
    assert.equal(ok.code, 0, ok.stderr);
    const out = JSON.parse(ok.stdout) as { releases: { release: string; version: string; state: string; campaign: string; digest: string; components: { component: string; version: string; size: number }[] }[] };
    assert.equal(out.releases.length, 1);
    const [l] = out.releases;
    assert.deepEqual([l!.release, l!.version, l!.state, l!.campaign, l!.digest], ['sensor-release', '1.0.0', 'live', 'c-abcd', releaseDigest(rel)]);
    assert.deepEqual(l!.components.map((c) => [c.component, c.version, c.size]), [['app', '1.0.0', 3000], ['net', '1.5.0', 2500]]);
    await writeFile(join(dir, `${sha('b')}.json`), 'not json');
    const rotten = await runEntry('gateway/cli.ts', ['releases', '--data', data, '--trusted-key', pub, '--log-level', 'silent']);
    assert.equal(rotten.code, 1);
    assert.match(rotten.stdout, /sensor-release\s+1\.0\.0\s+live\s+app 1\.0\.0 \(3000 B\), net 1\.5\.0 \(2500 B\)\s+c-abcd/);
    assert.match(rotten.stderr, new RegExp(`release record .*${sha('b')}\\.json does not verify, skipped: E_RELEASE_RECORD: unreadable`));
  });
});
