import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { encodeCbor } from '../../protocol/cbor.ts';
import { crc32 } from '../../protocol/crc.ts';
import { FwError, isFwError, type ErrorCode } from '../../protocol/errors.ts';
import {
  MAX_ACK_MISSING, MAX_CHUNK_SIZE, MAX_HW_MODELS, MAX_OTA_MESSAGE, MAX_UPLINK_MESSAGE,
} from '../../protocol/limits.ts';
import { checkDigest, digestImage, manifestForImage, parseManifest, type Manifest } from '../../protocol/manifest.ts';
import {
  MAX_TASKS, RejectCodes, SlotStates, TaskSteps, VerifyCodes, decodeDeviceMessage, decodeGatewayMessage, deviceMessage, encodeDeviceMessage,
  encodeGatewayMessage, gatewayMessage, type DeviceMessage, type GatewayMessage,
} from '../../protocol/ota.ts';
import {
  CampaignPolicies, DenyCodes, DevicePhases, Outcomes, ResultCodes, RetryOutcomes, decodeGatewayUplinkMessage, decodeLaptopMessage,
  encodeUplinkMessage, gatewayUplinkMessage, laptopMessage, type GatewayUplinkMessage, type LaptopMessage,
} from '../../protocol/uplink.ts';
import { compareVersions, isOlder, isValidVersion } from '../../protocol/version.ts';

/**
 * Property tests of the CBOR message codecs (docs/protocol.md §1.4, §1.5, §6, §7), the manifest
 * (§5, §2.3) and version ordering (§1.7). Arbitraries are built per message type; the set of
 * types with an arbitrary must equal the set of types in the schemas.
 */

// ---------------------------------------------------------------- arbitraries

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
const sid = u32;
const sha256 = fc.uint8Array({ minLength: 32, maxLength: 32 }).map(hex);
const bool = fc.boolean();
const slot = fc.constantFrom('a' as const, 'b' as const);
const chunkSize = fc.integer({ min: 64, max: MAX_CHUNK_SIZE });
/** Any Unicode text (no lone surrogates) of at most `max` UTF-16 code units (§1.4.10). */
const text = (max = 256, min = 0): fc.Arbitrary<string> =>
  fc.string({ unit: 'binary', minLength: min, maxLength: max }).filter((s) => s.length >= min && s.length <= max);
const ident = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,30}$/);
const bytes = (min: number, max: number): fc.Arbitrary<Uint8Array> => fc.uint8Array({ minLength: min, maxLength: max });
/** A non-negative number as in rttMs/etaMs/durationMs: integers and doubles, never -0 (§1.4.6). */
const num = fc.oneof(fc.nat(), fc.double({ min: 0, max: 1e12, noNaN: true, noDefaultInfinity: true }))
  .map((x) => (Object.is(x, -0) ? 0 : x));

const prereleaseId = fc.oneof(fc.nat(9999).map(String), fc.stringMatching(/^[0-9A-Za-z-]{0,4}[A-Za-z-][0-9A-Za-z-]{0,4}$/));
const version = fc.tuple(fc.nat(999), fc.nat(999), fc.nat(999), fc.option(fc.array(prereleaseId, { minLength: 1, maxLength: 3 }), { nil: undefined }))
  .map(([a, b, c, pre]) => `${a}.${b}.${c}${pre ? `-${pre.join('.')}` : ''}`)
  .filter((v) => v.length <= 64 && isValidVersion(v));

const manifest: fc.Arbitrary<Manifest> = fc.record({
  name: ident,
  version,
  hw: fc.array(ident, { minLength: 1, maxLength: MAX_HW_MODELS }),
  size: fc.integer({ min: 1, max: 0xffff_ffff }),
  crc32: u32,
  sha256,
  chunk: chunkSize,
}, { noNullPrototype: true });

const rec = <T>(model: { [K in keyof T]: fc.Arbitrary<T[K]> }, required: (keyof T)[]): fc.Arbitrary<unknown> =>
  fc.record(model, { requiredKeys: required, noNullPrototype: true });

const slotInfo = rec({ state: fc.constantFrom(...SlotStates), version, sha256 }, ['state']);

const deviceArbs: Record<DeviceMessage['t'], fc.Arbitrary<unknown>> = {
  status: rec({
    t: fc.constant('status'), hw: text(64, 1), version, slot, slots: rec({ a: slotInfo, b: slotInfo }, ['a', 'b']),
    maxChunk: chunkSize, busy: bool, trial: bool, floor: version,
  }, ['t', 'hw', 'version', 'slot', 'slots', 'maxChunk', 'busy', 'trial']),
  boot: rec({ t: fc.constant('boot'), version, slot, sha256, trial: bool, reverted: bool, reason: text() }, ['t', 'version', 'slot', 'trial', 'reverted']),
  pong: rec({ t: fc.constant('pong'), n: u32, pad: bytes(0, 64) }, ['t', 'n']),
  probed: rec({ t: fc.constant('probed'), n: u32, size: u32 }, ['t', 'n', 'size']),
  accept: rec({ t: fc.constant('accept'), sid, next: u32, chunk: chunkSize, window: fc.integer({ min: 1, max: 0xffff }) }, ['t', 'sid', 'next', 'chunk', 'window']),
  reject: rec({ t: fc.constant('reject'), sid, code: fc.constantFrom(...RejectCodes), reason: text() }, ['t', 'sid', 'code']),
  ack: rec({ t: fc.constant('ack'), sid, next: u32, missing: fc.array(u32, { maxLength: MAX_ACK_MISSING }) }, ['t', 'sid', 'next', 'missing']),
  verified: rec({ t: fc.constant('verified'), sid, ok: bool, code: fc.constantFrom(...VerifyCodes), reason: text() }, ['t', 'sid', 'ok']),
  activated: rec({ t: fc.constant('activated'), sid, slot }, ['t', 'sid', 'slot']),
  confirmed: rec({ t: fc.constant('confirmed'), sha256, version }, ['t', 'sha256', 'version']),
  aborted: rec({ t: fc.constant('aborted'), sid }, ['t', 'sid']),
};

const gatewayArbs: Record<GatewayMessage['t'], fc.Arbitrary<unknown>> = {
  ping: rec({ t: fc.constant('ping'), n: u32, pad: bytes(0, 64) }, ['t', 'n']),
  query: rec({ t: fc.constant('query') }, ['t']),
  probe: rec({ t: fc.constant('probe'), n: u32, data: bytes(0, 2048) }, ['t', 'n', 'data']),
  offer: rec({
    t: fc.constant('offer'), sid, name: text(64, 1), version, hw: fc.array(text(64, 1), { minLength: 1, maxLength: MAX_HW_MODELS }),
    size: fc.integer({ min: 1, max: 0xffff_ffff }), crc32: u32, sha256, chunk: chunkSize, downgrade: bool,
  }, ['t', 'sid', 'name', 'version', 'hw', 'size', 'crc32', 'sha256', 'chunk']),
  chunk: bytes(1, 2048).chain((data) => rec({
    t: fc.constant('chunk'), sid, off: u32, data: fc.constant(data), crc: fc.constant(crc32(data)),
  }, ['t', 'sid', 'off', 'data', 'crc'])),
  verify: rec({ t: fc.constant('verify'), sid }, ['t', 'sid']),
  activate: rec({ t: fc.constant('activate'), sid }, ['t', 'sid']),
  confirm: rec({ t: fc.constant('confirm'), sha256 }, ['t', 'sha256']),
  abort: rec({ t: fc.constant('abort'), sid, reason: text() }, ['t', 'sid']),
  tasks: rec({
    t: fc.constant('tasks'),
    tasks: fc.array(rec({
      campaign: text(64, 1), name: text(64, 1), version, sha256, size: fc.integer({ min: 1, max: 0xffff_ffff }),
      steps: fc.subarray([...TaskSteps], { minLength: 1 }), notBefore: fc.oneof(u32, fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER })),
    }, ['campaign', 'name', 'version', 'sha256', 'size', 'steps']), { maxLength: MAX_TASKS }),
  }, ['t', 'tasks']),
};

const hello = (role: 'laptop' | 'gateway'): fc.Arbitrary<unknown> => rec({
  t: fc.constant('hello'), proto: fc.integer({ min: 1, max: 255 }), role: fc.constant(role), agent: text(),
  maxFrame: fc.integer({ min: 64, max: 16_384 }), window: fc.integer({ min: 1, max: 64 }), maxMessage: u32, maxImage: u32,
  challenge: bytes(32, 32),
}, ['t', 'proto', 'role', 'agent', 'maxFrame', 'window', 'maxMessage']);

/** A release manifest (§5.5): distinct component names, no agent or requires (their rules have their own tests). */
const releaseArb = fc.uniqueArray(fc.stringMatching(/^[a-z][a-z0-9-]{0,8}$/), { minLength: 1, maxLength: 3 }).chain((names) => rec({
  release: ident, version, hw: fc.array(ident, { minLength: 1, maxLength: 2 }), chunk: chunkSize, seq: u32,
  components: fc.tuple(...names.map((n) => rec({
    component: fc.constant(n), name: ident, version, size: fc.integer({ min: 1, max: 0xffff_ffff }), crc32: u32, sha256,
  }, ['component', 'name', 'version', 'size', 'crc32', 'sha256']))),
}, ['release', 'version', 'hw', 'chunk', 'components']));

/** Any text a version field takes (≤ 64). */
function anyVersionText(): fc.Arbitrary<string> {
  return text(64);
}

const laptopArbs: Record<LaptopMessage['t'], fc.Arbitrary<unknown>> = {
  hello: hello('laptop'),
  auth: rec({ t: fc.constant('auth'), keyId: fc.uint8Array({ minLength: 8, maxLength: 8 }).map(hex), sig: bytes(64, 64) }, ['t', 'keyId', 'sig']),
  rts: rec({ t: fc.constant('rts'), manifest }, ['t', 'manifest']),
  data: rec({ t: fc.constant('data'), off: u32, data: bytes(0, 4096) }, ['t', 'off', 'data']),
  commit: rec({ t: fc.constant('commit') }, ['t']),
  status: rec({ t: fc.constant('status'), campaign: text(64, 1) }, ['t']),
  cancel: rec({ t: fc.constant('cancel'), campaign: text(64, 1) }, ['t']),
  retry: rec({
    t: fc.constant('retry'), campaign: text(64, 1), outcomes: fc.subarray([...RetryOutcomes], { minLength: 1 }), policy: fc.constantFrom(...CampaignPolicies), force: bool,
  }, ['t', 'campaign', 'outcomes']),
  resume: rec({ t: fc.constant('resume'), campaign: text(64, 1) }, ['t', 'campaign']),
  plan: rec({
    t: fc.constant('plan'), manifest, downgrade: bool, only: fc.array(text(64, 1), { minLength: 1, maxLength: 4 }), group: text(64, 1),
    waves: fc.array(fc.oneof(rec({ count: fc.integer({ min: 1, max: 1000 }) }, ['count']), rec({ pct: fc.integer({ min: 1, max: 100 }) }, ['pct'])), { minLength: 1, maxLength: 4 }),
    waveGate: fc.integer({ min: 1, max: 100 }), wavePause: bool, requireOnline: fc.integer({ min: 1, max: 1000 }),
  }, ['t', 'manifest']),
  'release-rts': rec({
    t: fc.constant('release-rts'), release: releaseArb, deferred: bool, policy: fc.constantFrom(...CampaignPolicies), downgrade: bool, force: bool,
    only: fc.array(text(64, 1), { minLength: 1, maxLength: 4 }), group: text(64, 1),
  }, ['t', 'release']),
  'release-live': rec({
    t: fc.constant('release-live'), release: text(64, 1), version: anyVersionText(), policy: fc.constantFrom(...CampaignPolicies), downgrade: bool, force: bool,
    only: fc.array(text(64, 1), { minLength: 1, maxLength: 4 }), group: text(64, 1),
  }, ['t', 'release', 'version']),
};

const campaign = text(64, 1);
const deviceId = text(64, 1);
const anyVersion = text(64);
const orderEntry = rec({
  id: deviceId, rank: fc.integer({ min: 1, max: 100_000 }), from: anyVersion, rttMs: num, bps: num, etaMs: num, startMs: num,
}, ['id', 'rank', 'from']);
const imageRef = rec({ name: text(64), version: anyVersion, sha256 }, ['name', 'version', 'sha256']);
const excludedEntry = rec({ id: deviceId, code: fc.constantFrom(...ResultCodes), reason: text(), version: anyVersion }, ['id', 'code', 'reason']);
const count = fc.integer({ min: 0, max: 0xffff_ffff });
const preflight = rec({
  eligibleOnline: count, eligibleOffline: count, notNewer: count, otherHw: count, belowFloor: count, busy: count, notTargeted: count,
}, ['eligibleOnline', 'eligibleOffline', 'notNewer', 'otherHw', 'belowFloor', 'busy', 'notTargeted']);
const epochMs = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });

const gatewayUplinkArbs: Record<GatewayUplinkMessage['t'], fc.Arbitrary<unknown>> = {
  hello: hello('gateway'),
  grant: rec({ t: fc.constant('grant'), sha256, offset: u32, chunk: fc.integer({ min: 1, max: 16_384 }), stored: fc.constant(true), preflight }, ['t', 'sha256', 'offset', 'chunk']),
  deny: rec({ t: fc.constant('deny'), code: fc.constantFrom(...DenyCodes), reason: text() }, ['t', 'code', 'reason']),
  committed: rec({ t: fc.constant('committed'), ok: bool, sha256, code: text(), reason: text(), campaign, deferred: fc.constant(true) }, ['t', 'ok', 'sha256']),
  order: rec({
    t: fc.constant('order'), campaign, image: imageRef,
    devices: fc.array(orderEntry, { maxLength: 5 }), excluded: fc.array(excludedEntry, { maxLength: 5 }), excludedMore: count,
  }, ['t', 'campaign', 'image', 'devices', 'excluded']),
  progress: rec({
    t: fc.constant('progress'), campaign, id: deviceId, phase: fc.constantFrom(...DevicePhases), bytes: u32, total: u32, bps: num, etaMs: num,
  }, ['t', 'campaign', 'id', 'phase', 'bytes', 'total']),
  totals: rec({
    t: fc.constant('totals'), campaign, devices: count, done: count, kib: u32, totalKib: u32, bps: num, etaMs: num,
  }, ['t', 'campaign', 'devices', 'done', 'kib', 'totalKib', 'bps']),
  result: rec({
    t: fc.constant('result'), campaign, id: deviceId, outcome: fc.constantFrom(...Outcomes), code: fc.constantFrom(...ResultCodes),
    reason: text(), from: anyVersion, to: anyVersion, durationMs: num, retries: count,
  }, ['t', 'campaign', 'id', 'outcome', 'code', 'from', 'to', 'durationMs', 'retries']),
  complete: rec({
    t: fc.constant('complete'), campaign, devices: count, updated: count, failed: count, rolledBack: count, skipped: count, durationMs: num,
  }, ['t', 'campaign', 'devices', 'updated', 'failed', 'rolledBack', 'skipped', 'durationMs']),
  error: rec({ t: fc.constant('error'), code: text(), reason: text() }, ['t', 'code', 'reason']),
  // campaign and image come together (§7.11); the schema takes either alone, and so does the arbitrary
  state: rec({ t: fc.constant('state'), running: bool, campaign, image: imageRef }, ['t', 'running']),
  fleet: rec({
    t: fc.constant('fleet'), now: epochMs,
    devices: fc.array(rec({
      id: deviceId, hw: text(64, 1), version: anyVersion, online: bool, lastCheckIn: epochMs,
      lastResult: rec({ campaign, outcome: fc.constantFrom(...Outcomes), code: fc.constantFrom(...ResultCodes), version: anyVersion, at: epochMs }, ['campaign', 'outcome', 'code', 'version', 'at']),
    }, ['id', 'hw', 'version', 'online', 'lastCheckIn']), { maxLength: 5 }),
    more: count,
  }, ['t', 'now', 'devices']),
  waiting: rec({
    t: fc.constant('waiting'), campaign, pending: count, devices: fc.array(rec({ id: deviceId, reason: text() }, ['id', 'reason']), { maxLength: 5 }),
    expiresAt: epochMs, pausedBeforeWave: fc.integer({ min: 1, max: 16 }),
  }, ['t', 'campaign', 'pending', 'devices']),
  accepted: rec({ t: fc.constant('accepted'), request: fc.constantFrom('cancel', 'retry', 'resume', 'release-live'), campaign, reason: text() }, ['t', 'request', 'campaign']),
  'release-grant': rec({
    t: fc.constant('release-grant'), digest: sha256, chunk: fc.integer({ min: 1, max: 16_384 }),
    send: fc.array(rec({ component: fc.stringMatching(/^[a-z][a-z0-9-]{0,8}$/), sha256, size: u32, offset: u32 }, ['component', 'sha256', 'size', 'offset']), { maxLength: 3 }),
    stored: fc.array(fc.stringMatching(/^[a-z][a-z0-9-]{0,8}$/), { maxLength: 3 }), preflight,
  }, ['t', 'digest', 'chunk', 'send', 'stored']),
  planned: rec({
    t: fc.constant('planned'), image: imageRef, devices: fc.array(orderEntry, { maxLength: 5 }), excluded: fc.array(excludedEntry, { maxLength: 5 }),
    excludedMore: count, preflight, etaMs: num,
  }, ['t', 'image', 'devices', 'excluded', 'preflight']),
};

// ---------------------------------------------------------------- the four directions

interface Direction {
  name: string;
  union: { options: readonly { shape: { t: { value: unknown } } }[]; safeParse(v: unknown): { success: boolean } };
  arbs: Record<string, fc.Arbitrary<unknown>>;
  encode(m: unknown): Uint8Array;
  decode(b: Uint8Array): unknown;
  limit: number;
}

const directions: Direction[] = [
  { name: 'device -> gateway (§6)', union: deviceMessage, arbs: deviceArbs, encode: (m) => encodeDeviceMessage(m as DeviceMessage), decode: decodeDeviceMessage, limit: MAX_OTA_MESSAGE },
  { name: 'gateway -> device (§6)', union: gatewayMessage, arbs: gatewayArbs, encode: (m) => encodeGatewayMessage(m as GatewayMessage), decode: decodeGatewayMessage, limit: MAX_OTA_MESSAGE },
  { name: 'laptop -> gateway (§7)', union: laptopMessage, arbs: laptopArbs, encode: (m) => encodeUplinkMessage(m as LaptopMessage), decode: decodeLaptopMessage, limit: MAX_UPLINK_MESSAGE },
  { name: 'gateway -> laptop (§7)', union: gatewayUplinkMessage, arbs: gatewayUplinkArbs, encode: (m) => encodeUplinkMessage(m as GatewayUplinkMessage), decode: decodeGatewayUplinkMessage, limit: MAX_UPLINK_MESSAGE },
];

/** Plain JSON-like form: byte strings as hex, plain objects, so Buffer and Uint8Array compare equal. */
function norm(v: unknown): unknown {
  if (v instanceof Uint8Array) return { $bytes: hex(v) };
  if (Array.isArray(v)) return v.map(norm);
  if (typeof v === 'object' && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, norm(x)]));
  return v;
}

/** The same object with its keys (and its nested maps' keys) in another order. */
function reorder(v: unknown, pick: (n: number) => number): unknown {
  if (v instanceof Uint8Array || typeof v !== 'object' || v === null) return v;
  if (Array.isArray(v)) return v.map((x) => reorder(x, pick));
  const entries = Object.entries(v);
  const out: [string, unknown][] = [];
  while (entries.length > 0) {
    const [e] = entries.splice(pick(entries.length), 1);
    out.push([e![0], reorder(e![1], pick)]);
  }
  return Object.fromEntries(out);
}

const DECODE_ERRORS: readonly ErrorCode[] = ['E_CBOR', 'E_MESSAGE_INVALID', 'E_MESSAGE_TYPE'];

/** Decode; it may succeed or throw, but only an FwError with a decode code, and never slowly. */
function decodeOrReject(d: Direction, payload: Uint8Array): { ok: true; value: unknown } | { ok: false; code: ErrorCode } {
  const started = performance.now();
  try {
    return { ok: true, value: d.decode(payload) };
  } catch (err) {
    assert.ok(err instanceof FwError, `${d.name}: threw a non-FwError: ${String(err)}`);
    assert.ok(DECODE_ERRORS.includes(err.code), `${d.name}: unexpected code ${err.code}`);
    return { ok: false, code: err.code };
  } finally {
    const ms = performance.now() - started;
    assert.ok(ms < 1000, `${d.name}: decoding ${payload.length} bytes took ${ms.toFixed(0)} ms`);
  }
}

function expectCode(fn: () => unknown, code: ErrorCode, pattern?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isFwError(err, code), `expected ${code}, got ${String(err)}`);
    if (pattern) assert.match((err as FwError).message, pattern);
    return true;
  });
}

const byteMutation = fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 }));

describe('CBOR message codecs (docs/protocol.md §1.4, §1.5, §6, §7)', () => {
  for (const d of directions) {
    describe(d.name, () => {
      it('has an arbitrary for every message type of its schema', () => {
        const schemaTypes = d.union.options.map((o) => String(o.shape.t.value)).sort();
        assert.deepEqual(Object.keys(d.arbs).sort(), schemaTypes);
      });

      for (const [t, arb] of Object.entries(d.arbs)) {
        it(`${t}: every valid message round-trips, encode -> decode, deep-equal`, () => {
          fc.assert(fc.property(arb, (m) => {
            assert.ok(d.union.safeParse(m).success, 'the arbitrary makes schema-valid messages');
            assert.deepStrictEqual(norm(d.decode(d.encode(m))), norm(m));
          }), { numRuns: 150 });
        });
      }

      const anyMessage = fc.oneof(...Object.values(d.arbs));

      it('decodes the same message whatever the key order (§1.4.3)', () => {
        fc.assert(fc.property(anyMessage, fc.infiniteStream(fc.nat()), (m, picks) => {
          const it = picks[Symbol.iterator]();
          const shuffled = reorder(m, (n) => (it.next().value as number) % n);
          assert.deepStrictEqual(norm(d.decode(encodeCbor(shuffled))), norm(m));
        }), { numRuns: 200 });
      });

      it('ignores unknown keys (§1.4.9)', () => {
        fc.assert(fc.property(anyMessage, fc.stringMatching(/^x-[a-z]{1,8}$/), fc.jsonValue(), (m, key, extra) => {
          const withExtra = { ...(m as Record<string, unknown>), [key]: extra };
          assert.deepStrictEqual(norm(d.decode(encodeCbor(withExtra))), norm(m));
        }), { numRuns: 100 });
      });

      it('random bytes never throw anything but E_CBOR / E_MESSAGE_INVALID / E_MESSAGE_TYPE, and never hang', () => {
        fc.assert(fc.property(fc.uint8Array({ maxLength: 512 }), (b) => {
          decodeOrReject(d, b);
        }), { numRuns: 2000 });
        // random bytes behind a map header, to get past the first byte more often
        fc.assert(fc.property(fc.integer({ min: 0xa0, max: 0xbf }), fc.uint8Array({ maxLength: 256 }), (head, b) => {
          decodeOrReject(d, Uint8Array.from([head, ...b]));
        }), { numRuns: 1000 });
        // valid CBOR that is rarely a valid message
        fc.assert(fc.property(fc.jsonValue(), (v) => {
          decodeOrReject(d, encodeCbor(v));
        }), { numRuns: 500 });
      });

      it('refuses hostile headers quickly: huge lengths, deep nesting, indefinite strings', () => {
        const hostile = [
          '', '00', 'f7', 'f6', 'a0', '9bffffffffffffffff', 'bbffffffffffffffff', '5affffffff00', '7bffffffffffffffff',
          'a1617459ffff', 'bf617401', '7f6161ff', 'a1617440', `${'81'.repeat(100_000)}00`, `${'a1616b'.repeat(50_000)}00`,
        ];
        for (const h of hostile) {
          const r = decodeOrReject(d, Buffer.from(h, 'hex'));
          assert.equal(r.ok, false, `${h.slice(0, 24)} is not a message`);
        }
      });

      it('one byte changed in a valid encoding: a schema-valid message or an FwError, nothing else', () => {
        fc.assert(fc.property(anyMessage, byteMutation, (m, [at, x]) => {
          const b = Uint8Array.from(d.encode(m));
          b[at % b.length]! ^= x;
          const r = decodeOrReject(d, b);
          if (r.ok) {
            assert.ok(d.union.safeParse(r.value).success, 'a decoded message always fits its schema');
            assert.deepStrictEqual(norm(d.decode(d.encode(r.value))), norm(r.value), 'and round-trips');
          }
        }), { numRuns: 1000 });
      });

      it(`refuses a payload over ${d.limit} bytes before decoding it (§1.5 step 1)`, () => {
        expectCode(() => d.decode(new Uint8Array(d.limit + 1).fill(0xff)), 'E_MESSAGE_INVALID', /exceeds/);
        expectCode(() => d.decode(new Uint8Array(d.limit).fill(0xff)), 'E_CBOR');
      });

      it('refuses unknown types and the other direction\'s types with E_MESSAGE_TYPE (§1.5 step 4)', () => {
        const all = new Set(directions.flatMap((x) => Object.keys(x.arbs)));
        const mine = new Set(Object.keys(d.arbs));
        for (const t of [...all].filter((x) => !mine.has(x)).concat(['nope', '', 'STATUS'])) {
          expectCode(() => d.decode(encodeCbor({ t })), 'E_MESSAGE_TYPE');
        }
      });

      it('refuses what is not a map with a text "t" (§1.5 step 3)', () => {
        for (const v of [[1, 2], 'status', 5, { t: 5 }, { type: 'status' }, null]) {
          expectCode(() => d.decode(encodeCbor(v)), 'E_MESSAGE_INVALID');
        }
      });
    });
  }

  describe('encoding rules', () => {
    const ping = { t: 'ping', n: 1000 };

    it('accepts indefinite-length maps and arrays, refuses indefinite-length strings (§1.4.4)', () => {
      // {_ "t": "ping", "n": 1000}
      assert.deepEqual(decodeGatewayMessage(Buffer.from('bf61746470696e67616e1903e8ff', 'hex')), ping);
      // {"t": "ack", "sid": 1, "next": 0, "missing": [_ 64]}
      assert.deepEqual(decodeDeviceMessage(Buffer.from('a461746361636b6373696401646e65787400676d697373696e679f1840ff', 'hex')),
        { t: 'ack', sid: 1, next: 0, missing: [64] });
      // {"t": (_ "pi" "ng"), "n": 1000}
      expectCode(() => decodeGatewayMessage(Buffer.from('a261747f627069626e67ff616e1903e8', 'hex')), 'E_CBOR');
    });

    it('refuses an integer in the 8-byte form, accepts the shortest and the 4-byte forms (§1.4.5)', () => {
      assert.deepEqual(decodeGatewayMessage(Buffer.from('a261746470696e67616e1a000003e8', 'hex')), ping);
      expectCode(() => decodeGatewayMessage(Buffer.from('a261746470696e67616e1b00000000000003e8', 'hex')), 'E_MESSAGE_INVALID', /n/);
    });

    it('refuses null for an optional field, a tag, a negative or fractional integer (§1.4.5, §1.4.8)', () => {
      expectCode(() => decodeDeviceMessage(encodeCbor({ t: 'reject', sid: 1, code: 'busy', reason: null })), 'E_MESSAGE_INVALID', /reason/);
      // {"t": "ping", "n": 1(1000)}: a tagged integer
      expectCode(() => decodeGatewayMessage(Buffer.from('a261746470696e67616ec11903e8', 'hex')), 'E_MESSAGE_INVALID', /n/);
      expectCode(() => decodeGatewayMessage(encodeCbor({ t: 'ping', n: -1 })), 'E_MESSAGE_INVALID', /n/);
      expectCode(() => decodeGatewayMessage(encodeCbor({ t: 'ping', n: 1.5 })), 'E_MESSAGE_INVALID', /n/);
      expectCode(() => decodeGatewayMessage(encodeCbor({ t: 'ping', n: 2 ** 32 })), 'E_MESSAGE_INVALID', /n/);
    });

    it('accepts a number field as an integer or a half, single or double float; refuses NaN and infinity (§1.4.6)', () => {
      // {"t": "complete", "campaign": "c", "devices": 0, ..., "durationMs": <tail>}
      const head = encodeUplinkMessage({ t: 'complete', campaign: 'c', devices: 0, updated: 0, failed: 0, rolledBack: 0, skipped: 0, durationMs: 0 });
      const withTail = (tail: string): Uint8Array => Buffer.concat([head.subarray(0, head.length - 1), Buffer.from(tail, 'hex')]);
      for (const [tail, value] of [['00', 0], ['1903e8', 1000], ['f93e00', 1.5], ['fa3fc00000', 1.5], ['fb3ff8000000000000', 1.5]] as const) {
        assert.equal((decodeGatewayUplinkMessage(withTail(tail)) as { durationMs: number }).durationMs, value, tail);
      }
      for (const tail of ['f97c00', 'f97e00', 'fb7ff0000000000000']) {
        expectCode(() => decodeGatewayUplinkMessage(withTail(tail)), 'E_MESSAGE_INVALID', /durationMs/);
      }
    });

    it('refuses trailing bytes and an empty payload (§1.4.1)', () => {
      expectCode(() => decodeGatewayMessage(Buffer.from('a261746470696e67616e1903e800', 'hex')), 'E_CBOR');
      expectCode(() => decodeGatewayMessage(new Uint8Array(0)), 'E_CBOR');
    });

    it('chunk data is 1..65536 bytes; a chunk of 65536 bytes fits in MAX_OTA_MESSAGE (§1.6, §6.6)', () => {
      const data = new Uint8Array(MAX_CHUNK_SIZE).fill(7);
      const big = encodeGatewayMessage({ t: 'chunk', sid: 0xffff_ffff, off: 0xffff_ffff, data, crc: crc32(data) });
      assert.ok(big.length <= MAX_OTA_MESSAGE);
      assert.equal((decodeGatewayMessage(big) as { data: Uint8Array }).data.length, MAX_CHUNK_SIZE);
      const over = new Uint8Array(MAX_CHUNK_SIZE + 1);
      expectCode(() => decodeGatewayMessage(encodeCbor({ t: 'chunk', sid: 1, off: 0, data: over, crc: crc32(over) })), 'E_MESSAGE_INVALID', /data/);
      expectCode(() => decodeGatewayMessage(encodeCbor({ t: 'chunk', sid: 1, off: 0, data: new Uint8Array(0), crc: 0 })), 'E_MESSAGE_INVALID', /data/);
    });

    it('probe data is 0..65536 bytes; a probe of 65536 bytes fits in MAX_OTA_MESSAGE (§1.6, §6.4.3)', () => {
      const big = encodeGatewayMessage({ t: 'probe', n: 0xffff_ffff, data: new Uint8Array(MAX_CHUNK_SIZE).fill(0xa5) });
      assert.ok(big.length <= MAX_OTA_MESSAGE);
      assert.equal((decodeGatewayMessage(big) as { data: Uint8Array }).data.length, MAX_CHUNK_SIZE);
      assert.deepEqual(norm(decodeGatewayMessage(encodeGatewayMessage({ t: 'probe', n: 1, data: new Uint8Array(0) }))), { t: 'probe', n: 1, data: { $bytes: '' } });
      expectCode(() => decodeGatewayMessage(encodeCbor({ t: 'probe', n: 1, data: new Uint8Array(MAX_CHUNK_SIZE + 1) })), 'E_MESSAGE_INVALID', /data/);
      expectCode(() => decodeGatewayMessage(encodeCbor({ t: 'probe', n: 1 })), 'E_MESSAGE_INVALID', /data/);
      expectCode(() => decodeDeviceMessage(encodeCbor({ t: 'probed', n: 1 })), 'E_MESSAGE_INVALID', /size/);
    });

    it('a payload of exactly the limit decodes; one byte more is refused unread (§1.5 step 1)', () => {
      const sized = (total: number): Uint8Array => {
        // {"t": "pong", "n": 0, "pad": h'...'} with a 4-byte length: 1 + 2 + 5 + 2 + 1 + 4 + 5 = 20 bytes of envelope
        const pad = new Uint8Array(total - 20);
        const b = encodeDeviceMessage({ t: 'pong', n: 0, pad });
        assert.equal(b.length, total);
        return b;
      };
      assert.equal(decodeDeviceMessage(sized(MAX_OTA_MESSAGE)).t, 'pong');
      expectCode(() => decodeDeviceMessage(sized(MAX_OTA_MESSAGE + 1)), 'E_MESSAGE_INVALID', /exceeds/);
    });

    it('an ack lists at most 256 missing chunks (§6.6)', () => {
      const missing = Array.from({ length: MAX_ACK_MISSING + 1 }, (_, i) => i * 64);
      expectCode(() => decodeDeviceMessage(encodeCbor({ t: 'ack', sid: 1, next: 0, missing })), 'E_MESSAGE_INVALID', /missing/);
    });
  });
});

// ---------------------------------------------------------------- manifest

describe('manifest (docs/protocol.md §5, §2.3)', () => {
  const valid: Manifest = {
    name: 'sensor-fw', version: '1.2.0', hw: ['sensor-v1'], size: 200, crc32: 3976749440,
    sha256: '1901da1c9f699b48f6b2636e65cbf73abf99d0441ef67f5c540a42f7051dec6f', chunk: 64,
  };

  it('accepts every valid manifest unchanged', () => {
    fc.assert(fc.property(manifest, (m) => {
      assert.deepStrictEqual(parseManifest(m), m);
    }), { numRuns: 300 });
  });

  const invalid: [field: string, patch: Record<string, unknown>][] = [
    ['name', { name: '' }],
    ['name', { name: '-leading-dash' }],
    ['name', { name: 'x'.repeat(65) }],
    ['version', { version: '1.2' }],
    ['version', { version: 'v1.2.0' }],
    ['version', { version: '01.2.0' }],
    ['version', { version: '1.2.0+build.5' }],
    ['hw', { hw: [] }],
    ['hw', { hw: Array.from({ length: 17 }, (_, i) => `m${i}`) }],
    ['hw', { hw: ['has space'] }],
    ['size', { size: 0 }],
    ['size', { size: 2 ** 32 }],
    ['size', { size: 1.5 }],
    ['crc32', { crc32: -1 }],
    ['crc32', { crc32: 2 ** 32 }],
    ['sha256', { sha256: valid.sha256.toUpperCase() }],
    ['sha256', { sha256: valid.sha256.slice(1) }],
    ['sha256', { sha256: `${valid.sha256.slice(1)}g` }],
    ['chunk', { chunk: 63 }],
    ['chunk', { chunk: 65_537 }],
    ['signature', { signature: 'ab' }],
  ];
  for (const [field, patch] of invalid) {
    it(`refuses ${JSON.stringify(patch).slice(0, 60)} with E_MANIFEST_INVALID naming "${field}"`, () => {
      expectCode(() => parseManifest({ ...valid, ...patch }), 'E_MANIFEST_INVALID', new RegExp(`\\b${field}\\b`));
    });
  }

  it('refuses a manifest with any one field missing, naming it', () => {
    for (const field of Object.keys(valid)) {
      const m: Record<string, unknown> = { ...valid };
      delete m[field];
      expectCode(() => parseManifest(m), 'E_MANIFEST_INVALID', new RegExp(`\\b${field}\\b`));
    }
  });

  it('an unknown key in rts.manifest makes the rts invalid (§1.4.9, §7.3.4)', () => {
    expectCode(() => decodeLaptopMessage(encodeCbor({ t: 'rts', manifest: { ...valid, signature: 'ab' } })), 'E_MESSAGE_INVALID', /signature/);
  });

  it('checkDigest accepts the image it was made from', () => {
    fc.assert(fc.property(bytes(1, 4096), (image) => {
      checkDigest(manifestForImage(image, { name: 'x', version: '1.0.0', hw: ['h'] }), digestImage(image));
    }), { numRuns: 100 });
  });

  it('checkDigest detects a size, CRC-32 and SHA-256 mismatch with E_IMAGE_SIZE, E_IMAGE_CRC, E_IMAGE_SHA256, in that order', () => {
    const image = Uint8Array.from({ length: 200 }, (_, i) => i);
    const m = manifestForImage(image, { name: 'sensor-fw', version: '1.2.0', hw: ['sensor-v1'], chunk: 64 });
    assert.deepEqual(m, valid);
    const d = digestImage(image);
    expectCode(() => checkDigest(m, { ...d, size: d.size - 1 }), 'E_IMAGE_SIZE');
    expectCode(() => checkDigest(m, { ...d, crc32: (d.crc32 ^ 1) >>> 0 }), 'E_IMAGE_CRC');
    expectCode(() => checkDigest(m, { ...d, sha256: createHash('sha256').update('other').digest('hex') }), 'E_IMAGE_SHA256');
    // all three wrong: size first; CRC and SHA-256 wrong: CRC first
    expectCode(() => checkDigest(m, { size: 1, crc32: 0, sha256: '0'.repeat(64) }), 'E_IMAGE_SIZE');
    expectCode(() => checkDigest(m, { size: d.size, crc32: 0, sha256: '0'.repeat(64) }), 'E_IMAGE_CRC');
  });

  it('any one changed byte of an image is caught by its CRC-32 (§2.3)', () => {
    fc.assert(fc.property(bytes(1, 2048), byteMutation, (image, [at, x]) => {
      const m = manifestForImage(image, { name: 'x', version: '1.0.0', hw: ['h'] });
      const bad = Uint8Array.from(image);
      bad[at % bad.length]! ^= x;
      expectCode(() => checkDigest(m, digestImage(bad)), 'E_IMAGE_CRC');
    }), { numRuns: 200 });
  });
});

// ---------------------------------------------------------------- versions

describe('versions (docs/protocol.md §1.7)', () => {
  it('a pre-release is older than its release', () => {
    assert.ok(compareVersions('1.0.0-alpha', '1.0.0') < 0);
    assert.ok(isOlder('1.0.0-rc.1', '1.0.0'));
    assert.ok(!isOlder('1.0.0', '1.0.0-rc.1'));
    fc.assert(fc.property(version.filter((v) => v.includes('-')), (v) => {
      const release = v.slice(0, v.indexOf('-'));
      assert.ok(isOlder(v, release));
      assert.ok(compareVersions(release, v) > 0);
    }));
  });

  it('numeric identifiers compare numerically: 1.10.0 > 1.9.0', () => {
    assert.ok(compareVersions('1.10.0', '1.9.0') > 0);
    assert.ok(isOlder('1.9.0', '1.10.0'));
    assert.ok(isOlder('0.0.9', '0.0.10'));
    assert.ok(isOlder('1.0.0-rc.2', '1.0.0-rc.10'));
  });

  it('build metadata is ignored by the order, and refused by validation (§1.7.1)', () => {
    assert.equal(compareVersions('1.0.0+build.1', '1.0.0+build.2'), 0);
    assert.equal(compareVersions('1.0.0+build.1', '1.0.0'), 0);
    assert.ok(!isOlder('1.0.0+a', '1.0.0+b') && !isOlder('1.0.0+b', '1.0.0+a'));
    assert.equal(isValidVersion('1.0.0+build.1'), false);
  });

  it('follows the precedence example of SemVer 2.0.0 §11', () => {
    const chain = ['1.0.0-alpha', '1.0.0-alpha.1', '1.0.0-alpha.beta', '1.0.0-beta', '1.0.0-beta.2', '1.0.0-beta.11', '1.0.0-rc.1', '1.0.0'];
    for (let i = 0; i + 1 < chain.length; i++) assert.ok(isOlder(chain[i]!, chain[i + 1]!), `${chain[i]} < ${chain[i + 1]}`);
    const shuffled = [...chain].reverse().sort(compareVersions);
    assert.deepEqual(shuffled, chain);
  });

  it('release versions order like their number triples', () => {
    const triple = fc.tuple(fc.nat(50), fc.nat(50), fc.nat(50));
    fc.assert(fc.property(triple, triple, (a, b) => {
      const expected = Math.sign(a[0] - b[0] || a[1] - b[1] || a[2] - b[2]);
      assert.equal(Math.sign(compareVersions(a.join('.'), b.join('.'))), expected);
    }), { numRuns: 500 });
  });

  it('the order is antisymmetric and isOlder is strict', () => {
    fc.assert(fc.property(version, version, (a, b) => {
      assert.equal(Math.sign(compareVersions(a, b)), -Math.sign(compareVersions(b, a)));
      assert.ok(!(isOlder(a, b) && isOlder(b, a)));
      assert.ok(!isOlder(a, a));
    }), { numRuns: 500 });
  });

  it('accepts only strict SemVer 2.0.0 without build metadata', () => {
    for (const v of ['0.0.0', '1.2.3', '10.20.30', '1.0.0-rc.1', '1.0.0-0.3.7', '1.0.0-x-y-z.--']) assert.ok(isValidVersion(v), v);
    for (const v of ['', '1', '1.2', 'v1.2.3', '01.2.3', '1.02.3', '1.2.3-01', '1.2.3-', '1.2.3+b', ' 1.2.3', '1.2.3 ']) assert.ok(!isValidVersion(v), v);
  });
});

describe('uplink text fields (§1.6)', () => {
  it('clipReasons keeps every reason within the text limit so the message still validates', async () => {
    const { clipReasons, decodeGatewayUplinkMessage, encodeUplinkMessage } = await import('../../protocol/uplink.ts');
    const long = 'x'.repeat(1000);
    const deny = clipReasons({ t: 'deny', code: 'internal', reason: long });
    assert.equal(deny.reason.length, 256);
    assert.deepEqual(decodeGatewayUplinkMessage(encodeUplinkMessage(deny)), deny);
    const order = clipReasons({ t: 'order', campaign: 'c', image: { name: 'n', version: '1.0.0', sha256: 'a'.repeat(64) }, devices: [], excluded: [{ id: 'd', code: 'offline', reason: long }] });
    assert.equal(order.excluded[0]!.reason.length, 256);
    assert.doesNotThrow(() => decodeGatewayUplinkMessage(encodeUplinkMessage(order)));
    const short = { t: 'error' as const, code: 'E', reason: 'fine' };
    assert.equal(clipReasons(short), short);
  });
});
