import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { MAX_CONFIG_FILE_BYTES, loadConfigFile, parseConfig } from '../../gateway/config.ts';
import { decodeCbor, encodeCbor } from '../../protocol/cbor.ts';
import { FwError, type ErrorCode } from '../../protocol/errors.ts';
import { MAX_OTA_MESSAGE, MAX_UPLINK_MESSAGE } from '../../protocol/limits.ts';
import {
  FrameParser, ackFrame, cobsDecode, dataFrame, decodeFrame, encodeFrame, nakFrame, resetFrame, type ParserStats,
} from '../../protocol/link/index.ts';
import { parseManifest, type Manifest } from '../../protocol/manifest.ts';
import { decodeDeviceMessage, decodeGatewayMessage, encodeDeviceMessage, encodeGatewayMessage } from '../../protocol/ota.ts';
import { decodeGatewayUplinkMessage, decodeLaptopMessage, encodeUplinkMessage } from '../../protocol/uplink.ts';

/**
 * Hostile input (issue "Security"): every decoder, fed random bytes and mutated valid encodings
 * (bit flips, truncation, extension, length headers inflated to 2^32 and 2^64), returns a value
 * or throws an FwError with one of its stable codes, quickly and without allocating from the
 * claimed length. Complements test/protocol/messages.test.ts (per-type round trips, one changed
 * byte, fixed hostile headers) and test/protocol/link/frame.test.ts (one flipped bit, splits).
 */

const SHA = 'ab'.repeat(32);
const MANIFEST: Manifest = { name: 'sensor-fw', version: '1.2.3', hw: ['sensor-v1', 'sensor-v2'], size: 98_304, crc32: 0x1234_5678, sha256: SHA, chunk: 4096 };

/** Each decoder under test: its valid sample encodings and the only codes it may throw. */
interface Decoder {
  name: string;
  decode: (b: Uint8Array) => unknown;
  codes: readonly ErrorCode[];
  samples: Uint8Array[];
  limit: number;
}

const MESSAGE_CODES: readonly ErrorCode[] = ['E_CBOR', 'E_MESSAGE_INVALID', 'E_MESSAGE_TYPE'];

const decoders: Decoder[] = [
  {
    name: 'decodeCbor', decode: decodeCbor, codes: ['E_CBOR'], limit: MAX_UPLINK_MESSAGE,
    samples: [encodeCbor({ a: [1, 2, { b: Buffer.alloc(300, 7) }], c: 'x'.repeat(300), d: -5, e: 1.5, f: true })],
  },
  {
    name: 'decodeDeviceMessage', decode: decodeDeviceMessage, codes: MESSAGE_CODES, limit: MAX_OTA_MESSAGE,
    samples: [
      encodeDeviceMessage({ t: 'status', hw: 'sensor-v1', version: '1.0.0', slot: 'a', slots: { a: { state: 'confirmed', version: '1.0.0', sha256: SHA }, b: { state: 'empty' } }, maxChunk: 4096, busy: false, trial: false }),
      encodeDeviceMessage({ t: 'ack', sid: 7, next: 4096, missing: Array.from({ length: 40 }, (_, i) => i * 4096) }),
      encodeDeviceMessage({ t: 'pong', n: 3, pad: new Uint8Array(200).fill(1) }),
      encodeDeviceMessage({ t: 'boot', version: '1.1.0', slot: 'b', trial: true, reverted: false, reason: 'r'.repeat(100) }),
    ],
  },
  {
    name: 'decodeGatewayMessage', decode: decodeGatewayMessage, codes: MESSAGE_CODES, limit: MAX_OTA_MESSAGE,
    samples: [
      encodeGatewayMessage({ t: 'offer', sid: 1, name: 'sensor-fw', version: '1.1.0', hw: ['sensor-v1'], size: 98_304, crc32: 5, sha256: SHA, chunk: 4096 }),
      encodeGatewayMessage({ t: 'chunk', sid: 1, off: 8192, data: new Uint8Array(600).fill(0x5a), crc: 9 }),
      encodeGatewayMessage({ t: 'tasks', tasks: [{ campaign: 'c1', name: 'sensor-fw', version: '1.1.0', sha256: SHA, size: 10, steps: ['download', 'verify'] }] }),
    ],
  },
  {
    name: 'decodeLaptopMessage', decode: decodeLaptopMessage, codes: MESSAGE_CODES, limit: MAX_UPLINK_MESSAGE,
    samples: [
      encodeUplinkMessage({ t: 'hello', proto: 1, role: 'laptop', agent: 'fwpush/0.1.0', maxFrame: 4096, window: 16, maxMessage: 1_048_576 }),
      encodeUplinkMessage({ t: 'rts', manifest: MANIFEST, policy: 'now' }),
      encodeUplinkMessage({ t: 'data', off: 0, data: new Uint8Array(1000).fill(3) }),
    ],
  },
  {
    name: 'decodeGatewayUplinkMessage', decode: decodeGatewayUplinkMessage, codes: MESSAGE_CODES, limit: MAX_UPLINK_MESSAGE,
    samples: [
      encodeUplinkMessage({ t: 'order', campaign: 'c1', image: { name: 'sensor-fw', version: '1.1.0', sha256: SHA }, devices: Array.from({ length: 20 }, (_, i) => ({ id: `dev-${i}`, rank: i + 1, from: '1.0.0', rttMs: 3.5 })), excluded: [{ id: 'x', code: 'offline', reason: 'gone' }] }),
      encodeUplinkMessage({ t: 'fleet', now: Date.now(), devices: [{ id: 'dev-1', hw: 'sensor-v1', version: '1.0.0', online: true, lastCheckIn: Date.now() }] }),
      encodeUplinkMessage({ t: 'result', campaign: 'c1', id: 'dev-1', outcome: 'updated', code: 'ok', from: '1.0.0', to: '1.1.0', durationMs: 10, retries: 0 }),
    ],
  },
];

// ---------------------------------------------------------------- helpers

/**
 * Run fn; it returns or throws an FwError with one of `codes`. No wall-clock bound (a loaded machine
 * must not fail a test): the work is bounded instead, by what the decoder may allocate while it runs
 * (`maxAllocMb`, the growth of the JS heap plus array buffers across the call), and a decoder that
 * walked a claimed 2^32..2^64 items would never return, which the test's own timeout catches.
 * Timings of these decoders belong to benchmarks.
 */
function expectTyped(what: string, codes: readonly ErrorCode[], fn: () => unknown, maxAllocMb = 32): { ok: boolean; code?: ErrorCode } {
  const before = allocatedMb();
  try {
    fn();
    return { ok: true };
  } catch (err) {
    assert.ok(err instanceof FwError, `${what}: threw a non-FwError: ${String(err)}`);
    assert.ok(codes.includes(err.code), `${what}: unexpected code ${err.code} (${err.message})`);
    return { ok: false, code: err.code };
  } finally {
    const grew = allocatedMb() - before;
    assert.ok(grew < maxAllocMb, `${what}: allocated ${grew.toFixed(0)} MB while decoding`);
  }
}

/** Live JS heap plus ArrayBuffer memory, in MB (a GC during a call can only make a growth look smaller). */
function allocatedMb(): number {
  const m = process.memoryUsage();
  return (m.heapUsed + m.arrayBuffers) / 1e6;
}

async function expectTypedAsync(what: string, codes: readonly ErrorCode[], fn: () => Promise<unknown>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    assert.ok(err instanceof FwError, `${what}: threw a non-FwError: ${String(err)}`);
    assert.ok(codes.includes(err.code), `${what}: unexpected code ${err.code}`);
  }
}

/** One CBOR data item header: where it is, how long, which major type, and its length argument. */
interface CborHeader { at: number; size: number; major: number }

/** Headers of a definite-length CBOR encoding (what encodeCbor produces), in order. */
function cborHeaders(b: Uint8Array): CborHeader[] {
  const out: CborHeader[] = [];
  let p = 0;
  const item = (): void => {
    const at = p;
    const ib = b[p++]!;
    const major = ib >> 5;
    const ai = ib & 31;
    let n = ai;
    const widths: Record<number, number> = { 24: 1, 25: 2, 26: 4, 27: 8 };
    const w = widths[ai];
    if (w !== undefined) {
      n = 0;
      for (let i = 0; i < w; i++) n = n * 256 + b[p++]!;
    } else if (ai > 23) {
      throw new Error(`indefinite or reserved header 0x${ib.toString(16)} at ${at}`);
    }
    out.push({ at, size: p - at, major });
    if (major === 2 || major === 3) p += n;
    else if (major === 4) for (let i = 0; i < n; i++) item();
    else if (major === 5) for (let i = 0; i < 2 * n; i++) item();
    else if (major === 6) item();
  };
  item();
  assert.equal(p, b.length, 'the walker covers the whole sample');
  return out;
}

/** Replace one header by the same major type claiming `claim` items/bytes (4- or 8-byte argument). */
function inflate(b: Uint8Array, h: CborHeader, claim: bigint): Uint8Array {
  const wide = claim > 0xffff_ffffn;
  const header = new Uint8Array(wide ? 9 : 5);
  header[0] = (h.major << 5) | (wide ? 27 : 26);
  const view = new DataView(header.buffer);
  if (wide) view.setBigUint64(1, claim);
  else view.setUint32(1, Number(claim));
  return Buffer.concat([b.subarray(0, h.at), header, b.subarray(h.at + h.size)]);
}

/** A valid encoding changed by one of the mutations a hostile or broken peer produces. */
function mutated(samples: Uint8Array[]): fc.Arbitrary<Uint8Array> {
  const sample = fc.constantFrom(...samples);
  const flips = fc.tuple(sample, fc.array(fc.nat(), { minLength: 1, maxLength: 8 })).map(([s, bits]) => {
    const b = Uint8Array.from(s);
    for (const bit of bits) b[(bit >>> 3) % b.length]! ^= 1 << (bit & 7);
    return b;
  });
  const truncated = fc.tuple(sample, fc.nat()).map(([s, n]) => s.subarray(0, n % s.length));
  const extended = fc.tuple(sample, fc.uint8Array({ minLength: 1, maxLength: 64 })).map(([s, tail]) => Buffer.concat([s, tail]));
  const spliced = fc.tuple(sample, fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 16 })).map(([s, at, junk]) => {
    const i = at % s.length;
    return Buffer.concat([s.subarray(0, i), junk, s.subarray(i)]);
  });
  return fc.oneof(flips, truncated, extended, spliced);
}

/** Valid encodings with one length-carrying header (string, bytes, array, map) claiming a huge size. */
function inflatedLengths(samples: Uint8Array[]): fc.Arbitrary<Uint8Array> {
  const claims = [0xffff_ffffn, 0x8000_0000n, 0x0fff_ffffn, 0x00ff_ffffn, 0xffff_ffff_ffff_ffffn, 0x1_0000_0000n];
  return fc.tuple(fc.constantFrom(...samples), fc.nat(), fc.constantFrom(...claims)).map(([s, pick, claim]) => {
    const candidates = cborHeaders(s).filter((h) => h.major >= 2 && h.major <= 5);
    return inflate(s, candidates[pick % candidates.length]!, claim);
  });
}

function rssMb(): number {
  return process.memoryUsage().rss / 1e6;
}

// ---------------------------------------------------------------- CBOR and message decoders

describe('security: decoders refuse hostile input with typed errors', function () {
  this.timeout(20_000);

  for (const d of decoders) {
    describe(d.name, () => {
      it('every sample is valid and walkable (test self-check)', () => {
        for (const s of d.samples) {
          d.decode(s);
          assert.ok(cborHeaders(s).length > 0);
        }
      });

      it('random bytes: a value or a typed error', () => {
        fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (b) => {
          expectTyped(d.name, d.codes, () => d.decode(b));
        }), { numRuns: 300 });
      });

      it('mutated valid encodings (bit flips, truncation, extension, splices): a value or a typed error', () => {
        fc.assert(fc.property(mutated(d.samples), (b) => {
          expectTyped(d.name, d.codes, () => d.decode(b));
        }), { numRuns: 400 });
      });

      it('length headers inflated to 2^24..2^64: refused without allocating the claim', () => {
        const before = rssMb();
        fc.assert(fc.property(inflatedLengths(d.samples), (b) => {
          const r = expectTyped(d.name, d.codes, () => d.decode(b), 16);
          assert.equal(r.ok, false, 'a header claiming more than the payload holds is never a value');
        }), { numRuns: 300 });
        const grew = rssMb() - before;
        assert.ok(grew < 50, `rss grew by ${grew.toFixed(0)} MB`);
      });

      it('the size limit is checked before decoding: limit+1 bytes of a huge-array claim is refused unread', () => {
        const b = new Uint8Array(d.limit + 1);
        b.set([0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        const before = rssMb();
        const r = expectTyped(d.name, d.name === 'decodeCbor' ? ['E_CBOR'] : ['E_MESSAGE_INVALID'], () => d.decode(b), 16);
        assert.equal(r.ok, false);
        assert.ok(rssMb() - before < 50);
      });
    });
  }

  it('decodeCbor: nested length claims (each level claims 2^32-1 items) are refused in bounded time and memory', () => {
    const before = rssMb();
    for (const head of [0x9a, 0xba]) {
      const b = new Uint8Array(5 * 2000);
      for (let i = 0; i < 2000; i++) b.set([head, 0xff, 0xff, 0xff, 0xff], i * 5);
      expectTyped('nested claims', ['E_CBOR'], () => decodeCbor(b), 16);
    }
    assert.ok(rssMb() - before < 50);
  });
});

// ---------------------------------------------------------------- serial link

describe('security: serial link decoders (protocol/link)', function () {
  this.timeout(20_000);
  const FRAME_CODES: readonly ErrorCode[] = ['E_FRAME_COBS', 'E_FRAME_SHORT', 'E_FRAME_TOO_LONG', 'E_FRAME_CRC', 'E_FRAME_KIND'];
  const frames = [
    encodeFrame(dataFrame(7, new Uint8Array(600).fill(0x11), true)),
    encodeFrame(dataFrame(65_535, Uint8Array.of(0, 0, 0, 1), false)),
    encodeFrame(ackFrame(3, 0xdead_beef)),
    encodeFrame(nakFrame([1, 2, 3, 40_000])),
    encodeFrame(resetFrame(0x1234_5678)),
  ];

  it('cobsDecode: random bytes give bytes or E_FRAME_COBS, never longer than the input', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 2000 }), (b) => {
      let out: Uint8Array | undefined;
      expectTyped('cobsDecode', ['E_FRAME_COBS'], () => (out = cobsDecode(b)));
      if (out) assert.ok(out.length < b.length);
    }), { numRuns: 500 });
  });

  it('decodeFrame: random bytes and mutated frames give a frame or an E_FRAME_* error', () => {
    fc.assert(fc.property(fc.oneof(fc.uint8Array({ maxLength: 1200 }), mutated(frames)), (b) => {
      expectTyped('decodeFrame', FRAME_CODES, () => decodeFrame(b));
    }), { numRuns: 800 });
  });

  it('decodeFrame: 100 MB of input is refused as too long without being decoded', () => {
    const huge = new Uint8Array(100_000_000).fill(0x01);
    const before = rssMb();
    const r = expectTyped('decodeFrame', ['E_FRAME_TOO_LONG'], () => decodeFrame(huge), 16);
    assert.equal(r.code, 'E_FRAME_TOO_LONG');
    assert.ok(rssMb() - before < 50);
  });

  it('FrameParser: a random stream never throws, buffers at most maxEncoded, and counts every delimiter', () => {
    const total = (s: Readonly<ParserStats>): number => s.frames + s.idle + s.cobs + s.short + s.tooLong + s.crc + s.kind + s.flags + s.malformed;
    const stream = fc.array(fc.oneof(
      fc.uint8Array({ maxLength: 400 }),
      fc.uint8Array({ minLength: 100, maxLength: 3000, min: 1 }), // no delimiter: long runs
      mutated(frames),
      fc.constantFrom(...frames),
    ), { maxLength: 30 });
    fc.assert(fc.property(stream, fc.constantFrom(64, 256, 4096), (pieces, maxPayload) => {
      const p = new FrameParser({ maxPayload });
      let zeros = 0;
      for (const piece of pieces) {
        const out = p.push(piece);
        for (const f of out) assert.ok(Object.isFrozen(f));
        assert.ok(p.bufferedBytes <= p.maxEncoded, 'bounded buffering');
        zeros += piece.reduce((n, x) => n + (x === 0 ? 1 : 0), 0);
      }
      // every delimiter ends one counted frame or drop; an over-long run counts once and may swallow one
      const t = total(p.stats);
      assert.ok(t >= zeros - p.stats.tooLong && t <= zeros + p.stats.tooLong, `counted ${t} for ${zeros} delimiters`);
    }), { numRuns: 150 });
  });

  it('FrameParser: 20 MB without a delimiter keeps at most one frame buffered, then resynchronises', () => {
    const p = new FrameParser({ maxPayload: 256 });
    const before = rssMb();
    const junk = new Uint8Array(1_000_000).fill(0x42);
    for (let i = 0; i < 20; i++) p.push(junk);
    assert.ok(p.bufferedBytes <= p.maxEncoded);
    const out = p.push(Buffer.concat([Uint8Array.of(0), frames[2]!]));
    assert.equal(out.length, 1);
    assert.equal(p.stats.tooLong, 1);
    assert.ok(rssMb() - before < 50);
  });
});

// ---------------------------------------------------------------- manifest and config

describe('security: manifest and config validation', function () {
  this.timeout(20_000);

  const hugeValues = fc.oneof(
    fc.constant('x'.repeat(1_000_000)),
    fc.constant(Array.from({ length: 100_000 }, () => 'sensor-v1')),
    fc.constant(Number.MAX_VALUE), fc.constant(-1), fc.constant(2 ** 32), fc.constant(Number.NaN), fc.constant(null),
    fc.constant({ __proto__: { polluted: true } }),
    fc.anything({ maxDepth: 3 }),
  );

  it('parseManifest: any JSON-like value gives a manifest or E_MANIFEST_INVALID', () => {
    fc.assert(fc.property(fc.anything({ maxDepth: 4 }), (v) => {
      expectTyped('parseManifest', ['E_MANIFEST_INVALID'], () => parseManifest(v));
    }), { numRuns: 400 });
  });

  it('parseManifest: a valid manifest with one field replaced (huge strings and arrays included) is refused, or still valid', () => {
    const keys = Object.keys(MANIFEST);
    fc.assert(fc.property(fc.constantFrom(...keys, 'extra'), hugeValues, (key, value) => {
      const r = expectTyped('parseManifest', ['E_MANIFEST_INVALID'], () => parseManifest({ ...MANIFEST, [key]: value }));
      if (key === 'extra') assert.equal(r.ok, false, 'unknown keys are refused (strict object)');
    }), { numRuns: 200 });
  });

  it('parseManifest of mutated manifest JSON text: JSON errors aside, a manifest or E_MANIFEST_INVALID', () => {
    const text = new TextEncoder().encode(JSON.stringify(MANIFEST));
    fc.assert(fc.property(mutated([text]), (b) => {
      let v: unknown;
      try {
        v = JSON.parse(Buffer.from(b).toString('utf8'));
      } catch {
        return; // callers (gateway/store.ts, laptop/cli.ts) wrap JSON errors themselves
      }
      expectTyped('parseManifest', ['E_MANIFEST_INVALID'], () => parseManifest(v));
    }), { numRuns: 300 });
  });

  it('parseConfig: any value gives a config or E_CONFIG', () => {
    fc.assert(fc.property(fc.anything({ maxDepth: 4 }), (v) => {
      expectTyped('parseConfig', ['E_CONFIG'], () => parseConfig(v));
    }), { numRuns: 300 });
  });

  it('parseConfig: one section or key replaced by a hostile value gives a config or E_CONFIG', () => {
    const sections = ['dataDir', 'serial', 'broker', 'uplink', 'rollout', 'log', 'windows', 'security'];
    const keyed = fc.tuple(fc.constantFrom(...sections), fc.option(fc.string({ maxLength: 20 })), hugeValues)
      .map(([section, key, value]) => (key === null ? { [section]: value } : { [section]: { [key]: value } }));
    fc.assert(fc.property(keyed, (input) => {
      expectTyped('parseConfig', ['E_CONFIG'], () => parseConfig(input));
    }), { numRuns: 300 });
  });

  it('loadConfigFile + parseConfig: a file of random bytes or mutated JSON gives a config or E_CONFIG', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fwgate-fuzz-'));
    try {
      const file = join(dir, 'config.json');
      const valid = new TextEncoder().encode(JSON.stringify({ broker: { port: 1883, maxClients: 100 }, rollout: { concurrency: 4 }, log: { level: 'info' } }));
      const inputs = fc.sample(fc.oneof(fc.uint8Array({ maxLength: 400 }), mutated([valid])), { numRuns: 150, seed: 42 });
      for (const b of inputs) {
        await writeFile(file, b);
        await expectTypedAsync('config file', ['E_CONFIG'], async () => parseConfig(await loadConfigFile(file), file));
      }
      await expectTypedAsync('missing file', ['E_CONFIG'], () => loadConfigFile(join(dir, 'nope.json')));
      // a file larger than MAX_CONFIG_FILE_BYTES, and a device that never ends, are refused without reading them whole
      await writeFile(file, `{"dataDir":"${'x'.repeat(MAX_CONFIG_FILE_BYTES)}"}`);
      await assert.rejects(loadConfigFile(file), (err: unknown) => err instanceof FwError && err.code === 'E_CONFIG' && /larger than/.test(err.message));
      await assert.rejects(loadConfigFile('/dev/zero'), (err: unknown) => err instanceof FwError && err.code === 'E_CONFIG');
      await expectTypedAsync('a directory', ['E_CONFIG'], () => loadConfigFile(dir));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
