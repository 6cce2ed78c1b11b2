import type { ArqLink, LinkTimers } from './arq.ts';

/** Bounds of a keepalive interval offered in hello (§4.11.1, §7.2). */
export const KEEPALIVE_MIN_MS = 100;
export const KEEPALIVE_MAX_MS = 60_000;

/**
 * The agreed keepalive interval (§4.11.1): both sides must offer one (an older peer offers none:
 * no keepalives); the longer of the two offers, so neither is asked to send more often than it
 * chose.
 */
export function agreedKeepalive(laptopMs: number | undefined, gatewayMs: number | undefined): number | undefined {
  if (!laptopMs || !gatewayMs) return undefined;
  return Math.min(KEEPALIVE_MAX_MS, Math.max(KEEPALIVE_MIN_MS, laptopMs, gatewayMs));
}

export interface KeepaliveOptions {
  /** The agreed interval (§4.11.1): a frame goes out at least this often. */
  intervalMs: number;
  /** Nothing received for this long: the peer is gone (at least 3 x intervalMs). */
  silenceMs: number;
  timers: LinkTimers;
}

/**
 * Link liveness both ways (docs/protocol.md §4.11.1), once both sides agreed to it: when this
 * side has sent no frame for `intervalMs` it sends a keepalive (an ACK of its receive state),
 * and when no frame at all has arrived for `silenceMs`, or DATA has waited that long without any
 * acknowledgement, it declares the link down (ArqLink.peerSilent: `E_LINK_TIMEOUT`, 'down'). One timer, ticking at a quarter of the
 * interval; it watches the link's frame counters, so it costs nothing per frame. Stopped by
 * stop() (the application stops it on a peer RESET, 'down' or close).
 */
export class LinkKeepalive {
  private timer: unknown;
  private lastOut: number;
  private lastIn: number;
  private outAt: number;
  private inAt: number;
  private lastAcked: number;
  /** Since when DATA has been waiting for an acknowledgement that does not come (undefined: none waits, or one came). */
  private stuckSince: number | undefined;
  private readonly tickMs: number;
  readonly silenceMs: number;

  constructor(private readonly arq: ArqLink, private readonly o: KeepaliveOptions) {
    const s = arq.stats;
    this.lastOut = s.framesOut;
    this.lastIn = s.framesIn;
    this.lastAcked = s.framesAcked;
    this.outAt = this.inAt = o.timers.now();
    this.silenceMs = Math.max(o.silenceMs, 3 * o.intervalMs);
    this.tickMs = Math.max(1, Math.floor(o.intervalMs / 4));
    this.arm();
  }

  stop(): void {
    if (this.timer !== undefined) this.o.timers.clearTimeout(this.timer);
    this.timer = undefined;
  }

  private arm(): void {
    this.timer = this.o.timers.setTimeout(() => this.tick(), this.tickMs);
  }

  private tick(): void {
    this.timer = undefined;
    const now = this.o.timers.now();
    const s = this.arq.stats;
    if (s.framesIn !== this.lastIn) {
      this.lastIn = s.framesIn;
      this.inAt = now;
    }
    if (s.framesOut !== this.lastOut) {
      this.lastOut = s.framesOut;
      this.outAt = now;
    }
    if (now - this.inAt >= this.silenceMs) {
      this.arq.peerSilent(Math.round(now - this.inAt));
      return; // down: no more keepalives until the application starts them again
    }
    // frames arrive but none acknowledges our DATA (a restarted peer whose RESET was lost answers
    // the old session's frames with ACKs of its own, new session): as dead as silence
    if (s.framesAcked !== this.lastAcked || this.arq.unacked === 0) {
      this.lastAcked = s.framesAcked;
      this.stuckSince = undefined;
    } else {
      this.stuckSince ??= now;
      if (now - this.stuckSince >= this.silenceMs) {
        this.arq.peerSilent(Math.round(now - this.stuckSince), 'no acknowledgement from the link peer');
        return;
      }
    }
    if (now - this.outAt >= this.o.intervalMs) {
      this.arq.sendKeepalive();
      this.lastOut = this.arq.stats.framesOut;
      this.outAt = now;
    }
    this.arm();
  }
}
