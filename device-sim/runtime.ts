import type { MqttClient } from 'mqtt';
import type { GatewayMessage, OfferMessage, RejectCode, SlotName, Task, VerifyCode } from '../protocol/ota.ts';
import type { BootOutcome } from './bootloader.ts';
import type { PowerCutPhase } from './faults.ts';
import type { SlotRecord, SlotStateRecord } from './state-record.ts';
import type { ReceiveMap, ImageMeta } from './transfer.ts';
import type { TrialClock } from './trial-clock.ts';

/** The shapes a simulated device keeps in RAM and reports: its counters, its events, one boot's runtime. */

export interface DeviceStats {
  boots: number;
  /** Chunk messages received for a known transfer sid (good, bad and duplicate), all boots. */
  chunks: number;
  badChunks: number;
  duplicates: number;
  /** Payloads on the down topic that failed to decode or validate. */
  invalid: number;
  /** Valid messages that did not apply (unknown sid, activate without a ready slot, ...). */
  ignored: number;
  /** Successful connects after the first one of a boot. */
  reconnects: number;
  /** Connections dropped by the dropAfterChunks fault. */
  drops: number;
  powerCuts: number;
  errors: number;
}

/** What a device reports about itself (CLI lines, tests); every event also carries the device id. */
export type SimEventBody =
  | { type: 'booted'; version: string; slot: SlotName; trial: boolean; reverted: boolean; reason?: string; factory: boolean; bootCount: number; components?: BootOutcome['components'] }
  | { type: 'reverted'; version: string; slot: SlotName; reason: string }
  | { type: 'connected'; reconnect: boolean }
  | { type: 'disconnected' }
  | { type: 'offer-accepted'; sid: number; version: string; next: number; chunk: number; resumed: boolean; component?: string }
  | { type: 'offer-rejected'; sid: number; version: string; code: RejectCode; reason: string; component?: string }
  | { type: 'chunk-bad'; sid: number; off: number; why: string }
  | { type: 'transfer-complete'; sid: number }
  | { type: 'verified'; sid: number; ok: boolean; code?: VerifyCode }
  | { type: 'activated'; sid: number; slot: SlotName; with?: number[] }
  | { type: 'rebooting'; reason: string }
  | { type: 'trial-timeout' }
  | { type: 'confirmed'; version: string; sha256: string; repeat: boolean }
  | { type: 'aborted'; sid: number }
  | { type: 'tasks'; tasks: readonly Task[] }
  | { type: 'invalid'; reason: string }
  | { type: 'dropped' }
  | { type: 'power-cut'; phase?: PowerCutPhase; lostWrites: number }
  | { type: 'stopped' }
  | { type: 'error'; message: string };
export type SimEvent = SimEventBody & { id: string };
export type SimEventType = SimEvent['type'];

export interface SimDeviceEvents {
  event: [SimEvent];
}

/** The image being received into the inactive slot of one component (one transfer at a time). */
export interface Transfer {
  /** Offer session id; null after a power cycle until the gateway re-offers. */
  sid: number | null;
  component: string;
  slot: SlotName;
  meta: ImageMeta;
  /** Held chunks (durable: flushed and in the progress file). */
  map: ReceiveMap;
  /** Chunks written to flash but not yet flushed. */
  unflushed: Set<number>;
  /** The slot was erased for this image; before that, an abort restores `prev`. */
  erased: boolean;
  prev: SlotRecord;
  /** The offer this transfer runs under (its seq and signature are checked at verify); null like `sid`. */
  offer: OfferMessage | null;
  /**
   * Length of the progress file as this transfer last wrote it (same image, same chunk size),
   * so the next save may overwrite it in place (transfer.ts saveProgress); 0 = replace it whole.
   */
  progressBytes: number;
}

/** Everything in RAM for one boot. Dies with a reboot or a power cut. */
export interface Runtime {
  alive: boolean;
  boot: BootOutcome;
  rec: SlotStateRecord;
  client: MqttClient;
  connected: boolean;
  connects: number;
  bootReported: boolean;
  backoffMs: number;
  inbox: GatewayMessage[];
  pumping: boolean;
  /** Chunks handled since the last flush, to be acked together; `bad` = offset of a rejected chunk. */
  owed: { sid: number; bad?: number }[];
  commitNow: boolean;
  dropAfterCommit: boolean;
  transfer: Transfer | null;
  /** The trial timeout while the running image is in trial (§6.9.3): runs only while connected. */
  trial: TrialClock | null;
  /** The last check-in task list received this boot (§6.14): shown and logged, never acted on. */
  tasks: readonly Task[];
}
