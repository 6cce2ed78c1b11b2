import { crc32 } from '../crc.ts';
import { FwError, type ErrorCode } from '../errors.ts';
import {
  CRC_SIZE, FLAG_MORE, FrameKind, HEADER_SIZE, MAX_CONTROL_PAYLOAD, MAX_FRAME_PAYLOAD, MAX_NAK_SEQS,
  MIN_BODY_SIZE, SACK_BITS, SEQ_MASK, cobsMaxEncodedLength, isFrameKind, maxBodySize,
} from './constants.ts';
import { cobsDecodeInto, cobsEncodeInto } from './cobs.ts';
import { ByteSlab } from './slab.ts';

/** Wire buffers of encoded frames, and payload copies of decoded ones (one allocation per slab, not per frame). */
const wireSlab = new ByteSlab();
const payloadSlab = new ByteSlab();
/** The body (header, payload, CRC) of the frame being encoded; grows to the largest frame seen. */
let bodyScratch = new Uint8Array(0);

/**
 * One link frame as a value (docs/protocol.md §3.3). Treat it as immutable: decoders
 * give every frame its own payload copy, and the object itself is frozen.
 */
export interface Frame {
  readonly kind: FrameKind;
  /** DATA: bit 0 = MORE. Zero for every other kind. */
  readonly flags: number;
  /** DATA: sequence number. ACK: cumulative ack. Zero for NAK, RESET and RESET_ACK. */
  readonly seq: number;
  readonly payload: Uint8Array;
}

/** Why a receiver drops a frame (§3.6); each has its own counter. */
export type DropReason = 'cobs' | 'short' | 'tooLong' | 'crc' | 'kind' | 'flags' | 'malformed';

const reasonCodes: Record<DropReason, ErrorCode> = {
  cobs: 'E_FRAME_COBS',
  short: 'E_FRAME_SHORT',
  tooLong: 'E_FRAME_TOO_LONG',
  crc: 'E_FRAME_CRC',
  kind: 'E_FRAME_KIND',
  flags: 'E_FRAME_KIND',
  malformed: 'E_FRAME_KIND',
};

export function dropError(reason: DropReason): FwError {
  const message = reason === 'flags' ? 'reserved frame flag bits set'
    : reason === 'malformed' ? 'frame fields do not fit its kind' : undefined;
  return new FwError(reasonCodes[reason], message, { details: { reason } });
}

function make(kind: FrameKind, flags: number, seq: number, payload: Uint8Array): Frame {
  return Object.freeze({ kind, flags, seq, payload });
}

function u32Payload(value: number): Uint8Array {
  const p = new Uint8Array(4);
  new DataView(p.buffer).setUint32(0, value >>> 0);
  return p;
}

function readU32(payload: Uint8Array): number {
  return new DataView(payload.buffer, payload.byteOffset, payload.byteLength).getUint32(0);
}

// ---- constructors (§3.3) ----

export function dataFrame(seq: number, payload: Uint8Array, more: boolean): Frame {
  return make(FrameKind.DATA, more ? FLAG_MORE : 0, seq & SEQ_MASK, payload);
}

/** cum: the next seq the receiver expects. sack bit i: seq cum+1+i was received (§4.4). */
export function ackFrame(cum: number, sack: number): Frame {
  return make(FrameKind.ACK, 0, cum & SEQ_MASK, u32Payload(sack));
}

/** The seqs the receiver is missing, 1..MAX_NAK_SEQS of them (§4.5). */
export function nakFrame(seqs: readonly number[]): Frame {
  if (seqs.length < 1 || seqs.length > MAX_NAK_SEQS) throw new RangeError(`NAK lists 1..${MAX_NAK_SEQS} seqs`);
  const p = new Uint8Array(seqs.length * 2);
  const view = new DataView(p.buffer);
  seqs.forEach((s, i) => view.setUint16(i * 2, s & SEQ_MASK));
  return make(FrameKind.NAK, 0, 0, p);
}

export function resetFrame(nonce: number): Frame {
  return make(FrameKind.RESET, 0, 0, u32Payload(nonce));
}

export function resetAckFrame(nonce: number): Frame {
  return make(FrameKind.RESET_ACK, 0, 0, u32Payload(nonce));
}

// ---- typed readers ----

export function isMore(frame: Frame): boolean {
  return (frame.flags & FLAG_MORE) !== 0;
}

export function ackFields(frame: Frame): { cum: number; sack: number } {
  if (frame.kind !== FrameKind.ACK) throw new TypeError('not an ACK frame');
  return { cum: frame.seq, sack: readU32(frame.payload) };
}

export function nakSeqs(frame: Frame): number[] {
  if (frame.kind !== FrameKind.NAK) throw new TypeError('not a NAK frame');
  const view = new DataView(frame.payload.buffer, frame.payload.byteOffset, frame.payload.byteLength);
  const out: number[] = [];
  for (let i = 0; i + 1 < frame.payload.length; i += 2) out.push(view.getUint16(i));
  return out;
}

export function frameNonce(frame: Frame): number {
  if (frame.kind !== FrameKind.RESET && frame.kind !== FrameKind.RESET_ACK) throw new TypeError('not a RESET or RESET_ACK frame');
  return readU32(frame.payload);
}

// ---- validation (§3.3, §3.6) ----

/** Checks kind, flags, seq and payload length; undefined when the frame is well-formed. */
export function checkFields(kind: number, flags: number, seq: number, payloadLength: number, maxPayload: number): DropReason | undefined {
  if (!isFrameKind(kind)) return 'kind';
  if ((flags & ~(kind === FrameKind.DATA ? FLAG_MORE : 0)) !== 0) return 'flags';
  switch (kind) {
    case FrameKind.DATA:
      if (payloadLength > maxPayload) return 'tooLong';
      return payloadLength >= 1 ? undefined : 'malformed';
    case FrameKind.ACK:
      return payloadLength === SACK_BITS / 8 ? undefined : 'malformed';
    case FrameKind.NAK:
      return seq === 0 && payloadLength >= 2 && payloadLength <= MAX_CONTROL_PAYLOAD && payloadLength % 2 === 0 ? undefined : 'malformed';
    case FrameKind.RESET:
    case FrameKind.RESET_ACK:
      return seq === 0 && payloadLength === 4 ? undefined : 'malformed';
    default: {
      const unreachable: never = kind;
      return unreachable;
    }
  }
}

/**
 * Validate a decoded body (header, payload, CRC) and turn it into a frame with its own payload
 * copy, or say why it is dropped. Checks run in the order of §3.6.
 */
export function decodeBody(body: Uint8Array, maxPayload: number): Frame | DropReason {
  const n = body.length;
  if (n < MIN_BODY_SIZE) return 'short';
  if (n > maxBodySize(maxPayload)) return 'tooLong';
  const end = n - CRC_SIZE;
  const crc = ((body[end]! << 24) | (body[end + 1]! << 16) | (body[end + 2]! << 8) | body[end + 3]!) >>> 0;
  if (crc32(body.subarray(0, end)) !== crc) return 'crc';
  const kind = body[0]!;
  const flags = body[1]!;
  const seq = (body[2]! << 8) | body[3]!;
  const reason = checkFields(kind, flags, seq, end - HEADER_SIZE, maxPayload);
  if (reason !== undefined) return reason;
  const payload = payloadSlab.take(end - HEADER_SIZE);
  payload.set(body.subarray(HEADER_SIZE, end));
  return make(kind as FrameKind, flags, seq, payload);
}

/** Encoded size of a frame on the wire, delimiter included, is at most this. */
export function maxWireSize(payloadLength: number): number {
  return cobsMaxEncodedLength(HEADER_SIZE + payloadLength + CRC_SIZE) + 1;
}

/**
 * COBS(body) followed by the 0x00 delimiter (§3.2). Throws FwError (E_FRAME_*) when the frame
 * is not well-formed, so a sender cannot put a frame on the wire that a receiver would drop.
 */
export function encodeFrame(frame: Frame, maxPayload = MAX_FRAME_PAYLOAD): Uint8Array {
  const { kind, flags, seq, payload } = frame;
  if (!Number.isInteger(seq) || seq < 0 || seq > SEQ_MASK) throw new FwError('E_FRAME_KIND', 'frame seq is not a u16');
  const reason = checkFields(kind, flags, seq, payload.length, maxPayload);
  if (reason !== undefined) throw dropError(reason);
  const end = HEADER_SIZE + payload.length;
  if (bodyScratch.length < end + CRC_SIZE) bodyScratch = new Uint8Array(end + CRC_SIZE);
  const body = bodyScratch.subarray(0, end + CRC_SIZE);
  body[0] = kind;
  body[1] = flags;
  body[2] = seq >>> 8;
  body[3] = seq & 0xff;
  body.set(payload, HEADER_SIZE);
  const crc = crc32(body.subarray(0, end));
  body[end] = crc >>> 24;
  body[end + 1] = (crc >>> 16) & 0xff;
  body[end + 2] = (crc >>> 8) & 0xff;
  body[end + 3] = crc & 0xff;
  const wire = wireSlab.take(cobsMaxEncodedLength(body.length) + 1);
  const len = cobsEncodeInto(body, wire);
  wire[len] = 0;
  return wireSlab.trim(wire, len + 1);
}

/**
 * Decode exactly one encoded frame (the trailing 0x00 is optional). Throws FwError with the
 * E_FRAME_* code of the drop reason; streams should use FrameParser, which counts instead.
 */
export function decodeFrame(wire: Uint8Array, maxPayload = MAX_FRAME_PAYLOAD): Frame {
  const encoded = wire.length > 0 && wire[wire.length - 1] === 0 ? wire.subarray(0, wire.length - 1) : wire;
  if (encoded.length > cobsMaxEncodedLength(maxBodySize(maxPayload))) throw dropError('tooLong');
  const body = new Uint8Array(Math.max(0, encoded.length - 1));
  const n = cobsDecodeInto(encoded, body);
  if (n < 0) throw dropError('cobs');
  const result = decodeBody(body.subarray(0, n), maxPayload);
  if (typeof result === 'string') throw dropError(result);
  return result;
}
