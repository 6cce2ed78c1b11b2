import assert from 'node:assert/strict';
import { parseConfig } from '../../../gateway/config.ts';
import { FakeUplinkLink, noCampaignControl } from '../../helpers/uplink-deps.ts';
import { silentLogger } from '../../../gateway/log.ts';
import type { ImageStore, Upload } from '../../../gateway/store.ts';
import { UplinkSession, type UplinkLink } from '../../../gateway/uplink/session.ts';
import { FwError } from '../../../protocol/errors.ts';
import { manifestForImage, type Manifest } from '../../../protocol/manifest.ts';
import { KeyRing } from '../../../protocol/signature.ts';
import type { LaptopMessage } from '../../../protocol/uplink.ts';

/**
 * `deny` `too-large` (docs/protocol.md §7.3.1, config `uplink.maxImageBytes`): an image larger than
 * the gateway accepts is refused before anything is stored, the reason names both sizes; one of
 * exactly the limit is granted; the store refusing with E_IMAGE_TOO_LARGE is the same deny.
 */


const image = new Uint8Array(200).map((_, i) => i);
const manifest = manifestForImage(image, { name: 'sensor-fw', version: '1.2.0', hw: ['sensor-v1'], chunk: 64 });

function session(maxImageBytes: number, beginUpload?: (m: Manifest) => Promise<Upload>): { link: FakeUplinkLink; begun: Manifest[]; deliver(m: LaptopMessage): Promise<void> } {
  const link = new FakeUplinkLink();
  const begun: Manifest[] = [];
  const store = {
    has: () => false,
    beginUpload: async (m: Manifest): Promise<Upload> => {
      begun.push(m);
      if (beginUpload) return beginUpload(m);
      return { manifest: m, offset: 0, write: async () => undefined, commit: async () => { throw new Error('not here'); }, abandon: async () => undefined, discard: async () => undefined };
    },
  } as unknown as ImageStore;
  const config = parseConfig({ uplink: { maxImageBytes, allowUnauthenticated: true }, log: { level: 'silent' } });
  const s = new UplinkSession({
    link: link as unknown as UplinkLink, store, config: config.uplink, log: silentLogger(), agent: 'fwgate/test',
    keyRing: new KeyRing([]), allowUnsigned: true,
    busyReason: () => undefined, campaignState: () => [{ t: 'state', running: false }], onImageStored: () => Promise.reject(new Error('not here')),
    ...noCampaignControl,
  });
  return {
    link, begun,
    async deliver(m) {
      link.emit('message', m);
      await s.settled();
    },
  };
}

const hello: LaptopMessage = { t: 'hello', proto: 1, role: 'laptop', agent: 'test', maxFrame: 4096, window: 16, maxMessage: 1 << 20 };

describe('uplink: deny too-large (§7.3.1, uplink.maxImageBytes)', () => {
  it('an image one byte over the limit is denied too-large, naming both sizes, before the store is touched', async () => {
    const { link, begun, deliver } = session(199);
    await deliver(hello);
    await deliver({ t: 'rts', manifest });
    const m = link.sent.at(-1);
    assert.ok(m?.t === 'deny' && m.code === 'too-large', JSON.stringify(m));
    assert.match(m.reason, /image is 200 bytes, this gateway accepts at most 199/);
    assert.deepEqual(begun, [], 'nothing was begun in the store');
  });

  it('an image of exactly the limit is granted', async () => {
    const { link, begun, deliver } = session(200);
    await deliver(hello);
    await deliver({ t: 'rts', manifest });
    assert.equal(link.sent.at(-1)?.t, 'grant', JSON.stringify(link.sent.at(-1)));
    assert.equal(begun.length, 1);
  });

  it('the store refusing the size (E_IMAGE_TOO_LARGE) is the same deny, with the store\'s reason', async () => {
    const { link, deliver } = session(1 << 20, async () => { throw new FwError('E_IMAGE_TOO_LARGE', 'image store: 200 bytes exceed the store limit of 100'); });
    await deliver(hello);
    await deliver({ t: 'rts', manifest });
    const m = link.sent.at(-1);
    assert.ok(m?.t === 'deny' && m.code === 'too-large', JSON.stringify(m));
    assert.match(m.reason, /exceed the store limit/);
  });
});
