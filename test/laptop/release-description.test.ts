import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generate } from '../../firmware-samples/generate.ts';
import { readSampleHeader } from '../../firmware-samples/image-format.ts';
import { main as fwsign } from '../../laptop/fwsign.ts';
import { loadRelease } from '../../laptop/release-cli.ts';
import { readReleaseDescription, readSignedRelease } from '../../laptop/release-description.ts';
import { checkReleaseSignature, parseReleaseManifest, unmetRequirements } from '../../protocol/release.ts';
import { generateSigningKey, KeyRing, parsePublicKey } from '../../protocol/signature.ts';

/**
 * The release pair of firmware-samples (release 1.1.0's net byte-identical to release 1.0.0's, its
 * app requiring net >=1.5.0), read as release descriptions (laptop/release-description.ts), signed
 * with `fwsign release`, and the checks fwpush makes before connecting (docs/operations.md "Releases").
 */
describe('release descriptions, fwsign release and the sample release pair', function () {
  this.timeout(30_000);
  let dir: string;
  const vendor = generateSigningKey();
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fwgate-relsamples-'));
    await generate(dir, 4096, 1024);
    await writeFile(join(dir, 'vendor.key'), vendor.privateKeyPem);
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  it('generates release 1.0.0 (app 1.0.0, net 1.5.0) and 1.1.0 (app 1.1.0 requiring net >=1.5.0, the same net bytes)', async () => {
    const r10 = await readReleaseDescription(join(dir, 'release-1.0.0.json'));
    const r11 = await readReleaseDescription(join(dir, 'release-1.1.0.json'));
    const by = (r: typeof r10, c: string) => r.manifest.components.find((x) => x.component === c)!;
    assert.deepEqual(r10.manifest.components.map((c) => [c.component, c.version]), [['app', '1.0.0'], ['net', '1.5.0']]);
    assert.deepEqual(r11.manifest.components.map((c) => [c.component, c.version]), [['app', '1.1.0'], ['net', '1.5.0']]);
    assert.equal(by(r11, 'net').sha256, by(r10, 'net').sha256, 'net is byte-identical');
    assert.notEqual(by(r11, 'app').sha256, by(r10, 'app').sha256);
    assert.deepEqual(by(r11, 'app').requires, { net: '>=1.5.0' });
    assert.equal(by(r10, 'app').requires, undefined);
    assert.ok(r11.manifest.seq! > r10.manifest.seq!, 'the newer release has the higher seq');
    assert.equal(r11.manifest.chunk, 1024);
    assert.deepEqual(unmetRequirements(r11.manifest.components, new Map([['app', '1.1.0'], ['net', '1.5.0']])), []);
    assert.equal(unmetRequirements(r11.manifest.components, new Map([['app', '1.1.0'], ['net', '1.4.0']])).length, 1);
    assert.equal(readSampleHeader(r11.images.get('app')!)?.version, '1.1.0');
    assert.equal(readSampleHeader(r11.images.get('net')!)?.name, 'sensor-net');
  });

  it('fwsign release signs the description\'s manifest; it verifies with the vendor key and matches the files', async () => {
    const out = join(dir, 'signed-1.1.0.json');
    assert.equal(await fwsign(['release', join(dir, 'release-1.1.0.json'), '--key', join(dir, 'vendor.key'), '--out', out]), 0);
    const signed = parseReleaseManifest(JSON.parse(await readFile(out, 'utf8')));
    assert.deepEqual(checkReleaseSignature(new KeyRing([parsePublicKey(vendor.publicKeyPem)]), signed), { ok: true, keyId: signed.signature!.keyId });
    const loaded = await readReleaseDescription(join(dir, 'release-1.1.0.json'));
    assert.deepEqual((await readSignedRelease(out, loaded)).components, loaded.manifest.components);
    assert.equal(await fwsign(['release', join(dir, 'release-1.1.0.json'), '--key', join(dir, 'vendor.key'), '--out', out]), 2, 'no overwrite without --force');
  });

  it('fwpush refuses a signed release that does not match the files, naming the component and field', async () => {
    const out = join(dir, 'signed-1.0.0.json');
    assert.equal(await fwsign(['release', join(dir, 'release-1.0.0.json'), '--key', join(dir, 'vendor.key'), '--out', out]), 0);
    await assert.rejects(loadRelease(join(dir, 'release-1.1.0.json'), { manifest: out }), /is for version 1\.0\.0, the description .* says 1\.1\.0/);
    const signed = JSON.parse(await readFile(out, 'utf8')) as { version: string; components: { crc32: number }[] };
    const desc = JSON.parse(await readFile(join(dir, 'release-1.0.0.json'), 'utf8')) as { components: { file: string }[] };
    desc.components[1]!.file = 'release-app-1.1.0.bin'; // net's entry now names another file
    await writeFile(join(dir, 'wrong.json'), JSON.stringify(desc));
    await assert.rejects(loadRelease(join(dir, 'wrong.json'), { manifest: out }), /component net: size \d+, but the file of the description gives \d+/);
    assert.ok(signed.components.length === 2);
  });

  it('a description with a missing file or a bad field is refused naming it', async () => {
    await writeFile(join(dir, 'missing.json'), JSON.stringify({ release: 'r', version: '1.0.0', hw: ['x'], components: [{ component: 'app', file: 'nope.bin', version: '1.0.0' }] }));
    await assert.rejects(readReleaseDescription(join(dir, 'missing.json')), /component app: cannot read .*nope\.bin/);
    await writeFile(join(dir, 'bad.json'), JSON.stringify({ release: 'r', version: '1.0.0', hw: ['x'], components: [{ component: 'App', file: 'a', version: '1.0.0' }] }));
    await assert.rejects(readReleaseDescription(join(dir, 'bad.json')), /release description .*bad\.json: .*components\.0\.component/);
  });
});
