import type { TextOut } from './render.ts';
import { fmtBytes, fmtMs } from './render.ts';

/** Which part of a run the link was lost in. */
export type RunPhase = 'upload' | 'follow';

/**
 * What fwpush says about its link while it keeps a push going: lost, back, and where the upload
 * resumes. As JSON lines they sit beside the renderer's events (same `event` key).
 */
export type LinkNotice =
  | { event: 'link-lost'; port: string; phase: RunPhase; code: string | null; message: string; reconnectTimeoutMs: number }
  | { event: 'reconnected'; port: string; phase: RunPhase; attempts: number; afterMs: number }
  | { event: 'upload-resumed'; sha256: string; offset: number; size: number }
  /** The gateway has not answered a few seconds after the port opened: what fwpush waits for, the likely causes. */
  | { event: 'waiting'; port: string; remainingMs: number; message: string };

/** One plain line per notice. */
export function noticeText(n: LinkNotice): string {
  switch (n.event) {
    case 'link-lost':
      return `Link lost: gateway restarted or cable pulled (${n.port}: ${n.message}); reconnecting for up to ${fmtMs(n.reconnectTimeoutMs)}…`;
    case 'reconnected':
      return `Reconnected on ${n.port} after ${fmtMs(n.afterMs)} (${n.attempts} attempt${n.attempts === 1 ? '' : 's'}); ${n.phase === 'upload' ? 'resuming the upload' : 'following the campaign again'}`;
    case 'upload-resumed':
      return `The gateway holds ${fmtBytes(n.offset)} of ${fmtBytes(n.size)}; uploading the rest from there`;
    case 'waiting':
      return n.message;
    default: {
      const never: never = n;
      return never;
    }
  }
}

/**
 * Where notices go: a JSON line, or a plain line after `clear()` (which takes the terminal's
 * bars down first; the renderer draws them again on its next update).
 */
export function noticeWriter(json: boolean, out: TextOut, clear: () => void): (n: LinkNotice) => void {
  if (json) return (n) => out.write(`${JSON.stringify(n)}\n`);
  return (n) => {
    clear();
    out.write(`${noticeText(n)}\n`);
  };
}
