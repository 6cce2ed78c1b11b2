import assert from 'node:assert/strict';
import { encodeCbor } from '../../protocol/cbor.ts';
import { isFwError } from '../../protocol/errors.ts';
import { MAX_COMPONENTS, MAX_DEVICE_ID_LENGTH, MAX_FRAME_PAYLOAD, MAX_HW_MODELS, MAX_NAME_LENGTH, MAX_ORDER_ENTRIES, MAX_TEXT_LENGTH } from '../../protocol/limits.ts';
import {
  DenyCodes, DevicePhases, HaltCodes, MAX_QUEUED_CAMPAIGNS, Outcomes, ResultCodes, decodeGatewayUplinkMessage,
} from '../../protocol/uplink.ts';
import { ABSENT, bad, chars, checkEdges, ok, u32Edges, type Edge } from '../helpers/field-edges.ts';

/**
 * Every field of the gateway's uplink messages (docs/protocol.md §7.3-§7.12) at its edges: a valid
 * message with one field at its bound (accepted) or one past it, of the wrong type or missing
 * (refused with E_MESSAGE_INVALID naming the field, §1.5 step 5). Limits from §1.6; uplink
 * version fields are reports, text of at most 64 characters (§1.7.3); times are epoch ms (§7.4.5).
 */

const decode = decodeGatewayUplinkMessage;
const SHA = '1901da1c9f699b48f6b2636e65cbf73abf99d0441ef67f5c540a42f7051dec6f';
const IMAGE = { name: 'sensor-fw', version: '1.2.0', sha256: SHA };
const AT = Date.parse('2026-11-22T02:00:00Z');

function req(path: string, optional: boolean): Edge {
  return optional ? ok(path, ABSENT) : bad(path, ABSENT);
}
/** A whole count: -1 and a fraction refused, 0 and a large value accepted. */
function countEdges(path: string, optional = false): Edge[] {
  return [bad(path, -1), ok(path, 0), ok(path, 1), ok(path, 2 ** 40), bad(path, 0.5), bad(path, '1'), req(path, optional)];
}
/** A *number* (§1.4.6): any value from 0, whole or not. */
function numberEdges(path: string, optional = false): Edge[] {
  return [bad(path, -1), bad(path, -0.5), ok(path, 0), ok(path, 0.5), ok(path, 1e12), bad(path, '1'), req(path, optional)];
}
function epochEdges(path: string, optional = false): Edge[] {
  return [bad(path, -1), ok(path, 0), ok(path, AT), ok(path, Number.MAX_SAFE_INTEGER), bad(path, 2 ** 53), bad(path, AT + 0.5), req(path, optional)];
}
function textEdges(path: string, optional = false): Edge[] {
  return [ok(path, ''), ok(path, chars(MAX_TEXT_LENGTH)), bad(path, chars(MAX_TEXT_LENGTH + 1)), bad(path, 1), req(path, optional)];
}
/** A name of 1..`max` characters: campaign id, device id, hardware model. */
function nameEdges(path: string, optional = false, max = MAX_NAME_LENGTH): Edge[] {
  return [bad(path, ''), ok(path, 'n'), ok(path, chars(max)), bad(path, chars(max + 1)), req(path, optional)];
}
/** An uplink version (§1.7.3): any text of at most 64 characters, empty included. */
function versionEdges(path: string, optional = false): Edge[] {
  return [ok(path, ''), ok(path, 'not-semver'), ok(path, chars(MAX_NAME_LENGTH)), bad(path, chars(MAX_NAME_LENGTH + 1)), bad(path, 1), req(path, optional)];
}
function shaEdges(path: string): Edge[] {
  return [bad(path, SHA.toUpperCase()), bad(path, SHA.slice(2)), bad(path, ABSENT)];
}
function enumEdges(path: string, values: readonly string[], optional = false): Edge[] {
  return [...values.map((v) => ok(path, v)), bad(path, 'nope'), req(path, optional)];
}
function imageEdges(path: string): Edge[] {
  return [ok(`${path}.name`, ''), ok(`${path}.name`, chars(MAX_NAME_LENGTH)), bad(`${path}.name`, chars(MAX_NAME_LENGTH + 1)), ...versionEdges(`${path}.version`), ...shaEdges(`${path}.sha256`)];
}
/** Device ids (1..64) as `count` entries. */
const ids = (n: number): string[] => Array.from({ length: n }, (_, i) => `d${i}`);
const componentNames = (n: number): string[] => Array.from({ length: n }, (_, i) => `c${i}`);

const preflight = { eligibleOnline: 3, eligibleOffline: 1, notNewer: 0, otherHw: 0, belowFloor: 0, busy: 1, notTargeted: 0, unmetDependency: 0, confirmedSeq: 7 };
function preflightEdges(path: string): Edge[] {
  return [
    ...['eligibleOnline', 'eligibleOffline', 'notNewer', 'otherHw', 'belowFloor', 'busy', 'notTargeted'].flatMap((k) => countEdges(`${path}.${k}`)),
    ...countEdges(`${path}.unmetDependency`, true), ...u32Edges(`${path}.confirmedSeq`, true),
  ];
}
const orderEntry = { id: 'dev-001', rank: 1, from: '1.0.0', rttMs: 12.5, bps: 250_000, etaMs: 51, startMs: 0, wave: 1, components: [{ name: 'app', version: '1.1.0', size: 200, via: 'r' }], savedBytes: 100 };
const excludedEntry = { id: 'dev-003', code: 'not-newer', reason: 'runs 1.2.0', version: '1.2.0' };
function orderEntryEdges(p: string): Edge[] {
  return [
    ...nameEdges(`${p}.id`, false, MAX_DEVICE_ID_LENGTH), bad(`${p}.rank`, 0), ok(`${p}.rank`, 1), ok(`${p}.rank`, 2), bad(`${p}.rank`, 1.5), bad(`${p}.rank`, ABSENT),
    ...versionEdges(`${p}.from`), ...numberEdges(`${p}.rttMs`, true), ...numberEdges(`${p}.bps`, true), ...numberEdges(`${p}.etaMs`, true), ...numberEdges(`${p}.startMs`, true),
    bad(`${p}.wave`, 0), ok(`${p}.wave`, 1), ok(`${p}.wave`, 2), ok(`${p}.wave`, 16), bad(`${p}.wave`, 17), ok(`${p}.wave`, ABSENT),
    ok(`${p}.components`, ABSENT), bad(`${p}.components`, []),
    ok(`${p}.components`, componentNames(MAX_COMPONENTS).map((name) => ({ name, version: '1.0.0', size: 1 }))),
    bad(`${p}.components`, componentNames(MAX_COMPONENTS + 1).map((name) => ({ name, version: '1.0.0', size: 1 }))),
    bad(`${p}.components.0.name`, 'App'), ...versionEdges(`${p}.components.0.version`), ...u32Edges(`${p}.components.0.size`), ...textEdges(`${p}.components.0.via`, true),
    ...u32Edges(`${p}.savedBytes`, true),
  ];
}
function excludedEdges(p: string): Edge[] {
  return [...nameEdges(`${p}.id`, false, MAX_DEVICE_ID_LENGTH), ...enumEdges(`${p}.code`, ResultCodes), ...textEdges(`${p}.reason`), ...versionEdges(`${p}.version`, true)];
}
const entries = (n: number, e: Record<string, unknown>): Record<string, unknown>[] => ids(n).map((id) => ({ ...e, id }));

describe('gateway uplink messages at their edges (docs/protocol.md §7.3-§7.12, §1.6)', () => {
  it('grant (§7.3): sha256, offset, chunk 1..16384, stored, preflight', () => {
    checkEdges(decode, { t: 'grant', sha256: SHA, offset: 0, chunk: 4064, stored: true, preflight }, [
      ...shaEdges('sha256'), ...u32Edges('offset'),
      bad('chunk', 0), ok('chunk', 1), ok('chunk', 2), ok('chunk', MAX_FRAME_PAYLOAD), bad('chunk', MAX_FRAME_PAYLOAD + 1), bad('chunk', ABSENT),
      ok('stored', ABSENT), bad('stored', false), ok('preflight', ABSENT), ...preflightEdges('preflight'),
    ]);
  });

  it('release-grant (§7.3.9): digest, chunk, send and stored of at most 8 components, preflight', () => {
    const send = (n: number): Record<string, unknown>[] => componentNames(n).map((component) => ({ component, sha256: SHA, size: 200, offset: 0 }));
    checkEdges(decode, { t: 'release-grant', digest: SHA, chunk: 4064, send: send(1), stored: ['net'], preflight }, [
      ...shaEdges('digest'), bad('chunk', 0), ok('chunk', 1), ok('chunk', MAX_FRAME_PAYLOAD), bad('chunk', MAX_FRAME_PAYLOAD + 1),
      ok('send', []), ok('send', send(MAX_COMPONENTS)), bad('send', send(MAX_COMPONENTS + 1)), bad('send', ABSENT),
      bad('send.0.component', 'App'), ...shaEdges('send.0.sha256'), ...u32Edges('send.0.size'), ...u32Edges('send.0.offset'),
      ok('stored', []), ok('stored', componentNames(MAX_COMPONENTS)), bad('stored', componentNames(MAX_COMPONENTS + 1)), bad('stored', ['Net'], { names: 'stored.0' }),
      ok('preflight', ABSENT), bad('preflight.busy', -1),
    ]);
  });

  it('deny (§7.3): every code, a reason of at most 256 characters; the error says it is a gateway message', () => {
    checkEdges(decode, { t: 'deny', code: 'busy', reason: 'an upload is in progress' }, [...enumEdges('code', DenyCodes), ...textEdges('reason')]);
    assert.throws(() => decode(encodeCbor({ t: 'deny', code: 'busy' })), (err: unknown) => isFwError(err, 'E_MESSAGE_INVALID') && err.message.startsWith('gateway message "deny": reason: '));
  });

  it('committed (§7.4): ok, sha256, code, reason, campaign, queued, supersedes, deferred', () => {
    checkEdges(decode, {
      t: 'committed', ok: true, sha256: SHA, code: 'E_X', reason: 'r', campaign: 'c-0a1b2c3d',
      queued: { reason: 'waits for a window', nextWindowAt: AT, expiresAt: AT }, supersedes: 'c-9f8e7d6c', deferred: true,
    }, [
      bad('ok', ABSENT), bad('ok', 'true'), ...shaEdges('sha256'), ...textEdges('code', true), ...textEdges('reason', true), ...nameEdges('campaign', true),
      ok('queued', ABSENT), ...textEdges('queued.reason'), ...epochEdges('queued.nextWindowAt', true), ...epochEdges('queued.expiresAt', true),
      ...nameEdges('supersedes', true), ok('deferred', ABSENT), bad('deferred', false),
    ]);
  });

  it(`order (§7.5): campaign, image, devices and excluded of at most ${MAX_ORDER_ENTRIES} together, excludedMore`, () => {
    checkEdges(decode, { t: 'order', campaign: 'c-0a1b2c3d', image: IMAGE, devices: [orderEntry], excluded: [excludedEntry], excludedMore: 2 }, [
      ...nameEdges('campaign'), ...imageEdges('image'), bad('image', ABSENT),
      ok('devices', []), bad('devices', ABSENT), ...orderEntryEdges('devices.0'), ok('excluded', []), bad('excluded', ABSENT), ...excludedEdges('excluded.0'),
      ...countEdges('excludedMore', true),
    ]);
    const half = MAX_ORDER_ENTRIES / 2;
    const order = (devices: number, excluded: number): Record<string, unknown> => ({
      t: 'order', campaign: 'c-1', image: IMAGE, devices: entries(devices, { rank: 1, from: '' }), excluded: entries(excluded, { code: 'offline', reason: '' }),
    });
    const sum = /devices \+ excluded must be at most 10000 entries/;
    checkEdges(decode, order(half, half), [
      bad('excluded', entries(half + 1, { code: 'offline', reason: '' }), { says: sum }),
      bad('devices', entries(half + 1, { rank: 1, from: '' }), { names: 'excluded', says: sum }),
    ]);
    checkEdges(decode, order(MAX_ORDER_ENTRIES, 0), [bad('devices', entries(MAX_ORDER_ENTRIES + 1, { rank: 1, from: '' }))]);
    checkEdges(decode, order(0, MAX_ORDER_ENTRIES), [bad('excluded', entries(MAX_ORDER_ENTRIES + 1, { code: 'offline', reason: '' })), bad('devices', entries(1, { rank: 1, from: '' }), { names: 'excluded', says: sum })]);
  });

  it('progress and totals (§7.6): campaign, id, phase, bytes, total, bps, etaMs; device counts, kib', () => {
    checkEdges(decode, { t: 'progress', campaign: 'c-1', id: 'dev-001', phase: 'transferring', bytes: 100, total: 200, bps: 1000, etaMs: 5 }, [
      ...nameEdges('campaign'), ...nameEdges('id', false, MAX_DEVICE_ID_LENGTH), ...enumEdges('phase', DevicePhases),
      ...u32Edges('bytes'), ...u32Edges('total'), ...numberEdges('bps', true), ...numberEdges('etaMs', true),
    ]);
    checkEdges(decode, { t: 'totals', campaign: 'c-1', devices: 40, done: 12, kib: 14_848, totalKib: 40_960, bps: 393_216, etaMs: 96_500 }, [
      ...nameEdges('campaign'), ...countEdges('devices'), ...countEdges('done'), ...u32Edges('kib'), ...u32Edges('totalKib'), ...numberEdges('bps'), ...numberEdges('etaMs', true),
    ]);
  });

  it('result (§7.7): campaign, id, outcome, code, reason, from, to, durationMs, retries, components, kept', () => {
    checkEdges(decode, {
      t: 'result', campaign: 'c-1', id: 'dev-001', outcome: 'updated', code: 'ok', reason: 'r', from: '1.0.0', to: '1.2.0', durationMs: 1234.5, retries: 0,
      components: ['app', 'net'], kept: ['agent'],
    }, [
      ...nameEdges('campaign'), ...nameEdges('id', false, MAX_DEVICE_ID_LENGTH), ...enumEdges('outcome', Outcomes), ...enumEdges('code', ResultCodes),
      ...textEdges('reason', true), ...versionEdges('from'), ...versionEdges('to'), ...numberEdges('durationMs'), ...countEdges('retries'),
      ok('components', ABSENT), bad('components', []), ok('components', componentNames(MAX_COMPONENTS)), bad('components', componentNames(MAX_COMPONENTS + 1)),
      bad('components', ['App'], { names: 'components.0' }),
      ok('kept', ABSENT), bad('kept', []), ok('kept', componentNames(MAX_COMPONENTS)), bad('kept', componentNames(MAX_COMPONENTS + 1)),
    ]);
  });

  it('complete (§7.8): counts, durationMs, halted, closed, component counts', () => {
    checkEdges(decode, {
      t: 'complete', campaign: 'c-1', devices: 3, updated: 1, failed: 0, rolledBack: 1, skipped: 1, durationMs: 9120,
      halted: { code: 'rollback-threshold', reason: 'r', rolledBack: 1, finished: 2, thresholdPct: 20 },
      cancelled: 0, superseded: 0, expired: 0, closed: { code: 'image-unavailable', reason: 'gone' }, componentsSent: 2, componentsSkipped: 1,
    }, [
      ...nameEdges('campaign'), ...['devices', 'updated', 'failed', 'rolledBack', 'skipped'].flatMap((k) => countEdges(k)), ...numberEdges('durationMs'),
      ok('halted', ABSENT), ...enumEdges('halted.code', HaltCodes), ...textEdges('halted.reason'), ...countEdges('halted.rolledBack'), ...countEdges('halted.finished'),
      bad('halted.thresholdPct', 0), ok('halted.thresholdPct', 1), ok('halted.thresholdPct', 2), ok('halted.thresholdPct', 100), bad('halted.thresholdPct', 101), bad('halted.thresholdPct', ABSENT),
      ...countEdges('cancelled', true), ...countEdges('superseded', true), ...countEdges('expired', true),
      ok('closed', ABSENT), bad('closed.code', 'other'), ...textEdges('closed.reason'),
      ...countEdges('componentsSent', true), ...countEdges('componentsSkipped', true),
    ]);
  });

  it('error (§7.9): code and reason, texts of at most 256 characters', () => {
    checkEdges(decode, { t: 'error', code: 'E_MESSAGE_INVALID', reason: 'r' }, [...textEdges('code'), ...textEdges('reason')]);
  });

  it(`state (§7.11): running, campaign, image, queued of at most ${MAX_QUEUED_CAMPAIGNS}`, () => {
    const queued = { campaign: 'c-2', image: IMAGE, hw: ['sensor-v1'], nextWindowAt: AT };
    const hw = (n: number): string[] => Array.from({ length: n }, (_, i) => `hw-${i}`);
    checkEdges(decode, { t: 'state', running: true, campaign: 'c-1', image: IMAGE, queued: [queued] }, [
      bad('running', ABSENT), bad('running', 0), ...nameEdges('campaign', true), ok('image', ABSENT), ...imageEdges('image'),
      ok('queued', ABSENT), ok('queued', []), ok('queued', entries(MAX_QUEUED_CAMPAIGNS, queued).map(({ id, ...q }) => ({ ...q, campaign: `c-${String(id)}` }))),
      bad('queued', entries(MAX_QUEUED_CAMPAIGNS + 1, queued).map(({ id, ...q }) => ({ ...q, campaign: `c-${String(id)}` }))),
      ...nameEdges('queued.0.campaign'), ...imageEdges('queued.0.image'),
      ok('queued.0.hw', []), ok('queued.0.hw', hw(MAX_HW_MODELS)), bad('queued.0.hw', hw(MAX_HW_MODELS + 1)),
      bad('queued.0.hw', [''], { names: 'queued.0.hw.0' }), bad('queued.0.hw', [chars(MAX_NAME_LENGTH + 1)], { names: 'queued.0.hw.0' }),
      ...epochEdges('queued.0.nextWindowAt', true),
    ]);
  });

  it('fleet (§7.11.4): now, devices (id, hw, version, online, lastCheckIn, suspect, lastResult), more', () => {
    const entry = {
      id: 'dev-001', hw: 'sensor-v1', version: '1.2.0', online: true, lastCheckIn: AT, suspect: true,
      lastResult: { campaign: 'c-1', outcome: 'updated', code: 'ok', version: '1.2.0', at: AT },
    };
    const small = { hw: 'h', version: '', online: false, lastCheckIn: 0 };
    checkEdges(decode, { t: 'fleet', now: AT, devices: [entry], more: 0 }, [
      ...epochEdges('now'), ok('devices', []), ok('devices', entries(MAX_ORDER_ENTRIES, small)), bad('devices', entries(MAX_ORDER_ENTRIES + 1, small)),
      ...nameEdges('devices.0.id', false, MAX_DEVICE_ID_LENGTH), ...nameEdges('devices.0.hw'), ...versionEdges('devices.0.version'),
      bad('devices.0.online', ABSENT), ...epochEdges('devices.0.lastCheckIn'), ok('devices.0.suspect', ABSENT), bad('devices.0.suspect', false),
      ok('devices.0.lastResult', ABSENT), ...nameEdges('devices.0.lastResult.campaign'), ...enumEdges('devices.0.lastResult.outcome', Outcomes),
      ...enumEdges('devices.0.lastResult.code', ResultCodes), ...versionEdges('devices.0.lastResult.version'), ...epochEdges('devices.0.lastResult.at'),
      ...countEdges('more', true),
    ]);
  });

  it('waiting (§7.6.4): campaign, pending, devices (id, reason), expiresAt, pausedBeforeWave', () => {
    checkEdges(decode, { t: 'waiting', campaign: 'c-1', pending: 1, devices: [{ id: 'dev-001', reason: 'offline' }], expiresAt: AT, pausedBeforeWave: 2 }, [
      ...nameEdges('campaign'), ...countEdges('pending'),
      ok('devices', []), ok('devices', entries(MAX_ORDER_ENTRIES, { reason: '' })), bad('devices', entries(MAX_ORDER_ENTRIES + 1, { reason: '' })), bad('devices', ABSENT),
      ...nameEdges('devices.0.id', false, MAX_DEVICE_ID_LENGTH), ...textEdges('devices.0.reason'), ...epochEdges('expiresAt', true),
      bad('pausedBeforeWave', 0), ok('pausedBeforeWave', 1), ok('pausedBeforeWave', 2), bad('pausedBeforeWave', 1.5), ok('pausedBeforeWave', ABSENT),
    ]);
  });

  it('accepted (§7.12): request, campaign, reason', () => {
    checkEdges(decode, { t: 'accepted', request: 'retry', campaign: 'c-2', reason: 'r' }, [
      ...enumEdges('request', ['cancel', 'retry', 'resume', 'release-live']), bad('request', 'rts'), ...nameEdges('campaign'), ...textEdges('reason', true),
    ]);
  });

  it('planned (§7.12.4): image, devices, excluded, excludedMore, preflight, etaMs', () => {
    checkEdges(decode, { t: 'planned', image: IMAGE, devices: [orderEntry], excluded: [excludedEntry], excludedMore: 0, preflight, etaMs: 100 }, [
      ...imageEdges('image'), bad('image', ABSENT), ok('devices', []), ok('devices', entries(MAX_ORDER_ENTRIES, { rank: 1, from: '' })),
      bad('devices', entries(MAX_ORDER_ENTRIES + 1, { rank: 1, from: '' })), ...orderEntryEdges('devices.0'),
      ok('excluded', []), ok('excluded', entries(MAX_ORDER_ENTRIES, { code: 'offline', reason: '' })), bad('excluded', entries(MAX_ORDER_ENTRIES + 1, { code: 'offline', reason: '' })),
      ...excludedEdges('excluded.0'), ...countEdges('excludedMore', true), bad('preflight', ABSENT), ...preflightEdges('preflight'), ...numberEdges('etaMs', true),
    ]);
  });
});
