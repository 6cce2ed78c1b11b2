import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { encodeCbor } from '../../protocol/cbor.ts';
import { MAX_ACK_MISSING, MAX_CHUNK_SIZE, MAX_OTA_MESSAGE } from '../../protocol/limits.ts';
import {
  decodeDeviceMessage, decodeGatewayMessage, deviceMessage, encodeDeviceMessage, encodeGatewayMessage, gatewayMessage,
} from '../../protocol/ota.ts';
import { decodeMessage } from '../../protocol/schema.ts';
import { outcome, plain } from '../helpers/decode-outcome.ts';

// `chunk` and `probe` (gateway -> device), `ack` and `probed` (device -> gateway) are decoded the short way in the
// reference encoding (docs/protocol.md §1.4, §6.6); they must accept and refuse exactly what the
// generic decoder (cbor-x + schema) does, for every input.

const genericDown = (p: Uint8Array): unknown => decodeMessage(gatewayMessage, p, MAX_OTA_MESSAGE, 'gateway message');
const genericUp = (p: Uint8Array): unknown => decodeMessage(deviceMessage, p, MAX_OTA_MESSAGE, 'device message');

const u32 = fc.oneof(fc.constantFrom(0, 23, 24, 255, 256, 65_535, 65_536, 0xffff_ffff), fc.nat({ max: 0xffff_ffff }));
const chunks = fc.record({
  sid: u32,
  off: u32,
  data: fc.oneof(fc.uint8Array({ minLength: 1, maxLength: 30 }), fc.uint8Array({ minLength: 250, maxLength: 300 }), fc.uint8Array({ minLength: 4090, maxLength: 4100 })),
  crc: u32,
});
const acks = fc.record({ sid: u32, next: u32, missing: fc.array(u32, { maxLength: 40 }) });

/** A flipped bit, a cut or an appended byte somewhere in p. */
const damage = fc.tuple(fc.nat(), fc.nat(7), fc.constantFrom('flip', 'cut', 'append'), fc.integer({ min: 0, max: 255 }));
function damaged(p: Uint8Array, [at, bit, how, extra]: [number, number, string, number]): Uint8Array {
  const i = at % p.length;
  if (how === 'cut') return p.subarray(0, i);
  if (how === 'append') return Buffer.concat([p, Buffer.of(extra)]);
  const q = Buffer.from(p);
  q[i]! ^= 1 << bit;
  return q;
}

function docVector(name: string): { value: Record<string, unknown>; bytes: Buffer } {
  const doc = readFileSync(fileURLToPath(new URL('../../docs/protocol.md', import.meta.url)), 'utf8');
  const m = new RegExp(`\`\`\`vector name=${name} kind=ota-(?:up|down)\\nvalue: (.*)\\nhex: ([0-9a-f]+)\\n\`\`\``).exec(doc);
  assert.ok(m, `docs/protocol.md has the ${name} vector`);
  return { value: JSON.parse(m[1]!) as Record<string, unknown>, bytes: Buffer.from(m[2]!, 'hex') };
}

describe('OTA `chunk` and `ack` decode (§6.6): the short path for the reference encoding', () => {
  it('decodes the down-chunk, up-ack-missing and up-ack-complete vectors of §10.6', () => {
    const chunk = docVector('down-chunk');
    const c = decodeGatewayMessage(chunk.bytes);
    assert.ok(c.t === 'chunk');
    assert.deepEqual({ ...plain(c) as object }, { ...chunk.value, data: (chunk.value.data as { $bytes: string }).$bytes });
    assert.equal(c.data.buffer, chunk.bytes.buffer, 'the short path was taken: data is a view of the payload');
    for (const name of ['up-ack-missing', 'up-ack-complete']) {
      const v = docVector(name);
      assert.deepEqual(decodeDeviceMessage(v.bytes), v.value);
      assert.deepEqual(outcome(decodeDeviceMessage, v.bytes), outcome(genericUp, v.bytes));
    }
  });

  it('decodes every chunk message as the generic decoder does; the data is a view of the payload', () => {
    fc.assert(fc.property(chunks, (m) => {
      const p = encodeGatewayMessage({ t: 'chunk', ...m });
      const d = decodeGatewayMessage(p);
      assert.ok(d.t === 'chunk');
      assert.deepEqual(Object.keys(d), ['t', 'sid', 'off', 'data', 'crc']);
      assert.equal(d.data.buffer, p.buffer, 'a view of the payload');
      assert.deepEqual(outcome(decodeGatewayMessage, p), outcome(genericDown, p));
    }), { numRuns: 300 });
  });

  it('decodes every ack as the generic decoder does', () => {
    fc.assert(fc.property(acks, (m) => {
      const p = encodeDeviceMessage({ t: 'ack', ...m });
      assert.deepEqual(decodeDeviceMessage(p), { t: 'ack', ...m });
      assert.deepEqual(outcome(decodeDeviceMessage, p), outcome(genericUp, p));
    }), { numRuns: 300 });
  });

  it('any flipped bit, cut or extra byte: the same value or the same error as the generic decoder', () => {
    fc.assert(fc.property(chunks, damage, (m, d) => {
      const q = damaged(encodeGatewayMessage({ t: 'chunk', ...m }), d);
      assert.deepEqual(outcome(decodeGatewayMessage, q), outcome(genericDown, q));
    }), { numRuns: 3000 });
    fc.assert(fc.property(acks, damage, (m, d) => {
      const q = damaged(encodeDeviceMessage({ t: 'ack', ...m }), d);
      assert.deepEqual(outcome(decodeDeviceMessage, q), outcome(genericUp, q));
    }), { numRuns: 3000 });
  });

  it('other encodings and out-of-bounds values take the generic path and get its answer', () => {
    const data = Uint8Array.of(1, 2, 3);
    const down: Uint8Array[] = [
      encodeCbor({ sid: 1, t: 'chunk', off: 0, data, crc: 5 }), // another key order
      encodeCbor({ t: 'chunk', sid: 1, off: 0, data, crc: 5, note: 'x' }), // an extra key (a5 -> a6)
      encodeCbor({ t: 'chunk', sid: 1, off: 0, data: new Uint8Array(0), crc: 5 }), // empty data: refused
      encodeCbor({ t: 'chunk', sid: 1, off: 0, data: new Uint8Array(MAX_CHUNK_SIZE + 1), crc: 5 }), // too long: refused
      encodeCbor({ t: 'chunk', sid: 1, off: 2 ** 32, data, crc: 5 }), // off beyond u32: refused
      Buffer.from('a56174656368756e6b637369641801636f6666006464617461430102036363726305', 'hex'), // sid 1 as 18 01: not the short path's, the generic decoder reads it
    ];
    for (const p of down) assert.deepEqual(outcome(decodeGatewayMessage, p), outcome(genericDown, p), Buffer.from(p).toString('hex'));
    assert.deepEqual(outcome(decodeGatewayMessage, down[0]!), { ok: { sid: 1, t: 'chunk', off: 0, data: '010203', crc: 5 } });
    assert.match(String((outcome(decodeGatewayMessage, down[2]!) as { message?: string }).message), /data/);
    assert.deepEqual(outcome(decodeGatewayMessage, down[5]!), { ok: { t: 'chunk', sid: 1, off: 0, data: '010203', crc: 5 } });
    const up: Uint8Array[] = [
      encodeCbor({ t: 'ack', next: 4, sid: 1, missing: [] }),
      encodeCbor({ t: 'ack', sid: 1, next: 4, missing: Array.from({ length: MAX_ACK_MISSING + 1 }, (_, i) => i) }), // too many: refused
      encodeCbor({ t: 'ack', sid: 1, next: 4, missing: [-1] }), // not a u32: refused
      encodeCbor({ t: 'ack', sid: 1, next: 4, missing: Array.from({ length: MAX_ACK_MISSING }, (_, i) => i) }), // the most: accepted
    ];
    for (const p of up) assert.deepEqual(outcome(decodeDeviceMessage, p), outcome(genericUp, p), Buffer.from(p).toString('hex'));
    assert.equal((outcome(decodeDeviceMessage, up[1]!) as { code?: string }).code, 'E_MESSAGE_INVALID');
    assert.ok('ok' in (outcome(decodeDeviceMessage, up[3]!) as object));
  });

  it('probe and probed (§6.4.3): every message, flipped bit, cut or extra byte as the generic decoder; probe data a view', () => {
    const probes = fc.record({ n: u32, data: fc.oneof(fc.uint8Array({ maxLength: 30 }), fc.uint8Array({ minLength: 4090, maxLength: 4100 })) });
    const probeds = fc.record({ n: u32, size: u32 });
    fc.assert(fc.property(probes, (m) => {
      const p = encodeGatewayMessage({ t: 'probe', ...m });
      const d = decodeGatewayMessage(p);
      assert.ok(d.t === 'probe');
      assert.deepEqual(Object.keys(d), ['t', 'n', 'data']);
      if (m.data.length > 0) assert.equal(d.data.buffer, p.buffer, 'a view of the payload');
      assert.deepEqual(d, genericDown(p));
    }), { numRuns: 300 });
    fc.assert(fc.property(probeds, (m) => {
      const p = encodeDeviceMessage({ t: 'probed', ...m });
      assert.deepEqual(decodeDeviceMessage(p), { t: 'probed', ...m });
      assert.deepEqual(decodeDeviceMessage(p), genericUp(p));
    }), { numRuns: 300 });
    fc.assert(fc.property(probes, damage, (m, d) => {
      const q = damaged(encodeGatewayMessage({ t: 'probe', ...m }), d);
      assert.deepEqual(outcome(decodeGatewayMessage, q), outcome(genericDown, q));
    }), { numRuns: 3000 });
    fc.assert(fc.property(probeds, damage, (m, d) => {
      const q = damaged(encodeDeviceMessage({ t: 'probed', ...m }), d);
      assert.deepEqual(outcome(decodeDeviceMessage, q), outcome(genericUp, q));
    }), { numRuns: 3000 });
    const other: [(p: Uint8Array) => unknown, (p: Uint8Array) => unknown, Uint8Array][] = [
      [decodeGatewayMessage, genericDown, encodeCbor({ n: 1, t: 'probe', data: Uint8Array.of(1) })], // another key order
      [decodeGatewayMessage, genericDown, encodeCbor({ t: 'probe', n: 1, data: new Uint8Array(MAX_CHUNK_SIZE + 1) })], // too long: refused
      [decodeGatewayMessage, genericDown, encodeCbor({ t: 'probe', n: 2 ** 32, data: Uint8Array.of(1) })], // n beyond u32: refused
      [decodeDeviceMessage, genericUp, encodeCbor({ t: 'probed', size: 1, n: 1 })],
      [decodeDeviceMessage, genericUp, encodeCbor({ t: 'probed', n: 1, size: -1 })], // not a u32: refused
    ];
    for (const [fast, generic, p] of other) assert.deepEqual(outcome(fast, p), outcome(generic, p), Buffer.from(p).toString('hex'));
  });
});
