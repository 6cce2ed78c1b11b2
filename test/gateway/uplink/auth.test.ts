import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { parseConfig, type ConfigInput } from '../../../gateway/config.ts';
import { silentLogger } from '../../../gateway/log.ts';
import type { ImageStore, Upload } from '../../../gateway/store.ts';
import { noCampaignControl } from '../../helpers/uplink-deps.ts';
import { UplinkSession, type UplinkLink } from '../../../gateway/uplink/session.ts';
import { manifestForImage } from '../../../protocol/manifest.ts';
import { generateSigningKey, KeyRing, parsePrivateKey } from '../../../protocol/signature.ts';
import { AUTH_CHALLENGE_BYTES, signChallenge, technicianKey, type TechnicianKey } from '../../../protocol/uplink-auth.ts';
import type { GatewayUplinkMessage, LaptopMessage } from '../../../protocol/uplink.ts';

/**
 * Technician authentication on the gateway's uplink session (docs/protocol.md §7.2.4, §7.3.1
 * step 2): a request to send is granted only after an `auth` that signs this session's latest
 * challenge with a trusted technician key; a denied one says why.
 */

/** A link that records what the session sends and lets the test deliver laptop messages. */
class FakeLink extends EventEmitter {
  readonly sent: GatewayUplinkMessage[] = [];
  down = false;
  async send(m: GatewayUplinkMessage): Promise<void> {
    this.sent.push(m);
  }
  readonly configured: Record<string, number>[] = [];
  configure(p: Record<string, number>): void {
    this.configured.push(p);
  }
  readonly arq = { configure: (p: Record<string, number>): void => this.configure(p) };
  async flush(): Promise<void> {}
  last(): GatewayUplinkMessage | undefined {
    return this.sent.at(-1);
  }
}

const image = new Uint8Array(200).map((_, i) => i);
const manifest = manifestForImage(image, { name: 'sensor-fw', version: '1.2.0', hw: ['sensor-v1'], chunk: 64 });

/** A store that holds no image, opens every upload at offset 0 and does nothing else. */
const store = {
  has: () => false,
  beginUpload: async (m: typeof manifest): Promise<Upload> => ({
    manifest: m, offset: 0, write: async () => undefined, commit: async () => { throw new Error('not in these tests'); },
    abandon: async () => undefined, discard: async () => undefined,
  }),
} as unknown as ImageStore;

const newKey = (): { key: TechnicianKey; publicKey: string } => {
  const k = generateSigningKey();
  return { key: technicianKey(parsePrivateKey(k.privateKeyPem)), publicKey: k.publicKeyPem };
};

/** Deterministic challenges: 32 bytes of 1, then of 2, … */
function counterRandom(): (n: number) => Uint8Array {
  let i = 0;
  return (n) => new Uint8Array(n).fill(++i);
}

function session(uplink: ConfigInput['uplink']): { link: FakeLink; s: UplinkSession; deliver(m: LaptopMessage): Promise<void> } {
  const link = new FakeLink();
  const config = parseConfig({ uplink, log: { level: 'silent' } });
  const s = new UplinkSession({
    link: link as unknown as UplinkLink, store, config: config.uplink, log: silentLogger(), agent: 'fwgate/test',
    keyRing: new KeyRing([]), allowUnsigned: true,
    busyReason: () => undefined, campaignState: () => [{ t: 'state', running: false }], onImageStored: () => Promise.reject(new Error('not in these tests')),
    ...noCampaignControl,
    randomBytes: counterRandom(),
  });
  return {
    link, s,
    async deliver(m) {
      link.emit('message', m);
      await s.settled();
    },
  };
}

const hello: LaptopMessage = { t: 'hello', proto: 1, role: 'laptop', agent: 'test', maxFrame: 4096, window: 16, maxMessage: 1 << 20 };
const rts: LaptopMessage = { t: 'rts', manifest };

/** The challenge of the gateway's last hello. */
function challengeOf(link: FakeLink): Uint8Array {
  const h = [...link.sent].reverse().find((m) => m.t === 'hello');
  assert.ok(h?.t === 'hello' && h.challenge, 'the gateway hello carries a challenge');
  return h.challenge;
}

describe('uplink technician authentication (docs/protocol.md §7.2.4)', () => {
  const alice = newKey();
  const mallory = newKey();

  it('each gateway hello carries a fresh 32-byte challenge', async () => {
    const { link, deliver } = session({ technicianKeys: [{ publicKey: alice.publicKey }] });
    await deliver(hello);
    const first = challengeOf(link);
    await deliver(hello);
    const second = challengeOf(link);
    assert.equal(first.length, AUTH_CHALLENGE_BYTES);
    assert.notDeepEqual(first, second);
  });

  it('hello configures the link: negotiated frame and window, then the delayed ACK of uplink.ackDelayMs / ackEvery (§4.4)', async () => {
    const { link, deliver } = session({ window: 8, ackDelayMs: 3, ackEvery: 2 });
    await deliver(hello);
    assert.deepEqual(link.configured, [{ maxPayload: 4096, window: 8 }, { ackDelayMs: 3, ackEvery: 2 }]);
    const defaults = session({});
    await defaults.deliver(hello);
    assert.deepEqual(defaults.link.configured.at(-1), { ackDelayMs: 2, ackEvery: 4 });
  });

  it('no auth: rts is denied unauthorised, the reason says to authenticate', async () => {
    const { link, deliver } = session({ technicianKeys: [{ publicKey: alice.publicKey }] });
    await deliver(hello);
    await deliver(rts);
    const m = link.last();
    assert.equal(m?.t, 'deny');
    assert.equal(m.t === 'deny' && m.code, 'unauthorised');
    assert.match(m.t === 'deny' ? m.reason : '', /not authenticated/);
  });

  it('a key the gateway does not trust: denied unauthorised, naming the key id', async () => {
    const { link, deliver } = session({ technicianKeys: [{ publicKey: alice.publicKey }] });
    await deliver(hello);
    await deliver(signChallenge(mallory.key, challengeOf(link)));
    await deliver(rts);
    const m = link.last();
    assert.ok(m?.t === 'deny' && m.code === 'unauthorised', JSON.stringify(m));
    assert.match(m.reason, new RegExp(`technician key ${mallory.key.keyId} is not trusted`));
  });

  it('a bad signature (a trusted key id, signed by another key): denied unauthorised, bad signature', async () => {
    const { link, deliver } = session({ technicianKeys: [{ publicKey: alice.publicKey }] });
    await deliver(hello);
    const forged = { ...signChallenge(mallory.key, challengeOf(link)), keyId: alice.key.keyId };
    await deliver(forged);
    await deliver(rts);
    const m = link.last();
    assert.ok(m?.t === 'deny' && m.code === 'unauthorised', JSON.stringify(m));
    assert.match(m.reason, /^bad signature/);
  });

  it('a signature replayed from an earlier hello is refused as a stale challenge', async () => {
    const { link, deliver } = session({ technicianKeys: [{ publicKey: alice.publicKey }] });
    await deliver(hello);
    const old = signChallenge(alice.key, challengeOf(link));
    await deliver(old);
    await deliver(rts);
    assert.equal(link.last()?.t, 'grant', 'the genuine auth worked in its own session');
    link.emit('reset'); // the laptop reconnects (or an attacker replays the captured auth)
    await deliver(hello);
    await deliver(old);
    await deliver(rts);
    const m = link.last();
    assert.ok(m?.t === 'deny' && m.code === 'unauthorised', JSON.stringify(m));
    assert.match(m.reason, /^stale challenge/);
  });

  it('the right key signing the latest challenge: rts granted; a new hello needs a new auth', async () => {
    const { link, deliver } = session({ technicianKeys: [{ publicKey: mallory.publicKey }, { publicKey: alice.publicKey }] });
    await deliver(hello);
    await deliver(signChallenge(alice.key, challengeOf(link)));
    await deliver(rts);
    assert.equal(link.last()?.t, 'grant');
    await deliver(hello);
    await deliver(rts);
    assert.ok(link.last()?.t === 'deny', 'a hello ends the authentication of the session');
  });

  it('no technician keys configured: every rts is denied unauthorised, saying none is trusted', async () => {
    const { link, deliver } = session({});
    await deliver(hello);
    await deliver(signChallenge(alice.key, challengeOf(link)));
    await deliver(rts);
    const m = link.last();
    assert.ok(m?.t === 'deny' && m.code === 'unauthorised', JSON.stringify(m));
    assert.match(m.reason, /not trusted/);
    await deliver(hello);
    await deliver(rts);
    const n = link.last();
    assert.ok(n?.t === 'deny' && /trusts no technician key/.test(n.reason), JSON.stringify(n));
  });

  it('uplink.allowUnauthenticated (development): rts granted without auth', async () => {
    const { link, deliver } = session({ allowUnauthenticated: true });
    await deliver(hello);
    await deliver(rts);
    assert.equal(link.last()?.t, 'grant');
  });

  it('status stays allowed without auth (read-only, §7.11)', async () => {
    const { link, deliver } = session({ technicianKeys: [{ publicKey: alice.publicKey }] });
    await deliver(hello);
    await deliver({ t: 'status' });
    assert.deepEqual(link.last(), { t: 'state', running: false });
  });
});
