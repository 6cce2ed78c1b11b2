import assert from 'node:assert/strict';
import { parseConfig } from '../../../gateway/config.ts';
import { silentLogger } from '../../../gateway/log.ts';
import type { ImageStore } from '../../../gateway/store.ts';
import { UplinkSession, type UplinkLink } from '../../../gateway/uplink/session.ts';
import { FwError } from '../../../protocol/errors.ts';
import { manifestForImage } from '../../../protocol/manifest.ts';
import { KeyRing } from '../../../protocol/signature.ts';
import type { LaptopMessage } from '../../../protocol/uplink.ts';
import { FakeUplinkLink, noCampaignControl } from '../../helpers/uplink-deps.ts';

/**
 * An `rts` for an image the gateway already holds re-checks the held copy (§7.3.8). When the disk
 * cannot read it (E_STORE_IO: the disk, not the bytes), the request is denied `internal` with the
 * reason and "try again": nothing is begun, the copy is not quarantined or forgotten (the store's
 * own test: test/gateway/store-faults.test.ts).
 */


const image = new Uint8Array(200).map((_, i) => i);
const manifest = manifestForImage(image, { name: 'sensor-fw', version: '1.2.0', hw: ['sensor-v1'], chunk: 64 });
const hello: LaptopMessage = { t: 'hello', proto: 1, role: 'laptop', agent: 'test', maxFrame: 4096, window: 16, maxMessage: 1 << 20 };

describe('uplink: a held copy the disk cannot read back (§7.3.8)', () => {
  it('is denied internal, naming the I/O error and "try again"; nothing is begun and the copy stays held', async () => {
    const link = new FakeUplinkLink();
    const calls: string[] = [];
    const store = {
      has: (sha: string) => {
        calls.push(`has ${sha === manifest.sha256}`);
        return true;
      },
      verify: async () => {
        calls.push('verify');
        throw new FwError('E_STORE_IO', 'image store: read images/x.bin failed');
      },
      beginUpload: async () => {
        calls.push('beginUpload');
        throw new Error('not here');
      },
    } as unknown as ImageStore;
    const config = parseConfig({ uplink: { allowUnauthenticated: true }, log: { level: 'silent' } });
    const s = new UplinkSession({
      link: link as unknown as UplinkLink, store, config: config.uplink, log: silentLogger(), agent: 'fwgate/test',
      keyRing: new KeyRing([]), allowUnsigned: true,
      busyReason: () => undefined, campaignState: () => [{ t: 'state', running: false }], onImageStored: () => Promise.reject(new Error('not here')),
      ...noCampaignControl,
    });
    link.emit('message', hello);
    await s.settled();
    link.emit('message', { t: 'rts', manifest } satisfies LaptopMessage);
    await s.settled();
    const m = link.sent.at(-1);
    assert.ok(m?.t === 'deny' && m.code === 'internal', JSON.stringify(m));
    assert.equal(m.reason, 'the gateway could not read its stored copy of this image (E_STORE_IO: image store: read images/x.bin failed); nothing stored, try again');
    assert.deepEqual(calls, ['has true', 'verify']);
    await s.close();
  });
});
