import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { applySigning } from '../../laptop/signing.ts';
import { makeSampleImage } from '../../firmware-samples/image-format.ts';
import { manifestForImage, parseManifest } from '../../protocol/manifest.ts';
import { KeyRing, parsePublicKey } from '../../protocol/signature.ts';
import { runEntry } from '../helpers/run-entry.ts';

describe('fwsign: signing releases on the build machine', function () {
  this.timeout(60_000);
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fwsign-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const sign = (...args: string[]): ReturnType<typeof runEntry> => runEntry('laptop/fwsign-cli.ts', args);

  it('makes a signed manifest the vendor key verifies; --seq required; the state file refuses a seq not above the last', async () => {
    assert.equal((await sign('keygen', '--out', join(dir, 'vendor'))).code, 0);
    const image = join(dir, 'sensor-fw-1.2.0.bin');
    await writeFile(image, makeSampleImage({ name: 'sensor-fw', version: '1.2.0', hw: 'sensor-v1', size: 8192 }));
    const state = join(dir, 'releases.json');
    const base = [image, '--key', join(dir, 'vendor.key'), '--name', 'sensor-fw', '--version', '1.2.0', '--hw', 'sensor-v1', '--state', state];
    const first = await sign(...base, '--seq', '7');
    assert.equal(first.code, 0, first.stderr);
    const manifest = parseManifest(JSON.parse(await readFile(join(dir, 'sensor-fw-1.2.0.manifest.json'), 'utf8')));
    assert.deepEqual([manifest.name, manifest.version, manifest.hw, manifest.seq, manifest.size], ['sensor-fw', '1.2.0', ['sensor-v1'], 7, 8192]);
    const ring = new KeyRing([parsePublicKey(await readFile(join(dir, 'vendor.pub'), 'utf8'))]);
    assert.deepEqual(ring.check(manifest), { ok: true, keyId: manifest.signature!.keyId });

    const [same, lower, noSeq, zero] = await Promise.all([
      sign(...base, '--seq', '7', '-o', join(dir, 'again-7.json')),
      sign(...base, '--seq', '6', '-o', join(dir, 'again-6.json')),
      sign(image, '--key', join(dir, 'vendor.key'), '--version', '1.2.0', '--hw', 'sensor-v1', '-o', join(dir, 'x.json')),
      sign(image, '--key', join(dir, 'vendor.key'), '--version', '1.2.0', '--hw', 'sensor-v1', '--seq', '0', '-o', join(dir, 'z.json')),
    ]);
    for (const [seq, again] of [['7', same!], ['6', lower!]] as const) {
      assert.equal(again.code, 2);
      assert.match(again.stderr, new RegExp(`--seq ${seq} is not above 7, the last seq signed \\(sensor-fw 1\\.2\\.0, .*use --seq 8 or higher`));
    }
    assert.equal((await sign(...base, '--seq', '8', '-o', join(dir, 'next.json'))).code, 0);
    assert.equal((JSON.parse(await readFile(state, 'utf8')) as { lastSeq: number }).lastSeq, 8);

    assert.equal(noSeq!.code, 2);
    assert.equal(noSeq!.stderr, "error: required option '--seq <n>' not specified (see fwsign --help)\n");
    assert.equal(zero!.code, 2);
    assert.match(zero!.stderr, /--seq 0 .*--allow-seq-zero/);
  });

  it('fwpush refuses to sign with seq 0 unless told (--allow-seq-zero)', async () => {
    assert.equal((await sign('keygen', '--out', join(dir, 'vendor'))).code, 0);
    const key = join(dir, 'vendor.key');
    const m = manifestForImage(new Uint8Array(100), { name: 'x', version: '1.0.0', hw: ['sensor-v1'] });
    await assert.rejects(applySigning(m, true, { signKey: key, seq: 0 }), /refusing to sign with seq 0/);
    await assert.rejects(applySigning(m, false, { signKey: key }), /refusing to sign with seq 0/);
    assert.equal((await applySigning(m, true, { signKey: key, seq: 0, allowSeqZero: true })).seq, 0);
    assert.equal((await applySigning(m, true, { signKey: key, seq: 3 })).seq, 3);
  });
});

describe('fwpush: seq below what the fleet installed', () => {
  it('warns naming the seq, the devices that refused it (seq-rollback) and the next step', async () => {
    const { seqWarning } = await import('../../laptop/seq-warning.ts');
    const r = (id: string, code: 'ok' | 'seq-rollback'): Parameters<typeof seqWarning>[1] extends Iterable<infer T> ? T : never => ({
      t: 'result', campaign: 'c-1', id, outcome: code === 'ok' ? 'updated' : 'skipped', code, from: '1.0.0', to: '1.1.0', durationMs: 1, retries: 0,
    });
    assert.equal(seqWarning(3, [r('dev-1', 'ok')]), undefined);
    assert.match(seqWarning(3, [r('dev-1', 'ok'), r('dev-2', 'seq-rollback')])!, /seq 3 is below what 1 device has installed \(seq-rollback: dev-2\).*fwsign --seq/);
  });
});
