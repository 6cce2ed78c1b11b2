import { z } from 'zod';
import { encodeCbor } from './cbor.ts';
import { cborArgument, cborHeadLength, cborWriteHead } from './cbor-head.ts';
import { ByteSlab } from './link/slab.ts';
import { KEEPALIVE_MAX_MS, KEEPALIVE_MIN_MS } from './link/keepalive.ts';
import {
  MAX_COMPONENTS, MAX_DEVICE_ID_LENGTH, MAX_FRAME_PAYLOAD, MAX_HW_MODELS, MAX_NAME_LENGTH, MAX_ORDER_ENTRIES, MAX_TEXT_LENGTH, MAX_UPLINK_MESSAGE, MAX_WINDOW,
  MIN_FRAME_PAYLOAD,
} from './limits.ts';
import { manifestSchema } from './manifest.ts';
import { componentName, releaseManifestSchema } from './release.ts';
import { bytes, decodeMessage, sha256Hex, text, u32 } from './schema.ts';
import { AUTH_CHALLENGE_BYTES, AUTH_SIG_BYTES, MAX_REQUEST_COUNTER } from './uplink-auth.ts';

/**
 * Uplink messages between the field laptop (fwpush) and the gateway over the serial link
 * (docs/protocol.md §7). Each message is one CBOR map with a text key "t"; messages travel
 * in DATA frames of the link ARQ (§4), fragmented when larger than a frame.
 */

/** Why the gateway refuses a request-to-send (§7.3). */
export const DenyCodes = [
  'busy', 'too-large', 'invalid-manifest', 'protocol', 'no-space', 'state', 'internal', 'unsigned', 'unknown-key', 'bad-signature',
  'unauthorised', 'unknown-campaign', 'not-enough-online', 'nothing-to-retry', 'no-targets', 'unknown-release',
] as const;
export type DenyCode = (typeof DenyCodes)[number];

/** Phases a device goes through in a campaign (§7.6). */
export const DevicePhases = [
  'queued', 'probing', 'offering', 'transferring', 'verifying', 'activating', 'rebooting', 'confirming',
  'done', 'failed', 'rolled-back', 'skipped', 'cancelled', 'superseded', 'expired',
] as const;
export type DevicePhase = (typeof DevicePhases)[number];

/** Final outcome of one device in a campaign (§7.7). */
export const Outcomes = ['updated', 'failed', 'rolled-back', 'skipped', 'cancelled', 'superseded', 'expired'] as const;
export type Outcome = (typeof Outcomes)[number];

/**
 * Result codes, in the spirit of LwM2M object 5 "Update Result" (§7.7): why a device ended
 * where it did. `ok` only with outcome `updated`.
 */
export const ResultCodes = [
  'ok', 'integrity-failure', 'no-space', 'connection-lost', 'unsupported', 'cancelled', 'deferred',
  'busy', 'incompatible-hw', 'not-newer', 'below-floor', 'offline', 'timeout', 'self-test-failed', 'reverted', 'rejected',
  'retries-exhausted', 'campaign-halted', 'bad-signature', 'seq-rollback', 'not-targeted', 'superseded', 'expired', 'image-corrupt',
  'unmet-dependency',
] as const;
export type ResultCode = (typeof ResultCodes)[number];

/**
 * When the campaign created at commit runs (§7.3.5): at once (the technician is present), or in
 * the next maintenance window (accepted, stored and queued until then).
 */
export const CampaignPolicies = ['now', 'window'] as const;
export type CampaignPolicy = (typeof CampaignPolicies)[number];

/** Most entries of `state.queued` (§7.11). */
export const MAX_QUEUED_CAMPAIGNS = 16;

/** Why the gateway stopped a campaign before every device was tried (§7.8.1). */
export const HaltCodes = ['rollback-threshold', 'wave-gate'] as const;
export type HaltCode = (typeof HaltCodes)[number];
/** Why the gateway closed a campaign without running it (§7.8.2). */
export const CloseCodes = ['image-unavailable'] as const;

const deviceId = z.string().min(1).max(MAX_DEVICE_ID_LENGTH);
const version = z.string().max(MAX_NAME_LENGTH);
const campaign = z.string().min(1).max(MAX_NAME_LENGTH);
/**
 * A moment as milliseconds since the Unix epoch (§7.4.5): a whole number, sent as a *number*
 * (§1.4.6) because it is above 2^32 and §1.4.5 allows no 8-byte integer.
 */
const epochMs = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

export const helloMsg = z.object({
  t: z.literal('hello'),
  proto: z.number().int().min(1).max(255),
  role: z.enum(['laptop', 'gateway']),
  agent: text,
  maxFrame: z.number().int().min(MIN_FRAME_PAYLOAD).max(MAX_FRAME_PAYLOAD),
  window: z.number().int().min(1).max(MAX_WINDOW),
  maxMessage: u32,
  maxImage: u32.optional(),
  /**
   * Keepalive interval, ms (§4.11.1): the laptop's offer; the gateway's answer is the agreed one.
   * Absent on either side: no keepalives (older peers).
   */
  keepalive: z.number().int().min(KEEPALIVE_MIN_MS).max(KEEPALIVE_MAX_MS).optional(),
  /** Gateway only: fresh random bytes the laptop signs in its `auth` (§7.2.4). */
  challenge: bytes.refine((b) => b.length === AUTH_CHALLENGE_BYTES, `must be ${AUTH_CHALLENGE_BYTES} bytes`).optional(),
  /** Gateway only: requests are authorised one by one (`auth` field, §7.2.4) and the session's authorisation lapses after this idle time. */
  authIdleMs: u32.optional(),
});
/** The `auth` field of an authorised request (§7.2.4): Ed25519 over the challenge, the counter and the request's content. */
export const requestAuth = z.strictObject({
  keyId: z.string().regex(/^[0-9a-f]{16}$/, 'must be 16 lowercase hex digits'),
  n: z.number().int().min(1).max(MAX_REQUEST_COUNTER),
  sig: bytes.refine((b) => b.length === AUTH_SIG_BYTES, `must be ${AUTH_SIG_BYTES} bytes`),
});
/** Version 1 of technician authentication (§7.2.4): accepted on the wire, never authorises (a laptop that sends it is told to upgrade). */
export const authMsg = z.object({
  t: z.literal('auth'),
  keyId: z.string().regex(/^[0-9a-f]{16}$/, 'must be 16 lowercase hex digits'),
  sig: bytes.refine((b) => b.length === AUTH_SIG_BYTES, `must be ${AUTH_SIG_BYTES} bytes`),
});
/** A wave's cumulative size (§7.3.6): a count of the targets, or a percentage of them. */
export const waveSize = z.union([
  z.strictObject({ count: z.number().int().min(1).max(1_000_000) }),
  z.strictObject({ pct: z.number().int().min(1).max(100) }),
]);
/** Which devices a campaign targets and in what stages (§7.3.6); every field optional, absent = the whole fleet at once. */
const targetingFields = {
  /** Only these devices (ids). */
  only: z.array(deviceId).min(1).max(MAX_ORDER_ENTRIES).optional(),
  /** Only the devices of this group (the device list's `groups`). */
  group: z.string().min(1).max(MAX_NAME_LENGTH).optional(),
  /** Staged waves, cumulative and increasing; the last is the whole target set. */
  waves: z.array(waveSize).min(1).max(16).optional(),
  /** Failure share, percent, at or above which the next wave does not start (default: the rollback threshold). */
  waveGate: z.number().int().min(1).max(100).optional(),
  /** Stop after each wave until `resume`. */
  wavePause: z.boolean().optional(),
  /** A `now` campaign starts only with at least this many eligible devices online (deny `not-enough-online`). */
  requireOnline: z.number().int().min(1).max(1_000_000).optional(),
};
export type Targeting = { [K in keyof typeof targetingFields]?: z.infer<(typeof targetingFields)[K]> };

export const rtsMsg = z.object({
  t: z.literal('rts'),
  manifest: manifestSchema,
  /** Absent: the gateway's default, `window` when maintenance windows are configured, else `now` (§7.3.5). */
  policy: z.enum(CampaignPolicies).optional(),
  /** The campaign may install the image on devices running a newer version; absent = false (§7.3.5). */
  downgrade: z.boolean().optional(),
  /** The campaign may update busy devices; absent = false: busy devices are deferred, never forced (§7.3.5). */
  force: z.boolean().optional(),
  ...targetingFields,
  /** The technician's authorisation of this very request (§7.2.4). */
  auth: requestAuth.optional(),
});
export const dataMsg = z.object({ t: z.literal('data'), off: u32, data: bytes });
export const commitMsg = z.object({ t: z.literal('commit') });
/** Ask for the current campaign state; the gateway answers `state` then replays (§7.11); with `campaign`, that campaign's (§7.11.5). */
export const statusReqMsg = z.object({ t: z.literal('status'), campaign: campaign.optional() });
/** Cancel a campaign (§7.12.1): the named one, else the current one. Technician-authorised. */
export const cancelMsg = z.object({ t: z.literal('cancel'), campaign: campaign.optional(), auth: requestAuth.optional() });
/** Device results a retry takes (§7.12.2). */
export const RetryOutcomes = ['failed', 'rolled-back', 'expired', 'cancelled', 'skipped'] as const;
/** The outcomes a retry takes from command-line style flags (fwpush retry, fwgate campaign retry); none: failed and rolled back (§7.12.2). */
export function retryOutcomesOf(f: { failed?: boolean; rolledBack?: boolean; expired?: boolean; cancelled?: boolean; skipped?: boolean }): RetryMessage['outcomes'] {
  const out = ([['failed', f.failed], ['rolled-back', f.rolledBack], ['expired', f.expired], ['cancelled', f.cancelled], ['skipped', f.skipped]] as const)
    .filter(([, on]) => on === true).map(([o]) => o);
  return out.length > 0 ? out : ['failed', 'rolled-back'];
}

/** A new campaign from a stored campaign's manifest for its devices with these results (§7.12.2). Technician-authorised. */
export const retryMsg = z.object({
  t: z.literal('retry'), campaign,
  outcomes: z.array(z.enum(RetryOutcomes)).min(1).max(RetryOutcomes.length),
  policy: z.enum(CampaignPolicies).optional(),
  force: z.boolean().optional(),
  auth: requestAuth.optional(),
});
/** Let a campaign paused between waves go on with its next wave (§7.12.3). Technician-authorised. */
export const resumeMsg = z.object({ t: z.literal('resume'), campaign, auth: requestAuth.optional() });
/** A dry run (§7.12.4): measure and rank as an upload of this manifest would, store and update nothing. Technician-authorised. */
export const planMsg = z.object({ t: z.literal('plan'), manifest: manifestSchema, downgrade: z.boolean().optional(), ...targetingFields, auth: requestAuth.optional() });

/**
 * Ask to send a release (§7.3.9): its signed release manifest; the gateway grants the component
 * images it does not already hold. Technician-authorised, like `rts`.
 */
export const releaseRtsMsg = z.object({
  t: z.literal('release-rts'),
  release: releaseManifestSchema,
  /** Store the release without a campaign (registry state `deferred`); `release-live` starts it later. */
  deferred: z.boolean().optional(),
  policy: z.enum(CampaignPolicies).optional(),
  downgrade: z.boolean().optional(),
  force: z.boolean().optional(),
  ...targetingFields,
  auth: requestAuth.optional(),
});
/** Start a stored release's campaign (§7.12.6): by release name and version. Technician-authorised. */
export const releaseLiveMsg = z.object({
  t: z.literal('release-live'),
  release: z.string().min(1).max(MAX_NAME_LENGTH),
  version,
  policy: z.enum(CampaignPolicies).optional(),
  downgrade: z.boolean().optional(),
  force: z.boolean().optional(),
  ...targetingFields,
  auth: requestAuth.optional(),
});

/** Who the campaign of an upload would reach, counted before any data (§7.3.7). */
export const preflightInfo = z.object({
  /** Eligible and connected now. */
  eligibleOnline: z.number().int().min(0),
  /** Eligible but offline: pending until they check in. */
  eligibleOffline: z.number().int().min(0),
  notNewer: z.number().int().min(0),
  otherHw: z.number().int().min(0),
  belowFloor: z.number().int().min(0),
  /** Eligible and connected, but busy: updated when idle (counted in eligibleOnline too). */
  busy: z.number().int().min(0),
  /** Known devices that --only / --group leave out. */
  notTargeted: z.number().int().min(0),
  /** A release (§7.3.9): targeted devices whose components would violate a `requires` that no stored release can meet. */
  unmetDependency: z.number().int().min(0).optional(),
  /** The highest manifest `seq` a targeted device has confirmed an update with (absent: none known): an image below it is refused as seq-rollback (§6.5.7). */
  confirmedSeq: u32.optional(),
});
export const grantMsg = z.object({
  t: z.literal('grant'), sha256: sha256Hex, offset: u32, chunk: z.number().int().min(1).max(MAX_FRAME_PAYLOAD),
  /** The gateway already holds these bytes (verified): `offset` is the size, no `data` is needed (§7.3.8). */
  stored: z.literal(true).optional(),
  preflight: preflightInfo.optional(),
});
/**
 * The answer to `release-rts` (§7.3.9): the components to upload, in the order their bytes follow
 * one another in the `data` offsets, each resuming at `offset`; the others are already stored.
 */
export const releaseGrantMsg = z.object({
  t: z.literal('release-grant'),
  /** The release's digest (§5.5.4). */
  digest: sha256Hex,
  chunk: z.number().int().min(1).max(MAX_FRAME_PAYLOAD),
  send: z.array(z.object({ component: componentName, sha256: sha256Hex, size: u32, offset: u32 })).max(MAX_COMPONENTS),
  stored: z.array(componentName).max(MAX_COMPONENTS),
  preflight: preflightInfo.optional(),
});
export const denyMsg = z.object({ t: z.literal('deny'), code: z.enum(DenyCodes), reason: text });
export const committedMsg = z.object({
  t: z.literal('committed'),
  ok: z.boolean(),
  sha256: sha256Hex,
  code: text.optional(),
  reason: text.optional(),
  campaign: campaign.optional(),
  /** Present when the campaign waits for a maintenance window instead of starting (§7.4.5). */
  queued: z.object({ reason: text, nextWindowAt: epochMs.optional(), expiresAt: epochMs.optional() }).optional(),
  /** The pending (not started) campaign for the same hardware models that this one replaced (§7.4.5). */
  supersedes: campaign.optional(),
  /** A release uploaded with `deferred` (§7.3.9): stored, no campaign (`campaign` absent). */
  deferred: z.literal(true).optional(),
});
export const orderEntry = z.object({
  id: deviceId,
  rank: z.number().int().min(1),
  from: version,
  rttMs: z.number().min(0).optional(),
  bps: z.number().min(0).optional(),
  etaMs: z.number().min(0).optional(),
  /** Planned start, ms after the transfers begin (tail protection may start a slow device early). */
  startMs: z.number().min(0).optional(),
  /** Its wave (1-based) when the campaign runs in waves (§7.3.6). */
  wave: z.number().int().min(1).max(16).optional(),
  /**
   * A release campaign (§7.5.9): the components this device gets, in install order (the agent
   * first); `via` names the other stored release a component was added from to meet a `requires`.
   */
  components: z.array(z.object({ name: componentName, version, size: u32, via: text.optional() })).min(1).max(MAX_COMPONENTS).optional(),
  /** A release campaign: bytes not sent because the device already runs those components (§7.5.9). */
  savedBytes: u32.optional(),
});
export const excludedEntry = z.object({ id: deviceId, code: z.enum(ResultCodes), reason: text, version: version.optional() });
export const orderMsg = z.object({
  t: z.literal('order'),
  campaign,
  image: z.object({ name: z.string().max(MAX_NAME_LENGTH), version, sha256: sha256Hex }),
  devices: z.array(orderEntry).max(MAX_ORDER_ENTRIES),
  excluded: z.array(excludedEntry).max(MAX_ORDER_ENTRIES),
  /** Excluded devices left out of `excluded` to stay within MAX_ORDER_ENTRIES (each still gets a result). */
  excludedMore: z.number().int().min(0).optional(),
}).refine((o) => o.devices.length + o.excluded.length <= MAX_ORDER_ENTRIES, { message: `devices + excluded must be at most ${MAX_ORDER_ENTRIES} entries`, path: ['excluded'] });
export const progressMsg = z.object({
  t: z.literal('progress'),
  campaign,
  id: deviceId,
  phase: z.enum(DevicePhases),
  bytes: u32,
  total: u32,
  /** Transfer rate over the last interval, bytes/s (transferring only). */
  bps: z.number().min(0).optional(),
  /** Expected time until this device is done, ms. */
  etaMs: z.number().min(0).optional(),
});
/** Campaign totals, sent with progress at most every progress interval (§7.6.3). */
export const totalsMsg = z.object({
  t: z.literal('totals'),
  campaign,
  devices: z.number().int().min(0),
  done: z.number().int().min(0),
  kib: u32,
  totalKib: u32,
  bps: z.number().min(0),
  etaMs: z.number().min(0).optional(),
});
/** Answer to `status`: what the gateway is doing; a replay of the campaign follows (§7.11). */
export const stateMsg = z.object({
  t: z.literal('state'),
  running: z.boolean(),
  campaign: campaign.optional(),
  image: z.object({ name: z.string().max(MAX_NAME_LENGTH), version, sha256: sha256Hex }).optional(),
  /** Campaigns accepted and waiting for a maintenance window, in the order accepted (§7.11). */
  queued: z.array(z.object({
    campaign,
    image: z.object({ name: z.string().max(MAX_NAME_LENGTH), version, sha256: sha256Hex }),
    hw: z.array(z.string().min(1).max(MAX_NAME_LENGTH)).max(MAX_HW_MODELS),
    nextWindowAt: epochMs.optional(),
  })).max(MAX_QUEUED_CAMPAIGNS).optional(),
});
/** One device as the gateway last knew it (§7.11.4). */
export const fleetEntry = z.object({
  id: deviceId,
  hw: z.string().min(1).max(MAX_NAME_LENGTH),
  version,
  /** Connected to the gateway's broker when the message was made. */
  online: z.boolean(),
  /** Its last `status` or connection to the broker. */
  lastCheckIn: epochMs,
  /** It failed or rolled back its last updates in a row: left out of rollback thresholds (§7.8.1). */
  suspect: z.literal(true).optional(),
  /** Its result in the last campaign that gave it one; `version` is that campaign's image version. */
  lastResult: z.object({ campaign, outcome: z.enum(Outcomes), code: z.enum(ResultCodes), version, at: epochMs }).optional(),
});
/** The fleet report, sent right after `state` in answer to `status` (§7.11.4). */
export const fleetMsg = z.object({
  t: z.literal('fleet'),
  /** The gateway's clock when it made the message: ages are counted from it, not from the laptop's clock. */
  now: epochMs,
  /** Sorted by id; at most MAX_ORDER_ENTRIES, fewer when the message would not fit (§7.11.4). */
  devices: z.array(fleetEntry).max(MAX_ORDER_ENTRIES),
  /** Devices left out of `devices`; absent when it lists them all. */
  more: z.number().int().min(0).optional(),
});
export const resultMsg = z.object({
  t: z.literal('result'),
  campaign,
  id: deviceId,
  outcome: z.enum(Outcomes),
  code: z.enum(ResultCodes),
  reason: text.optional(),
  from: version,
  to: version,
  durationMs: z.number().min(0),
  retries: z.number().int().min(0),
  /** A release campaign: the components installed on this device (outcome `updated`) or that were to be (§7.7). */
  components: z.array(componentName).min(1).max(MAX_COMPONENTS).optional(),
  /** A release campaign: the release's components this device already ran byte for byte, not sent (§7.5.9). */
  kept: z.array(componentName).min(1).max(MAX_COMPONENTS).optional(),
});
/** The campaign stopped starting devices (§7.8.1): why, and the counts at that moment. */
export const haltedInfo = z.object({
  code: z.enum(HaltCodes),
  reason: text,
  /** Ranked devices rolled back when the threshold was passed. */
  rolledBack: z.number().int().min(0),
  /** Ranked devices that had finished an update (updated, failed or rolled back) by then. */
  finished: z.number().int().min(0),
  /** `rollout.rollbackThreshold`, percent. */
  thresholdPct: z.number().int().min(1).max(100),
});
export const completeMsg = z.object({
  t: z.literal('complete'),
  campaign,
  devices: z.number().int().min(0),
  updated: z.number().int().min(0),
  failed: z.number().int().min(0),
  rolledBack: z.number().int().min(0),
  skipped: z.number().int().min(0),
  durationMs: z.number().min(0),
  halted: haltedInfo.optional(),
  /** Devices whose result is `cancelled`, `superseded`, `expired` (absent: none). */
  cancelled: z.number().int().min(0).optional(),
  superseded: z.number().int().min(0).optional(),
  expired: z.number().int().min(0).optional(),
  /** Present when the gateway closed the campaign without running it to its end (§7.8.2). */
  closed: z.object({ code: z.enum(CloseCodes), reason: text }).optional(),
  /**
   * A release campaign (§7.8.3): components sent to updated devices, and components of the release
   * those devices already ran (by digest) and were not sent.
   */
  componentsSent: z.number().int().min(0).optional(),
  componentsSkipped: z.number().int().min(0).optional(),
});
export const errorMsg = z.object({ t: z.literal('error'), code: text, reason: text });
/**
 * A campaign has updated what it could now; the rest wait for their check-in (§7.6.4): devices that
 * are offline or busy, until `expiresAt`. A laptop that follows the campaign may stop here.
 */
export const waitingMsg = z.object({
  t: z.literal('waiting'),
  campaign,
  pending: z.number().int().min(0),
  devices: z.array(z.object({ id: deviceId, reason: text })).max(MAX_ORDER_ENTRIES),
  expiresAt: epochMs.optional(),
  /** Paused between waves until `resume` (§7.12.3): the next wave's number (1-based). */
  pausedBeforeWave: z.number().int().min(1).optional(),
});
/** Answer to `cancel`, `retry` and `resume` (§7.12): done, with the campaign it concerns (a retry's new campaign). */
export const acceptedMsg = z.object({ t: z.literal('accepted'), request: z.enum(['cancel', 'retry', 'resume', 'release-live']), campaign, reason: text.optional() });
/** Answer to `plan` (§7.12.4): the order an upload would get now, and the pre-flight counts. */
export const plannedMsg = z.object({
  t: z.literal('planned'),
  image: z.object({ name: z.string().max(MAX_NAME_LENGTH), version, sha256: sha256Hex }),
  devices: z.array(orderEntry).max(MAX_ORDER_ENTRIES),
  excluded: z.array(excludedEntry).max(MAX_ORDER_ENTRIES),
  excludedMore: z.number().int().min(0).optional(),
  preflight: preflightInfo,
  /** Expected time for the whole rollout at the concurrency limit, ms. */
  etaMs: z.number().min(0).optional(),
});

export const laptopMessage = z.discriminatedUnion('t', [
  helloMsg, authMsg, rtsMsg, dataMsg, commitMsg, statusReqMsg, cancelMsg, retryMsg, resumeMsg, planMsg, releaseRtsMsg, releaseLiveMsg,
]);
export const gatewayUplinkMessage = z.discriminatedUnion('t', [
  helloMsg, grantMsg, denyMsg, committedMsg, orderMsg, progressMsg, totalsMsg, resultMsg, completeMsg, errorMsg, stateMsg,
  fleetMsg, waitingMsg, acceptedMsg, plannedMsg, releaseGrantMsg,
]);

export type LaptopMessage = z.infer<typeof laptopMessage>;
export type GatewayUplinkMessage = z.infer<typeof gatewayUplinkMessage>;
export type HelloMessage = z.infer<typeof helloMsg>;
export type AuthMessage = z.infer<typeof authMsg>;
export type RequestAuthField = z.infer<typeof requestAuth>;
export type OrderMessage = z.infer<typeof orderMsg>;
export type OrderEntry = z.infer<typeof orderEntry>;
export type ExcludedEntry = z.infer<typeof excludedEntry>;
export type ProgressMessage = z.infer<typeof progressMsg>;
export type ResultMessage = z.infer<typeof resultMsg>;
export type CompleteMessage = z.infer<typeof completeMsg>;
export type HaltedInfo = z.infer<typeof haltedInfo>;
export type TotalsMessage = z.infer<typeof totalsMsg>;
export type StateMessage = z.infer<typeof stateMsg>;
export type FleetMessage = z.infer<typeof fleetMsg>;
export type FleetEntry = z.infer<typeof fleetEntry>;
export type RtsMessage = z.infer<typeof rtsMsg>;
export type ReleaseRtsMessage = z.infer<typeof releaseRtsMsg>;
export type ReleaseLiveMessage = z.infer<typeof releaseLiveMsg>;
export type ReleaseGrantMessage = z.infer<typeof releaseGrantMsg>;
export type CommittedMessage = z.infer<typeof committedMsg>;
export type WaitingMessage = z.infer<typeof waitingMsg>;
export type PlannedMessage = z.infer<typeof plannedMsg>;
export type PreflightInfo = z.infer<typeof preflightInfo>;
export type RetryMessage = z.infer<typeof retryMsg>;
export type WaveSize = z.infer<typeof waveSize>;
/** Why and until when a committed campaign waits (§7.4.5). */
export type QueuedInfo = NonNullable<CommittedMessage['queued']>;
/** One campaign waiting for a maintenance window, as `state` lists it (§7.11). */
export type QueuedCampaign = NonNullable<StateMessage['queued']>[number];

/** Bytes of CBOR envelope around the image bytes of one `data` message, worst case (§7.4). */
export const DATA_MESSAGE_OVERHEAD = 32;


/** `a3 61 74 64 "data" 63 "off"`: a map of 3, "t": "data", then the key "off" — the reference encoding of `data` (§7.4). */
const DATA_HEAD = Uint8Array.from([0xa3, 0x61, 0x74, 0x64, 0x64, 0x61, 0x74, 0x61, 0x63, 0x6f, 0x66, 0x66]);
/** `64 "data"`: the key "data". */
const DATA_KEY = Uint8Array.from([0x64, 0x64, 0x61, 0x74, 0x61]);

/**
 * `data` in the reference encoding (§7.4; keys in table order, shortest integer and length
 * heads), decoded without the generic CBOR decoder and schema: the image bytes stay a view of
 * the payload. Undefined for anything else — other messages, another key order or encoding,
 * trailing bytes — which takes the generic path, so both accept and refuse exactly the same.
 */
function decodeReferenceData(p: Uint8Array): Extract<LaptopMessage, { t: 'data' }> | undefined {
  if (p.length < DATA_HEAD.length + 1 + DATA_KEY.length + 1) return undefined;
  for (let i = 0; i < DATA_HEAD.length; i++) if (p[i] !== DATA_HEAD[i]) return undefined;
  const off = cborArgument(p, DATA_HEAD.length, 0);
  if (off === undefined || off[1] + DATA_KEY.length > p.length) return undefined;
  for (let i = 0; i < DATA_KEY.length; i++) if (p[off[1] + i] !== DATA_KEY[i]) return undefined;
  const len = cborArgument(p, off[1] + DATA_KEY.length, 2);
  if (len === undefined || len[1] + len[0] !== p.length) return undefined;
  return { t: 'data', off: off[0], data: Buffer.from(p.buffer, p.byteOffset + len[1], len[0]) };
}

export function decodeLaptopMessage(payload: Uint8Array): LaptopMessage {
  // the upload's thousands of `data` messages: the short way when in the reference encoding
  if (payload.length <= MAX_UPLINK_MESSAGE) {
    const data = decodeReferenceData(payload);
    if (data !== undefined) return data;
  }
  return decodeMessage(laptopMessage, payload, MAX_UPLINK_MESSAGE, 'laptop message');
}
export function decodeGatewayUplinkMessage(payload: Uint8Array): GatewayUplinkMessage {
  return decodeMessage(gatewayUplinkMessage, payload, MAX_UPLINK_MESSAGE, 'gateway message');
}
/** Clip free-text fields to MAX_TEXT_LENGTH so a long reason can never make a message invalid. */
export function clipText(text: string): string {
  return text.length <= MAX_TEXT_LENGTH ? text : `${text.slice(0, MAX_TEXT_LENGTH - 1)}…`;
}

/** The same message with every `reason` clipped (§1.6). */
export function clipReasons<M extends GatewayUplinkMessage>(msg: M): M {
  if ('reason' in msg && typeof msg.reason === 'string' && msg.reason.length > MAX_TEXT_LENGTH) return clipReasons({ ...msg, reason: clipText(msg.reason) });
  if (msg.t === 'committed' && msg.queued && msg.queued.reason.length > MAX_TEXT_LENGTH) {
    return { ...msg, queued: { ...msg.queued, reason: clipText(msg.queued.reason) } };
  }
  if ((msg.t === 'order' || msg.t === 'planned') && msg.excluded.some((x) => x.reason.length > MAX_TEXT_LENGTH)) {
    return { ...msg, excluded: msg.excluded.map((x) => ({ ...x, reason: clipText(x.reason) })) };
  }
  if (msg.t === 'waiting' && msg.devices.some((x) => x.reason.length > MAX_TEXT_LENGTH)) {
    return { ...msg, devices: msg.devices.map((x) => ({ ...x, reason: clipText(x.reason) })) };
  }
  if (msg.t === 'complete' && msg.halted && msg.halted.reason.length > MAX_TEXT_LENGTH) {
    return { ...msg, halted: { ...msg.halted, reason: clipText(msg.halted.reason) } };
  }
  return msg;
}

/** Encoded `data` messages: each is copied into its frames once queued, so they share slabs. */
const dataSlab = new ByteSlab();

/**
 * `data` in the reference encoding, written without the generic encoder: the same bytes cbor-x
 * gives for `{ t, off, data }` in that key order (test/gateway/uplink/data-decode.test.ts), at a
 * fraction of the cost, for the upload's thousands of them; the keys go in table order whatever
 * the object's order. Undefined for anything else (another key set, an offset that is not a u32),
 * which takes the generic path.
 */
function encodeReferenceData(msg: LaptopMessage | GatewayUplinkMessage): Uint8Array | undefined {
  if (msg.t !== 'data' || Object.keys(msg).length !== 3 || !(msg.data instanceof Uint8Array)) return undefined;
  const { off, data } = msg;
  if (!Number.isInteger(off) || off < 0 || off > 0xffff_ffff) return undefined;
  const length = DATA_HEAD.length + cborHeadLength(off) + DATA_KEY.length + cborHeadLength(data.length) + data.length;
  const out = dataSlab.take(length);
  out.set(DATA_HEAD, 0);
  let pos = cborWriteHead(out, DATA_HEAD.length, 0, off);
  out.set(DATA_KEY, pos);
  pos = cborWriteHead(out, pos + DATA_KEY.length, 2, data.length);
  out.set(data, pos);
  return out;
}

export function encodeUplinkMessage(msg: LaptopMessage | GatewayUplinkMessage): Uint8Array {
  return encodeReferenceData(msg) ?? encodeCbor(msg);
}
