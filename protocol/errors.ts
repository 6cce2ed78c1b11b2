/**
 * One error class for the whole project, with stable string codes.
 * Codes are part of the public contract (docs/protocol.md §9); messages are for humans.
 * Wrap lower-level errors with `cause`, never by rewriting `message`.
 */
export const ErrorCodes = {
  // framing and link (docs/protocol.md §3, §4)
  E_FRAME_CRC: 'frame CRC-32 mismatch',
  E_FRAME_COBS: 'frame COBS encoding invalid',
  E_FRAME_SHORT: 'frame shorter than its header',
  E_FRAME_TOO_LONG: 'frame longer than the negotiated maximum',
  E_FRAME_KIND: 'unknown frame kind',
  E_LINK_TIMEOUT: 'link peer did not answer in time',
  E_LINK_RESET: 'link was reset by the peer',
  E_LINK_CLOSED: 'link is closed',
  E_MESSAGE_TOO_LONG: 'reassembled message exceeds the limit',
  // CBOR messages
  E_CBOR: 'payload is not valid CBOR',
  E_MESSAGE_INVALID: 'message fails validation',
  E_MESSAGE_TYPE: 'unknown message type',
  // manifest and image
  E_MANIFEST_INVALID: 'manifest fails validation',
  E_MANIFEST_UNSIGNED: 'manifest has no signature',
  E_MANIFEST_KEY_UNKNOWN: 'manifest is signed by a key that is not trusted',
  E_MANIFEST_SIGNATURE: 'manifest signature does not verify',
  E_IMAGE_SIZE: 'image size does not match the manifest',
  E_IMAGE_CRC: 'image CRC-32 does not match the manifest',
  E_IMAGE_SHA256: 'image SHA-256 does not match the manifest',
  E_IMAGE_TOO_LARGE: 'image exceeds the gateway limit',
  E_IMAGE_NOT_FOUND: 'image not in the store',
  E_STORE_IO: 'image store I/O failed',
  E_IMAGE_CORRUPT: 'stored image no longer matches its digest (quarantined)',
  // uplink session
  E_UPLINK_STATE: 'message not allowed in this session state',
  E_UPLINK_OFFSET: 'data at an unexpected offset',
  E_UPLINK_PROTOCOL: 'unsupported uplink protocol version',
  E_UPLINK_BUSY: 'another upload is in progress',
  // device update
  E_DEVICE_TIMEOUT: 'device did not answer in time',
  E_DEVICE_REJECTED: 'device rejected the offer',
  E_DEVICE_VERIFY: 'device reported the image does not verify',
  E_DEVICE_OFFLINE: 'device went offline',
  E_DEVICE_REVERTED: 'device reverted to its previous image',
  E_DEVICE_RETRIES: 'retry limit reached',
  E_CANCELLED: 'cancelled',
  E_JOURNAL: 'campaign journal unreadable',
  E_DISK_FULL: 'no space left on device',
  // campaigns (docs/protocol.md §7.12)
  E_UNKNOWN_CAMPAIGN: 'no such campaign, or not in a state that allows the request',
  E_NOTHING_TO_RETRY: 'no device of the campaign has the results asked for',
  E_NO_TARGETS: 'the targeting leaves no known device',
  E_NOT_ENOUGH_ONLINE: 'fewer eligible devices online than required',
  E_UNKNOWN_RELEASE: 'no stored release of that name and version',
  E_RELEASE_RECORD: 'a stored release record does not verify',
  // configuration and CLI
  E_CONFIG: 'configuration invalid',
  E_USAGE: 'command-line usage error',
  E_BROKER_LIMIT: 'broker limit exceeded',
  E_BROKER_DENIED: 'broker refused a client: not authenticated or not authorized',
  // hardware-in-the-loop rig (docs/hil.md)
  E_RIG: 'HIL rig file invalid',
  E_RIG_COMMAND: 'a HIL rig command failed or timed out',
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

export class FwError extends Error {
  override readonly name = 'FwError';
  readonly code: ErrorCode;
  /** Optional machine-readable details (offsets, expected/actual values). */
  readonly details: Readonly<Record<string, unknown>> | undefined;

  constructor(code: ErrorCode, message?: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(message ?? ErrorCodes[code], options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options?.details;
  }
}

export function isFwError(err: unknown, code?: ErrorCode): err is FwError {
  return err instanceof FwError && (code === undefined || err.code === code);
}

/** A short human string for any thrown value, keeping the code when there is one. */
export function describeError(err: unknown): string {
  if (err instanceof FwError) return `${err.code}: ${err.message}`;
  if (err instanceof Error) return err.message;
  return String(err);
}
