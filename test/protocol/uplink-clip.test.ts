import assert from 'node:assert/strict';
import { MAX_TEXT_LENGTH } from '../../protocol/limits.ts';
import {
  clipReasons, clipText, decodeGatewayUplinkMessage, encodeUplinkMessage, type GatewayUplinkMessage,
} from '../../protocol/uplink.ts';

/**
 * Reason texts on the uplink (docs/protocol.md §7.1.2, §1.6): every `reason` the gateway sends is
 * at most MAX_TEXT_LENGTH characters; a longer one is clipped to its first 255 characters and `…`
 * (256 in all); one of at most 256 is sent unchanged, so a long reason never makes a message invalid.
 */

const SHA = '1901da1c9f699b48f6b2636e65cbf73abf99d0441ef67f5c540a42f7051dec6f';
const IMAGE = { name: 'sensor-fw', version: '1.2.0', sha256: SHA };
const PREFLIGHT = { eligibleOnline: 1, eligibleOffline: 0, notNewer: 0, otherHw: 1, belowFloor: 0, busy: 0, notTargeted: 0 };
/** A text of n characters whose every character differs from the next, so a clip at the wrong place shows. */
const long = (n: number): string => Array.from({ length: n }, (_, i) => String.fromCharCode(0x41 + (i % 26))).join('');
const clipped = (s: string): string => `${s.slice(0, MAX_TEXT_LENGTH - 1)}…`;

/** The message goes on the wire as clipReasons makes it, and the laptop reads it back unchanged. */
function sendable(m: GatewayUplinkMessage): GatewayUplinkMessage {
  const out = clipReasons(m);
  assert.deepStrictEqual(decodeGatewayUplinkMessage(encodeUplinkMessage(out)), out);
  return out;
}

describe('uplink reason texts are clipped to the text limit (docs/protocol.md §7.1.2)', () => {
  it('clipText: at most 256 characters unchanged; longer: the first 255 and "…"', () => {
    for (const n of [0, 1, MAX_TEXT_LENGTH - 1, MAX_TEXT_LENGTH]) assert.equal(clipText(long(n)), long(n));
    for (const n of [MAX_TEXT_LENGTH + 1, MAX_TEXT_LENGTH + 2, 10_000]) {
      const c = clipText(long(n));
      assert.equal(c.length, MAX_TEXT_LENGTH);
      assert.equal(c, `${long(n).slice(0, 255)}\u2026`);
    }
  });

  it('the top-level reason of deny, error, result, accepted and committed: 256 characters kept, 257 clipped', () => {
    const messages = (reason: string): GatewayUplinkMessage[] => [
      { t: 'deny', code: 'internal', reason },
      { t: 'error', code: 'E_INTERNAL', reason },
      { t: 'result', campaign: 'c-1', id: 'dev-1', outcome: 'failed', code: 'rejected', reason, from: '1.0.0', to: '1.2.0', durationMs: 5, retries: 0 },
      { t: 'accepted', request: 'cancel', campaign: 'c-1', reason },
      { t: 'committed', ok: false, sha256: SHA, code: 'E_X', reason },
    ];
    for (const m of messages(long(MAX_TEXT_LENGTH))) assert.equal(clipReasons(m), m, `${m.t}: nothing to clip, the same message`);
    const over = messages(long(MAX_TEXT_LENGTH + 1));
    for (const m of over) assert.deepStrictEqual(sendable(m), { ...m, reason: clipped(long(MAX_TEXT_LENGTH + 1)) }, m.t);
    assert.equal(over[4]!.t === 'committed' && over[4]!.code, 'E_X', 'code is not a reason: kept');
  });

  it('a message without a reason, or whose optional reason is undefined, is returned as is', () => {
    const noReason: GatewayUplinkMessage = { t: 'committed', ok: true, sha256: SHA, campaign: 'c-1' };
    assert.equal(clipReasons(noReason), noReason);
    const undefinedReason = { t: 'accepted', request: 'resume', campaign: 'c-1', reason: undefined } as GatewayUplinkMessage;
    assert.equal(clipReasons(undefinedReason), undefinedReason);
  });

  it('messages with lists or maps but no reason in them (state with queued campaigns, fleet, totals) are returned as is', () => {
    const state: GatewayUplinkMessage = { t: 'state', running: false, queued: [{ campaign: 'c-2', image: IMAGE, hw: ['sensor-v1'], nextWindowAt: 1 }] };
    assert.equal(sendable(state), state);
    const fleet: GatewayUplinkMessage = { t: 'fleet', now: 1, devices: [{ id: 'd1', hw: 'h', version: '1.0.0', online: true, lastCheckIn: 1 }] };
    assert.equal(sendable(fleet), fleet);
    const totals: GatewayUplinkMessage = { t: 'totals', campaign: 'c-1', devices: 1, done: 0, kib: 0, totalKib: 1, bps: 0 };
    assert.equal(sendable(totals), totals);
  });

  it('committed.queued.reason: clipped alone, or together with a long committed.reason; kept at 256', () => {
    const base = { t: 'committed' as const, ok: true, sha256: SHA, campaign: 'c-1' };
    const kept: GatewayUplinkMessage = { ...base, queued: { reason: long(MAX_TEXT_LENGTH), nextWindowAt: 1 } };
    assert.equal(clipReasons(kept), kept);
    assert.deepStrictEqual(sendable({ ...base, queued: { reason: long(300), nextWindowAt: 1 } }), { ...base, queued: { reason: clipped(long(300)), nextWindowAt: 1 } });
    assert.deepStrictEqual(sendable({ ...base, reason: long(400), queued: { reason: long(300) } }), { ...base, reason: clipped(long(400)), queued: { reason: clipped(long(300)) } });
    // a long committed.reason without queued
    assert.deepStrictEqual(sendable({ ...base, reason: long(400) }), { ...base, reason: clipped(long(400)) });
  });

  it('order.excluded[].reason: the long ones clipped, the others kept; none long: the same message', () => {
    const excluded = [
      { id: 'd1', code: 'offline' as const, reason: 'device is offline' },
      { id: 'd2', code: 'incompatible-hw' as const, reason: long(1200), version: '1.0.0' },
      { id: 'd3', code: 'not-newer' as const, reason: long(MAX_TEXT_LENGTH) },
    ];
    const order: GatewayUplinkMessage = { t: 'order', campaign: 'c-1', image: IMAGE, devices: [], excluded };
    assert.deepStrictEqual(sendable(order), { ...order, excluded: [excluded[0], { ...excluded[1], reason: clipped(long(1200)) }, excluded[2]] });
    const fine: GatewayUplinkMessage = { ...order, excluded: [excluded[0]!, excluded[2]!] };
    assert.equal(clipReasons(fine), fine);
  });

  it('complete.halted.reason: clipped when long, kept at 256', () => {
    const complete = (reason: string): GatewayUplinkMessage => ({
      t: 'complete', campaign: 'c-1', devices: 3, updated: 1, failed: 0, rolledBack: 2, skipped: 0, durationMs: 10,
      halted: { code: 'rollback-threshold', reason, rolledBack: 2, finished: 3, thresholdPct: 20 },
    });
    assert.deepStrictEqual(sendable(complete(long(500))), complete(clipped(long(500))));
    const kept = complete(long(MAX_TEXT_LENGTH));
    assert.equal(clipReasons(kept), kept);
    const plain: GatewayUplinkMessage = { t: 'complete', campaign: 'c-1', devices: 0, updated: 0, failed: 0, rolledBack: 0, skipped: 0, durationMs: 0 };
    assert.equal(clipReasons(plain), plain);
  });

  it('planned.excluded[].reason: clipped like an order\'s (a planner reason names every hardware model of the image)', () => {
    // planner: `hardware ${hw} is not in the image's list (${manifest.hw.join(', ')})`, up to 16 models of 64 characters
    const hw = Array.from({ length: 16 }, (_, i) => `model-${i}-${'x'.repeat(56)}`);
    const reason = `hardware other-board is not in the image's list (${hw.join(', ')})`;
    assert.ok(reason.length > MAX_TEXT_LENGTH);
    const excluded = [{ id: 'd2', code: 'incompatible-hw' as const, reason, version: '1.0.0' }, { id: 'd3', code: 'offline' as const, reason: 'device is offline' }];
    const planned: GatewayUplinkMessage = { t: 'planned', image: IMAGE, devices: [], excluded, preflight: PREFLIGHT };
    assert.deepStrictEqual(sendable(planned), { ...planned, excluded: [{ ...excluded[0]!, reason: clipped(reason) }, excluded[1]!] });
    const fine: GatewayUplinkMessage = { ...planned, excluded: [excluded[1]!] };
    assert.equal(clipReasons(fine), fine);
  });

  it('waiting.devices[].reason: clipped (a busy device\'s reason carries the device\'s own reject reason, up to 256)', () => {
    const reason = `device is busy: ${long(MAX_TEXT_LENGTH)}`;
    const devices = [{ id: 'd1', reason }, { id: 'd2', reason: 'offline: waits for its check-in' }];
    const waiting: GatewayUplinkMessage = { t: 'waiting', campaign: 'c-1', pending: 2, devices };
    assert.deepStrictEqual(sendable(waiting), { ...waiting, devices: [{ id: 'd1', reason: clipped(reason) }, devices[1]!] });
    const fine: GatewayUplinkMessage = { ...waiting, devices: [devices[1]!, { id: 'd3', reason: long(MAX_TEXT_LENGTH) }] };
    assert.equal(clipReasons(fine), fine);
  });
});
