import { MAX_FRAME_PAYLOAD, MAX_WINDOW, MIN_FRAME_PAYLOAD } from '../limits.ts';

/**
 * Serial link constants (docs/protocol.md §3, §4). Wire values here are normative:
 * changing one changes the protocol.
 */

/** Frame kinds, body offset 0 (§3.3). */
export const FrameKind = {
  DATA: 0x01,
  ACK: 0x02,
  NAK: 0x03,
  RESET: 0x04,
  RESET_ACK: 0x05,
} as const;
export type FrameKind = (typeof FrameKind)[keyof typeof FrameKind];
export type FrameKindName = keyof typeof FrameKind;

const kindNames = new Map<number, FrameKindName>(
  (Object.entries(FrameKind) as [FrameKindName, FrameKind][]).map(([name, value]) => [value, name]),
);

export function isFrameKind(value: number): value is FrameKind {
  return kindNames.has(value);
}

export function frameKindName(kind: FrameKind): FrameKindName {
  const name = kindNames.get(kind);
  if (name === undefined) throw new RangeError(`not a frame kind: ${kind}`);
  return name;
}

/** DATA flags bit 0: the message continues in the next DATA frame (§4.3). */
export const FLAG_MORE = 0x01;

/** The frame delimiter on the wire (§3.2). */
export const FRAME_DELIMITER = 0x00;

/** kind u8 + flags u8 + seq u16 (§3.3). */
export const HEADER_SIZE = 4;
/** CRC-32, big-endian, last four body bytes (§3.4). */
export const CRC_SIZE = 4;
/** Shortest valid body: header and CRC, no payload (§3.6). */
export const MIN_BODY_SIZE = HEADER_SIZE + CRC_SIZE;

/** ACK selective-ack bitmap width in bits (§4.4). */
export const SACK_BITS = 32;
/** Most sequence numbers one NAK may list (§4.5). */
export const MAX_NAK_SEQS = 32;
/** Largest payload of any control frame (a full NAK): always accepted whatever maxPayload is. */
export const MAX_CONTROL_PAYLOAD = MAX_NAK_SEQS * 2;

/** Sequence numbers are u16 and wrap (§4.2). */
export const SEQ_MODULUS = 0x1_0000;
export const SEQ_MASK = 0xffff;

/** ARQ defaults (§4.10). */
export const DEFAULT_WINDOW = 8;
export const DEFAULT_SEND_PAYLOAD = 256;
export const DEFAULT_RTO_INITIAL_MS = 200;
export const DEFAULT_RTO_MIN_MS = 20;
export const DEFAULT_RTO_MAX_MS = 3000;
export const DEFAULT_MAX_RETRANSMITS = 12;
export const DEFAULT_HIGH_WATER_BYTES = 64 * 1024;
/** Delayed ACK (§4.4): ACK at once when this many DATA frames are owed one. */
export const DEFAULT_ACK_EVERY = 4;
/** Longest ACK delay a link accepts as an option (§4.4). */
export const MAX_ACK_DELAY_MS = 100;

export { MAX_FRAME_PAYLOAD, MAX_WINDOW, MIN_FRAME_PAYLOAD };

/**
 * Upper bound on the COBS encoding of n bytes (§3.1): one code byte per started 254-byte block
 * plus one, i.e. n + floor(n/254) + 1. It covers encoders that end a message with a final empty
 * block after a full 254-byte block, so receivers use it as their acceptance bound.
 */
export function cobsMaxEncodedLength(n: number): number {
  return n + Math.floor(n / 254) + 1;
}

/** Largest body (header + payload + CRC) for a given payload limit (§3.5). */
export function maxBodySize(maxPayload: number): number {
  return HEADER_SIZE + Math.max(maxPayload, MAX_CONTROL_PAYLOAD) + CRC_SIZE;
}
