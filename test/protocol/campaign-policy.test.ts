import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { encodeCbor } from '../../protocol/cbor.ts';
import { isFwError } from '../../protocol/errors.ts';
import type { Manifest } from '../../protocol/manifest.ts';
import {
  CampaignPolicies, MAX_QUEUED_CAMPAIGNS, clipReasons, decodeGatewayUplinkMessage, decodeLaptopMessage, encodeUplinkMessage,
  type GatewayUplinkMessage, type LaptopMessage,
} from '../../protocol/uplink.ts';

/**
 * Campaign options and queued campaigns on the uplink (docs/protocol.md §7.3.5, §7.4.5, §7.11):
 * `rts.policy` / `downgrade` / `force`, `committed.queued` / `supersedes`, `state.queued`.
 */

const SHA = '1901da1c9f699b48f6b2636e65cbf73abf99d0441ef67f5c540a42f7051dec6f';
const MANIFEST: Manifest = { name: 'sensor-fw', version: '1.2.0', hw: ['sensor-v1'], size: 200, crc32: 3976749440, sha256: SHA, chunk: 64 };
const IMAGE = { name: 'sensor-fw', version: '1.2.0', sha256: SHA };
/** 2026-11-22T02:00:00Z: above 2^32, so written as a double (§7.4.5). */
const WINDOW_AT = Date.parse('2026-11-22T02:00:00Z');

const laptopRoundTrip = (m: LaptopMessage): unknown => decodeLaptopMessage(encodeUplinkMessage(m));
const gatewayRoundTrip = (m: GatewayUplinkMessage): unknown => decodeGatewayUplinkMessage(encodeUplinkMessage(m));

/** Decoding `value` (encoded as is) fails with E_MESSAGE_INVALID naming `field`. */
function refused(decode: (b: Uint8Array) => unknown, value: unknown, field: RegExp): void {
  assert.throws(() => decode(encodeCbor(value)), (err: unknown) => {
    assert.ok(isFwError(err, 'E_MESSAGE_INVALID'), `expected E_MESSAGE_INVALID, got ${String(err)}`);
    assert.match(err.message, field);
    return true;
  });
}

const queuedEntry = (i: number): Record<string, unknown> => ({ campaign: `c-${String(i).padStart(8, '0')}`, image: IMAGE, hw: ['sensor-v1'], nextWindowAt: WINDOW_AT });

describe('campaign policy and queued campaigns on the uplink (docs/protocol.md §7.3.5, §7.4.5, §7.11)', () => {
  describe('round trips', () => {
    it('rts with policy, downgrade and force; each alone; none (the gateway\'s defaults)', () => {
      for (const extra of [{ policy: 'now', downgrade: true, force: true }, { policy: 'window' }, { downgrade: false }, { force: true }, {}] as const) {
        const m: LaptopMessage = { t: 'rts', manifest: MANIFEST, ...extra };
        assert.deepStrictEqual(laptopRoundTrip(m), m);
      }
    });

    it('committed with queued (reason, nextWindowAt, expiresAt) and supersedes; queued with the reason alone', () => {
      const full: GatewayUplinkMessage = {
        t: 'committed', ok: true, sha256: SHA, campaign: 'c-0a1b2c3d',
        queued: { reason: 'waits for the next maintenance window', nextWindowAt: WINDOW_AT, expiresAt: WINDOW_AT + 7 * 86_400_000 }, supersedes: 'c-9f8e7d6c',
      };
      assert.deepStrictEqual(gatewayRoundTrip(full), full);
      const behind: GatewayUplinkMessage = { t: 'committed', ok: true, sha256: SHA, campaign: 'c-0a1b2c3d', queued: { reason: 'queued behind campaign c-5e6f7a8b' } };
      assert.deepStrictEqual(gatewayRoundTrip(behind), behind);
    });

    it(`state with ${MAX_QUEUED_CAMPAIGNS} queued entries (the most), with and without nextWindowAt, beside a running campaign`, () => {
      const entries = Array.from({ length: MAX_QUEUED_CAMPAIGNS }, (_, i) => (i % 2 ? queuedEntry(i) : { ...queuedEntry(i), nextWindowAt: undefined }))
        .map((e) => Object.fromEntries(Object.entries(e).filter(([, v]) => v !== undefined)));
      const m = { t: 'state', running: true, campaign: 'c-5e6f7a8b', image: IMAGE, queued: entries } as GatewayUplinkMessage;
      assert.deepStrictEqual(gatewayRoundTrip(m), m);
      const idle: GatewayUplinkMessage = { t: 'state', running: false, queued: [{ campaign: 'c-0a1b2c3d', image: IMAGE, hw: Array.from({ length: 16 }, (_, i) => `hw-${i}`) }] };
      assert.deepStrictEqual(gatewayRoundTrip(idle), idle);
    });

    it('any valid combination round-trips (property)', () => {
      const at = fc.oneof(fc.nat(), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }));
      const text = fc.string({ maxLength: 256 });
      const id = fc.stringMatching(/^c-[0-9a-f]{8}$/);
      const rec = <T>(model: { [K in keyof T]: fc.Arbitrary<T[K]> }, requiredKeys: (keyof T)[]): fc.Arbitrary<T> =>
        fc.record(model, { requiredKeys, noNullPrototype: true }) as fc.Arbitrary<T>;
      const rts = rec({ t: fc.constant('rts' as const), manifest: fc.constant(MANIFEST), policy: fc.constantFrom(...CampaignPolicies), downgrade: fc.boolean(), force: fc.boolean() }, ['t', 'manifest']);
      const committed = rec({
        t: fc.constant('committed' as const), ok: fc.constant(true), sha256: fc.constant(SHA), campaign: id,
        queued: rec({ reason: text, nextWindowAt: at, expiresAt: at }, ['reason']), supersedes: id,
      }, ['t', 'ok', 'sha256']);
      const entry = rec({ campaign: id, image: fc.constant(IMAGE), hw: fc.array(fc.stringMatching(/^[a-z][a-z0-9-]{0,20}$/), { maxLength: 16 }), nextWindowAt: at }, ['campaign', 'image', 'hw']);
      const state = rec({ t: fc.constant('state' as const), running: fc.boolean(), queued: fc.array(entry, { maxLength: MAX_QUEUED_CAMPAIGNS }) }, ['t', 'running']);
      fc.assert(fc.property(rts, (m) => assert.deepStrictEqual(laptopRoundTrip(m as LaptopMessage), m)));
      fc.assert(fc.property(fc.oneof(committed, state), (m) => assert.deepStrictEqual(gatewayRoundTrip(m as GatewayUplinkMessage), m)));
    });
  });

  describe('invalid values are refused with E_MESSAGE_INVALID naming the field (§1.5 step 5)', () => {
    it('rts.policy other than "now" or "window"', () => {
      for (const policy of ['later', 'NOW', '', 1, true]) refused(decodeLaptopMessage, { t: 'rts', manifest: MANIFEST, policy }, /"rts": policy: /);
    });

    it('rts.downgrade and rts.force that are not booleans', () => {
      refused(decodeLaptopMessage, { t: 'rts', manifest: MANIFEST, downgrade: 'yes' }, /"rts": downgrade: /);
      refused(decodeLaptopMessage, { t: 'rts', manifest: MANIFEST, force: 1 }, /"rts": force: /);
    });

    it(`state.queued with ${MAX_QUEUED_CAMPAIGNS + 1} entries`, () => {
      const queued = Array.from({ length: MAX_QUEUED_CAMPAIGNS + 1 }, (_, i) => queuedEntry(i));
      refused(decodeGatewayUplinkMessage, { t: 'state', running: false, queued }, /"state": queued: .*16/);
    });

    it('a queued entry with 17 hardware models, an empty campaign id, no image', () => {
      refused(decodeGatewayUplinkMessage, { t: 'state', running: false, queued: [{ ...queuedEntry(0), hw: Array.from({ length: 17 }, (_, i) => `hw-${i}`) }] }, /queued\.0\.hw: /);
      refused(decodeGatewayUplinkMessage, { t: 'state', running: false, queued: [{ ...queuedEntry(0), campaign: '' }] }, /queued\.0\.campaign: /);
      const { image: _image, ...noImage } = queuedEntry(0);
      refused(decodeGatewayUplinkMessage, { t: 'state', running: false, queued: [noImage] }, /queued\.0\.image: /);
    });

    it('committed.queued without a reason; times that are fractional, negative or beyond 2^53 - 1; an empty supersedes', () => {
      const base = { t: 'committed', ok: true, sha256: SHA, campaign: 'c-0a1b2c3d' };
      refused(decodeGatewayUplinkMessage, { ...base, queued: { nextWindowAt: WINDOW_AT } }, /queued\.reason: /);
      for (const bad of [WINDOW_AT + 0.5, -1, 2 ** 53]) {
        refused(decodeGatewayUplinkMessage, { ...base, queued: { reason: 'r', nextWindowAt: bad } }, /queued\.nextWindowAt: /);
        refused(decodeGatewayUplinkMessage, { ...base, queued: { reason: 'r', expiresAt: bad } }, /queued\.expiresAt: /);
      }
      refused(decodeGatewayUplinkMessage, { ...base, supersedes: '' }, /supersedes: /);
    });
  });

  describe('times in epoch ms (§7.4.5)', () => {
    it('a value above 2^32 - 1 is written as a double (fb), never with the 8-byte integer argument (§1.4.5)', () => {
      const hex = Buffer.from(encodeUplinkMessage({ t: 'state', running: false, queued: [{ campaign: 'c-1', image: IMAGE, hw: [], nextWindowAt: WINDOW_AT }] })).toString('hex');
      assert.ok(hex.endsWith(`6c6e65787457696e646f774174fb${Buffer.from(new Float64Array([WINDOW_AT]).buffer).reverse().toString('hex')}`), hex);
    });

    it('a receiver accepts the uint form of a small value and a double; the 8-byte integer form is refused', () => {
      const head = Buffer.from(encodeCbor({ t: 'committed', ok: true, sha256: SHA, queued: { reason: 'r', nextWindowAt: 0 } })).toString('hex').slice(0, -2); // drop the value 00
      assert.equal((decodeGatewayUplinkMessage(Buffer.from(`${head}1a7fffffff`, 'hex')) as { queued: { nextWindowAt: number } }).queued.nextWindowAt, 0x7fff_ffff);
      assert.equal((decodeGatewayUplinkMessage(Buffer.from(`${head}fb427a200fb5100000`, 'hex')) as { queued: { nextWindowAt: number } }).queued.nextWindowAt, WINDOW_AT);
      assert.throws(() => decodeGatewayUplinkMessage(Buffer.from(`${head}1b0000019ad0e8c800`, 'hex')), (err: unknown) => isFwError(err, 'E_MESSAGE_INVALID'));
    });
  });

  it('clipReasons clips committed.queued.reason to the text limit (§7.1.2), also beside a long committed.reason', () => {
    const long = 'x'.repeat(300);
    const m: GatewayUplinkMessage = { t: 'committed', ok: true, sha256: SHA, campaign: 'c-0a1b2c3d', reason: long, queued: { reason: long, nextWindowAt: WINDOW_AT } };
    const clipped = clipReasons(m) as Extract<GatewayUplinkMessage, { t: 'committed' }>;
    assert.equal(clipped.queued?.reason.length, 256);
    assert.equal(clipped.reason?.length, 256);
    assert.equal(clipped.queued?.nextWindowAt, WINDOW_AT);
    assert.deepStrictEqual(gatewayRoundTrip(clipped), clipped);
  });

  it('docs/protocol.md §10.7 has vectors of rts with all three options, committed with queued and supersedes, state with queued', () => {
    const doc = readFileSync(fileURLToPath(new URL('../../docs/protocol.md', import.meta.url)), 'utf8');
    const values = [...doc.matchAll(/^```vector name=\S+ kind=(uplink-laptop|uplink-gateway)\nvalue: (.+)$/gm)].map((m) => JSON.parse(m[2]!) as Record<string, unknown>);
    assert.ok(values.some((v) => v.t === 'rts' && v.policy !== undefined && v.downgrade !== undefined && v.force !== undefined));
    assert.ok(values.some((v) => {
      const q = v.queued as Record<string, unknown> | undefined;
      return v.t === 'committed' && typeof v.supersedes === 'string' && typeof q?.nextWindowAt === 'number' && typeof q.expiresAt === 'number';
    }));
    assert.ok(values.some((v) => v.t === 'state' && Array.isArray(v.queued) && v.queued.length > 0));
  });
});
