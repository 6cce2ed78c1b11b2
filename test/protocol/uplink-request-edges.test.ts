import { MAX_DEVICE_ID_LENGTH, MAX_FRAME_PAYLOAD, MAX_NAME_LENGTH, MAX_ORDER_ENTRIES, MAX_TEXT_LENGTH, MAX_WINDOW, MIN_FRAME_PAYLOAD } from '../../protocol/limits.ts';
import type { Manifest } from '../../protocol/manifest.ts';
import { KEEPALIVE_MAX_MS, KEEPALIVE_MIN_MS } from '../../protocol/link/keepalive.ts';
import { AUTH_CHALLENGE_BYTES, AUTH_SIG_BYTES } from '../../protocol/uplink-auth.ts';
import { CampaignPolicies, RetryOutcomes, decodeGatewayUplinkMessage, decodeLaptopMessage } from '../../protocol/uplink.ts';
import { ABSENT, bad, chars, checkEdges, ok, u32Edges, type Edge } from '../helpers/field-edges.ts';

/**
 * Every field of the laptop's requests and of `hello` (docs/protocol.md §7.2-§7.4, §7.12) at its
 * edges: a valid message with one field at its bound (accepted) or one past it, of the wrong type
 * or missing (refused with E_MESSAGE_INVALID naming the field, §1.5 step 5). Each message is sent
 * in the reference key order and with "t" last, so `data`'s short decode path (§7.4) and the
 * generic decoder meet the same table.
 */

const SHA = '1901da1c9f699b48f6b2636e65cbf73abf99d0441ef67f5c540a42f7051dec6f';
const MANIFEST: Manifest = { name: 'sensor-fw', version: '1.2.0', hw: ['sensor-v1'], size: 200, crc32: 3976749440, sha256: SHA, chunk: 64 };
const RELEASE = {
  release: 'sensor-rel', version: '1.1.0', hw: ['sensor-v1'], chunk: 64, seq: 8,
  components: [{ component: 'app', name: 'sensor-app', version: '1.1.0', size: 200, crc32: 3976749440, sha256: SHA }],
};
/** Staged waves, a count then a percentage (§7.3.6). */
const WAVES = [{ count: 1 }, { pct: 100 }];
const AUTH = { keyId: '56475aa75463474c', n: 1, sig: new Uint8Array(AUTH_SIG_BYTES).fill(7) };

/** An integer field bounded by lo..hi: lo - 1 and hi + 1 refused, lo, lo + 1 and hi accepted, a fraction refused. */
function rangeEdges(path: string, lo: number, hi: number, optional = false, names = path): Edge[] {
  return [
    bad(path, lo - 1, { names }), ok(path, lo), ok(path, lo + 1), ok(path, hi), bad(path, hi + 1, { names }), bad(path, lo + 0.5, { names }),
    optional ? ok(path, ABSENT) : bad(path, ABSENT, { names }),
  ];
}
/** A campaign id or other name of 1..64 characters. */
function nameEdges(path: string, optional = false): Edge[] {
  return [bad(path, ''), ok(path, 'c'), ok(path, chars(MAX_NAME_LENGTH)), bad(path, chars(MAX_NAME_LENGTH + 1)), bad(path, 3), optional ? ok(path, ABSENT) : bad(path, ABSENT)];
}
function boolEdges(path: string): Edge[] {
  return [ok(path, true), ok(path, false), bad(path, 'yes'), ok(path, ABSENT)];
}
function policyEdges(path: string): Edge[] {
  return [...CampaignPolicies.map((p) => ok(path, p)), bad(path, 'later'), ok(path, ABSENT)];
}
/** The `auth` field of an authorised request (§7.2.4): a closed map of keyId, n (1..2^32 - 1), sig (64 bytes). */
function authEdges(): Edge[] {
  return [
    ok('auth', ABSENT), bad('auth', 'x'), bad('auth', { ...AUTH, extra: 1 }, { names: 'auth' }),
    ok('auth.keyId', '0123456789abcdef'), bad('auth.keyId', AUTH.keyId.toUpperCase(), { says: /must be 16 lowercase hex digits/ }),
    bad('auth.keyId', AUTH.keyId.slice(1)), bad('auth.keyId', `${AUTH.keyId}0`), bad('auth.keyId', `g${AUTH.keyId}`), bad('auth.keyId', `${AUTH.keyId}g`),
    bad('auth.keyId', ABSENT),
    ...rangeEdges('auth.n', 1, 0xffff_ffff),
    bad('auth.sig', new Uint8Array(AUTH_SIG_BYTES - 1), { says: new RegExp(`must be ${AUTH_SIG_BYTES} bytes`) }),
    bad('auth.sig', new Uint8Array(AUTH_SIG_BYTES + 1)), bad('auth.sig', 'ab'.repeat(AUTH_SIG_BYTES)), bad('auth.sig', ABSENT),
  ];
}
const ids = (n: number): string[] => Array.from({ length: n }, (_, i) => `dev-${i}`);
/** Targeting (§7.3.6): only, group, waves, waveGate, wavePause, requireOnline. */
function targetingEdges(): Edge[] {
  return [
    ok('only', ABSENT), bad('only', []), ok('only', ids(1)), ok('only', ids(MAX_ORDER_ENTRIES)), bad('only', ids(MAX_ORDER_ENTRIES + 1)),
    bad('only', [''], { names: 'only.0' }), ok('only', [chars(MAX_DEVICE_ID_LENGTH)]), bad('only', [chars(MAX_DEVICE_ID_LENGTH + 1)], { names: 'only.0' }),
    ...nameEdges('group', true),
    ok('waves', ABSENT), bad('waves', []), ok('waves', [{ pct: 100 }]),
    ok('waves', Array.from({ length: 16 }, (_, i) => ({ count: i + 1 }))), bad('waves', Array.from({ length: 17 }, (_, i) => ({ count: i + 1 }))),
    // a wave is one of two closed maps: a bad one is named as the wave
    ...rangeEdges('waves.0.count', 1, 1_000_000, false, 'waves.0.*'), ...rangeEdges('waves.1.pct', 1, 100, false, 'waves.1.*'),
    bad('waves.0', { count: 1, pct: 50 }), bad('waves.0', {}), bad('waves.0', { count: 1, extra: true }),
    ...rangeEdges('waveGate', 1, 100, true), ...boolEdges('wavePause'), ...rangeEdges('requireOnline', 1, 1_000_000, true),
  ];
}

describe('uplink requests at their edges (docs/protocol.md §7.2-§7.4, §7.12, §1.6)', () => {
  it('hello (§7.2), both directions: proto, role, agent, maxFrame, window, maxMessage, maxImage, keepalive, challenge, authIdleMs', () => {
    const edges: Edge[] = [
      ...rangeEdges('proto', 1, 255), ok('role', 'gateway'), ok('role', 'laptop'), bad('role', 'device'), bad('role', ABSENT),
      ok('agent', ''), ok('agent', chars(MAX_TEXT_LENGTH)), bad('agent', chars(MAX_TEXT_LENGTH + 1)), bad('agent', ABSENT),
      ...rangeEdges('maxFrame', MIN_FRAME_PAYLOAD, MAX_FRAME_PAYLOAD), ...rangeEdges('window', 1, MAX_WINDOW),
      ...u32Edges('maxMessage'), ...u32Edges('maxImage', true), ...rangeEdges('keepalive', KEEPALIVE_MIN_MS, KEEPALIVE_MAX_MS, true),
      ok('challenge', ABSENT), ok('challenge', new Uint8Array(AUTH_CHALLENGE_BYTES).fill(1)),
      bad('challenge', new Uint8Array(AUTH_CHALLENGE_BYTES - 1), { says: new RegExp(`must be ${AUTH_CHALLENGE_BYTES} bytes`) }),
      bad('challenge', new Uint8Array(AUTH_CHALLENGE_BYTES + 1)), bad('challenge', [1, 2]),
      ...u32Edges('authIdleMs', true),
    ];
    const hello = { t: 'hello', proto: 1, role: 'laptop', agent: 'fwpush/0.1.0', maxFrame: 1024, window: 16, maxMessage: 1_048_576, keepalive: 1000 };
    checkEdges(decodeLaptopMessage, hello, edges);
    checkEdges(decodeGatewayUplinkMessage, { ...hello, role: 'gateway', maxImage: 1 << 30, challenge: new Uint8Array(AUTH_CHALLENGE_BYTES), authIdleMs: 600_000 }, edges);
  });

  it('auth (§7.2.4, version 1): keyId of 16 lowercase hex digits, sig of 64 bytes', () => {
    checkEdges(decodeLaptopMessage, { t: 'auth', keyId: AUTH.keyId, sig: AUTH.sig }, [
      bad('keyId', AUTH.keyId.toUpperCase(), { says: /must be 16 lowercase hex digits/ }), bad('keyId', `${AUTH.keyId}0`), bad('keyId', `g${AUTH.keyId}`),
      bad('keyId', `${AUTH.keyId}g`), bad('keyId', AUTH.keyId.slice(1)), bad('keyId', ABSENT),
      bad('sig', new Uint8Array(AUTH_SIG_BYTES - 1), { says: new RegExp(`must be ${AUTH_SIG_BYTES} bytes`) }), bad('sig', new Uint8Array(AUTH_SIG_BYTES + 1)), bad('sig', ABSENT),
    ]);
  });

  it('rts (§7.3): manifest, policy, downgrade, force, targeting, auth', () => {
    checkEdges(decodeLaptopMessage, { t: 'rts', manifest: MANIFEST, waves: WAVES, auth: AUTH }, [
      bad('manifest', ABSENT), bad('manifest.chunk', 63), bad('manifest.hw', []),
      ...policyEdges('policy'), ...boolEdges('downgrade'), ...boolEdges('force'), ...targetingEdges(), ...authEdges(),
      // null is never a value (§1.4.8), in the request or in its auth map
      bad('policy', null), bad('only', null), bad('auth.keyId', null), bad('auth.sig', null),
    ]);
  });

  it('data (§7.4): off, data of any length', () => {
    checkEdges(decodeLaptopMessage, { t: 'data', off: 4096, data: Uint8Array.of(1, 2, 3) }, [
      ...u32Edges('off'), ok('data', new Uint8Array(0)), ok('data', new Uint8Array(16_384).fill(9)), bad('data', [1, 2, 3]), bad('data', 'abc'), bad('data', ABSENT),
    ]);
  });

  it('commit, status, cancel, resume (§7.4, §7.11, §7.12): the campaign named, 1..64 characters', () => {
    checkEdges(decodeLaptopMessage, { t: 'commit' }, []);
    checkEdges(decodeLaptopMessage, { t: 'status', campaign: 'c-0a1b2c3d' }, nameEdges('campaign', true));
    checkEdges(decodeLaptopMessage, { t: 'cancel', campaign: 'c-0a1b2c3d', auth: AUTH }, [...nameEdges('campaign', true), bad('auth.n', 0)]);
    checkEdges(decodeLaptopMessage, { t: 'resume', campaign: 'c-0a1b2c3d', auth: AUTH }, [...nameEdges('campaign'), bad('auth.n', 0), ok('auth', ABSENT)]);
  });

  it('retry (§7.12.2): campaign, outcomes (1..5 of the retry outcomes), policy, force, auth', () => {
    checkEdges(decodeLaptopMessage, { t: 'retry', campaign: 'c-0a1b2c3d', outcomes: ['failed'], auth: AUTH }, [
      ...nameEdges('campaign'),
      bad('outcomes', []), ...RetryOutcomes.map((o) => ok('outcomes', [o])), ok('outcomes', [...RetryOutcomes]),
      bad('outcomes', [...RetryOutcomes, 'failed']), bad('outcomes', ['updated'], { names: 'outcomes.0' }), bad('outcomes', ABSENT),
      ...policyEdges('policy'), ...boolEdges('force'), bad('auth.sig', new Uint8Array(0)), ok('auth', ABSENT),
    ]);
  });

  it('plan (§7.12.4): manifest, downgrade, targeting, auth', () => {
    checkEdges(decodeLaptopMessage, { t: 'plan', manifest: MANIFEST, waves: WAVES, auth: AUTH }, [
      bad('manifest', ABSENT), bad('manifest.size', 0), ...boolEdges('downgrade'), ...targetingEdges(), ok('auth', ABSENT), bad('auth.n', 0),
    ]);
  });

  it('release-rts (§7.3.9): release, deferred, policy, downgrade, force, targeting, auth', () => {
    checkEdges(decodeLaptopMessage, { t: 'release-rts', release: RELEASE, auth: AUTH }, [
      bad('release', ABSENT), bad('release.components', []), bad('release.hw', []),
      ...boolEdges('deferred'), ...policyEdges('policy'), ...boolEdges('downgrade'), ...boolEdges('force'),
      bad('only', []), ...rangeEdges('waveGate', 1, 100, true), ok('auth', ABSENT), bad('auth.n', 0),
    ]);
  });

  it('release-live (§7.12.6): release name 1..64, version of at most 64 characters, policy, downgrade, force, targeting, auth', () => {
    checkEdges(decodeLaptopMessage, { t: 'release-live', release: 'sensor-rel', version: '1.1.0', auth: AUTH }, [
      ...nameEdges('release'), ok('version', ''), ok('version', chars(MAX_NAME_LENGTH)), bad('version', chars(MAX_NAME_LENGTH + 1)), bad('version', ABSENT),
      ...policyEdges('policy'), ...boolEdges('downgrade'), ...boolEdges('force'),
      bad('group', ''), ...rangeEdges('requireOnline', 1, 1_000_000, true), ok('auth', ABSENT), bad('auth.keyId', 'x'),
    ]);
  });
});
