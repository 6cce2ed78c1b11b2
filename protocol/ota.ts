import { z } from 'zod';
import { encodeCbor } from './cbor.ts';
import { cborArgument, cborExpect, cborText } from './cbor-head.ts';
import {
  MAX_ACK_MISSING, MAX_CHUNK_SIZE, MAX_COMPONENTS, MAX_HW_MODELS, MAX_NAME_LENGTH, MAX_OTA_MESSAGE, MIN_CHUNK_SIZE,
} from './limits.ts';
import { keyIdHex, signatureHex } from './manifest.ts';
import { componentName, releaseManifestSchema } from './release.ts';
import { bytes, decodeMessage, sha256Hex, text, u16, u32 } from './schema.ts';
import { isValidVersion } from './version.ts';

/**
 * OTA messages between gateway and device over MQTT (docs/protocol.md §6).
 * Every payload is one CBOR map with a text key "t" naming the message type.
 */

/** Why a device refuses an offer (§6.5). `below-floor`: the image is older than its anti-rollback floor (§6.5.6). */
export const RejectCodes = ['busy', 'incompatible', 'no-space', 'not-newer', 'below-floor', 'invalid', 'seq-rollback'] as const;
export type RejectCode = (typeof RejectCodes)[number];

/** Why a device reports an image or a step as failed (§6.7). */
export const VerifyCodes = ['size', 'crc32', 'sha256', 'incomplete', 'flash', 'signature'] as const;
export type VerifyCode = (typeof VerifyCodes)[number];

export const SlotNames = ['a', 'b'] as const;
export type SlotName = (typeof SlotNames)[number];

/** State of one A/B slot as the device reports it (§6.3). */
export const SlotStates = ['empty', 'receiving', 'ready', 'pending', 'trial', 'confirmed', 'bad'] as const;
export type SlotState = (typeof SlotStates)[number];

/** Steps of an update a check-in task announces (§6.14). */
export const TaskSteps = ['download', 'verify', 'activate'] as const;
export type TaskStep = (typeof TaskSteps)[number];
/** Most entries of `tasks.tasks` (§6.14). */
export const MAX_TASKS = 8;

const version = z.string().max(MAX_NAME_LENGTH).refine(isValidVersion, 'must be a semantic version');
const model = z.string().min(1).max(MAX_NAME_LENGTH);
export const slotInfo = z.object({ state: z.enum(SlotStates), version: version.optional(), sha256: sha256Hex.optional() });
const sid = u32;

/** How a component is stored (§6.3.3): two slots, or one updated in place by the device's own means. */
export const ComponentLayouts = ['ab', 'single'] as const;
/** One component of a multi-component device as its `status` reports it (§6.3.3). */
export const componentStatus = z.object({
  name: componentName,
  layout: z.enum(ComponentLayouts),
  /** Running version and digest of the component. */
  version,
  sha256: sha256Hex.optional(),
  /** `ab`: the running slot and both slots' states. */
  slot: z.enum(SlotNames).optional(),
  slots: z.object({ a: slotInfo, b: slotInfo }).optional(),
  /** The running image of this component is in trial (not confirmed yet). */
  trial: z.boolean(),
  /** This component is the device's update agent (§6.15.4). */
  agent: z.literal(true).optional(),
}).refine((c) => c.layout !== 'ab' || (c.slot !== undefined && c.slots !== undefined), { message: 'an "ab" component reports slot and slots', path: ['slots'] });
export type ComponentStatus = z.infer<typeof componentStatus>;
/** One component in a boot report (§6.9.2). */
export const bootComponent = z.object({ name: componentName, version, sha256: sha256Hex.optional(), slot: z.enum(SlotNames).optional(), trial: z.boolean() });
export type BootComponent = z.infer<typeof bootComponent>;
const uniqueNames = (list: readonly { name: string }[] | undefined): boolean => list === undefined || new Set(list.map((c) => c.name)).size === list.length;

// ---- device -> gateway (topic .../up) ----
export const statusMsg = z.object({
  t: z.literal('status'),
  hw: model,
  version,
  slot: z.enum(SlotNames),
  slots: z.object({ a: slotInfo, b: slotInfo }),
  maxChunk: z.number().int().min(MIN_CHUNK_SIZE).max(MAX_CHUNK_SIZE),
  busy: z.boolean(),
  trial: z.boolean(),
  /** Anti-rollback security floor: the device refuses every image older than this (§6.3, §6.5.6). */
  floor: version.optional(),
  /**
   * Every component of a multi-component device, `app` included (§6.3.3). Absent: one component,
   * `app`, which the fields above describe. Present: the fields above still describe `app`.
   */
  components: z.array(componentStatus).min(1).max(MAX_COMPONENTS).optional()
    .refine(uniqueNames, 'component names must be unique'),
});
export const bootMsg = z.object({
  t: z.literal('boot'),
  version,
  slot: z.enum(SlotNames),
  sha256: sha256Hex.optional(),
  trial: z.boolean(),
  reverted: z.boolean(),
  reason: text.optional(),
  /** A multi-component device: every component as booted (§6.9.2); `reverted` applies to the set. */
  components: z.array(bootComponent).min(1).max(MAX_COMPONENTS).optional()
    .refine(uniqueNames, 'component names must be unique'),
});
export const pongMsg = z.object({ t: z.literal('pong'), n: u32, pad: bytes.optional() });
/** Answer to one `probe`: how many data bytes it carried (§6.4.3). */
export const probedMsg = z.object({ t: z.literal('probed'), n: u32, size: u32 });
export const acceptMsg = z.object({ t: z.literal('accept'), sid, next: u32, chunk: z.number().int().min(MIN_CHUNK_SIZE).max(MAX_CHUNK_SIZE), window: u16.min(1) });
export const rejectMsg = z.object({ t: z.literal('reject'), sid, code: z.enum(RejectCodes), reason: text.optional() });
export const ackMsg = z.object({ t: z.literal('ack'), sid, next: u32, missing: z.array(u32).max(MAX_ACK_MISSING) });
export const verifiedMsg = z.object({ t: z.literal('verified'), sid, ok: z.boolean(), code: z.enum(VerifyCodes).optional(), reason: text.optional() });
export const activatedMsg = z.object({ t: z.literal('activated'), sid, slot: z.enum(SlotNames) });
export const confirmedMsg = z.object({ t: z.literal('confirmed'), sha256: sha256Hex, version });
export const abortedMsg = z.object({ t: z.literal('aborted'), sid });

export const deviceMessage = z.discriminatedUnion('t', [
  statusMsg, bootMsg, pongMsg, probedMsg, acceptMsg, rejectMsg, ackMsg, verifiedMsg, activatedMsg, confirmedMsg, abortedMsg,
]);
export type DeviceMessage = z.infer<typeof deviceMessage>;
export type StatusMessage = z.infer<typeof statusMsg>;
export type BootMessage = z.infer<typeof bootMsg>;
export type AckMessage = z.infer<typeof ackMsg>;

// ---- gateway -> device (topic .../down) ----
export const pingMsg = z.object({ t: z.literal('ping'), n: u32, pad: bytes.optional() });
export const queryMsg = z.object({ t: z.literal('query') });
/** Throughput probe: data the device discards, answering `probed` at once (§6.4.3). */
export const probeMsg = z.object({ t: z.literal('probe'), n: u32, data: bytes })
  .refine((m) => m.data.length <= MAX_CHUNK_SIZE, { message: `data must be at most ${MAX_CHUNK_SIZE} bytes`, path: ['data'] });
export const offerMsg = z.object({
  t: z.literal('offer'),
  sid,
  name: z.string().min(1).max(MAX_NAME_LENGTH),
  version,
  hw: z.array(model).min(1).max(MAX_HW_MODELS),
  size: u32.min(1),
  crc32: u32,
  sha256: sha256Hex,
  chunk: z.number().int().min(MIN_CHUNK_SIZE).max(MAX_CHUNK_SIZE),
  /** The gateway means to install an older version: without it a device refuses one (§6.5.6). */
  downgrade: z.boolean().optional(),
  /** The campaign was asked to force: the device accepts even while it is in use (§6.5.3). */
  force: z.boolean().optional(),
  /** `manifest.seq`: a device refuses a lower one than it has installed (§6.5.7); absent = 0. */
  seq: u32.optional(),
  /** `manifest.signature.keyId` and `.sig` (§5.4): the device checks them at verify (§6.7.1). */
  keyId: keyIdHex.optional(),
  sig: signatureHex.optional(),
  /** The component this image is for (§6.15.1); absent = `app`, the whole of a single-image device. */
  component: componentName.optional(),
  /** The signed release the component belongs to (§6.15.1): its signature covers this image. */
  release: releaseManifestSchema.optional(),
}).refine((m) => (m.keyId === undefined) === (m.sig === undefined), { message: 'keyId and sig come together', path: ['sig'] })
  .refine((m) => m.release === undefined || m.component !== undefined, { message: 'an offer with a release names its component', path: ['component'] });
export const chunkMsg = z.object({ t: z.literal('chunk'), sid, off: u32, data: bytes, crc: u32 })
  .refine((m) => m.data.length >= 1 && m.data.length <= MAX_CHUNK_SIZE, { message: `data must be 1..${MAX_CHUNK_SIZE} bytes`, path: ['data'] });
export const verifyMsg = z.object({ t: z.literal('verify'), sid });
/** `with`: the other offer sessions whose verified components activate together with this one, in one reboot (§6.15.2). */
export const activateMsg = z.object({ t: z.literal('activate'), sid, with: z.array(sid).min(1).max(MAX_COMPONENTS - 1).optional() });
/** `with`: the other components' images confirmed together with `sha256`, all or none (§6.15.3). */
export const confirmMsg = z.object({ t: z.literal('confirm'), sha256: sha256Hex, with: z.array(sha256Hex).min(1).max(MAX_COMPONENTS - 1).optional() });
export const abortMsg = z.object({ t: z.literal('abort'), sid, reason: text.optional() });
/** One pending update announced at check-in (§6.14). */
export const taskEntry = z.object({
  campaign: z.string().min(1).max(MAX_NAME_LENGTH),
  name: z.string().min(1).max(MAX_NAME_LENGTH),
  version,
  sha256: sha256Hex,
  size: u32.min(1),
  steps: z.array(z.enum(TaskSteps)).min(1).max(TaskSteps.length)
    .refine((s) => new Set(s).size === s.length, 'must not repeat a step'),
  /** Wall-clock ms since the Unix epoch when the maintenance window opens (a number on the wire, §6.14). */
  notBefore: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
});
/** Check-in task list: informational, the device never acts on it alone (§6.14). */
export const tasksMsg = z.object({ t: z.literal('tasks'), tasks: z.array(taskEntry).max(MAX_TASKS) });

export const gatewayMessage = z.discriminatedUnion('t', [
  pingMsg, queryMsg, probeMsg, offerMsg, chunkMsg, verifyMsg, activateMsg, confirmMsg, abortMsg, tasksMsg,
]);
export type GatewayMessage = z.infer<typeof gatewayMessage>;
export type OfferMessage = z.infer<typeof offerMsg>;
export type ChunkMessage = z.infer<typeof chunkMsg>;
export type TasksMessage = z.infer<typeof tasksMsg>;
export type Task = z.infer<typeof taskEntry>;


// ---- the short way for the hot messages: chunk and ack of every transfer (§6.6), probe and probed (§6.4.3) ----
// A campaign of N devices moves N x (size / chunk) `chunk` messages and one `ack` per few chunks,
// after N x probeBytes / probeChunkBytes x probeBursts `probe` messages each answered by `probed`.
// In the reference encoding (§1.4: keys in table order, shortest heads, nothing after) they are
// read without the generic CBOR decoder and schema; anything else takes the generic path, so both
// accept and refuse exactly the same (test/protocol/ota-fast-decode.test.ts).

/** `a5 "t" "chunk" "sid"`: a map of 5, "t": "chunk", then the key "sid". */
const CHUNK_HEAD = Uint8Array.from([0xa5, ...cborText('t'), ...cborText('chunk'), ...cborText('sid')]);
const OFF_KEY = cborText('off');
const DATA_KEY = cborText('data');
const CRC_KEY = cborText('crc');
/** `a4 "t" "ack" "sid"`. */
const ACK_HEAD = Uint8Array.from([0xa4, ...cborText('t'), ...cborText('ack'), ...cborText('sid')]);
const NEXT_KEY = cborText('next');
const MISSING_KEY = cborText('missing');
/** `a3 "t" "probe" "n"` and `a3 "t" "probed" "n"`: the probe phase's messages (§6.4.3), 2 x count x bursts per device. */
const PROBE_HEAD = Uint8Array.from([0xa3, ...cborText('t'), ...cborText('probe'), ...cborText('n')]);
const PROBED_HEAD = Uint8Array.from([0xa3, ...cborText('t'), ...cborText('probed'), ...cborText('n')]);
const SIZE_KEY = cborText('size');

/** `chunk` in the reference encoding, its data a view of the payload; undefined for anything else. */
function decodeReferenceChunk(p: Uint8Array): ChunkMessage | undefined {
  let at = cborExpect(p, 0, CHUNK_HEAD);
  const sid = at === undefined ? undefined : cborArgument(p, at, 0);
  at = sid && cborExpect(p, sid[1], OFF_KEY);
  const off = at === undefined ? undefined : cborArgument(p, at, 0);
  at = off && cborExpect(p, off[1], DATA_KEY);
  const len = at === undefined ? undefined : cborArgument(p, at, 2);
  if (sid === undefined || off === undefined || len === undefined || len[0] < 1 || len[0] > MAX_CHUNK_SIZE) return undefined;
  at = cborExpect(p, len[1] + len[0], CRC_KEY);
  const crc = at === undefined ? undefined : cborArgument(p, at, 0);
  if (crc === undefined || crc[1] !== p.length) return undefined;
  return { t: 'chunk', sid: sid[0], off: off[0], data: Buffer.from(p.buffer, p.byteOffset + len[1], len[0]), crc: crc[0] };
}

/** `ack` in the reference encoding; undefined for anything else. */
function decodeReferenceAck(p: Uint8Array): AckMessage | undefined {
  let at = cborExpect(p, 0, ACK_HEAD);
  const sid = at === undefined ? undefined : cborArgument(p, at, 0);
  at = sid && cborExpect(p, sid[1], NEXT_KEY);
  const next = at === undefined ? undefined : cborArgument(p, at, 0);
  at = next && cborExpect(p, next[1], MISSING_KEY);
  const count = at === undefined ? undefined : cborArgument(p, at, 4);
  if (sid === undefined || next === undefined || count === undefined || count[0] > MAX_ACK_MISSING) return undefined;
  const missing: number[] = [];
  let pos = count[1];
  for (let i = 0; i < count[0]; i++) {
    const m = cborArgument(p, pos, 0);
    if (m === undefined) return undefined;
    missing.push(m[0]);
    pos = m[1];
  }
  return pos === p.length ? { t: 'ack', sid: sid[0], next: next[0], missing } : undefined;
}

/** `probe` in the reference encoding, its data a view of the payload; undefined for anything else. */
function decodeReferenceProbe(p: Uint8Array): Extract<GatewayMessage, { t: 'probe' }> | undefined {
  const at = cborExpect(p, 0, PROBE_HEAD);
  const n = at === undefined ? undefined : cborArgument(p, at, 0);
  const at2 = n && cborExpect(p, n[1], DATA_KEY);
  const len = at2 === undefined ? undefined : cborArgument(p, at2, 2);
  if (n === undefined || len === undefined || len[0] > MAX_CHUNK_SIZE || len[1] + len[0] !== p.length) return undefined;
  return { t: 'probe', n: n[0], data: Buffer.from(p.buffer, p.byteOffset + len[1], len[0]) };
}

/** `probed` in the reference encoding; undefined for anything else. */
function decodeReferenceProbed(p: Uint8Array): Extract<DeviceMessage, { t: 'probed' }> | undefined {
  const at = cborExpect(p, 0, PROBED_HEAD);
  const n = at === undefined ? undefined : cborArgument(p, at, 0);
  const at2 = n && cborExpect(p, n[1], SIZE_KEY);
  const size = at2 === undefined ? undefined : cborArgument(p, at2, 0);
  if (n === undefined || size === undefined || size[1] !== p.length) return undefined;
  return { t: 'probed', n: n[0], size: size[0] };
}

export function decodeDeviceMessage(payload: Uint8Array): DeviceMessage {
  if (payload.length <= MAX_OTA_MESSAGE) {
    const fast = payload[0] === 0xa4 ? decodeReferenceAck(payload) : payload[0] === 0xa3 ? decodeReferenceProbed(payload) : undefined;
    if (fast !== undefined) return fast;
  }
  return decodeMessage(deviceMessage, payload, MAX_OTA_MESSAGE, 'device message');
}

export function decodeGatewayMessage(payload: Uint8Array): GatewayMessage {
  if (payload.length <= MAX_OTA_MESSAGE) {
    const fast = payload[0] === 0xa5 ? decodeReferenceChunk(payload) : payload[0] === 0xa3 ? decodeReferenceProbe(payload) : undefined;
    if (fast !== undefined) return fast;
  }
  return decodeMessage(gatewayMessage, payload, MAX_OTA_MESSAGE, 'gateway message');
}

export function encodeDeviceMessage(msg: DeviceMessage): Uint8Array {
  return encodeCbor(msg);
}

export function encodeGatewayMessage(msg: GatewayMessage): Uint8Array {
  return encodeCbor(msg);
}
