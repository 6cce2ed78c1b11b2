import assert from 'node:assert/strict';
import { classify, rejection, SessionFailure, withDeviceReason } from '../../../gateway/rollout/session-failure.ts';
import type { DeviceEvent } from '../../../gateway/device-channel.ts';
import { FwError } from '../../../protocol/errors.ts';

/**
 * How an attempt that did not succeed ends (session-failure.ts): a device's `reject` mapped to
 * the result of docs/protocol.md §6.5 (reject codes table, §6.5.5), and an error classified as
 * terminal or to be retried (§8.1.1).
 */

type Reject = Extract<DeviceEvent, { t: 'reject' }>;
const reject = (code: Reject['code'], reason?: string): Reject => ({ t: 'reject', sid: 7, code, ...(reason !== undefined ? { reason } : {}) });
const view = (f: SessionFailure): [string, string, string, boolean] => [f.outcome, f.code, f.message, f.terminal];

describe('session failure: the device\'s reason after what happened (withDeviceReason)', () => {
  it('no reason, or an empty one: what happened alone', () => {
    assert.equal(withDeviceReason('device is busy', undefined), 'device is busy');
    assert.equal(withDeviceReason('device is busy', ''), 'device is busy');
  });

  it('a reason that does not repeat it goes after a colon', () => {
    assert.equal(withDeviceReason('device is busy', 'motor running'), 'device is busy: motor running');
    assert.equal(withDeviceReason('device is busy', 'in use: device is busy'), 'device is busy: in use: device is busy', 'said later in the reason is not a repeat');
  });

  it('a reason that already starts with it, in any case, is the whole text ("device is busy: device is busy" never)', () => {
    assert.equal(withDeviceReason('device is busy', 'device is busy'), 'device is busy');
    assert.equal(withDeviceReason('device is busy', 'Device Is Busy (trial running)'), 'Device Is Busy (trial running)');
    assert.equal(withDeviceReason('Device is busy', 'device is busy: motor running'), 'device is busy: motor running');
  });
});

describe('session failure: a device\'s reject as the result of the §6.5 table, never retried', () => {
  it('each code without a reason: outcome, result code and the text that explains it', () => {
    assert.deepEqual(view(rejection(reject('busy'))), ['skipped', 'busy', 'device is busy', true]);
    assert.deepEqual(view(rejection(reject('incompatible'))), ['skipped', 'incompatible-hw', 'device refuses the hardware model', true]);
    assert.deepEqual(view(rejection(reject('not-newer'))), ['skipped', 'not-newer', 'device refuses: image is not newer', true]);
    assert.deepEqual(view(rejection(reject('below-floor'))), ['skipped', 'below-floor', 'device refuses: image is below its anti-rollback security floor', true]);
    assert.deepEqual(view(rejection(reject('no-space'))), ['failed', 'no-space', 'device has no space for the image', true]);
    assert.deepEqual(view(rejection(reject('invalid'))), ['failed', 'rejected', 'device rejected the offer as invalid', true]);
    assert.deepEqual(view(rejection(reject('seq-rollback'))),
      ['skipped', 'seq-rollback', 'device refuses: the image\'s sequence number is below the one it has installed', true]);
  });

  it('each code with the device\'s reason after it', () => {
    assert.equal(rejection(reject('busy', 'motor running')).message, 'device is busy: motor running');
    assert.equal(rejection(reject('incompatible', 'hw-x not in [hw-y]')).message, 'device refuses the hardware model: hw-x not in [hw-y]');
    assert.equal(rejection(reject('not-newer', 'runs 1.1.0')).message, 'device refuses: image is not newer: runs 1.1.0');
    assert.equal(rejection(reject('below-floor', 'floor 1.2.0')).message, 'device refuses: image is below its anti-rollback security floor: floor 1.2.0');
    assert.equal(rejection(reject('no-space', 'slot holds 64 KiB')).message, 'device has no space for the image: slot holds 64 KiB');
    assert.equal(rejection(reject('invalid', 'size 0')).message, 'device rejected the offer as invalid: size 0');
    assert.equal(rejection(reject('seq-rollback', 'seq 3 < 4')).message,
      'device refuses: the image\'s sequence number is below the one it has installed: seq 3 < 4');
  });

  it('invalid for the signature (reason "signature: …", §6.5.3 step 0) is failed / bad-signature; only that prefix counts', () => {
    assert.deepEqual(view(rejection(reject('invalid', 'signature: unknown-key: key 0123456789abcdef is not pinned'))),
      ['failed', 'bad-signature', 'device refuses the image\'s signature: signature: unknown-key: key 0123456789abcdef is not pinned', true]);
    assert.deepEqual(view(rejection(reject('invalid', 'bad field: signature:'))), ['failed', 'rejected', 'device rejected the offer as invalid: bad field: signature:', true]);
    assert.equal(rejection(reject('invalid', 'signature')).code, 'rejected', 'the prefix is "signature:" with its colon');
  });
});

describe('session failure: classifying what ended an attempt', () => {
  it('a SessionFailure is kept as it is', () => {
    const f = new SessionFailure('rolled-back', 'reverted', 'came back on 1.0.0', false);
    assert.equal(classify(f), f);
  });

  it('the device dropping off: failed / connection-lost, retried', () => {
    assert.deepEqual(view(classify(new FwError('E_DEVICE_OFFLINE', 'dev-1 went offline while waiting for chunk ack'))),
      ['failed', 'connection-lost', 'dev-1 went offline while waiting for chunk ack', false]);
  });

  it('a wait that timed out: failed / timeout, retried', () => {
    assert.deepEqual(view(classify(new FwError('E_DEVICE_TIMEOUT', 'no verify result from dev-1'))), ['failed', 'timeout', 'no verify result from dev-1', false]);
  });

  it('a cancelled wait: failed / cancelled, not retried', () => {
    assert.deepEqual(view(classify(new FwError('E_CANCELLED', 'session ended'))), ['failed', 'cancelled', 'session ended', true]);
  });

  it('anything else (another error, a thrown value): failed / connection-lost with its text, retried', () => {
    assert.deepEqual(view(classify(new FwError('E_JOURNAL', 'journal x: write failed'))), ['failed', 'connection-lost', 'journal x: write failed', false]);
    assert.deepEqual(view(classify(new Error('socket hang up'))), ['failed', 'connection-lost', 'socket hang up', false]);
    assert.deepEqual(view(classify('broker gone')), ['failed', 'connection-lost', 'broker gone', false]);
  });
});
