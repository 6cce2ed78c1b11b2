import { DATA_MESSAGE_OVERHEAD } from '../protocol/uplink.ts';
import { laptopSettings } from './settings.ts';

export interface UploadChunkSettings {
  /** Frame payload while the line is slow or not yet measured. */
  uploadFrame: number;
  /** Longest a frame may spend on the line to be sent larger than uploadFrame. */
  fastFrameMs: number;
}

/**
 * Image bytes for the next `data` message (docs/protocol.md §7.4.1 allows 1..`grant.chunk`):
 * what fits a frame of `uploadFrame` payload until the link has measured the line, then the
 * largest of uploadFrame × 2^k payloads — up to the whole granted chunk — that the line rate
 * estimate (§4.7, ms per wire byte) says spends at most `fastFrameMs` on the line. A UART keeps
 * the small frames (cheap to resend, a short tail at the end of the image); a fast line (a pty,
 * a USB CDC-ACM gadget) gets frames large enough that the per-frame work of both ends, not the
 * line, stops being what limits the upload.
 */
export function uploadChunk(granted: number, lineMsPerByte: number | undefined, s: UploadChunkSettings = laptopSettings): number {
  const small = Math.max(1, Math.min(granted, s.uploadFrame - DATA_MESSAGE_OVERHEAD));
  if (lineMsPerByte === undefined || !(lineMsPerByte > 0) || !Number.isFinite(lineMsPerByte)) return small;
  const fits = (payload: number): boolean => payload * lineMsPerByte <= s.fastFrameMs;
  const largest = granted + DATA_MESSAGE_OVERHEAD;
  if (fits(largest)) return granted;
  let chosen = small;
  for (let frame = s.uploadFrame * 2; frame < largest && fits(frame); frame *= 2) chosen = frame - DATA_MESSAGE_OVERHEAD;
  return chosen;
}
