import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { encodeCbor } from '../../protocol/cbor.ts';
import { isFwError } from '../../protocol/errors.ts';
import {
  ComponentLayouts, RejectCodes, SlotNames, SlotStates, TaskSteps, VerifyCodes, decodeDeviceMessage, decodeGatewayMessage,
} from '../../protocol/ota.ts';
import {
  CampaignPolicies, CloseCodes, DenyCodes, DevicePhases, HaltCodes, Outcomes, ResultCodes, RetryOutcomes, decodeGatewayUplinkMessage,
  decodeLaptopMessage, retryOutcomesOf,
} from '../../protocol/uplink.ts';

/**
 * The values of every enumerated message field are the ones docs/protocol.md lists (§6.3, §6.5,
 * §6.7, §6.14, §7.3, §7.6-§7.8, §7.12): the code's lists equal the document's, each value is
 * accepted on the wire in its field, and a value the document does not list is refused naming it.
 */

const doc = readFileSync(fileURLToPath(new URL('../../docs/protocol.md', import.meta.url)), 'utf8');
const SHA = '1901da1c9f699b48f6b2636e65cbf73abf99d0441ef67f5c540a42f7051dec6f';

/** The first backticked word of each row of the table whose header row starts with `header`. */
function firstColumn(header: string): string[] {
  const lines = doc.split('\n');
  const at = lines.findIndex((l) => l.startsWith(header));
  assert.ok(at >= 0, `docs/protocol.md has a table headed "${header}"`);
  const out: string[] = [];
  for (let i = at + 2; i < lines.length && lines[i]!.startsWith('|'); i++) out.push(/^\| `([^`]+)` \|/.exec(lines[i]!)![1]!);
  return out;
}

/** Each value of `values` accepted in the field, a value outside them refused naming the field. */
function onTheWire(decode: (p: Uint8Array) => unknown, message: (v: string) => Record<string, unknown>, field: string, values: readonly string[]): void {
  for (const v of values) assert.doesNotThrow(() => decode(encodeCbor(message(v))), `${field} = ${v}`);
  for (const v of ['', 'unknown', values[0]!.toUpperCase()]) {
    assert.throws(() => decode(encodeCbor(message(v))), (err: unknown) => {
      assert.ok(isFwError(err, 'E_MESSAGE_INVALID'), String(err));
      assert.match(err.message, new RegExp(`: ${field.replace(/\./g, '\\.')}: `));
      return true;
    }, `${field} = ${JSON.stringify(v)}`);
  }
}

const sorted = (a: readonly string[]): string[] => [...a].sort();

describe('enumerated message fields take the values docs/protocol.md lists', () => {
  it('slot names and states (§6.3)', () => {
    assert.deepEqual(sorted(SlotStates), sorted(firstColumn('| state | meaning |')));
    assert.deepEqual(SlotNames, ['a', 'b']);
    const status = (slot: string, state: string): Record<string, unknown> => ({
      t: 'status', hw: 'h', version: '1.0.0', slot, slots: { a: { state }, b: { state: 'empty' } }, maxChunk: 64, busy: false, trial: false,
    });
    onTheWire(decodeDeviceMessage, (v) => status('a', v), 'slots.a.state', firstColumn('| state | meaning |'));
    onTheWire(decodeDeviceMessage, (v) => status(v, 'empty'), 'slot', ['a', 'b']);
  });

  it('component layouts (§6.3.3): "ab" and "single"', () => {
    assert.deepEqual(ComponentLayouts, ['ab', 'single']);
    onTheWire(decodeDeviceMessage, (layout) => ({
      t: 'status', hw: 'h', version: '1.0.0', slot: 'a', slots: { a: { state: 'empty' }, b: { state: 'empty' } }, maxChunk: 64, busy: false, trial: false,
      components: [{ name: 'app', layout, version: '1.0.0', slot: 'a', slots: { a: { state: 'empty' }, b: { state: 'empty' } }, trial: false }],
    }), 'components.0.layout', ['ab', 'single']);
  });

  it('reject codes (§6.5) and verify codes (§6.7)', () => {
    const reject = firstColumn('| code | the device refuses because |');
    assert.deepEqual(sorted(RejectCodes), sorted(reject));
    onTheWire(decodeDeviceMessage, (code) => ({ t: 'reject', sid: 1, code }), 'code', reject);
    const verify = firstColumn('| code | meaning | the device has |');
    assert.deepEqual(sorted(VerifyCodes), sorted(verify));
    onTheWire(decodeDeviceMessage, (code) => ({ t: 'verified', sid: 1, ok: false, code }), 'code', verify);
  });

  it('task steps (§6.14): download, verify, activate', () => {
    assert.deepEqual(TaskSteps, ['download', 'verify', 'activate']);
    onTheWire(decodeGatewayMessage, (s) => ({ t: 'tasks', tasks: [{ campaign: 'c', name: 'n', version: '1.0.0', sha256: SHA, size: 1, steps: [s] }] }), 'tasks.0.steps.0', TaskSteps);
  });

  it('deny codes (§7.3)', () => {
    const deny = firstColumn('| code | meaning | sent by the v1 gateway |');
    assert.deepEqual(sorted(DenyCodes), sorted(deny));
    onTheWire(decodeGatewayUplinkMessage, (code) => ({ t: 'deny', code, reason: '' }), 'code', deny);
  });

  it('campaign policies (§7.3.5), retry outcomes (§7.12.2), accepted requests (§7.12)', () => {
    assert.deepEqual(CampaignPolicies, ['now', 'window']);
    const manifest = { name: 'n', version: '1.0.0', hw: ['h'], size: 1, crc32: 0, sha256: SHA, chunk: 64 };
    onTheWire(decodeLaptopMessage, (policy) => ({ t: 'rts', manifest, policy }), 'policy', ['now', 'window']);
    assert.deepEqual(RetryOutcomes, ['failed', 'rolled-back', 'expired', 'cancelled', 'skipped']);
    onTheWire(decodeLaptopMessage, (o) => ({ t: 'retry', campaign: 'c', outcomes: [o] }), 'outcomes.0', RetryOutcomes);
    onTheWire(decodeGatewayUplinkMessage, (request) => ({ t: 'accepted', request, campaign: 'c' }), 'request', ['cancel', 'retry', 'resume', 'release-live']);
    onTheWire(decodeLaptopMessage, (role) => ({ t: 'hello', proto: 1, role, agent: '', maxFrame: 64, window: 1, maxMessage: 0 }), 'role', ['laptop', 'gateway']);
  });

  it('retryOutcomesOf: the outcomes of the flags that are set, in table order; none set: failed and rolled back (§7.12.2)', () => {
    assert.deepEqual(retryOutcomesOf({}), ['failed', 'rolled-back']);
    assert.deepEqual(retryOutcomesOf({ failed: false, rolledBack: false, expired: false, cancelled: false, skipped: false }), ['failed', 'rolled-back']);
    const flags = [['failed', 'failed'], ['rolledBack', 'rolled-back'], ['expired', 'expired'], ['cancelled', 'cancelled'], ['skipped', 'skipped']] as const;
    for (const [flag, outcome] of flags) assert.deepEqual(retryOutcomesOf({ [flag]: true }), [outcome], flag);
    assert.deepEqual(retryOutcomesOf({ skipped: true, failed: true, expired: false }), ['failed', 'skipped']);
    assert.deepEqual(retryOutcomesOf({ failed: true, rolledBack: true, expired: true, cancelled: true, skipped: true }), RetryOutcomes);
  });

  it('device phases (§7.6), outcomes and result codes (§7.7), halt and close codes (§7.8)', () => {
    const phases = firstColumn('| phase | meaning |');
    assert.deepEqual(sorted(DevicePhases), sorted(phases));
    onTheWire(decodeGatewayUplinkMessage, (phase) => ({ t: 'progress', campaign: 'c', id: 'd', phase, bytes: 0, total: 0 }), 'phase', phases);
    const outcomes = ['updated', 'failed', 'rolled-back', 'skipped', 'cancelled', 'superseded', 'expired'];
    assert.deepEqual(Outcomes, outcomes);
    const codes = firstColumn('| code | outcome | when the v1 gateway reports it |');
    assert.deepEqual(sorted(ResultCodes), sorted(codes));
    const result = (outcome: string, code: string): Record<string, unknown> => ({ t: 'result', campaign: 'c', id: 'd', outcome, code, from: '', to: '', durationMs: 0, retries: 0 });
    onTheWire(decodeGatewayUplinkMessage, (o) => result(o, 'ok'), 'outcome', outcomes);
    onTheWire(decodeGatewayUplinkMessage, (c) => result('failed', c), 'code', codes);
    assert.deepEqual(HaltCodes, ['rollback-threshold', 'wave-gate']);
    assert.deepEqual(CloseCodes, ['image-unavailable']);
    const complete = { t: 'complete', campaign: 'c', devices: 0, updated: 0, failed: 0, rolledBack: 0, skipped: 0, durationMs: 0 };
    onTheWire(decodeGatewayUplinkMessage, (code) => ({ ...complete, halted: { code, reason: '', rolledBack: 0, finished: 0, thresholdPct: 1 } }), 'halted.code', HaltCodes);
    onTheWire(decodeGatewayUplinkMessage, (code) => ({ ...complete, closed: { code, reason: '' } }), 'closed.code', CloseCodes);
  });
});
