import { MAX_ACK_MISSING, MAX_CHUNK_SIZE, MAX_COMPONENTS, MAX_HW_MODELS, MAX_NAME_LENGTH, MAX_TEXT_LENGTH } from '../../protocol/limits.ts';
import {
  MAX_TASKS, RejectCodes, SlotStates, TaskSteps, VerifyCodes, decodeDeviceMessage, decodeGatewayMessage,
} from '../../protocol/ota.ts';
import { ABSENT, bad, chars, checkEdges, ok, u32Edges, type Edge } from '../helpers/field-edges.ts';

/**
 * Every field of every OTA message (docs/protocol.md §6) at its edges: a valid message with one
 * field at its bound (accepted) or one past it, of the wrong type or missing (refused with
 * E_MESSAGE_INVALID naming the field, §1.5 step 5). Limits from §1.6; versions §1.7; each message
 * is sent both in the reference key order and with "t" last, so the short decode paths of chunk,
 * ack, probe and probed (§6.6, §6.4.3) and the generic decoder meet the same table.
 */

const SHA = '1901da1c9f699b48f6b2636e65cbf73abf99d0441ef67f5c540a42f7051dec6f';
const SHA2 = 'c81be6b5785c10d9eee28f1c76cbc9c4f33faf067679dc457bef6e91d97dc66f';
/** A valid version of exactly 64 characters (§1.7: at most MAX_NAME_LENGTH), and one of 65. */
const V64 = `1.0.0-${chars(MAX_NAME_LENGTH - 6, 'a')}`;
const V65 = `${V64}a`;
const U32_MAX = 0xffff_ffff;

/** A version field (§1.7): 64 characters accepted, 65 refused, not SemVer or with build metadata refused as such. */
function versionEdges(path: string, optional = false): Edge[] {
  return [
    ok(path, V64), ok(path, '0.0.0'), bad(path, V65),
    bad(path, '1.0', { says: /semantic version/ }), bad(path, '1.0.0+build.5', { says: /semantic version/ }), bad(path, 7),
    optional ? ok(path, ABSENT) : bad(path, ABSENT),
  ];
}
/** A text field of 1..64 characters (hardware model, image name, campaign id). */
function nameEdges(path: string): Edge[] {
  return [bad(path, ''), ok(path, 'n'), ok(path, chars(MAX_NAME_LENGTH)), bad(path, chars(MAX_NAME_LENGTH + 1)), bad(path, ABSENT)];
}
/** A free-text field (§1.6 MAX_TEXT_LENGTH), optional. */
function reasonEdges(path: string): Edge[] {
  return [ok(path, ''), ok(path, chars(MAX_TEXT_LENGTH)), ok(path, chars(MAX_TEXT_LENGTH, 'é')), bad(path, chars(MAX_TEXT_LENGTH + 1)), bad(path, 5), ok(path, ABSENT)];
}
/** A chunk size (§1.6: MIN_CHUNK_SIZE..MAX_CHUNK_SIZE, whole). */
function chunkSizeEdges(path: string): Edge[] {
  return [bad(path, 63), ok(path, 64), ok(path, 65), ok(path, 65_535), ok(path, MAX_CHUNK_SIZE), bad(path, MAX_CHUNK_SIZE + 1), bad(path, 64.5), bad(path, ABSENT)];
}
function shaEdges(path: string, optional = false): Edge[] {
  return [ok(path, SHA2), bad(path, SHA.toUpperCase()), bad(path, SHA.slice(1)), bad(path, `${SHA}0`), optional ? ok(path, ABSENT) : bad(path, ABSENT)];
}
function boolEdges(path: string, optional = false): Edge[] {
  return [ok(path, true), ok(path, false), bad(path, 1), bad(path, 'true'), optional ? ok(path, ABSENT) : bad(path, ABSENT)];
}
function slotEdges(path: string): Edge[] {
  return [ok(path, 'a'), ok(path, 'b'), bad(path, 'c'), bad(path, 'A'), bad(path, ABSENT)];
}
/** n distinct component names (§5.5.1), `app` first. */
const names = (n: number): string[] => Array.from({ length: n }, (_, i) => (i === 0 ? 'app' : `c${i}`));

describe('OTA message fields at their edges (docs/protocol.md §6, §1.6, §1.5 step 5)', () => {
  describe('device -> gateway', () => {
    const decode = decodeDeviceMessage;
    const slots = { a: { state: 'confirmed', version: '1.0.0', sha256: SHA }, b: { state: 'empty' } };
    const abComponent = (name: string): Record<string, unknown> => ({ name, layout: 'ab', version: '1.0.0', sha256: SHA, slot: 'a', slots, trial: false });

    it('status (§6.3): hw, version, slot, slots, maxChunk, busy, trial, floor', () => {
      const status = { t: 'status', hw: 'sensor-v1', version: '1.0.0', slot: 'a', slots, maxChunk: 16_384, busy: false, trial: false };
      checkEdges(decode, status, [
        ...nameEdges('hw'), ...versionEdges('version'), ...slotEdges('slot'),
        bad('slots', ABSENT), bad('slots.b', ABSENT), bad('slots.a', { version: '1.0.0' }, { names: 'slots.a.state' }),
        ...SlotStates.map((s) => ok('slots.b.state', s)), bad('slots.b.state', 'full'),
        ...versionEdges('slots.a.version', true), ...shaEdges('slots.a.sha256', true),
        ...chunkSizeEdges('maxChunk'), ...boolEdges('busy'), ...boolEdges('trial'), ...versionEdges('floor', true),
      ]);
    });

    it(`status.components (§6.3.3): 1..${MAX_COMPONENTS}, names unique; an "ab" component reports slot and slots`, () => {
      const status = {
        t: 'status', hw: 'sensor-v1', version: '1.0.0', slot: 'a', slots, maxChunk: 1024, busy: false, trial: false,
        components: [abComponent('app'), { name: 'net', layout: 'single', version: '1.5.0', trial: true }],
      };
      checkEdges(decode, status, [
        ok('components', ABSENT), bad('components', []), ok('components', [abComponent('app')]),
        ok('components', names(MAX_COMPONENTS).map(abComponent)), bad('components', names(MAX_COMPONENTS + 1).map(abComponent)),
        bad('components', [abComponent('app'), abComponent('net'), abComponent('app')], { says: /component names must be unique/ }),
        ok('components.0.name', 'agent-2'), bad('components.0.name', 'App'), bad('components.0.name', ''), bad('components.0.name', ABSENT),
        ok('components.0.layout', 'single'), bad('components.0.layout', 'abc'), bad('components.0.layout', ABSENT),
        ...versionEdges('components.0.version'), ...shaEdges('components.0.sha256', true),
        // an "ab" component without its slot or its slots, or both (§6.3.3: required for "ab")
        bad('components.0.slot', ABSENT, { names: 'components.0.slots', says: /an "ab" component reports slot and slots/ }),
        bad('components.0.slots', ABSENT, { says: /an "ab" component reports slot and slots/ }),
        ok('components.0.slot', 'b'), bad('components.0.slot', 'c'), bad('components.0.slots.a', ABSENT),
        ...boolEdges('components.0.trial'),
        ok('components.0.agent', true), ok('components.0.agent', ABSENT), bad('components.0.agent', false),
        // a "single" component: slot and slots are optional, and still checked when present
        ok('components.1.slot', 'b'), ok('components.1.slots', slots), bad('components.1.slot', 'c'),
      ]);
      const noSlots = { name: 'app', layout: 'ab', version: '1.0.0', trial: false };
      checkEdges(decode, status, [bad('components', [noSlots], { names: 'components.0.slots', says: /"ab" component/ })]);
    });

    it('boot (§6.9): version, slot, sha256, trial, reverted, reason, components', () => {
      const bootComponent = (name: string): Record<string, unknown> => ({ name, version: '1.0.0', sha256: SHA, slot: 'b', trial: true });
      const boot = { t: 'boot', version: '1.2.0', slot: 'b', sha256: SHA, trial: true, reverted: false, reason: 'self-test', components: [bootComponent('app')] };
      checkEdges(decode, boot, [
        ...versionEdges('version'), ...slotEdges('slot'), ...shaEdges('sha256', true), ...boolEdges('trial'), ...boolEdges('reverted'),
        ...reasonEdges('reason'),
        ok('components', ABSENT), bad('components', []), ok('components', names(MAX_COMPONENTS).map(bootComponent)),
        bad('components', names(MAX_COMPONENTS + 1).map(bootComponent)),
        bad('components', [bootComponent('net'), bootComponent('net')], { says: /component names must be unique/ }),
        bad('components.0.name', 'Net'), ...versionEdges('components.0.version'), ...shaEdges('components.0.sha256', true),
        ok('components.0.slot', ABSENT), ok('components.0.slot', 'a'), bad('components.0.slot', 'c'), ...boolEdges('components.0.trial'),
      ]);
    });

    it('pong and probed (§6.4): n, pad, size', () => {
      checkEdges(decode, { t: 'pong', n: 7, pad: Uint8Array.of(1, 2) }, [
        ...u32Edges('n'), ok('pad', ABSENT), ok('pad', new Uint8Array(0)), bad('pad', 'pad', { says: /byte string/ }), bad('pad', [1, 2]),
      ]);
      checkEdges(decode, { t: 'probed', n: 7, size: 4096 }, [...u32Edges('n'), ...u32Edges('size')]);
    });

    it('accept (§6.5): sid, next, chunk, window 1..65535', () => {
      checkEdges(decode, { t: 'accept', sid: 9, next: 0, chunk: 1024, window: 4 }, [
        ...u32Edges('sid'), ...u32Edges('next'), ...chunkSizeEdges('chunk'),
        bad('window', 0), ok('window', 1), ok('window', 2), ok('window', 0xffff), bad('window', 0x1_0000), bad('window', 1.5), bad('window', ABSENT),
      ]);
    });

    it('reject (§6.5): sid, every code, reason', () => {
      checkEdges(decode, { t: 'reject', sid: 9, code: 'busy', reason: 'in use' }, [
        ...u32Edges('sid'), ...RejectCodes.map((c) => ok('code', c)), bad('code', 'later'), bad('code', ABSENT), ...reasonEdges('reason'),
      ]);
    });

    it(`ack (§6.6): sid, next, missing of at most ${MAX_ACK_MISSING} u32 offsets`, () => {
      const offsets = (n: number): number[] => Array.from({ length: n }, (_, i) => i * 1024);
      checkEdges(decode, { t: 'ack', sid: 9, next: 4096, missing: [1024] }, [
        ...u32Edges('sid'), ...u32Edges('next'),
        ok('missing', []), ok('missing', offsets(MAX_ACK_MISSING)), bad('missing', offsets(MAX_ACK_MISSING + 1)), bad('missing', ABSENT),
        ok('missing.0', U32_MAX), bad('missing.0', 2 ** 32), bad('missing.0', -1), bad('missing.0', 'x'),
      ]);
    });

    it('verified (§6.7): sid, ok, every code, reason', () => {
      checkEdges(decode, { t: 'verified', sid: 9, ok: false, code: 'sha256', reason: 'digest differs' }, [
        ...u32Edges('sid'), ...boolEdges('ok'), ...VerifyCodes.map((c) => ok('code', c)), ok('code', ABSENT), bad('code', 'crc'),
        ...reasonEdges('reason'),
      ]);
    });

    it('activated, confirmed, aborted (§6.8, §6.10, §6.11)', () => {
      checkEdges(decode, { t: 'activated', sid: 9, slot: 'b' }, [...u32Edges('sid'), ...slotEdges('slot')]);
      checkEdges(decode, { t: 'confirmed', sha256: SHA, version: '1.2.0' }, [...shaEdges('sha256'), ...versionEdges('version')]);
      checkEdges(decode, { t: 'aborted', sid: 9 }, u32Edges('sid'));
    });
  });

  describe('gateway -> device', () => {
    const decode = decodeGatewayMessage;

    it('ping and probe (§6.4): n, pad, probe data of 0..65536 bytes', () => {
      checkEdges(decode, { t: 'ping', n: 1, pad: Uint8Array.of(0) }, [...u32Edges('n'), ok('pad', ABSENT), bad('pad', 'x', { says: /byte string/ })]);
      checkEdges(decode, { t: 'probe', n: 1, data: Uint8Array.of(1, 2, 3) }, [
        ...u32Edges('n'), ok('data', new Uint8Array(0)), ok('data', new Uint8Array(MAX_CHUNK_SIZE)),
        bad('data', new Uint8Array(MAX_CHUNK_SIZE + 1), { says: new RegExp(`data must be at most ${MAX_CHUNK_SIZE} bytes`) }),
        bad('data', [1, 2, 3]), bad('data', ABSENT),
      ]);
    });

    const release = {
      release: 'sensor-rel', version: '1.1.0', hw: ['sensor-v1'], chunk: 64, seq: 8,
      components: [{ component: 'app', name: 'sensor-app', version: '1.1.0', size: 200, crc32: 3976749440, sha256: SHA }],
    };
    const offer = {
      t: 'offer', sid: 305_419_896, name: 'sensor-fw', version: '1.2.0', hw: ['sensor-v1'], size: 200, crc32: 3976749440, sha256: SHA, chunk: 64,
    };

    it('offer (§6.5): sid, name, version, hw, size, crc32, sha256, chunk, downgrade, force, seq', () => {
      checkEdges(decode, offer, [
        ...u32Edges('sid'), ...nameEdges('name'), ...versionEdges('version'),
        bad('hw', []), ok('hw', ['m']), ok('hw', Array.from({ length: MAX_HW_MODELS }, (_, i) => `m${i}`)),
        bad('hw', Array.from({ length: MAX_HW_MODELS + 1 }, (_, i) => `m${i}`)), bad('hw', 'sensor-v1'), bad('hw', ABSENT),
        bad('hw', ['a', ''], { names: 'hw.1' }), ok('hw', [chars(MAX_NAME_LENGTH)]), bad('hw', [chars(MAX_NAME_LENGTH + 1)], { names: 'hw.0' }),
        bad('size', 0), ok('size', 1), ok('size', 2), ok('size', U32_MAX), bad('size', 2 ** 32), bad('size', ABSENT),
        ...u32Edges('crc32'), ...shaEdges('sha256'), ...chunkSizeEdges('chunk'),
        ...boolEdges('downgrade', true), ...boolEdges('force', true), ...u32Edges('seq', true),
      ]);
    });

    it('offer (§6.5, §6.15.1): keyId and sig come together; a release names its component', () => {
      const keyId = '56475aa75463474c';
      const sig = 'ab'.repeat(64);
      checkEdges(decode, { ...offer, keyId, sig }, [
        ok('keyId', '0123456789abcdef'), bad('keyId', keyId.toUpperCase()), bad('keyId', `${keyId}0`), bad('sig', `${sig}00`),
        bad('keyId', ABSENT, { names: 'sig', says: /keyId and sig come together/ }),
        bad('sig', ABSENT, { says: /keyId and sig come together/ }),
      ]);
      checkEdges(decode, { ...offer, component: 'app', release }, [
        ok('component', 'net'), bad('component', 'App'), ok('release', ABSENT),
        bad('component', ABSENT, { says: /an offer with a release names its component/ }),
        bad('release.chunk', 63), bad('release.components', []), bad('release.extra', 1, { names: 'release' }),
      ]);
    });

    it(`chunk (§6.6): sid, off, crc, data of 1..${MAX_CHUNK_SIZE} bytes`, () => {
      checkEdges(decode, { t: 'chunk', sid: 9, off: 0, data: Uint8Array.of(5), crc: 1 }, [
        ...u32Edges('sid'), ...u32Edges('off'), ...u32Edges('crc'),
        bad('data', new Uint8Array(0), { says: new RegExp(`data must be 1..${MAX_CHUNK_SIZE} bytes`) }),
        ok('data', Uint8Array.of(1, 2)), ok('data', new Uint8Array(MAX_CHUNK_SIZE)),
        bad('data', new Uint8Array(MAX_CHUNK_SIZE + 1), { says: new RegExp(`data must be 1..${MAX_CHUNK_SIZE} bytes`) }),
        bad('data', 'x'), bad('data', ABSENT),
      ]);
    });

    it(`verify, activate (with: 1..${MAX_COMPONENTS - 1} sids), confirm (with: 1..${MAX_COMPONENTS - 1} digests), abort (§6.7-§6.11, §6.15)`, () => {
      checkEdges(decode, { t: 'verify', sid: 9 }, u32Edges('sid'));
      const sids = (n: number): number[] => Array.from({ length: n }, (_, i) => i + 10);
      checkEdges(decode, { t: 'activate', sid: 9, with: [10] }, [
        ...u32Edges('sid'), ok('with', ABSENT), bad('with', []), ok('with', sids(2)), ok('with', sids(MAX_COMPONENTS - 1)), bad('with', sids(MAX_COMPONENTS)),
        ok('with.0', U32_MAX), bad('with.0', 2 ** 32), bad('with', 10),
      ]);
      const shas = (n: number): string[] => Array.from({ length: n }, (_, i) => `${i}`.repeat(64));
      checkEdges(decode, { t: 'confirm', sha256: SHA, with: [SHA2] }, [
        ...shaEdges('sha256'), ok('with', ABSENT), bad('with', []), ok('with', shas(2)), ok('with', shas(MAX_COMPONENTS - 1)), bad('with', shas(MAX_COMPONENTS)),
        bad('with.0', SHA2.toUpperCase()),
      ]);
      checkEdges(decode, { t: 'abort', sid: 9, reason: 'cancelled' }, [...u32Edges('sid'), ...reasonEdges('reason')]);
    });

    it(`tasks (§6.14): at most ${MAX_TASKS} entries; campaign, name, version, sha256, size, steps, notBefore`, () => {
      const task = { campaign: 'c-0a1b2c3d', name: 'sensor-fw', version: '1.2.0', sha256: SHA, size: 200, steps: ['download'], notBefore: 1_795_000_000_000 };
      const tasks = (n: number): Record<string, unknown>[] => Array.from({ length: n }, (_, i) => ({ ...task, campaign: `c-${i}` }));
      checkEdges(decode, { t: 'tasks', tasks: [task] }, [
        ok('tasks', []), ok('tasks', tasks(MAX_TASKS)), bad('tasks', tasks(MAX_TASKS + 1)), bad('tasks', ABSENT),
        ...nameEdges('tasks.0.campaign'), ...nameEdges('tasks.0.name'), ...versionEdges('tasks.0.version'), ...shaEdges('tasks.0.sha256'),
        bad('tasks.0.size', 0), ok('tasks.0.size', 1), ok('tasks.0.size', 2), ok('tasks.0.size', U32_MAX), bad('tasks.0.size', 2 ** 32),
        bad('tasks.0.steps', []), ...TaskSteps.map((s) => ok('tasks.0.steps', [s])), ok('tasks.0.steps', [...TaskSteps]),
        ok('tasks.0.steps', ['activate', 'download']),
        bad('tasks.0.steps', ['verify', 'verify'], { says: /must not repeat a step/ }),
        bad('tasks.0.steps', [...TaskSteps, 'download']), bad('tasks.0.steps', ['flash'], { names: 'tasks.0.steps.0' }),
        ok('tasks.0.notBefore', ABSENT), ok('tasks.0.notBefore', 0), ok('tasks.0.notBefore', 1), ok('tasks.0.notBefore', Number.MAX_SAFE_INTEGER),
        bad('tasks.0.notBefore', -1), bad('tasks.0.notBefore', 2 ** 53), bad('tasks.0.notBefore', 1.5),
      ]);
    });
  });
});
