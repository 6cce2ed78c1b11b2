import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { digestImage, parseManifest } from '../../protocol/manifest.ts';
import { makeSampleImage, readSampleHeader } from '../../firmware-samples/image-format.ts';
import { generate, sampleSpecs } from '../../firmware-samples/generate.ts';
import { tempDir } from './helpers.ts';

describe('firmware-samples', function () {
  it('makeSampleImage is deterministic and carries a readable header', () => {
    const opts = { name: 'sensor-fw', version: '1.2.3', hw: 'sensor-v2', size: 10_000 };
    const a = makeSampleImage(opts);
    const b = makeSampleImage(opts);
    assert.equal(a.length, 10_000);
    assert.deepEqual(a, b);
    assert.deepEqual(readSampleHeader(a), { name: 'sensor-fw', version: '1.2.3', hw: 'sensor-v2', selftest: 'pass' });
    assert.equal(readSampleHeader(makeSampleImage({ ...opts, selftest: 'fail' }))?.selftest, 'fail');
    assert.notDeepEqual(makeSampleImage({ ...opts, version: '1.2.4' }).subarray(200), a.subarray(200), 'the body depends on the version');
    // the body is not trivially compressible: most bytes differ from their neighbour
    let same = 0;
    for (let i = 200; i < a.length; i++) if (a[i] === a[i - 1]) same += 1;
    assert.ok(same < a.length / 50);
  });

  it('readSampleHeader returns null for anything that is not a sample image', () => {
    assert.equal(readSampleHeader(new Uint8Array(0)), null);
    assert.equal(readSampleHeader(Buffer.from('FWSAMPLE1 {"name":1}\n')), null);
    assert.equal(readSampleHeader(Buffer.from('FWSAMPLE1 {not json}\n')), null);
    assert.equal(readSampleHeader(Buffer.from('FWSAMPLE1 {"name":"a","version":"1.0.0","hw":"x","selftest":"pass"}')), null, 'no newline');
    assert.equal(readSampleHeader(Buffer.from('ELF.....')), null);
    assert.throws(() => makeSampleImage({ name: 'a', version: '1.0.0', hw: 'x', size: 10 }), RangeError);
  });

  it('generate writes images and manifests; bad-digest does not match, selftest-fail says so', async () => {
    const dir = await tempDir();
    try {
      const written = await generate(dir.path, 4096, 1024);
      assert.equal(written.length, sampleSpecs().length);
      for (const spec of sampleSpecs()) {
        const image = new Uint8Array(await readFile(join(dir.path, `${spec.stem}.bin`)));
        const manifest = parseManifest(JSON.parse(await readFile(join(dir.path, `${spec.stem}.manifest.json`), 'utf8')));
        assert.equal(manifest.version, spec.version);
        assert.deepEqual(manifest.hw, [spec.hw]);
        assert.equal(manifest.chunk, 1024);
        const d = digestImage(image);
        assert.equal(d.size, manifest.size);
        assert.equal(d.crc32, manifest.crc32);
        assert.equal(d.sha256 === manifest.sha256, !spec.badDigest, spec.stem);
        assert.equal(readSampleHeader(image)?.selftest, spec.selftest);
      }
      assert.ok(sampleSpecs().some((s) => s.badDigest && s.stem.includes('bad-digest')));
      assert.ok(sampleSpecs().some((s) => s.selftest === 'fail'));
      const index = JSON.parse(await readFile(join(dir.path, 'index.json'), 'utf8')) as { samples: unknown[] };
      assert.equal(index.samples.length, written.length);
    } finally {
      await dir.remove();
    }
  });
});
