import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { createLogger } from '../../gateway/log.ts';
import { isFwError } from '../../protocol/errors.ts';
import type { Manifest } from '../../protocol/manifest.ts';
import type { ResultMessage } from '../../protocol/uplink.ts';
import { makeTestKey, signed, testKey } from '../helpers/keys.ts';
import { Rig, sampleImage } from '../helpers/rig.ts';

/** Signed images end to end (docs/protocol.md §5.4, §6.5.7, §6.7.1, §7.3.1). */
describe('integration: signed images', function () {
  this.timeout(120_000);
  let rig: Rig | undefined;
  afterEach(async () => {
    await rig?.stop();
    rig = undefined;
  });

  /** Push and expect a deny with `code`; the reason names the failure and nothing is stored, not even a partial. */
  async function expectDenied(r: Rig, manifest: Manifest, image: Buffer, code: string, reason: RegExp): Promise<void> {
    await assert.rejects(r.client.push(manifest, image), (err: unknown) => {
      assert.ok(isFwError(err), String(err));
      assert.equal(err.details?.deny, code, err.message);
      assert.match(err.message, reason);
      return true;
    });
    assert.equal(r.gateway.store.list().length, 0, 'nothing stored');
    const partial = join(r.dir, 'gateway', 'store', 'partial');
    assert.deepEqual(existsSync(partial) ? readdirSync(partial) : [], [], 'no partial upload opened');
  }

  it('refuses a missing signature, an unknown key, a tampered manifest field and bad signature bytes, each by name; stores nothing', async () => {
    rig = await Rig.start({ devices: 1 });
    await rig.client.connect();
    const { image, manifest } = sampleImage({ version: '1.1.0', size: 16 * 1024 });
    const { signature: _drop, ...unsigned } = manifest;
    await expectDenied(rig, unsigned, image, 'unsigned', /no signature/);
    const stranger = makeTestKey();
    await expectDenied(rig, signed(unsigned, stranger), image, 'unknown-key', new RegExp(`key ${stranger.keyId}.*not trusted`));
    await expectDenied(rig, { ...manifest, version: '1.1.1' }, image, 'bad-signature', /does not match the manifest/);
    await expectDenied(rig, { ...manifest, hw: ['sensor-v1', 'sensor-v9'] }, image, 'bad-signature', /does not match/);
    const sig = manifest.signature!.sig;
    const flipped = `${sig[0] === 'a' ? 'b' : 'a'}${sig.slice(1)}`;
    await expectDenied(rig, { ...manifest, signature: { keyId: manifest.signature!.keyId, sig: flipped } }, image, 'bad-signature', /does not match/);
    // and the same session still takes a correctly signed image
    const { campaign } = await rig.client.push(manifest, image);
    assert.equal((await rig.client.follow(campaign)).updated, 1);
  });

  it('key rotation: with the old and the new key trusted, an image signed by the second is accepted and installed', async () => {
    const next = makeTestKey();
    rig = await Rig.start({
      devices: 2,
      config: { security: { trustedKeys: [{ publicKey: testKey().publicKeyPem }, { keyId: next.keyId, publicKey: next.publicKeyPem }] } },
      device: { pinnedKeys: [testKey().publicKeyPem, next.publicKeyPem] },
    });
    await rig.client.connect();
    const { image, manifest } = sampleImage({ version: '1.1.0', size: 16 * 1024 });
    const { signature: _drop, ...unsigned } = manifest;
    const { campaign } = await rig.client.push(signed(unsigned, next), image);
    assert.equal((await rig.client.follow(campaign)).updated, 2);
  });

  it('development mode: says so at start-up, accepts an unsigned image with a warning, still refuses a bad signature', async () => {
    const lines: string[] = [];
    const sink = new Writable({ write(chunk: Buffer, _enc, cb) { lines.push(...chunk.toString().split('\n').filter(Boolean)); cb(); } });
    const log = createLogger({ level: 'info', format: 'json', destination: sink });
    rig = await Rig.start({ devices: 1, log, config: { security: { allowUnsigned: true, trustedKeys: [{ publicKey: testKey().publicKeyPem }] } }, device: { pinnedKeys: [] } });
    const logged = (re: RegExp): Record<string, unknown>[] => lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((o) => re.test(String(o.msg)));
    const startup = logged(/DEVELOPMENT MODE.*UNSIGNED/);
    assert.equal(startup.length, 1, 'one warning at start-up');
    assert.equal(startup[0]!.level, 40, 'at warn level');
    await rig.client.connect();
    const { image, manifest } = sampleImage({ version: '1.1.0', size: 16 * 1024, unsigned: true });
    const { campaign } = await rig.client.push(manifest, image);
    assert.equal((await rig.client.follow(campaign)).updated, 1);
    assert.equal(logged(/accepting an UNSIGNED image/).length, 1, 'a warning for the unsigned upload');
    const next = sampleImage({ version: '1.2.0', size: 16 * 1024 });
    await expectDeniedKeepingStore(rig, { ...next.manifest, seq: 9 }, next.image);
  });

  it('a device refuses at the offer an image signed by a key it has not pinned (before downloading it): failed / bad-signature, not retried, old image kept', async () => {
    const gatewayOnly = makeTestKey();
    rig = await Rig.start({
      devices: 1,
      config: { security: { trustedKeys: [{ publicKey: testKey().publicKeyPem }, { publicKey: gatewayOnly.publicKeyPem }] } },
    });
    await rig.client.connect();
    const { image, manifest } = sampleImage({ version: '1.1.0', size: 16 * 1024 });
    const { signature: _drop, ...unsigned } = manifest;
    const { campaign } = await rig.client.push(signed(unsigned, gatewayOnly), image);
    const complete = await rig.client.follow(campaign);
    assert.equal(complete.failed, 1);
    const r = rig.events.find((e): e is ResultMessage => e.t === 'result')!;
    assert.equal(r.code, 'bad-signature');
    assert.match(r.reason ?? '', /unknown-key/);
    assert.equal(r.retries, 0);
    const d = rig.sims.devices[0]!;
    assert.equal(d.running?.version, '1.0.0');
    assert.equal(d.status()?.slots[d.running!.slot === 'a' ? 'b' : 'a'].state, 'empty', 'nothing was downloaded');
    assert.equal(d.stats.chunks, 0, 'no chunk reached the device');
  });

  it('anti-rollback: after installing seq 5, a device refuses a newer version signed with seq 3 (skipped / seq-rollback)', async () => {
    rig = await Rig.start({ devices: 1 });
    await rig.client.connect();
    const first = sampleImage({ version: '1.1.0', size: 16 * 1024, seq: 5 });
    const c1 = await rig.client.push(first.manifest, first.image);
    assert.equal((await rig.client.follow(c1.campaign)).updated, 1);
    const lower = sampleImage({ version: '1.2.0', size: 16 * 1024, seq: 3 });
    const c2 = await rig.client.push(lower.manifest, lower.image);
    const complete = await rig.client.follow(c2.campaign);
    assert.equal(complete.skipped, 1);
    const r = rig.events.filter((e): e is ResultMessage => e.t === 'result' && e.campaign === c2.campaign)[0]!;
    assert.equal(r.code, 'seq-rollback');
    assert.match(r.reason ?? '', /seq 3 is below the installed seq 5/);
    assert.equal(rig.sims.devices[0]!.running?.version, '1.1.0');
  });
});

/** A bad signature is refused in development mode too (only *unsigned* is allowed there). */
async function expectDeniedKeepingStore(r: Rig, manifest: Manifest, image: Buffer): Promise<void> {
  const before = r.gateway.store.list().length;
  await assert.rejects(r.client.push(manifest, image), (err: unknown) => isFwError(err) && err.details?.deny === 'bad-signature');
  assert.equal(r.gateway.store.list().length, before);
}
