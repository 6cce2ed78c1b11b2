import { join } from 'node:path';
import type { PowerCutPhase } from '../../device-sim/faults.ts';
import type { SimDevice, SimEvent } from '../../device-sim/device.ts';
import type { FleetDeviceOptions } from '../../device-sim/fleet.ts';
import type { ConfigInput } from '../../gateway/config.ts';
import type { DeviceEvent } from '../../gateway/device-channel.ts';
import type { Campaign } from '../../gateway/rollout/campaign.ts';
import type { StoredImage } from '../../gateway/store.ts';
import type { Manifest } from '../../protocol/manifest.ts';
import { releaseIdentity, type ReleaseManifest } from '../../protocol/release.ts';
import type { CompleteMessage, ResultMessage } from '../../protocol/uplink.ts';
import type { Rig } from '../helpers/rig.ts';
import { bootFromFiles, type Target } from './invariants.ts';
import { describeDiskFull, type DiskFullSpec } from './disk-fault.ts';

/**
 * Shared machinery of the fault matrix and the soak: fast timeouts, storing an image straight
 * into the gateway's store, running one campaign with a bound, arming one fault on one device
 * and telling whether it fired, and waiting for the fleet to settle between campaigns.
 */

/** Gateway timeouts for fault runs: short (loopback, small images) but with room for a loaded 2-core box. */
export const FAULT_CONFIG: ConfigInput = {
  rollout: {
    ackTimeoutMs: 400, maxAckTimeouts: 4, offerTimeoutMs: 2000, verifyTimeoutMs: 4000, activateTimeoutMs: 3000,
    rebootTimeoutMs: 8000, confirmTimeoutMs: 1000, offlineWaitMs: 6000, retryBackoffMs: 50, maxAttempts: 6,
    // The devices' trial timeout T (FAULT_DEVICE); protocol.md §6.9.3: confirmTries (3) x confirmTimeoutMs < T <= this.
    trialTimeoutMs: 5000,
    probePings: 1, probeBursts: 1, probeBytes: 2048, probeChunkBytes: 1024, pingTimeoutMs: 1500, probeTimeoutMs: 2000,
    // Fault runs roll devices back on purpose; the rollback brake would stop the campaign early.
    rollbackThreshold: 0,
  },
};

/** Device timings for fault runs: a trial not confirmed in 5 s reverts (the gateway confirms within ms). */
export const FAULT_DEVICE: FleetDeviceOptions = { trialTimeoutMs: 5000, powerOffMs: 100, bootDelayMs: 50, reconnectDelayMs: 100, reconnectMaxMs: 500 };

/** Put an image into the gateway's store the way an upload does (partial, verify, commit). */
export async function storeImage(rig: Rig, image: Uint8Array, manifest: Manifest): Promise<StoredImage> {
  const up = await rig.gateway.store.beginUpload(manifest);
  await up.write(0, image);
  return up.commit();
}

export function storeDir(rig: Rig): string {
  return join(rig.gatewayDir, 'store');
}

export function devicesDir(rig: Rig): string {
  return join(rig.dir, 'devices');
}

// ---------------------------------------------------------------- faults

/** The faults the tests inject. `gateway-kill` is the extension point for the campaign journal (not injected yet). */
export const FaultKinds = [
  'power-cut', 'power-cut-now', 'corrupt-chunk', 'link-drop', 'link-outage', 'busy', 'fail-self-test', 'gateway-kill', 'disk-full',
  'fail-self-test-component',
] as const;
export type FaultKind = (typeof FaultKinds)[number];

/** When a timed fault strikes: some ms after the device accepted its first offer, or once it acked a fraction of the image. */
export type Trigger = { afterAcceptMs: number } | { atFraction: number };

export type FaultSpec =
  /**
   * The device's powerCutAt switch; for chunk-write, armed once the device acked `atFraction` of the image.
   * With `component` (multi-component devices), it fires only in a step of that component (powerCutComponent).
   */
  | { kind: 'power-cut'; device: number; phase: PowerCutPhase; atFraction?: number; component?: string }
  /** Pull the plug at any step of the update. */
  | { kind: 'power-cut-now'; device: number; when: Trigger }
  /** Flip a byte of the k-th chunk the device receives. */
  | { kind: 'corrupt-chunk'; device: number; k: number }
  /** Destroy the device's MQTT stream after its n-th chunk. */
  | { kind: 'link-drop'; device: number; n: number }
  /** Its link passes nothing, either way, for `forMs` (connections stay open; needs a link profile). */
  | { kind: 'link-outage'; device: number; when: Trigger; forMs: number }
  | { kind: 'busy'; device: number }
  | { kind: 'fail-self-test'; device: number }
  /** Multi-component devices: a trial boot that includes `component` fails its self-test (failSelfTestComponent). */
  | { kind: 'fail-self-test-component'; device: number; component: string }
  /** Kill -9 the gateway and start it again on the same data dir. Not injected yet: see docs/reliability.md. */
  | { kind: 'gateway-kill'; delayMs: number }
  /** The gateway's disk full just before a durable step's journal record (test/faults/disk-fault.ts). */
  | DiskFullSpec;

function describeTrigger(w: Trigger): string {
  return 'afterAcceptMs' in w ? `+${w.afterAcceptMs}ms after accept` : `at ${Math.round(w.atFraction * 100)}%`;
}

export function describeFault(f: FaultSpec, id?: string): string {
  const who = id ?? ('device' in f ? `device ${f.device}` : 'gateway');
  switch (f.kind) {
    case 'power-cut': return `${who} power-cut@${f.phase}${f.component ? `(${f.component})` : ''}${f.atFraction ? ` at ${Math.round(f.atFraction * 100)}%` : ''}`;
    case 'power-cut-now': return `${who} power-cut-now ${describeTrigger(f.when)}`;
    case 'corrupt-chunk': return `${who} corrupt-chunk k=${f.k}`;
    case 'link-drop': return `${who} link-drop n=${f.n}`;
    case 'link-outage': return `${who} link-outage ${describeTrigger(f.when)} for ${f.forMs}ms`;
    case 'busy': return `${who} busy`;
    case 'fail-self-test': return `${who} fail-self-test`;
    case 'fail-self-test-component': return `${who} fail-self-test of ${f.component}`;
    case 'gateway-kill': return `gateway kill -9 +${f.delayMs}ms`;
    case 'disk-full': return describeDiskFull(f);
    default: {
      const never: never = f;
      return String(never);
    }
  }
}

/** One armed fault: whether it fired, and how to take it back at the end of the campaign. */
export interface ArmedFault {
  spec: FaultSpec;
  fired: boolean;
  disarm(): void;
}

/**
 * Arm a fault on its device before the campaign starts. Firing is read from what the device
 * reports (a `power-cut` with that phase, a bad chunk, a drop, a busy reject, a self-test revert)
 * or is certain (the harness itself cut power or the link).
 */
export function armFault(rig: Rig, spec: FaultSpec, image: Pick<Manifest, 'size'>): ArmedFault {
  if (spec.kind === 'gateway-kill') {
    throw new Error('gateway-kill faults need a gateway that resumes its campaigns at start-up (gateway/rollout/journal.ts); not injected yet');
  }
  if (spec.kind === 'disk-full') throw new Error('disk-full faults are armed on their campaign: armDiskFull (test/faults/disk-fault.ts)');
  const device = rig.sims.devices[spec.device];
  if (!device) throw new Error(`no device ${spec.device} in a fleet of ${rig.sims.devices.length}`);
  const id = device.id;
  const armed: ArmedFault = { spec, fired: false, disarm: () => undefined };
  const cleanups: (() => void)[] = [];
  const onDevice = (fn: (e: SimEvent) => void): void => {
    device.on('event', fn);
    cleanups.push(() => device.off('event', fn));
  };
  /** Run `act` once, at the trigger. */
  const at = (when: Trigger, act: () => void): void => {
    let done = false;
    const once = (): void => {
      if (done) return;
      done = true;
      act();
    };
    if ('atFraction' in when) {
      const threshold = Math.floor(when.atFraction * image.size);
      cleanups.push(onDeviceMessage(rig, id, (e) => { if (e.t === 'ack' && e.next >= threshold) once(); }));
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    onDevice((e) => {
      if (e.type === 'offer-accepted' && timer === undefined) timer = setTimeout(once, when.afterAcceptMs);
    });
    cleanups.push(() => clearTimeout(timer));
  };
  switch (spec.kind) {
    case 'power-cut': {
      // with a component, the device takes the cut only in a step of that component: firing proves it
      onDevice((e) => { if (e.type === 'power-cut' && e.phase === spec.phase) armed.fired = true; });
      const only = spec.component !== undefined ? { powerCutComponent: spec.component } : {};
      if (!spec.atFraction) device.setFaults({ powerCutAt: spec.phase, ...only });
      else at({ atFraction: spec.atFraction }, () => device.setFaults({ powerCutAt: spec.phase, ...only }));
      cleanups.push(() => device.setFaults({ powerCutAt: undefined, ...(spec.component !== undefined ? { powerCutComponent: undefined } : {}) }));
      break;
    }
    case 'power-cut-now':
      at(spec.when, () => {
        if (!device.powered) return;
        device.powerCut();
        armed.fired = true;
      });
      break;
    case 'corrupt-chunk':
      onDevice((e) => { if (e.type === 'chunk-bad' && e.why === 'crc32 mismatch') armed.fired = true; });
      device.setFaults({ corruptChunk: spec.k });
      cleanups.push(() => device.setFaults({ corruptChunk: undefined }));
      break;
    case 'link-drop':
      onDevice((e) => { if (e.type === 'dropped') armed.fired = true; });
      device.setFaults({ dropAfterChunks: spec.n });
      cleanups.push(() => device.setFaults({ dropAfterChunks: undefined }));
      break;
    case 'link-outage': {
      const link = rig.sims.link(id);
      if (!link) throw new Error(`link-outage on ${id}: the device has no link profile (start the rig with profiles)`);
      at(spec.when, () => {
        link.interrupt(spec.forMs);
        armed.fired = true;
      });
      break;
    }
    case 'busy':
      onDevice((e) => { if (e.type === 'offer-rejected' && e.code === 'busy' && e.reason === 'device is busy') armed.fired = true; });
      device.setFaults({ busy: true });
      cleanups.push(() => device.setFaults({ busy: undefined }));
      break;
    case 'fail-self-test':
      onDevice((e) => { if (e.type === 'reverted' && /self-test/.test(e.reason)) armed.fired = true; });
      device.setFaults({ failSelfTest: true });
      cleanups.push(() => device.setFaults({ failSelfTest: undefined }));
      break;
    case 'fail-self-test-component': {
      const of = new RegExp(`self-test of ${spec.component} failed`);
      onDevice((e) => { if (e.type === 'reverted' && of.test(e.reason)) armed.fired = true; });
      device.setFaults({ failSelfTestComponent: spec.component });
      cleanups.push(() => device.setFaults({ failSelfTestComponent: undefined }));
      break;
    }
    default: {
      const never: never = spec;
      throw new Error(`unknown fault ${JSON.stringify(never)}`);
    }
  }
  armed.disarm = () => {
    for (const c of cleanups.splice(0)) c();
  };
  return armed;
}

/** Listen to what the gateway receives from one device (acks, boots, ...). Returns the unsubscribe. */
export function onDeviceMessage(rig: Rig, id: string, fn: (e: DeviceEvent) => void): () => void {
  const h = (from: string, e: DeviceEvent): void => {
    if (from === id) fn(e);
  };
  rig.gateway.channel.on('event', h);
  return () => rig.gateway.channel.off('event', h);
}

// ---------------------------------------------------------------- campaigns

export interface CampaignRun {
  id: string;
  image: { version: string; sha256: string };
  /** Every device of the fleet, with its version before the campaign and its final result. */
  targets: Target[];
  results: ResultMessage[];
  complete: CompleteMessage | undefined;
  /** The campaign did not complete within the bound and was cancelled. */
  timedOut: boolean;
  ms: number;
}

/**
 * Roll a stored image out to the whole fleet and wait (bounded) for its completion. `arm` runs
 * after the campaign is created and before it starts (faults that must be in place for the offer).
 */
export async function runCampaign(rig: Rig, stored: StoredImage, opts: { timeoutMs: number; arm?: (c: Campaign) => void }): Promise<CampaignRun> {
  return runPrepared(rig, () => rig.gateway.prepareCampaign(stored), stored.manifest, opts);
}

/**
 * A release campaign (§6.15) instead of one image: the release's component images must be in the
 * store and the release in the registry. `image` of the run is the release's identity (§5.5.4).
 */
export async function runReleaseCampaign(rig: Rig, release: ReleaseManifest, opts: { timeoutMs: number; arm?: (c: Campaign) => void }): Promise<CampaignRun> {
  return runPrepared(rig, () => rig.gateway.prepareRelease(release), releaseIdentity(release), opts);
}

async function runPrepared(
  rig: Rig, prepare: () => ReturnType<Rig['gateway']['prepareCampaign']>, m: Pick<Manifest, 'version' | 'sha256'>,
  opts: { timeoutMs: number; arm?: (c: Campaign) => void },
): Promise<CampaignRun> {
  const t0 = Date.now();
  const before = new Map<string, string>();
  for (const d of rig.sims.devices) {
    before.set(d.id, d.running?.version ?? (await bootFromFiles(d.id, join(devicesDir(rig), d.id))).version ?? '(not bootable)');
  }
  const { campaign, start } = await prepare();
  const results: ResultMessage[] = [];
  campaign.on('result', (r) => results.push(r));
  const completed = new Promise<CompleteMessage>((resolve) => campaign.once('complete', resolve));
  // Busy devices are pending until they report idle (docs/operations.md "Pending devices"): once
  // only pending devices are left, the busy ones become idle, and their check-in releases them.
  campaign.on('waiting', () => {
    for (const d of rig.sims.devices) if (d.faults.busy) d.setFaults({ busy: undefined });
  });
  opts.arm?.(campaign);
  start();
  let complete = await within(completed, opts.timeoutMs);
  const timedOut = complete === undefined;
  if (timedOut) {
    campaign.cancel();
    complete = await within(completed, 15_000);
  }
  // The gateway lets go of the campaign just after `complete`; the next one may start after that.
  await waitFor(() => rig.gateway.activeCampaign !== campaign, 5000);
  const targets: Target[] = rig.sims.devices.map((d) => {
    const mine = results.filter((r) => r.id === d.id);
    return { id: d.id, before: before.get(d.id)!, result: mine.at(-1), ...(mine.length > 1 ? { extraResults: mine.length - 1 } : {}) };
  });
  return { id: campaign.id, image: { version: m.version, sha256: m.sha256 }, targets, results, complete, timedOut, ms: Date.now() - t0 };
}

/** Why a device is not settled (off, dark, in trial, mid-activation, or the gateway does not know its version yet), or null. */
export function unsettled(rig: Rig, d: SimDevice): string | null {
  const run = d.running;
  if (!d.powered || !run) return 'not running';
  if (!d.connected) return 'not connected';
  if (run.trial) return 'in trial';
  const st = d.status();
  if (st && (['a', 'b'] as const).some((s) => st.slots[s].state === 'pending' || st.slots[s].state === 'trial')) return 'a slot is pending';
  const rec = rig.gateway.fleet.get(d.id);
  if (!rec?.online || rec.version !== run.version || rec.trial) return 'the gateway has not seen its status yet';
  return null;
}

/**
 * Wait (bounded) until every device runs a confirmed image, is connected and known to the gateway.
 * A device still unsettled when the bound runs out fails the run loudly (naming each and why):
 * the checks that follow would otherwise judge a fleet in mid-flight. Returns [] when settled.
 */
export async function settleFleet(rig: Rig, timeoutMs: number): Promise<{ id: string; why: string }[]> {
  const pending = (): { id: string; why: string }[] => rig.sims.devices.flatMap((d) => {
    const why = unsettled(rig, d);
    return why === null ? [] : [{ id: d.id, why }];
  });
  if (!(await waitFor(() => pending().length === 0, timeoutMs))) {
    const left = pending();
    if (left.length > 0) throw new Error(`the fleet did not settle within ${timeoutMs} ms: ${left.map((u) => `${u.id} ${u.why}`).join(', ')}`);
  }
  return [];
}

/** Resolve with the value, or undefined after `ms`. */
export async function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<undefined>((resolve) => { timer = setTimeout(() => resolve(undefined), ms); })]);
  } finally {
    clearTimeout(timer);
  }
}

/** Poll until `cond` holds or `ms` pass; says which. */
export async function waitFor(cond: () => boolean, ms: number, everyMs = 20): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  return true;
}
