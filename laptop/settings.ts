/**
 * Every wait and limit on the laptop side (fwpush), with its default, in one place
 * (docs/operations.md, "fwpush"). Flags override some of them for one run; nothing else in
 * laptop/ has a number of its own. Nothing waits without a bound.
 */
export const laptopSettings = Object.freeze({
  /** Longest wait for the gateway's reply to hello, request-to-send, commit or status. */
  replyTimeoutMs: 60_000,
  /** Longest silence from the gateway while following a campaign (`--timeout`, given in seconds). */
  idleTimeoutMs: 300_000,
  /** Longest silence while reading the replay of a finished campaign that has no `complete` (it ended abnormally). */
  replayIdleMs: 5000,
  /** Longest wait to open the port, reset the link and exchange hellos (each reconnect attempt: at most the time left). */
  connectTimeoutMs: 60_000,
  /** No answer from the gateway this long after the port opened: say what fwpush waits for and the likely causes (it keeps trying). */
  waitingHintMs: 3000,
  /** How long to keep reopening the port after the link is lost mid-push (`--reconnect-timeout`, in seconds); 0: exit at once. */
  reconnectTimeoutMs: 300_000,
  /** Wait before the second attempt to reopen the port; it doubles after each failed attempt... */
  reconnectBackoffMs: 250,
  /** ...up to this. Each attempt itself is bounded by the time left and by the link handshake's retransmit limit. */
  reconnectBackoffMaxMs: 5000,
  /** How often the port's path is checked while connected: a tty that vanished or was replaced is a lost link. */
  portCheckIntervalMs: 250,
  /**
   * Link keepalive interval offered in hello (docs/protocol.md §4.11.1): with a gateway that
   * agrees, each side sends a frame at least this often (the longer offer wins).
   */
  keepaliveMs: 2000,
  /**
   * With keepalives agreed: nothing from the gateway for this long (at least 3 intervals) is a
   * lost link (gateway stopped or restarted, cable pulled), and fwpush reconnects.
   */
  linkSilenceMs: 15_000,
  /** Longest wait for room in the link's send queue before a send fails. */
  sendTimeoutMs: 30_000,
  /** Longest wait for the serial port to close when fwpush ends, is interrupted or reconnects. */
  portCloseTimeoutMs: 2000,
  /** fwpush resets the link when it leaves (§7.2.4: the gateway's session and its authorisation end): longest wait for the RESET_ACK. */
  farewellTimeoutMs: 1000,
  /** Serial baud rate (`--baud`); a pty ignores it. */
  baudRate: 921_600,
  /** Largest serial frame payload offered in hello (`--frame`); the gateway may answer with less. */
  maxFrame: 16_384,
  /**
   * Frame payload of the upload's `data` messages while the line is slow or not yet measured
   * (at most the negotiated frame): a lost frame costs little on a UART, and its last frame's
   * line time and ACK are a small part of an image.
   */
  uploadFrame: 4096,
  /**
   * Larger `data` messages, up to the negotiated frame, while the link's line rate estimate says
   * a frame of that size spends at most this long on the line — a pty or a USB CDC-ACM gadget,
   * never a UART at ≤ 3 Mbaud (4 KiB there takes ≥ 13 ms).
   */
  fastFrameMs: 2,
  /** ARQ window offered in hello (`--window`). */
  window: 16,
  /** Frame payload used until the hellos have negotiated a larger one. */
  initialFramePayload: 256,
  /** Chunk size towards the devices in a manifest fwpush makes (`--chunk`). */
  deviceChunk: 4096,
  /** Most device bars on a terminal at once (fewer when the terminal is short). */
  maxBars: 12,
  /** Least time between two totals lines without a terminal. */
  totalsEveryMs: 2000,
  /** Terminal redraws per second. */
  fps: 10,
  /** The range each numeric flag accepts, [least, most]; a value outside is a usage error (exit 2). */
  flagRanges: Object.freeze({
    /** `--chunk <bytes>` */
    chunk: Object.freeze([64, 65_536] as const),
    /** `--baud <rate>` */
    baud: Object.freeze([50, 20_000_000] as const),
    /** `--frame <bytes>` */
    frame: Object.freeze([64, 16_384] as const),
    /** `--window <frames>` */
    window: Object.freeze([1, 64] as const),
    /** `--timeout <seconds>`: up to a day of gateway silence. */
    timeout: Object.freeze([1, 86_400] as const),
    /** `--reconnect-timeout <seconds>`: 0 (do not reconnect) up to a day. */
    reconnectTimeout: Object.freeze([0, 86_400] as const),
  }),
});

export type LaptopSettings = typeof laptopSettings;
