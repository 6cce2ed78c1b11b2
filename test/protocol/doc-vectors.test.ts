import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { crc32 } from '../../protocol/crc.ts';
import { ErrorCodes } from '../../protocol/errors.ts';
import * as limits from '../../protocol/limits.ts';
import { FrameKind, cobsDecode, cobsEncode, decodeFrame, encodeFrame } from '../../protocol/link/index.ts';
import { decodeCbor } from '../../protocol/cbor.ts';
import { parseManifest } from '../../protocol/manifest.ts';
import { parsePublicKey, SIGNATURE_DOMAIN, signedBytes } from '../../protocol/signature.ts';
import { parseReleaseManifest, RELEASE_SIGNATURE_DOMAIN, releaseSignedBytes } from '../../protocol/release.ts';
import {
  canonicalRequestBytes, REQUEST_AUTH_DOMAIN, requestSigningInput, signingInputForDigest, verifyRequest, type UplinkRequest,
} from '../../protocol/uplink-auth.ts';
import {
  RejectCodes, SlotStates, VerifyCodes, decodeDeviceMessage, decodeGatewayMessage, deviceMessage, encodeDeviceMessage,
  encodeGatewayMessage, gatewayMessage, type DeviceMessage, type GatewayMessage,
} from '../../protocol/ota.ts';
import {
  DenyCodes, DevicePhases, Outcomes, ResultCodes, decodeGatewayUplinkMessage, decodeLaptopMessage,
  encodeUplinkMessage, gatewayUplinkMessage, laptopMessage, type GatewayUplinkMessage, type LaptopMessage,
} from '../../protocol/uplink.ts';
import { frameToVectorValue, vectorValueToFrame, type FrameVectorValue } from './link/helpers.ts';

/**
 * The hex test vectors of docs/protocol.md §10 are part of the specification: every block is
 * decoded and re-encoded with the project's own codecs, and the set of message types with a
 * vector must equal the set of types in the schemas (a new message type without a vector fails).
 */

const docPath = fileURLToPath(new URL('../../docs/protocol.md', import.meta.url));
const doc = readFileSync(docPath, 'utf8');

const KINDS = [
  'crc32', 'cobs', 'frame', 'ota-down', 'ota-up', 'uplink-laptop', 'uplink-gateway', 'signed-bytes', 'canonical-request', 'request-signing-input',
  'release-signed-bytes',
] as const;
type Kind = (typeof KINDS)[number];

interface Vector { name: string; kind: Kind; value: unknown; hex: string; line: number }

/**
 * Every line starting with ```vector opens a block of exactly three more lines: `value: <JSON>`,
 * `hex: <lowercase hex>`, and the closing fence. Anything else is malformed. Text inside ````
 * fences (the format example of §10.1) is not a vector.
 */
function parseVectors(markdown: string): Vector[] {
  const blanked = markdown.replace(/^````[^\n]*\n[\s\S]*?^````$/gm, (m) => m.replace(/[^\n]/g, ''));
  const lines = blanked.split('\n');
  const out: Vector[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i]!.startsWith('```vector')) continue;
    const at = `docs/protocol.md:${i + 1}`;
    const head = /^```vector name=([a-z0-9][a-z0-9-]*) kind=([a-z0-9-]+)$/.exec(lines[i]!);
    assert.ok(head, `${at}: a vector block opens with "\`\`\`vector name=<name> kind=<kind>", got ${JSON.stringify(lines[i])}`);
    const [, name, kind] = head as unknown as [string, string, string];
    assert.ok((KINDS as readonly string[]).includes(kind), `${at}: vector ${name} has unknown kind "${kind}"`);
    const value = /^value: (.+)$/.exec(lines[i + 1] ?? '')?.[1];
    const hex = /^hex: ((?:[0-9a-f]{2})+)$/.exec(lines[i + 2] ?? '')?.[1];
    assert.ok(value !== undefined, `${at}: vector ${name}: the line after the header must be "value: <JSON>"`);
    assert.ok(hex !== undefined, `${at}: vector ${name}: the second line must be "hex: <lowercase hex, even length>"`);
    assert.equal(lines[i + 3], '```', `${at}: vector ${name}: the block must close after its hex line`);
    let parsed: unknown;
    try {
      parsed = JSON.parse(value);
    } catch (err) {
      assert.fail(`${at}: vector ${name}: value is not JSON: ${(err as Error).message}`);
    }
    out.push({ name, kind: kind as Kind, value: parsed, hex, line: i + 1 });
    i += 3;
  }
  return out;
}

// ---- JSON <-> wire values ({"$bytes": "<hex>"} is a CBOR byte string) ----

function isBytesTag(v: unknown): v is { $bytes: string } {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && Object.keys(v).length === 1 && typeof (v as { $bytes?: unknown }).$bytes === 'string';
}

function fromJson(v: unknown): unknown {
  if (isBytesTag(v)) {
    assert.match(v.$bytes, /^(?:[0-9a-f]{2})*$/, 'a $bytes value is lowercase hex of even length');
    return Uint8Array.from(Buffer.from(v.$bytes, 'hex'));
  }
  if (Array.isArray(v)) return v.map(fromJson);
  if (typeof v === 'object' && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, fromJson(x)]));
  return v;
}

function toJson(v: unknown): unknown {
  if (v instanceof Uint8Array) return { $bytes: Buffer.from(v).toString('hex') };
  if (Array.isArray(v)) return v.map(toJson);
  if (typeof v === 'object' && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, toJson(x)]));
  return v;
}

const hexOf = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const bytesOf = (h: string): Uint8Array => Uint8Array.from(Buffer.from(h, 'hex'));

// ---- frames: the JSON form of §10.4 (shared with test/protocol/link/vectors.test.ts) ----

// ---- one codec per kind: encode(value) must give hex, decode(hex) must give value ----

interface Codec { encode(value: unknown): Uint8Array; decode(bytes: Uint8Array): unknown }

const codecs: Record<Exclude<Kind, 'crc32'>, Codec> = {
  cobs: { encode: (v) => cobsEncode(fromJson(v) as Uint8Array), decode: (b) => toJson(cobsDecode(b)) },
  frame: { encode: (v) => encodeFrame(vectorValueToFrame(v as FrameVectorValue)), decode: (b) => frameToVectorValue(decodeFrame(b)) },
  'ota-down': { encode: (v) => encodeGatewayMessage(fromJson(v) as GatewayMessage), decode: (b) => toJson(decodeGatewayMessage(b)) },
  'ota-up': { encode: (v) => encodeDeviceMessage(fromJson(v) as DeviceMessage), decode: (b) => toJson(decodeDeviceMessage(b)) },
  'uplink-laptop': { encode: (v) => encodeUplinkMessage(fromJson(v) as LaptopMessage), decode: (b) => toJson(decodeLaptopMessage(b)) },
  'uplink-gateway': { encode: (v) => encodeUplinkMessage(fromJson(v) as GatewayUplinkMessage), decode: (b) => toJson(decodeGatewayUplinkMessage(b)) },
  // §7.2.4: the request without `auth` in core deterministic CBOR
  'canonical-request': { encode: (v) => canonicalRequestBytes(fromJson(v) as UplinkRequest), decode: (b) => toJson(decodeCbor(b)) },
  // §7.2.4: domain, 0x00, challenge (32), n (u32 BE), digest (32)
  'request-signing-input': {
    encode: (v) => {
      const { challenge, n, digest } = fromJson(v) as { challenge: Uint8Array; n: number; digest: Uint8Array };
      return signingInputForDigest(challenge, n, digest);
    },
    decode: (b) => {
      const domain = Buffer.from(b.subarray(0, REQUEST_AUTH_DOMAIN.length)).toString('ascii');
      assert.equal(domain, REQUEST_AUTH_DOMAIN);
      assert.equal(b.length, REQUEST_AUTH_DOMAIN.length + 1 + 32 + 4 + 32, 'the signing input is 93 bytes');
      const at = REQUEST_AUTH_DOMAIN.length + 1;
      return toJson({ challenge: b.subarray(at, at + 32), n: Buffer.from(b).readUInt32BE(at + 32), digest: b.subarray(at + 36) });
    },
  },
  // §5.5.3: the array ["fwgate-release-v1", release, version, hw, chunk, seq, components]
  'release-signed-bytes': {
    encode: (v) => releaseSignedBytes(parseReleaseManifest(v)),
    decode: (b) => {
      const a = decodeCbor(b) as unknown[];
      assert.ok(Array.isArray(a) && a.length === 7 && a[0] === RELEASE_SIGNATURE_DOMAIN, 'release signed bytes are the 7-item array of §5.5.3');
      const [, release, version, hw, chunk, seq, components] = a as [string, string, string, string[], number, number, unknown[][]];
      return {
        release, version, hw, chunk, seq,
        components: components.map(([component, name, v, size, crc32v, sha256, requires, agent]) => ({
          component, name, version: v, size, crc32: crc32v, sha256,
          ...((requires as unknown[]).length > 0 ? { requires: Object.fromEntries(requires as [string, string][]) } : {}),
          ...(agent === true ? { agent: true } : {}),
        })),
      };
    },
  },
  // §5.4.1: the array ["fwgate-manifest-v1", name, version, hw, size, crc32, sha256, chunk, seq]
  'signed-bytes': {
    encode: (v) => signedBytes(parseManifest(v)),
    decode: (b) => {
      const a = decodeCbor(b) as unknown[];
      assert.ok(Array.isArray(a) && a.length === 9 && a[0] === SIGNATURE_DOMAIN, 'signed bytes are the 9-item array of §5.4.1');
      const [, name, version, hw, size, crc32v, sha256, chunk, seq] = a;
      return { name, version, hw, size, crc32: crc32v, sha256, chunk, seq };
    },
  },
};

/** The message types of a discriminated union on "t", read from the schema itself. */
function typesOf(union: { options: readonly { shape: { t: { value: unknown } } }[] }): string[] {
  return union.options.map((o) => String(o.shape.t.value)).sort();
}

const schemaTypes: Record<'ota-down' | 'ota-up' | 'uplink-laptop' | 'uplink-gateway', string[]> = {
  'ota-down': typesOf(gatewayMessage),
  'ota-up': typesOf(deviceMessage),
  'uplink-laptop': typesOf(laptopMessage),
  'uplink-gateway': typesOf(gatewayUplinkMessage),
};

let vectors: Vector[] = [];
let parseError: unknown;
try {
  vectors = parseVectors(doc);
} catch (err) {
  parseError = err;
}

const messagesOf = (kind: keyof typeof schemaTypes): Record<string, unknown>[] =>
  vectors.filter((v) => v.kind === kind).map((v) => v.value as Record<string, unknown>);

describe('docs/protocol.md test vectors (§10)', () => {
  it('every vector block is well-formed, with a unique name and a known kind (§10.1)', () => {
    if (parseError !== undefined) throw parseError;
    assert.ok(vectors.length > 0, 'the document has vectors');
    const seen = new Map<string, number>();
    for (const v of vectors) {
      assert.ok(!seen.has(v.name), `vector name "${v.name}" repeats (lines ${seen.get(v.name)} and ${v.line})`);
      seen.set(v.name, v.line);
    }
  });

  describe('each vector: encode(value) == hex and decode(hex) == value', () => {
    for (const v of vectors) {
      it(`${v.kind} ${v.name}`, () => {
        if (v.kind === 'crc32') {
          assert.equal(typeof v.value, 'string', 'a crc32 value is an ASCII string');
          assert.match(v.value as string, /^[\x20-\x7e]*$/, 'a crc32 value is printable ASCII');
          assert.equal(v.hex.length, 8, 'a CRC-32 is 4 bytes');
          assert.equal(crc32(Buffer.from(v.value as string, 'ascii')).toString(16).padStart(8, '0'), v.hex);
          return;
        }
        const codec = codecs[v.kind];
        assert.equal(hexOf(codec.encode(v.value)), v.hex, 'encode(value) == hex');
        assert.deepStrictEqual(codec.decode(bytesOf(v.hex)), v.value, 'decode(hex) == value');
      });
    }
  });

  describe('coverage', () => {
    for (const kind of Object.keys(schemaTypes) as (keyof typeof schemaTypes)[]) {
      it(`${kind}: one vector or more for every message type of the schema, and no other`, () => {
        const have = [...new Set(messagesOf(kind).map((m) => String(m.t)))].sort();
        assert.deepEqual(have, schemaTypes[kind]);
      });
    }

    it('the authorised rts verifies with the RFC 8032 TEST 1 key over challenge 00..1f, and its digest is that of the canonical-request vector (§7.2.4)', () => {
      const rts = fromJson(vectors.find((v) => v.name === 'laptop-rts-authorised')?.value) as UplinkRequest;
      const canonical = vectors.find((v) => v.name === 'canonical-request-rts');
      const input = vectors.find((v) => v.name === 'request-signing-input-rts');
      assert.ok(rts && canonical && input);
      const key = parsePublicKey('11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=');
      const challenge = Uint8Array.from({ length: 32 }, (_, i) => i);
      assert.ok(verifyRequest(key, challenge, rts), 'the documented signature verifies');
      assert.equal(hexOf(canonicalRequestBytes(rts)), canonical.hex, 'the wire request and the canonical vector are the same content');
      assert.equal(hexOf(requestSigningInput(challenge, 1, rts)), input.hex);
      assert.ok(!verifyRequest(key, challenge, { ...rts, force: false }), 'altered content does not verify');
    });

    it('crc32("123456789") = cbf43926 (§2.1)', () => {
      assert.ok(vectors.some((v) => v.kind === 'crc32' && v.value === '123456789' && v.hex === 'cbf43926'));
    });

    it('every chunk vector carries the real CRC-32 of its data (§6.6)', () => {
      const chunks = messagesOf('ota-down').filter((m) => m.t === 'chunk');
      assert.ok(chunks.length > 0);
      for (const m of chunks) assert.equal(m.crc, crc32(fromJson(m.data) as Uint8Array));
    });

    it('an ack with a non-empty missing list, verified ok and failed (§6.6, §6.7)', () => {
      const up = messagesOf('ota-up');
      assert.ok(up.some((m) => m.t === 'ack' && Array.isArray(m.missing) && m.missing.length > 0));
      assert.ok(up.some((m) => m.t === 'verified' && m.ok === true));
      assert.ok(up.some((m) => m.t === 'verified' && m.ok === false && typeof m.code === 'string'));
    });

    it('hello both ways, rts with a full manifest, committed ok and failed, order with an excluded entry (§7)', () => {
      const laptop = messagesOf('uplink-laptop');
      const gateway = messagesOf('uplink-gateway');
      assert.ok(laptop.some((m) => m.t === 'hello' && m.role === 'laptop'));
      assert.ok(gateway.some((m) => m.t === 'hello' && m.role === 'gateway'));
      const rts = laptop.filter((m) => m.t === 'rts');
      assert.ok(rts.length > 0);
      for (const m of rts) assert.deepEqual(parseManifest(m.manifest), m.manifest);
      assert.ok(gateway.some((m) => m.t === 'committed' && m.ok === true && typeof m.campaign === 'string'));
      assert.ok(gateway.some((m) => m.t === 'committed' && m.ok === false && typeof m.code === 'string'));
      assert.ok(gateway.some((m) => m.t === 'order' && Array.isArray(m.excluded) && m.excluded.length > 0));
    });

    it('a probe answered by its probed, with the probe\'s n and data length (§6.4.3)', () => {
      const probes = messagesOf('ota-down').filter((m) => m.t === 'probe');
      const probed = messagesOf('ota-up').filter((m) => m.t === 'probed');
      assert.ok(probes.length > 0);
      for (const p of probes) {
        const data = fromJson(p.data) as Uint8Array;
        assert.ok(probed.some((a) => a.n === p.n && a.size === data.length), `a probed answers the probe with n = ${String(p.n)}`);
      }
    });

    it('state running with its image, progress with bps and etaMs, totals, an order entry with bps and startMs (§7.5, §7.6, §7.11)', () => {
      const gateway = messagesOf('uplink-gateway');
      assert.ok(messagesOf('uplink-laptop').some((m) => m.t === 'status'));
      assert.ok(gateway.some((m) => m.t === 'state' && m.running === true && typeof m.campaign === 'string' && typeof m.image === 'object'));
      assert.ok(gateway.some((m) => m.t === 'progress' && typeof m.bps === 'number' && typeof m.etaMs === 'number'));
      assert.ok(gateway.some((m) => m.t === 'totals' && typeof m.etaMs === 'number'));
      const entries = gateway.filter((m) => m.t === 'order').flatMap((m) => m.devices as Record<string, unknown>[]);
      assert.ok(entries.some((e) => typeof e.bps === 'number' && typeof e.startMs === 'number'));
      for (const m of gateway.filter((x) => x.t === 'order')) {
        const ranks = (m.devices as { rank: number }[]).map((e) => e.rank);
        assert.deepEqual(ranks, ranks.map((_, i) => i + 1), 'order.devices is in rank order (§7.5.3)');
      }
    });

    it('every frame kind has a vector (§3.3)', () => {
      const have = new Set(vectors.filter((v) => v.kind === 'frame').map((v) => (v.value as FrameVectorValue).kind));
      assert.deepEqual([...have].sort(), Object.keys(FrameKind).sort());
    });
  });

  describe('the document names every code, enum value, limit and timeout', () => {
    const mentioned = (word: string): boolean => doc.includes(`\`${word}\``);
    const check = (what: string, words: readonly string[]): void => {
      const missing = words.filter((w) => !mentioned(w));
      assert.deepEqual(missing, [], `${what} not mentioned in docs/protocol.md`);
    };

    it('every error code of protocol/errors.ts (§9)', () => check('error codes', Object.keys(ErrorCodes)));
    it('every reject, verify and deny code and slot state (§6, §7)', () => {
      check('reject codes', RejectCodes);
      check('verify codes', VerifyCodes);
      check('deny codes', DenyCodes);
      check('slot states', SlotStates);
    });
    it('every device phase, outcome and result code (§7.7, §7.8)', () => {
      check('device phases', DevicePhases);
      check('outcomes', Outcomes);
      check('result codes', ResultCodes);
    });
    it('every limit of protocol/limits.ts (§1.6)', () => check('limits', Object.keys(limits)));
    // §1.6, §4.10, §8.3 and §9 values are compared cell by cell in test/protocol/doc-tables.test.ts.
  });
});
