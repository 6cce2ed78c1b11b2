import { open } from 'node:fs/promises';
import { z } from 'zod';
import { FwError } from '../protocol/errors.ts';
import { MAX_FRAME_PAYLOAD, MAX_IMAGE_SIZE, MAX_WINDOW, MIN_FRAME_PAYLOAD } from '../protocol/limits.ts';
import { formatIssues } from '../protocol/schema.ts';
import { keyIdOf, parsePublicKey } from '../protocol/signature.ts';
import { isLoopback } from './http/loopback.ts';
import { cronProblem, MAX_WINDOW_MIN, timeZoneProblem } from './windows.ts';

/**
 * Every timeout and limit of the gateway, with its default, in one validated object.
 * Sources, later wins: defaults <- config file (--config, JSON) <- command-line flags.
 * Documented in docs/operations.md.
 */
const ms = z.number().int().min(0).max(24 * 3600 * 1000);
const positive = z.number().int().min(1);

/** One maintenance window: opens when `cron` matches the wall clock in `timeZone`, for `durationMin` minutes. */
const windowSpec = z.strictObject({
  cron: z.string().superRefine((v, ctx) => {
    const problem = cronProblem(v);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  }),
  durationMin: z.number()
    .int('must be a whole number of minutes')
    .gt(0, 'must be greater than 0')
    .max(MAX_WINDOW_MIN, `must be at most ${MAX_WINDOW_MIN} (7 days)`),
  timeZone: z.string().superRefine((v, ctx) => {
    const problem = timeZoneProblem(v);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  }),
});

/** One trusted manifest-signing key (docs/protocol.md §5.4): Ed25519, SPKI PEM or raw 32 bytes base64/hex; `keyId`, when given, must match it. */
const trustedKey = z.strictObject({
  keyId: z.string().regex(/^[0-9a-f]{16}$/, 'must be 16 lowercase hex digits').optional(),
  publicKey: z.string().min(1),
}).superRefine((k, ctx) => {
  try {
    const id = keyIdOf(parsePublicKey(k.publicKey));
    if (k.keyId !== undefined && k.keyId !== id) ctx.addIssue({ code: 'custom', message: `keyId ${k.keyId} does not match the key (its id is ${id})`, path: ['keyId'] });
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message, path: ['publicKey'] });
  }
});

export const configSchema = z.strictObject({
  /** Where images, partial uploads and gateway state live. */
  dataDir: z.string().min(1).default('./data'),
  serial: z.strictObject({
    /** Serial device of the laptop link, e.g. /dev/ttyUSB0; none = no uplink. */
    path: z.string().min(1).optional(),
    baudRate: positive.default(921_600),
    /**
     * How often the port's path is checked: a tty that vanished or was replaced (USB-serial adapter
     * pulled and plugged back) is closed and reopened. A hung-up tty is not always reported by the
     * port itself (a read returning 0 bytes is retried for ever).
     */
    portCheckIntervalMs: z.number().int().min(50).max(60_000).default(1_000),
    /** Bound on closing a port whose tty vanished (such a close can hang); then it is left to the OS and reopened. */
    portCloseTimeoutMs: z.number().int().min(100).max(60_000).default(2_000),
  }).prefault({}),
  broker: z.strictObject({
    /** Listen address of the MQTT broker. Loopback by default; set 0.0.0.0 (or the site LAN address) for real devices. */
    host: z.string().min(1).default('127.0.0.1'),
    port: z.number().int().min(0).max(65_535).default(1883),
    /** Largest MQTT packet accepted from a client (a chunk of 64 KiB plus envelope fits). */
    maxPacketBytes: positive.default(128 * 1024),
    maxClients: positive.default(10_000),
    /** Device list with scrypt password hashes (`fwgate device add`); none = no passwords (docs/protocol.md §6.1.8). */
    devicesFile: z.string().min(1).optional(),
    /** Every client must authenticate (password or client certificate). Default: true when devicesFile (or client certificates) is set. */
    requireAuth: z.boolean().optional(),
    /**
     * Keep the fast verifiers of verified device logins in <dataDir>/verified-logins.json (0600), so
     * that the fleet reconnecting after a restart costs no scrypt (passwords of 22+ characters only;
     * docs/security.md "Reconnect storms"). false: every password is checked with scrypt after a restart.
     */
    persistLogins: z.boolean().default(true),
    /**
     * Start without device authentication on an address beyond loopback (CLI --insecure-open; lab only).
     * Without it (or an explicit requireAuth: false) such a start is refused (gateway/broker-exposure.ts).
     */
    insecureOpen: z.boolean().default(false),
    /**
     * The plain (non-TLS) listener on host:port. false: TLS only (needs broker.tls). Must be said
     * explicitly when TLS is configured and host is beyond loopback (passwords in clear text).
     */
    plain: z.boolean().optional(),
    /** TCP connections accepted per minute from one remote address (token bucket, a minute's worth of burst); 0 = no limit. */
    connectRatePerMin: z.number().int().min(0).default(600),
    /** After a failed password check, checks from that address and for that client id wait this long (doubling per failure); 0 = off. */
    authBackoffMs: z.number().int().min(0).max(60_000).default(1000),
    /** Longest such wait. */
    authBackoffMaxMs: z.number().int().min(0).max(3_600_000).default(60_000),
    /** scrypt password checks running at once: well below the libuv pool (4 threads) that file I/O needs too. */
    maxConcurrentScrypt: z.number().int().min(1).max(8).default(1),
    /** Password checks waiting for a slot; more are refused at once (CONNACK 3). */
    maxQueuedScrypt: z.number().int().min(0).max(10_000).default(32),
    /**
     * Publishes per second per client (token bucket); over it they are dropped and counted; 0 = no limit.
     * A device's acks are cumulative (§6.6.4): dropping some of a fast transfer's acks only coarsens them.
     */
    publishRatePerSec: z.number().int().min(0).max(100_000).default(500),
    /** Burst of the publish bucket (publishes): the acks of a whole multi-MiB transfer at 4 KiB chunks fit. */
    publishBurst: z.number().int().min(1).max(1_000_000).default(2000),
    /** A client with more than this many dropped publishes within 10 s is disconnected. */
    publishDropLimit: z.number().int().min(1).max(1_000_000).default(10_000),
    /** Repeated refusals of one kind (per client or address) are logged at most once per this long, with a count. */
    refusalLogIntervalMs: z.number().int().min(0).max(3_600_000).default(10_000),
    /** An additional MQTT-over-TLS (mqtts) listener. */
    tls: z.strictObject({
      host: z.string().min(1).optional(),
      port: z.number().int().min(0).max(65_535).default(8883),
      /** PEM files: server certificate (chain) and private key. */
      cert: z.string().min(1),
      key: z.string().min(1),
      /** PEM CA file for client certificates; with requestCert, a verified certificate's CN authenticates that device. */
      ca: z.string().min(1).optional(),
      requestCert: z.boolean().default(false),
    }).refine((t) => !t.requestCert || t.ca !== undefined, { message: 'requestCert needs ca', path: ['requestCert'] }).optional(),
  }).refine((b) => b.plain !== false || b.tls !== undefined, { message: 'plain: false needs broker.tls (no listener would be left)', path: ['plain'] }).prefault({}),
  uplink: z.strictObject({
    /** Largest serial frame payload the gateway offers in its hello. */
    maxFrame: z.number().int().min(MIN_FRAME_PAYLOAD).max(MAX_FRAME_PAYLOAD).default(16_384),
    /** ARQ window (frames in flight) the gateway offers. */
    window: z.number().int().min(1).max(MAX_WINDOW).default(16),
    rtoInitialMs: ms.default(300),
    rtoMinMs: ms.default(30),
    rtoMaxMs: ms.default(3000),
    maxRetransmits: positive.default(12),
    /**
     * Delayed ACK on the link once hello is done (docs/protocol.md §4.4): the laptop's DATA is
     * acknowledged at most this long after the previous ACK, one ACK for all in between (0: at once).
     */
    ackDelayMs: z.number().int().min(0).max(100).default(2),
    /** ...and at once when this many DATA frames are owed an ACK. */
    ackEvery: z.number().int().min(1).max(MAX_WINDOW).default(4),
    /**
     * Link keepalive interval offered in the gateway's hello (docs/protocol.md §4.11.1): with a
     * laptop that offers one too, each side sends a frame at least this often (the longer offer
     * wins); 0: none.
     */
    keepaliveMs: z.number().int().min(0).max(60_000).refine((v) => v === 0 || v >= 100, 'must be 0 (off) or at least 100').default(2000),
    /** With keepalives agreed: nothing from the laptop for this long (at least 3 intervals) and its link is down. */
    linkSilenceMs: ms.default(15_000),
    /** Largest image the gateway accepts for upload. */
    maxImageBytes: z.number().int().min(1).max(MAX_IMAGE_SIZE).default(64 * 1024 * 1024),
    /** An upload's partial file is made durable (fdatasync) at least every this many bytes: what a crash can cost a resume. */
    partialSyncBytes: positive.max(MAX_IMAGE_SIZE).default(256 * 1024),
    /** Longest wait for the laptop's link to acknowledge the order before the transfers start. */
    orderDeliveryWaitMs: z.number().int().min(0).max(60_000).default(2000),
    /**
     * Technician keys allowed to upload (docs/protocol.md §7.2.4): Ed25519 public keys, several during a rotation.
     * A request to send is granted only after an `auth` signed with one of them.
     */
    technicianKeys: z.array(trustedKey).max(64).default([]),
    /** DEVELOPMENT ONLY: grant requests to send without a technician's `auth` (a warning at start-up). */
    allowUnauthenticated: z.boolean().default(false),
    /**
     * A session's technician authorisation lapses when no authorised request came for this long since
     * the hello (or the last authorised one): later requests are denied until a new hello (§7.2.4).
     */
    authIdleMs: z.number().int().min(1000).max(3_600_000).default(60_000),
  }).prefault({}),
  rollout: z.strictObject({
    /** Devices updated at the same time. */
    concurrency: positive.max(10_000).default(8),
    /** Most chunks in flight per device; the window is sized from the device's measured bandwidth-delay product, within these bounds (and never above what the device accepts). */
    chunkWindow: positive.max(256).default(32),
    minChunkWindow: positive.max(256).default(2),
    /** Pings per device when measuring its round-trip time before a campaign. */
    probePings: positive.max(50).default(3),
    pingTimeoutMs: ms.default(2000),
    /** Throughput probe: a burst of this many bytes (in probeChunkBytes messages) per device before a campaign. */
    probeBytes: positive.max(1024 * 1024).default(32 * 1024),
    probeChunkBytes: positive.max(65_536).default(4096),
    probeTimeoutMs: ms.default(5000),
    /** Probe bursts per device, one after another; the fastest counts (a loss stall spoils one burst, not the figure). */
    probeBursts: positive.max(10).default(2),
    /**
     * A throughput figure that the device's last whole transfer achieved stands while a new probe
     * lies within this factor of it (a 32 KiB burst on a lossy link reads 2-3x off the rate a 1 MiB
     * transfer gets); a probe outside it means the link changed, and its figure replaces the
     * transfer's. 1 = every probe replaces it.
     */
    probeTransferFactor: z.number().min(1).max(1000).default(4),
    /** Devices measured at the same time before a campaign. */
    probeConcurrency: positive.max(1000).default(8),
    /**
     * A device whose round trip and throughput were both measured (probe or whole transfer) at most
     * this long ago is not measured again before a campaign: one ping checks it answers, and its
     * figures are reused. 0 (default) = measure every device before every campaign, as the
     * ranking requires by default; raise it on a site that runs campaigns back to back.
     */
    probeMaxAgeMs: ms.default(0),
    /** A device that refused as busy is offered again after this long (or when it reports idle). */
    busyRecheckMs: ms.default(60_000),
    /** Campaigns (now and window): devices still pending (offline, busy) this long after the upload end expired. */
    /**
     * A campaign paused because its journal cannot be written (disk full, docs/reliability.md
     * "Disk full") tries the disk again this often; nothing that needs the record happens meanwhile.
     */
    journalRetryMs: z.number().int().min(100).max(3_600_000).default(5000),
    campaignExpiryMs: z.number().int().min(60_000).max(365 * 24 * 3600 * 1000).default(7 * 24 * 3600 * 1000),
    /** Window campaigns: transfer outside the windows too; only activations wait for a window. */
    downloadEarly: z.boolean().default(false),
    /** Aggregate cap on chunk bytes per second for the whole site (0 = no cap). */
    siteBps: z.number().int().min(0).default(0),
    offerTimeoutMs: ms.default(5000),
    /** No ack for this long: resend the last chunk sent, whose ack lists what the device lacks (§6.6.5). */
    ackTimeoutMs: ms.default(3000),
    /** The ack wait is at least this many of the device's measured round trips (a slow link waits longer than ackTimeoutMs). */
    ackTimeoutRtts: z.number().min(1).max(100).default(4),
    /** Consecutive ack timeouts before the transfer attempt fails as connection lost. */
    maxAckTimeouts: positive.default(4),
    /** A chunk listed missing again is resent only if last sent max(resendGuardMinMs, resendGuardRtts x RTT) ago; the RTT is taken as resendGuardMinMs when unmeasured. */
    resendGuardMinMs: ms.default(20),
    resendGuardRtts: z.number().min(1).max(100).default(1.5),
    verifyTimeoutMs: ms.default(30_000),
    activateTimeoutMs: ms.default(10_000),
    /** Expected reboot-and-report time of a device not yet measured (for ETAs and the start plan); measured per device afterwards. */
    rebootEstimateMs: ms.default(1500),
    /** Expected device time per MiB of image (offer, flash writes, verification: what the link does not explain) of a device not yet measured; measured per device afterwards. */
    deviceMsPerMiBEstimate: z.number().int().min(0).max(3_600_000).default(1000),
    /** From activate until the device reports its boot on the new slot. */
    rebootTimeoutMs: ms.default(60_000),
    /** Wait for `confirmed` after each `confirm`. */
    confirmTimeoutMs: ms.default(5000),
    /** `confirm`s left unanswered (device online) before the gateway stops sending and waits for the device's trial deadline. */
    confirmTries: positive.max(100).default(3),
    /**
     * The longest trial timeout (docs/protocol.md §6.9.3) of the site's devices (reference device: 30000).
     * A device that does not confirm is waited for until this + rebootTimeoutMs after its boot report,
     * so that its own trial deadline reverts it and the gateway reports it rolled back.
     */
    trialTimeoutMs: ms.default(30_000),
    /** A device that went offline mid-update: how long to wait for it to come back. */
    offlineWaitMs: ms.default(30_000),
    /**
     * After the gateway starts: a new campaign waits up to this long from the start for the devices
     * that were connected when the previous run stopped (they are reconnecting), so they are
     * ranked and updated with the others, not left to their next check-in. 0: no wait.
     */
    reconnectGraceMs: ms.default(15_000),
    /** Attempts per device (offer..confirm) before it is reported failed. */
    maxAttempts: positive.max(100).default(3),
    /** Backoff before attempt k + 1: retryBackoffMs x 2^(k-1), capped at retryBackoffMaxMs, jittered over its upper half. */
    retryBackoffMs: ms.default(1000),
    retryBackoffMaxMs: ms.default(30_000),
    /**
     * Time budget of one device from the start of its session: no wait before activation and no
     * new attempt goes past it; then failed / timeout. Above 2 x the transfer time of the largest
     * image on the slowest link (docs/operations.md).
     */
    deviceDeadlineMs: ms.min(1).default(15 * 60_000),
    /**
     * Stop starting devices once this percentage of the finished devices (updated, failed or
     * rolled back) have rolled back, and at least 2 have; 0 = never stop (docs/protocol.md §7.8.1).
     */
    rollbackThreshold: z.number().int().min(0).max(100).default(20),
    /**
     * The rollback threshold counts at least this share (percent) of the campaign's targeted devices
     * as finished, so the first few devices to finish (the fastest: possibly a few lying devices)
     * cannot halt a whole fleet alone (docs/security.md). 0 = count only the finished ones.
     */
    rollbackMinSamplePct: z.number().int().min(0).max(100).default(50),
    /** Least time between two byte-progress reports for one device (phase changes are always sent). */
    progressIntervalMs: ms.default(250),
  }).prefault({}),
  log: z.strictObject({
    level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    format: z.enum(['pretty', 'json']).default('pretty'),
  }).prefault({}),
  http: z.strictObject({
    /** Listen address of the HTTP listener (metrics, health, API, status page); loopback unless named. */
    host: z.string().min(1).default('127.0.0.1'),
    /** Listen port; absent = no HTTP listener (the default); 0 = any free port. */
    port: z.number().int().min(0).max(65_535).optional(),
    /** Bearer token every route but /healthz requires; needed when host is not loopback. */
    token: z.string().min(16, 'must be at least 16 characters').optional(),
    /** A file holding the token (first line), instead of token. */
    tokenFile: z.string().min(1).optional(),
  }).superRefine((h, ctx) => {
    if (h.token !== undefined && h.tokenFile !== undefined) ctx.addIssue({ code: 'custom', message: 'give token or tokenFile, not both', path: ['tokenFile'] });
    if (!isLoopback(h.host) && h.token === undefined && h.tokenFile === undefined) {
      ctx.addIssue({ code: 'custom', message: `${h.host} is not loopback: set http.token or http.tokenFile, so that only holders of the token can read the fleet`, path: ['token'] });
    }
  }).prefault({}),
  windows: z.strictObject({
    /** Maintenance windows (gateway/windows.ts); none = campaigns run at once. */
    list: z.array(windowSpec).max(64).default([]),
    /** With windows: how often the wall clock is compared with the monotonic clock, so a step of it re-checks the schedule at once. */
    clockCheckMs: z.number().int().min(100).max(3_600_000).default(5000),
    /** ...and how far the two may drift apart in one check before it counts as a step. */
    clockJumpMs: z.number().int().min(10).max(3_600_000).default(2000),
  }).prefault({}),
  storage: z.strictObject({
    /**
     * Journals of ended campaigns (halted, cancelled, completed, expired) kept for `fwgate campaigns`:
     * the newest `count`, none that ended more than `maxAgeDays` ago; 0 = no limit of that kind.
     * Applied at start-up (and by `fwgate images prune`); unfinished campaigns are always kept.
     */
    keepCampaigns: z.strictObject({
      count: z.number().int().min(0).max(1_000_000).default(100),
      maxAgeDays: z.number().int().min(0).max(36_500).default(365),
    }).prefault({}),
  }).prefault({}),
  security: z.strictObject({
    /** Keys whose manifest signatures are accepted (several during a key rotation); none = every upload is denied unless allowUnsigned. */
    trustedKeys: z.array(trustedKey).max(64).default([]),
    /** DEVELOPMENT ONLY: accept unsigned manifests (a warning at start-up and on each one). Signed ones are still checked. */
    allowUnsigned: z.boolean().default(false),
  }).prefault({}),
});

export type GatewayConfig = z.infer<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;

/** Validate a config object; errors name each field and its problem. */
export function parseConfig(input: unknown, source = 'config'): GatewayConfig {
  const r = configSchema.safeParse(input ?? {});
  if (!r.success) throw new FwError('E_CONFIG', `${source}: ${formatIssues(r.error)}`);
  return r.data;
}

/** Largest config file read: a config is a few KiB; /dev/zero or a wrong path to an image is refused, not read whole. */
export const MAX_CONFIG_FILE_BYTES = 1_048_576;

/** Read at most max bytes of a file as UTF-8; more is E_CONFIG, checked before anything larger is allocated. */
async function readBounded(path: string, max: number): Promise<string> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(max + 1);
    let n = 0;
    while (n < buf.length) {
      const { bytesRead } = await fh.read(buf, n, buf.length - n, null);
      if (bytesRead === 0) break;
      n += bytesRead;
    }
    if (n > max) throw new FwError('E_CONFIG', `config file ${path} is larger than ${max} bytes`);
    return buf.toString('utf8', 0, n);
  } finally {
    await fh.close();
  }
}

/** Read a JSON config file; a missing file, bad JSON or a bad field each gives its own message. */
export async function loadConfigFile(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await readBounded(path, MAX_CONFIG_FILE_BYTES);
  } catch (cause) {
    if (cause instanceof FwError) throw cause;
    throw new FwError('E_CONFIG', `cannot read config file ${path}: ${(cause as Error).message}`, { cause });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (cause) {
    throw new FwError('E_CONFIG', `config file ${path} is not valid JSON: ${(cause as Error).message}`, { cause });
  }
}

/** Deep-merge plain objects (b wins); used to lay flags over a config file. */
export function mergeConfig(a: unknown, b: unknown): unknown {
  if (!isPlain(a) || !isPlain(b)) return b === undefined ? a : b;
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    if (v === undefined) continue;
    out[k] = mergeConfig(a[k], v);
  }
  return out;
}

function isPlain(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
