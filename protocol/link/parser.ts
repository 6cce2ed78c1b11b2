import { FwError } from '../errors.ts';
import { MAX_FRAME_PAYLOAD, MIN_FRAME_PAYLOAD, cobsMaxEncodedLength, maxBodySize } from './constants.ts';
import { cobsDecodeInto } from './cobs.ts';
import { decodeBody, type DropReason, type Frame } from './frame.ts';

/** What the parser has seen since it was made (docs/protocol.md §3.6). */
export interface ParserStats {
  /** Frames accepted. */
  frames: number;
  /** Empty frames (two delimiters in a row): line flushes, not errors. */
  idle: number;
  cobs: number;
  short: number;
  tooLong: number;
  crc: number;
  /** Unknown kind. */
  kind: number;
  /** Reserved flag bits set. */
  flags: number;
  /** Known kind, but seq or payload length do not fit it. */
  malformed: number;
}

export interface FrameParserOptions {
  /** Largest DATA payload accepted (MIN_FRAME_PAYLOAD..MAX_FRAME_PAYLOAD, default MAX_FRAME_PAYLOAD). */
  maxPayload?: number;
}

export function emptyParserStats(): ParserStats {
  return { frames: 0, idle: 0, cobs: 0, short: 0, tooLong: 0, crc: 0, kind: 0, flags: 0, malformed: 0 };
}

/**
 * Incremental frame parser: feed the byte stream in any split, get the same frames out. Bytes
 * between delimiters that do not make a valid frame are counted and dropped; the parser always
 * resynchronises at the next 0x00. Memory is bounded by the largest encoded frame: a run without
 * a delimiter longer than that is discarded up to the next 0x00 and counted as tooLong.
 */
export class FrameParser {
  readonly maxPayload: number;
  /** Longest encoded frame (delimiter excluded) the parser buffers. */
  readonly maxEncoded: number;
  private readonly counters = emptyParserStats();
  private readonly pending: Uint8Array;
  private readonly scratch: Uint8Array;
  private pendingLength = 0;
  private discarding = false;

  constructor(options: FrameParserOptions = {}) {
    const maxPayload = options.maxPayload ?? MAX_FRAME_PAYLOAD;
    if (!Number.isInteger(maxPayload) || maxPayload < MIN_FRAME_PAYLOAD || maxPayload > MAX_FRAME_PAYLOAD) {
      throw new FwError('E_CONFIG', `maxPayload must be an integer in ${MIN_FRAME_PAYLOAD}..${MAX_FRAME_PAYLOAD}`);
    }
    this.maxPayload = maxPayload;
    this.maxEncoded = cobsMaxEncodedLength(maxBodySize(maxPayload));
    this.pending = new Uint8Array(this.maxEncoded);
    this.scratch = new Uint8Array(this.maxEncoded);
  }

  /** Live counters; read-only for callers. */
  get stats(): Readonly<ParserStats> {
    return this.counters;
  }

  /** Bytes of an unfinished frame held until its delimiter arrives (never more than maxEncoded). */
  get bufferedBytes(): number {
    return this.pendingLength;
  }

  /** Forget any unfinished frame (counters are kept). */
  reset(): void {
    this.pendingLength = 0;
    this.discarding = false;
  }

  /** Feed stream bytes; returns the frames completed by them, in order. Never throws. */
  push(bytes: Uint8Array): Frame[] {
    const out: Frame[] = [];
    const n = bytes.length;
    let pos = 0;
    while (pos < n) {
      const z = bytes.indexOf(0, pos);
      const segEnd = z < 0 ? n : z;
      const segLength = segEnd - pos;
      if (this.discarding) {
        this.discarding = z < 0;
      } else if (this.pendingLength + segLength > this.maxEncoded) {
        // No delimiter within the longest legal frame: drop it without buffering any further.
        this.counters.tooLong++;
        this.pendingLength = 0;
        this.discarding = z < 0;
      } else if (z < 0) {
        this.pending.set(bytes.subarray(pos, segEnd), this.pendingLength);
        this.pendingLength += segLength;
      } else if (this.pendingLength === 0) {
        this.finish(bytes.subarray(pos, segEnd), out);
      } else {
        this.pending.set(bytes.subarray(pos, segEnd), this.pendingLength);
        const total = this.pendingLength + segLength;
        this.pendingLength = 0;
        this.finish(this.pending.subarray(0, total), out);
      }
      if (z < 0) break;
      pos = z + 1;
    }
    return out;
  }

  private finish(encoded: Uint8Array, out: Frame[]): void {
    if (encoded.length === 0) {
      this.counters.idle++;
      return;
    }
    const n = cobsDecodeInto(encoded, this.scratch);
    const result: Frame | DropReason = n < 0 ? 'cobs' : decodeBody(this.scratch.subarray(0, n), this.maxPayload);
    if (typeof result === 'string') {
      this.counters[result]++;
    } else {
      this.counters.frames++;
      out.push(result);
    }
  }
}
