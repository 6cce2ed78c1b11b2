import assert from 'node:assert/strict';
import { parseConfig, type ConfigInput } from '../../../gateway/config.ts';
import { silentLogger, type Logger } from '../../../gateway/log.ts';
import { TechnicianAuth } from '../../../gateway/uplink/auth.ts';
import type { ImageStore, Upload } from '../../../gateway/store.ts';
import { FakeUplinkLink, noCampaignControl } from '../../helpers/uplink-deps.ts';
import { UplinkSession, type UplinkLink } from '../../../gateway/uplink/session.ts';
import { manifestForImage } from '../../../protocol/manifest.ts';
import { generateSigningKey, KeyRing, parsePrivateKey } from '../../../protocol/signature.ts';
import { AUTH_CHALLENGE_BYTES, signChallenge, signRequest, technicianKey, type TechnicianKey } from '../../../protocol/uplink-auth.ts';
import type { GatewayUplinkMessage, LaptopMessage } from '../../../protocol/uplink.ts';

/**
 * Technician authorisation on the gateway's uplink session (docs/protocol.md §7.2.4, §7.3.1
 * step 2): a request to send is granted only when it carries its own `auth`, signed with a
 * trusted technician key over this session's latest challenge, a counter above the last one and
 * the request's content; a denied one says why.
 */

/** A link that records what the session sends and lets the test deliver laptop messages. */

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

function session(uplink: ConfigInput['uplink'], clock = { now: 0 }): { link: FakeUplinkLink; s: UplinkSession; deliver(m: LaptopMessage): Promise<void> } {
  const link = new FakeUplinkLink();
  const config = parseConfig({ uplink, log: { level: 'silent' } });
  const s = new UplinkSession({
    link: link as unknown as UplinkLink, store, config: config.uplink, log: silentLogger(), agent: 'fwgate/test',
    keyRing: new KeyRing([]), allowUnsigned: true,
    busyReason: () => undefined, campaignState: () => [{ t: 'state', running: false }], onImageStored: () => Promise.reject(new Error('not in these tests')),
    ...noCampaignControl,
    randomBytes: counterRandom(), now: () => clock.now,
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
function challengeOf(link: FakeUplinkLink): Uint8Array {
  const h = [...link.sent].reverse().find((m) => m.t === 'hello');
  assert.ok(h?.t === 'hello' && h.challenge, 'the gateway hello carries a challenge');
  return h.challenge;
}

describe('uplink technician authorisation, bound to each request (docs/protocol.md §7.2.4)', () => {
  const alice = newKey();
  const mallory = newKey();
  const trusting = { technicianKeys: [{ publicKey: alice.publicKey }] };
  const denied = (m: GatewayUplinkMessage | undefined, re: RegExp): void => {
    assert.ok(m?.t === 'deny' && m.code === 'unauthorised', JSON.stringify(m));
    assert.match(m.reason, re);
  };

  it('each gateway hello carries a fresh 32-byte challenge and the authorisation idle time', async () => {
    const { link, deliver } = session({ ...trusting, authIdleMs: 5000 });
    await deliver(hello);
    const first = challengeOf(link);
    await deliver(hello);
    const second = challengeOf(link);
    assert.equal(first.length, AUTH_CHALLENGE_BYTES);
    assert.notDeepEqual(first, second);
    const h = link.sent.find((m) => m.t === 'hello');
    assert.equal(h?.t === 'hello' && h.authIdleMs, 5000);
  });

  it('hello configures the link: negotiated frame and window, then the delayed ACK of uplink.ackDelayMs / ackEvery (§4.4)', async () => {
    const { link, deliver } = session({ window: 8, ackDelayMs: 3, ackEvery: 2 });
    await deliver(hello);
    assert.deepEqual(link.configured, [{ maxPayload: 4096, window: 8 }, { ackDelayMs: 3, ackEvery: 2 }]);
    const defaults = session({});
    await defaults.deliver(hello);
    assert.deepEqual(defaults.link.configured.at(-1), { ackDelayMs: 2, ackEvery: 4 });
  });

  it('a request signed with a trusted key over the latest challenge: granted', async () => {
    const { link, deliver } = session({ technicianKeys: [{ publicKey: mallory.publicKey }, { publicKey: alice.publicKey }] });
    await deliver(hello);
    await deliver(signRequest(alice.key, challengeOf(link), 1, rts));
    assert.equal(link.last()?.t, 'grant');
  });

  it('an rts without auth: denied unauthorised, the reason says to sign it', async () => {
    const { link, deliver } = session(trusting);
    await deliver(hello);
    await deliver(rts);
    denied(link.last(), /not authenticated: the rts carries no auth/);
  });

  for (const request of [{ t: 'cancel' }, { t: 'retry', campaign: 'c-1', outcomes: ['failed'] }, { t: 'resume', campaign: 'c-1' }, { t: 'plan', manifest }] as LaptopMessage[]) {
    it(`a ${request.t} without auth is denied unauthorised before the gateway acts on it; signed, it reaches the gateway`, async () => {
      const { link, deliver } = session(trusting);
      await deliver(hello);
      await deliver(request);
      denied(link.last(), new RegExp(`not authenticated: the ${request.t} carries no auth`));
      await deliver(signRequest(alice.key, challengeOf(link), 1, request as never));
      // the test's gateway refuses every campaign request ('not in these tests'): it got past the authorisation
      const m = link.last();
      assert.ok(m?.t !== 'deny' || m.code !== 'unauthorised', JSON.stringify(m));
    });
  }

  it('an rts before any hello: denied state, never checked against an old challenge', async () => {
    const { link, deliver } = session(trusting);
    await deliver(signRequest(alice.key, new Uint8Array(32), 1, rts));
    const m = link.last();
    assert.ok(m?.t === 'deny' && m.code === 'state', JSON.stringify(m));
  });

  it('a key the gateway does not trust: denied unauthorised, naming the key id', async () => {
    const { link, deliver } = session(trusting);
    await deliver(hello);
    await deliver(signRequest(mallory.key, challengeOf(link), 1, rts));
    denied(link.last(), new RegExp(`technician key ${mallory.key.keyId} is not trusted`));
  });

  it('a trusted key id signed by another key: denied unauthorised, bad signature', async () => {
    const { link, deliver } = session(trusting);
    await deliver(hello);
    const forged = signRequest(mallory.key, challengeOf(link), 1, rts);
    await deliver({ ...forged, auth: { ...forged.auth, keyId: alice.key.keyId } });
    denied(link.last(), /^bad signature/);
  });

  for (const [what, change] of [
    ['force turned on', { force: true }],
    ['downgrade turned on', { downgrade: true }],
    ['the policy changed', { policy: 'now' }],
    ['another image (digest)', { manifest: { ...manifest, sha256: 'ab'.repeat(32) } }],
  ] as const) {
    it(`a signed rts altered on the way (${what}): denied unauthorised, bad signature`, async () => {
      const { link, deliver } = session(trusting);
      await deliver(hello);
      const genuine = signRequest(alice.key, challengeOf(link), 1, { ...rts, policy: 'window' as const });
      await deliver({ ...genuine, ...change } as LaptopMessage);
      denied(link.last(), /^bad signature/);
      await deliver(genuine);
      assert.equal(link.last()?.t, 'grant', 'the genuine request still goes through: its counter was not used up');
    });
  }

  it('the same signed rts replayed in its session: denied unauthorised, replayed counter', async () => {
    const { link, deliver } = session(trusting);
    await deliver(hello);
    const signed = signRequest(alice.key, challengeOf(link), 3, rts);
    await deliver(signed);
    assert.equal(link.last()?.t, 'grant');
    await deliver(signed);
    denied(link.last(), /^replayed request: counter 3 is not above 3/);
    await deliver(signRequest(alice.key, challengeOf(link), 2, rts));
    denied(link.last(), /^replayed request: counter 2/);
  });

  it('a signed rts from an earlier session is refused as a stale challenge; a link reset ends the session', async () => {
    const { link, deliver } = session(trusting);
    await deliver(hello);
    const old = signRequest(alice.key, challengeOf(link), 1, rts);
    link.emit('reset'); // the technician's fwpush left (it resets the link on exit)
    await deliver(old);
    const m = link.last();
    assert.ok(m?.t === 'deny' && m.code === 'state', `after a reset nothing authorises until hello: ${JSON.stringify(m)}`);
    await deliver(hello);
    await deliver(old);
    denied(link.last(), /^stale challenge/);
  });

  it('a dead link ends the session too', async () => {
    const { link, deliver } = session(trusting);
    await deliver(hello);
    const signed = signRequest(alice.key, challengeOf(link), 1, rts);
    link.emit('down');
    await deliver(signed);
    const m = link.last();
    assert.ok(m?.t === 'deny' && m.code === 'state', JSON.stringify(m));
  });

  it('authorisation lapses after uplink.authIdleMs without an authorised request, until a new hello', async () => {
    const clock = { now: 1000 };
    const { link, deliver } = session({ ...trusting, authIdleMs: 5000 }, clock);
    await deliver(hello);
    clock.now += 5000;
    await deliver(signRequest(alice.key, challengeOf(link), 1, { ...rts, force: true }));
    assert.equal(link.last()?.t, 'grant', 'at exactly authIdleMs it still holds');
    const again = session({ ...trusting, authIdleMs: 5000 }, clock);
    await again.deliver(hello);
    clock.now += 5001;
    const late = signRequest(alice.key, challengeOf(again.link), 1, rts);
    await again.deliver(late);
    denied(again.link.last(), /^authorisation lapsed: no authorised request for 5001 ms \(uplink\.authIdleMs 5000\)/);
    await again.deliver(signRequest(alice.key, challengeOf(again.link), 2, rts));
    denied(again.link.last(), /^stale challenge/);
    await again.deliver(hello);
    await again.deliver(signRequest(alice.key, challengeOf(again.link), 1, rts));
    assert.equal(again.link.last()?.t, 'grant');
  });

  it('a laptop of the previous version (session-wide auth only): denied unauthorised, told to upgrade fwpush', async () => {
    const { link, deliver } = session(trusting);
    await deliver(hello);
    await deliver(signChallenge(alice.key, challengeOf(link)));
    await deliver(rts);
    denied(link.last(), /upgrade fwpush/);
  });

  it('no technician keys configured: every rts is denied unauthorised, saying none is trusted', async () => {
    const { link, deliver } = session({});
    await deliver(hello);
    await deliver(signRequest(alice.key, challengeOf(link), 1, rts));
    denied(link.last(), /trusts no technician key/);
  });

  it('uplink.allowUnauthenticated (development): rts granted without auth', async () => {
    const { link, deliver } = session({ allowUnauthenticated: true });
    await deliver(hello);
    await deliver(rts);
    assert.equal(link.last()?.t, 'grant');
  });

  it('status stays allowed without auth (read-only, §7.11)', async () => {
    const { link, deliver } = session(trusting);
    await deliver(hello);
    await deliver({ t: 'status' });
    assert.deepEqual(link.last(), { t: 'state', running: false });
  });
});

describe('uplink technician authorisation: what the gateway says at start-up', () => {
  const record = (): { log: Logger; lines: [string, unknown][] } => {
    const lines: [string, unknown][] = [];
    const log = { ...silentLogger(), warn: (o: unknown, m?: string) => lines.push(['warn', m ?? o]), info: (o: unknown, m?: string) => lines.push(['info', o]) } as unknown as Logger;
    return { log, lines };
  };
  const make = (uplink: ConfigInput['uplink'], log: Logger): TechnicianAuth => new TechnicianAuth(parseConfig({ uplink }).uplink, log, (n) => new Uint8Array(n));

  it('development mode: an UNSAFE warning; no keys: a warning that every request is denied; keys: their ids', () => {
    const a = record();
    make({ allowUnauthenticated: true }, a.log);
    assert.deepEqual(a.lines.map(([l]) => l), ['warn']);
    assert.match(String(a.lines[0]![1]), /^UNSAFE: uplink\.allowUnauthenticated/);
    const b = record();
    make({}, b.log);
    assert.deepEqual(b.lines.map(([l]) => l), ['warn']);
    assert.match(String(b.lines[0]![1]), /no technician keys configured/);
    const k = generateSigningKey();
    const c = record();
    make({ technicianKeys: [{ publicKey: k.publicKeyPem }] }, c.log);
    assert.deepEqual(c.lines, [['info', { technicianKeys: [k.keyId], authIdleMs: 60_000 }]]);
  });

  it('keeps 8 earlier challenges: a request signed 8 hellos ago is stale, 9 hellos ago merely bad', () => {
    const alice = newKey();
    const challenges: Uint8Array[] = [];
    let i = 0;
    const fresh = new TechnicianAuth(parseConfig({ uplink: { technicianKeys: [{ publicKey: alice.publicKey }] } }).uplink, silentLogger(), (n) => new Uint8Array(n).fill(++i));
    for (let h = 0; h < 10; h++) challenges.push(fresh.newChallenge());
    assert.match(fresh.authorise(signRequest(alice.key, challenges[1]!, 1, rts))!, /^stale challenge/);
    assert.match(fresh.authorise(signRequest(alice.key, challenges[0]!, 1, rts))!, /^bad signature/);
    assert.equal(fresh.authorise(signRequest(alice.key, challenges[9]!, 1, rts)), undefined);
  });
});
