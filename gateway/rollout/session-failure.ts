import { isFwError } from '../../protocol/errors.ts';
import type { Outcome, ResultCode } from '../../protocol/uplink.ts';
import type { DeviceEvent } from '../device-channel.ts';

/**
 * How a device session's attempt ends when it does not succeed (device-session.ts): the failure
 * with its outcome and result code, a device's refusal or an error classified, and the boot a
 * `status` in trial stands for.
 */

type Ev<T extends DeviceEvent['t']> = Extract<DeviceEvent, { t: T }>;

/** How one attempt ended when it did not succeed: terminal ends the session, otherwise retry. */
export class SessionFailure extends Error {
  constructor(readonly outcome: Outcome, readonly code: ResultCode, reason: string, readonly terminal: boolean) {
    super(reason);
  }
}

/** `what`, with the device's reason after it unless the reason already says it ("device is busy: device is busy"). */
export function withDeviceReason(what: string, reason: string | undefined): string {
  if (!reason) return what;
  return reason.toLowerCase().startsWith(what.toLowerCase()) ? reason : `${what}: ${reason}`;
}

export function rejection(r: Ev<'reject'>): SessionFailure {
  const why = r.reason ? `: ${r.reason}` : '';
  switch (r.code) {
    case 'busy': return new SessionFailure('skipped', 'busy', withDeviceReason('device is busy', r.reason), true);
    case 'incompatible': return new SessionFailure('skipped', 'incompatible-hw', `device refuses the hardware model${why}`, true);
    case 'not-newer': return new SessionFailure('skipped', 'not-newer', `device refuses: image is not newer${why}`, true);
    case 'below-floor': return new SessionFailure('skipped', 'below-floor', `device refuses: image is below its anti-rollback security floor${why}`, true);
    case 'no-space': return new SessionFailure('failed', 'no-space', `device has no space for the image${why}`, true);
    case 'invalid':
      // a device that checks the offer's signature before accepting it (§6.5.3 step 0) says "signature: …"
      if (r.reason?.startsWith('signature:') === true) return new SessionFailure('failed', 'bad-signature', `device refuses the image's signature${why}`, true);
      return new SessionFailure('failed', 'rejected', `device rejected the offer as invalid${why}`, true);
    case 'seq-rollback': return new SessionFailure('skipped', 'seq-rollback', `device refuses: the image's sequence number is below the one it has installed${why}`, true);
    default: {
      const never: never = r.code;
      return new SessionFailure('failed', 'rejected', `device rejected the offer (${String(never)})`, true);
    }
  }
}

export function classify(err: unknown): SessionFailure {
  if (err instanceof SessionFailure) return err;
  if (isFwError(err, 'E_DEVICE_TIMEOUT')) return new SessionFailure('failed', 'timeout', err.message, false);
  if (isFwError(err, 'E_CANCELLED')) return new SessionFailure('failed', 'cancelled', err.message, true);
  // the device dropping off (E_DEVICE_OFFLINE) and anything else: the connection, retried
  return new SessionFailure('failed', 'connection-lost', err instanceof Error ? err.message : String(err), false);
}
