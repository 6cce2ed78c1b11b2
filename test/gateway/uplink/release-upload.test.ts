import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../../gateway/config.ts';
import { silentLogger } from '../../../gateway/log.ts';
import { ReleaseRegistry } from '../../../gateway/releases.ts';
import { ImageStore } from '../../../gateway/store.ts';
import type { PreparedRelease } from '../../../gateway/release-live.ts';
import { UplinkSession, type CampaignRequest, type UplinkLink } from '../../../gateway/uplink/session.ts';
import { UplinkClient, type LaptopLink } from '../../../laptop/client.ts';
import { FwError } from '../../../protocol/errors.ts';
import { digestImage } from '../../../protocol/manifest.ts';
import { componentManifest, releaseDigest, signRelease, type ReleaseManifest } from '../../../protocol/release.ts';
import { generateSigningKey, KeyRing, parsePrivateKey, parsePublicKey } from '../../../protocol/signature.ts';
import {
  decodeGatewayUplinkMessage, decodeLaptopMessage, encodeUplinkMessage, type GatewayUplinkMessage, type LaptopMessage,
} from '../../../protocol/uplink.ts';
import { noCampaignControl } from '../../helpers/uplink-deps.ts';

/**
 * The release upload (docs/protocol.md §7.3.9) and `release-live` (§7.12.6) between the real
 * laptop client and the real gateway session, over an in-memory link that encodes and decodes
 * every message as on the wire, with a real image store and release registry on disk. The
 * release's campaign is a recorded fake of Gateway.prepareRelease (the rollout is the lead's).
 */

const vendor = generateSigningKey();
const vendorKey = parsePrivateKey(vendor.privateKeyPem);
const stranger = parsePrivateKey(generateSigningKey().privateKeyPem);

function bytes(n: number, seed: number): Buffer {
  return Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + seed * 7 + (i >> 8)) & 0xff));
}
const net15 = bytes(2500, 1);
const app10 = bytes(3000, 2);
const app11 = bytes(3300, 3);

function entry(component: string, version: string, image: Buffer, extra: object = {}): ReleaseManifest['components'][number] {
  const d = digestImage(image);
  return { component, name: `sensor-${component}`, version, size: d.size, crc32: d.crc32, sha256: d.sha256, ...extra };
}
const rel10: ReleaseManifest = signRelease({
  release: 'sensor-release', version: '1.0.0', hw: ['sensor-v1'], chunk: 256, seq: 10,
  components: [entry('app', '1.0.0', app10), entry('net', '1.5.0', net15)],
}, vendorKey);
const rel11: ReleaseManifest = signRelease({
  release: 'sensor-release', version: '1.1.0', hw: ['sensor-v1'], chunk: 256, seq: 11,
  components: [entry('app', '1.1.0', app11, { requires: { net: '>=1.5.0' } }), entry('net', '1.5.0', net15)],
}, vendorKey);
const images = new Map([['app', app11], ['net', net15]]);

/** Both ends of an in-memory uplink: every message is CBOR-encoded and decoded as on the serial line. */
class Wire {
  readonly fromLaptop: LaptopMessage[] = [];
  readonly gateway = Object.assign(new EventEmitter(), {
    down: false,
    send: async (m: GatewayUplinkMessage): Promise<void> => {
      const copy = decodeGatewayUplinkMessage(encodeUplinkMessage(m));
      setImmediate(() => this.laptop.emit('message', copy));
    },
    configure: (): void => undefined,
    startKeepalive: (): void => undefined,
    arq: { configure: (): void => undefined },
    flush: async (): Promise<void> => undefined,
  });
  readonly laptop = Object.assign(new EventEmitter(), {
    down: false,
    send: async (m: LaptopMessage): Promise<void> => {
      const copy = decodeLaptopMessage(encodeUplinkMessage(m));
      this.fromLaptop.push(copy);
      this.gateway.emit('message', copy);
    },
    configure: (): void => undefined,
    arq: { lineMsPerByte: undefined },
  });
  /** Image bytes the laptop sent in `data` messages. */
  dataBytes(): number {
    return this.fromLaptop.reduce((n, m) => n + (m.t === 'data' ? m.data.length : 0), 0);
  }
}

interface Rig {
  dir: string;
  store: ImageStore;
  releases: ReleaseRegistry;
  wire: Wire;
  session: UplinkSession;
  client: UplinkClient;
  prepared: { release: ReleaseManifest; request: CampaignRequest }[];
  started: string[];
  replies(): GatewayUplinkMessage[];
}

async function rig(opts: { allowUnsigned?: boolean; busy?: string } = {}): Promise<Rig> {
  const dir = await mkdtemp(join(tmpdir(), 'fwgate-relup-'));
  const keyRing = new KeyRing([parsePublicKey(vendor.publicKeyPem)]);
  const allowUnsigned = opts.allowUnsigned ?? false;
  const store = await ImageStore.open({ dir: join(dir, 'store'), maxImageSize: 1 << 20 });
  const releases = await ReleaseRegistry.open({ dir: join(dir, 'releases'), keyRing, allowUnsigned });
  const config = parseConfig({ uplink: { allowUnauthenticated: true }, log: { level: 'silent' } });
  const wire = new Wire();
  const prepared: Rig['prepared'] = [];
  const started: string[] = [];
  const replies: GatewayUplinkMessage[] = [];
  const session = new UplinkSession({
    link: wire.gateway as unknown as UplinkLink, store, config: config.uplink, log: silentLogger(), agent: 'fwgate/test',
    keyRing, allowUnsigned,
    busyReason: () => opts.busy, campaignState: () => [{ t: 'state', running: false }], onImageStored: () => Promise.reject(new Error('not here')),
    ...noCampaignControl,
    release: {
      releases,
      preflight: async () => ({ eligibleOnline: 2, eligibleOffline: 0, notNewer: 0, otherHw: 0, belowFloor: 0, busy: 0, notTargeted: 0 }),
      prepareRelease: async (release, request): Promise<PreparedRelease> => {
        prepared.push({ release, request });
        const id = `c-rel-${prepared.length}`;
        return { id, start: () => started.push(id) };
      },
    },
  });
  const client = new UplinkClient(wire.laptop as unknown as LaptopLink, {
    agent: 'test', maxFrame: 4096, window: 16, replyTimeoutMs: 5000, idleTimeoutMs: 5000,
  });
  client.on('event', (m) => replies.push(m));
  await wire.laptop.send({ t: 'hello', proto: 1, role: 'laptop', agent: 'test', maxFrame: 4096, window: 16, maxMessage: 1 << 20 });
  await session.settled();
  return { dir, store, releases, wire, session, client, prepared, started, replies: () => replies };
}

/** Store an image in the store as an earlier release's upload would have. */
async function hold(store: ImageStore, release: ReleaseManifest, component: string, image: Buffer): Promise<void> {
  const up = await store.beginUpload(componentManifest(release, release.components.find((c) => c.component === component)!));
  await up.write(0, image);
  await up.commit();
}

async function recordOnDisk(r: Rig, release: ReleaseManifest): Promise<{ state: string; campaign?: string }> {
  return JSON.parse(await readFile(join(r.dir, 'releases', `${releaseDigest(release)}.json`), 'utf8')) as { state: string; campaign?: string };
}

describe('release upload over the uplink (§7.3.9)', () => {
  const rigs: Rig[] = [];
  const newRig = async (o?: Parameters<typeof rig>[0]): Promise<Rig> => {
    const r = await rig(o);
    rigs.push(r);
    return r;
  };
  afterEach(async () => {
    for (const r of rigs.splice(0)) {
      await r.session.close();
      await rm(r.dir, { recursive: true, force: true });
    }
  });

  it('uploads only the component the gateway lacks: net is held, only app\'s bytes cross the wire', async () => {
    const r = await newRig();
    await hold(r.store, rel10, 'net', net15);
    const grant = await r.client.requestRelease({ t: 'release-rts', release: rel11, policy: 'now' });
    assert.deepEqual(grant.send.map((c) => c.component), ['app']);
    assert.deepEqual(grant.stored, ['net']);
    assert.equal(grant.digest, releaseDigest(rel11));
    await r.client.uploadRelease(images, grant);
    const committed = await r.client.commitRelease();
    assert.equal(r.wire.dataBytes(), app11.length, 'exactly the app image was sent');
    assert.equal(committed.campaign, 'c-rel-1');
    assert.equal(committed.sha256, releaseDigest(rel11));
    // stored with its component manifest, verified; the release recorded live with its campaign, then started
    assert.deepEqual(r.store.get(rel11.components[0]!.sha256)?.manifest, componentManifest(rel11, rel11.components[0]!));
    const rec = await recordOnDisk(r, rel11);
    assert.equal(rec.state, 'live');
    assert.equal(rec.campaign, 'c-rel-1');
    assert.equal(r.prepared.length, 1);
    assert.deepEqual(r.prepared[0]!.request, { policy: 'now' });
    assert.deepEqual(r.started, ['c-rel-1']);
  });

  it('uploads every component when the gateway holds none, laid end to end in the data offsets', async () => {
    const r = await newRig();
    const grant = await r.client.requestRelease({ t: 'release-rts', release: rel11, deferred: true });
    assert.deepEqual(grant.send.map((c) => [c.component, c.offset]), [['app', 0], ['net', 0]]);
    await r.client.uploadRelease(images, grant);
    await r.client.commitRelease();
    assert.equal(r.wire.dataBytes(), app11.length + net15.length);
    const offs = r.wire.fromLaptop.filter((m) => m.t === 'data').map((m) => (m as { off: number }).off);
    assert.ok(offs.includes(app11.length), 'net\'s bytes start where app\'s end');
    assert.ok(r.store.has(rel11.components[1]!.sha256) && (await r.store.verify(rel11.components[1]!.sha256)));
  });

  it('an interrupted release upload resumes each image where the gateway holds it (a new hello keeps the partials)', async () => {
    const r = await newRig();
    const grant = await r.client.requestRelease({ t: 'release-rts', release: rel11, deferred: true });
    // app whole and the first 1000 bytes of net, then the laptop says hello again (as after a lost link)
    await r.wire.laptop.send({ t: 'data', off: 0, data: app11 });
    await r.wire.laptop.send({ t: 'data', off: app11.length, data: net15.subarray(0, 1000) });
    await r.wire.laptop.send({ t: 'hello', proto: 1, role: 'laptop', agent: 'test', maxFrame: 4096, window: 16, maxMessage: 1 << 20 });
    await r.session.settled();
    assert.deepEqual(grant.send.map((c) => c.offset), [0, 0]);
    const again = await r.client.requestRelease({ t: 'release-rts', release: rel11, deferred: true });
    assert.deepEqual(again.send.map((c) => [c.component, c.offset]), [['app', app11.length], ['net', 1000]]);
    const before = r.wire.dataBytes();
    await r.client.uploadRelease(images, again);
    await r.client.commitRelease();
    assert.equal(r.wire.dataBytes() - before, net15.length - 1000, 'only the rest of net was sent');
    for (const c of rel11.components) assert.ok(await r.store.verify(c.sha256), c.component);
  });

  it('two components with the same image: its bytes are uploaded once, both are stored under it', async () => {
    const r = await newRig();
    const twins = signRelease({ ...rel11, components: [rel11.components[1]!, { ...rel11.components[1]!, component: 'net2' }] }, vendorKey);
    const grant = await r.client.requestRelease({ t: 'release-rts', release: twins, deferred: true });
    assert.deepEqual(grant.send.map((c) => c.component), ['net']);
    await r.client.uploadRelease(new Map([['net', net15]]), grant);
    const committed = await r.client.commitRelease();
    assert.equal(committed.deferred, true);
    assert.equal(r.wire.dataBytes(), net15.length);
    assert.equal((await r.releases.list()).length, 1);
  });

  it('deferred, then live: the record moves deferred → live on disk and the campaign is created and started only then', async () => {
    const r = await newRig();
    const grant = await r.client.requestRelease({ t: 'release-rts', release: rel11, deferred: true });
    await r.client.uploadRelease(images, grant);
    const committed = await r.client.commitRelease();
    assert.equal(committed.deferred, true);
    assert.equal(committed.campaign, undefined);
    assert.equal((await recordOnDisk(r, rel11)).state, 'deferred');
    assert.equal(r.prepared.length, 0, 'no campaign for a deferred release');
    const accepted = await r.client.control({ t: 'release-live', release: 'sensor-release', version: '1.1.0', policy: 'now', only: ['dev-1', 'dev-2'], waves: [{ count: 1 }, { pct: 100 }] });
    assert.equal(accepted.request, 'release-live');
    assert.equal(accepted.campaign, 'c-rel-1');
    assert.deepEqual(r.prepared.map((p) => [releaseDigest(p.release), p.request]), [[releaseDigest(rel11), { policy: 'now', only: ['dev-1', 'dev-2'], waves: [{ count: 1 }, { pct: 100 }] }]]);
    const rec = await recordOnDisk(r, rel11);
    assert.equal(rec.state, 'live');
    assert.equal(rec.campaign, 'c-rel-1');
    assert.deepEqual(r.started, ['c-rel-1']);
  });

  it('a release going live supersedes the live release of the same name with a lower version', async () => {
    const r = await newRig();
    for (const rel of [rel10, rel11]) {
      const grant = await r.client.requestRelease({ t: 'release-rts', release: rel, deferred: true });
      await r.client.uploadRelease(new Map([['app', rel === rel10 ? app10 : app11], ['net', net15]]), grant);
      await r.client.commitRelease();
    }
    await r.client.control({ t: 'release-live', release: 'sensor-release', version: '1.0.0' });
    assert.equal((await recordOnDisk(r, rel10)).state, 'live');
    const accepted = await r.client.control({ t: 'release-live', release: 'sensor-release', version: '1.1.0' });
    assert.match(accepted.reason ?? '', /supersedes 1\.0\.0/);
    assert.equal((await recordOnDisk(r, rel10)).state, 'superseded');
    assert.equal((await recordOnDisk(r, rel11)).state, 'live');
  });

  it('release live of a release that is not stored is denied unknown-release', async () => {
    const r = await newRig();
    await assert.rejects(r.client.control({ t: 'release-live', release: 'sensor-release', version: '9.9.9' }),
      (err: Error & { details?: { deny?: string } }) => err.details?.deny === 'unknown-release' && /no stored release sensor-release 9\.9\.9/.test(err.message));
    assert.equal(r.prepared.length, 0);
  });

  it('a held component the disk cannot read back (E_STORE_IO): denied internal naming the component, the copy kept, nothing stored', async () => {
    const r = await newRig();
    await hold(r.store, rel10, 'net', net15);
    const netSha = rel11.components[1]!.sha256;
    r.store.verify = async (): Promise<boolean> => {
      throw new FwError('E_STORE_IO', 'image store: read <net image> failed');
    };
    await assert.rejects(r.client.requestRelease({ t: 'release-rts', release: rel11, policy: 'now' }),
      (err: Error & { details?: { deny?: string } }) => {
        assert.equal(err.details?.deny, 'internal', err.message);
        assert.match(err.message, /could not read its stored copy of component net \(E_STORE_IO: image store: read <net image> failed\); nothing stored, try again/);
        return true;
      });
    assert.equal(r.store.has(netSha), true, 'the held copy is kept');
    assert.deepEqual(await r.releases.list(), []);
    assert.equal(r.prepared.length, 0);
  });

  describe('refusals name what is wrong; nothing is stored', () => {
    const refused = async (r: Rig, release: ReleaseManifest, deny: string, reason: RegExp): Promise<void> => {
      await assert.rejects(r.client.requestRelease({ t: 'release-rts', release, deferred: true }),
        (err: Error & { details?: { deny?: string } }) => {
          assert.equal(err.details?.deny, deny, err.message);
          assert.match(err.message, reason);
          return true;
        });
      assert.deepEqual(await r.releases.list(), []);
      assert.equal(r.store.list().length, 0);
    };

    it('a tampered component entry (its digest changed after signing): bad-signature', async () => {
      const r = await newRig();
      const tampered = { ...rel11, components: [{ ...rel11.components[0]!, sha256: digestImage(app10).sha256 }, rel11.components[1]!] };
      await refused(r, tampered, 'bad-signature', /release sensor-release 1\.1\.0: signature by key .* does not match the release manifest/);
    });

    it('signed by a key the gateway does not trust: unknown-key', async () => {
      const r = await newRig();
      await refused(r, signRelease(rel11, stranger), 'unknown-key', /is signed by key [0-9a-f]+, which is not trusted/);
    });

    it('unsigned, without allowUnsigned: unsigned', async () => {
      const r = await newRig();
      const { signature: _s, ...unsigned } = rel11;
      await refused(r, unsigned, 'unsigned', /release manifest has no signature/);
    });

    it('a component image larger than uplink.maxImageBytes: too-large, naming the component', async () => {
      const r = await newRig();
      const big = signRelease({ ...rel11, components: [rel11.components[0]!, { ...rel11.components[1]!, size: 200 * 1024 * 1024 }] }, vendorKey);
      await refused(r, big, 'too-large', /component net is 209715200 bytes, this gateway accepts at most/);
    });

    it('a component whose stored image has another CRC-32 than the entry: invalid-manifest naming the component and field', async () => {
      const r = await newRig();
      await hold(r.store, rel10, 'net', net15);
      const wrong = signRelease({ ...rel11, components: [rel11.components[0]!, { ...rel11.components[1]!, crc32: (rel11.components[1]!.crc32 + 1) >>> 0 }] }, vendorKey);
      await assert.rejects(r.client.requestRelease({ t: 'release-rts', release: wrong, deferred: true }),
        (err: Error & { details?: { deny?: string } }) => err.details?.deny === 'invalid-manifest' && /component net gives crc32 \d+, the stored image with sha256 [0-9a-f]{64} has \d+/.test(err.message));
    });

    it('a seq below an older stored version\'s: invalid-manifest naming both seqs', async () => {
      const r = await newRig();
      await r.releases.put(rel10, 'live');
      await refused2(r, signRelease({ ...rel11, seq: 9 }, vendorKey), /seq 9 is below seq 10 of the older release 1\.0\.0/);
    });

    it('another release with the same name and version: invalid-manifest', async () => {
      const r = await newRig();
      await r.releases.put(rel11, 'deferred');
      await refused2(r, signRelease({ ...rel11, hw: ['sensor-v2'] }, vendorKey), /release sensor-release 1\.1\.0 is already stored with other contents/);
    });

    const refused2 = async (r: Rig, release: ReleaseManifest, reason: RegExp): Promise<void> => {
      await assert.rejects(r.client.requestRelease({ t: 'release-rts', release, deferred: true }),
        (err: Error & { details?: { deny?: string } }) => err.details?.deny === 'invalid-manifest' && reason.test(err.message));
      assert.equal(r.releases.problems.length, 0);
    };
  });

  it('bytes that do not match their entry are refused at commit naming the component; the release is not recorded', async () => {
    const r = await newRig({ allowUnsigned: true });
    const { signature: _s, ...unsigned } = rel11;
    const grant = await r.client.requestRelease({ t: 'release-rts', release: unsigned, deferred: true });
    const corrupt = Buffer.from(app11);
    corrupt[100] = corrupt[100]! ^ 0xff;
    await r.client.uploadRelease(new Map([['app', corrupt], ['net', net15]]), grant);
    await assert.rejects(r.client.commitRelease(), /component app does not match its entry in the release \(E_IMAGE_(CRC|SHA256)/);
    assert.deepEqual(await r.releases.list(), []);
    assert.equal(r.store.has(unsigned.components[0]!.sha256), false);
    assert.equal(r.prepared.length, 0);
  });

  it('a non-deferred release while a campaign runs is denied busy before any data', async () => {
    const r = await newRig({ busy: 'campaign c-1 is still running' });
    await assert.rejects(r.client.requestRelease({ t: 'release-rts', release: rel11 }),
      (err: Error & { details?: { deny?: string } }) => err.details?.deny === 'busy' && /--deferred/.test(err.message));
  });
});
