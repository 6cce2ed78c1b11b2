import { randomInt } from 'node:crypto';
import { FwError, isFwError } from '../../protocol/errors.ts';
import { MIN_CHUNK_SIZE } from '../../protocol/limits.ts';
import type { DevicePhase, Outcome, ResultCode } from '../../protocol/uplink.ts';
import type { GatewayConfig } from '../config.ts';
import type { DeviceChannel, DeviceEvent } from '../device-channel.ts';
import type { DeviceRecord } from '../fleet.ts';
import type { Logger } from '../log.ts';
import { Inbox, type Timers } from '../waiter.ts';
import type { TokenBucket } from './bandwidth.ts';
import { transferChunks } from './chunk-transfer.ts';
import { resumeRelease, resumeSingle, type ResumeDecision } from './resume-decision.ts';
import { classify, rejection, SessionFailure } from './session-failure.ts';
import { runsImage, runsInTrial, trialBootOf } from './boot-report.ts';

export { withDeviceReason } from './session-failure.ts';
import type { ImageSource } from './image-source.ts';
import type { ReleaseManifest } from '../../protocol/release.ts';

/** One component image of a release update (release-plan.ts ReleasePart, with its bytes). */
export interface SessionPart {
  component: string;
  image: ImageSource;
  /** The signed release the offer carries (its signature covers this image, §6.15.1). */
  release: ReleaseManifest;
  agent: boolean;
}

type Ev<T extends DeviceEvent['t']> = Extract<DeviceEvent, { t: T }>;

export interface SessionResult {
  /** Throughput of the chunk transfer, bytes/s, when one completed in this session. */
  transferBps?: number;
  /** A release update: the components installed (outcome `updated`) or that were to be. */
  components?: string[];
  /** A release update: the release's components the device already ran (set by the campaign). */
  kept?: string[];
  /** From activate to the boot report, ms, when the device rebooted in this session. */
  rebootMs?: number;
  outcome: Outcome;
  code: ResultCode;
  reason?: string;
  from: string;
  to: string;
  retries: number;
  durationMs: number;
}

export interface SessionDeps {
  channel: DeviceChannel;
  config: GatewayConfig['rollout'];
  image: ImageSource;
  timers: Timers;
  log: Logger;
  /** Measured round trip of this device, used to pace resends. */
  rttMs?: number;
  /**
   * Chunks in flight, sized from the device's bandwidth-delay product (the device may ask for
   * fewer); raised during the transfer for a device that acks in batches (§6.6.2).
   */
  window: number;
  /** The site's aggregate bandwidth cap, shared by every session. */
  bandwidth?: TokenBucket;
  onPhase(phase: DevicePhase, bytes: number): void;
  /**
   * Called once the image is on the device and verified, before activation: from here on the
   * session only waits on the device (reboot, confirm) and no longer loads the gateway, so the
   * campaign can give its transfer slot to the next device.
   */
  onTransferred?: () => void;
  signal?: AbortSignal;
  /** Uniform in [0, 1): the jitter of the retry backoff (injected so tests can pin it). */
  random?: () => number;
  /**
   * Set when the gateway restarted while this device's update was past `activate` (the campaign
   * journal says `activate` may have been sent): the device's last `status` as the fleet holds
   * it. The session then asks the device's state before anything else and never activates
   * blindly a second time (docs/reliability.md).
   */
  resumeAfterActivate?: () => Pick<DeviceRecord, 'version' | 'slot' | 'slots' | 'trial' | 'components'> | undefined;
  /**
   * A release update (§6.15): the component images this device gets, in install order (the agent
   * first). Absent: the single image of `image`, offered without a component as before.
   */
  parts?: readonly SessionPart[];
  /** The device's record as the fleet holds it now: parts whose component already runs its image confirmed are not sent again. */
  current?: () => Pick<DeviceRecord, 'components'> | undefined;
  /**
   * Asked right before `activate` (maintenance windows): a reason not to activate now — outside
   * a window, or the reboot and confirmation would not finish before it closes. The session then
   * ends with outcome `skipped`, code `deferred` and that reason; the image stays verified on the
   * device and the campaign offers it again in the next window.
   */
  mayActivate?: () => string | undefined;
  /**
   * Awaited after the `activating` phase is reported and before `activate` is sent: resolves once
   * what the phase's listeners recorded is durable (the gateway's campaign journal, whose
   * `activating` record a restarted gateway relies on; docs/reliability.md).
   */
  beforeActivate?: () => Promise<void>;
  /** The campaign allows downgrades: the offer says so (§6.5), else a device refuses an older image. */
  downgrade?: boolean;
  /** The campaign was told to force: the offer says so and a busy device accepts (§6.5.3). */
  force?: boolean;
}


/**
 * The per-device update, one attempt being the named steps below (docs/protocol.md §8.1).
 * Transient failures (timeouts, the device dropping off) retry from `offer`, which resumes from
 * what the device already holds, after an exponential backoff with jitter; attempts are bounded
 * by count (`maxAttempts`) and time (`deviceDeadlineMs`), and a device that keeps failing ends
 * with its reason. Once the device has acted on `activate` the session does not start another
 * attempt, except when the device is back on its old image with nothing in trial: the activation
 * never took effect, or the trial ended by a reset before it was confirmed (§6.9.4, §8.1.1).
 */
export class DeviceSession {
  static readonly steps = ['offer', 'transfer', 'verify', 'activate', 'awaitReboot', 'confirm'] as const;

  private readonly inbox: Inbox<DeviceEvent>;
  private retries = 0;
  private activated = false;
  private sid = 0;
  private chunkSize = 0;
  private window = 1;
  /** What the device's accept allows (the window never grows above it). */
  private acceptWindow = 1;
  private held = 0;
  private transferBps: number | undefined;
  private rebootMs: number | undefined;
  private activateSentAt = 0;
  private bootAt = 0;
  private attemptNo = 0;
  private deadlineAt = Infinity;
  /** From `activate` on, the device deadline no longer cuts a wait short (§8.1.1). */
  private pastActivate = false;
  /** What an `updated` result should still say (a second activation after a revert). */
  private note: string | undefined;
  /** The part being offered and transferred (undefined: the single image of deps.image). */
  private part: SessionPart | undefined;
  /** Bytes of the parts of this attempt already verified on the device (progress counts them). */
  private doneBytes = 0;
  /** The agent step (§6.15.4) finished: later attempts install only the rest. */
  private agentDone = false;

  constructor(readonly deviceId: string, readonly fromVersion: string, private readonly deps: SessionDeps) {
    this.inbox = new Inbox<DeviceEvent>(deps.timers);
  }

  /** The session id of an offer the device accepted and was not told to activate: what an `abort` names (§6.11). */
  get openSid(): number | undefined {
    return this.sid !== 0 && !this.pastActivate && !this.activated ? this.sid : undefined;
  }

  async run(): Promise<SessionResult> {
    const { timers, config, log } = this.deps;
    const started = timers.now();
    this.deadlineAt = started + config.deviceDeadlineMs;
    const stopListening = this.deps.channel.listen(this.deviceId, (e) => this.inbox.push(e));
    const onAbort = (): void => this.inbox.close(new SessionFailure('failed', 'cancelled', 'campaign cancelled', true));
    this.deps.signal?.addEventListener('abort', onAbort);
    try {
      for (let attempt = 1; ; attempt++) {
        this.attemptNo = attempt;
        try {
          await this.attempt();
          return this.result('updated', 'ok', undefined, started);
        } catch (err) {
          const f = classify(err);
          if (f.terminal || this.activated) return this.result(f.outcome, f.code, f.message, started);
          if (attempt >= config.maxAttempts) {
            return this.result(f.outcome, f.code === 'timeout' ? 'retries-exhausted' : f.code, `${f.message} (after ${attempt} attempts)`, started);
          }
          const backoffMs = this.backoff(attempt);
          if (timers.now() + backoffMs >= this.deadlineAt) {
            // Out of time before the next attempt could start (§8.1.1).
            const why = `device deadline of ${config.deviceDeadlineMs} ms passed after ${attempt} attempts`;
            return f.outcome === 'rolled-back'
              ? this.result(f.outcome, f.code, `${f.message}; not retried: ${why}`, started)
              : this.result('failed', 'timeout', `${why}; last failure: ${f.message}`, started);
          }
          this.retries++;
          log.info({ device: this.deviceId, attempt, reason: f.message, backoffMs }, 'update attempt failed, retrying');
          await this.sleep(backoffMs);
          // cancelled during the backoff: no further attempt (no offer goes out after the cancel)
          if (this.deps.signal?.aborted) return this.result('failed', 'cancelled', 'campaign cancelled', started);
        }
      }
    } finally {
      stopListening();
      this.deps.signal?.removeEventListener('abort', onAbort);
      this.inbox.close(new FwError('E_CANCELLED', 'session ended'));
    }
  }

  /**
   * Wait before attempt k + 1 (§8.1.1): retryBackoffMs x 2^(k-1), capped at retryBackoffMaxMs,
   * then a uniform jitter over its upper half so that devices failing together spread out.
   */
  private backoff(k: number): number {
    const { retryBackoffMs, retryBackoffMaxMs } = this.deps.config;
    const d = Math.min(retryBackoffMaxMs, retryBackoffMs * 2 ** Math.min(k - 1, 30));
    return Math.round(d / 2 + (d / 2) * (this.deps.random ?? Math.random)());
  }

  private async attempt(): Promise<void> {
    this.pastActivate = false;
    await this.ensureOnline();
    if (this.attemptNo === 1 && this.deps.resumeAfterActivate && (await this.resumeAfterRestart(this.deps.resumeAfterActivate))) return;
    if (!this.deps.parts) {
      await this.install([undefined]);
      return;
    }
    const now = this.deps.current?.()?.components;
    const done = (p: SessionPart): boolean => now?.some((c) => c.name === p.component && c.sha256 === p.image.manifest.sha256 && !c.trial) === true;
    const parts = this.deps.parts.filter((p) => !done(p));
    // §6.15.4: the update agent alone first (installed, booted, confirmed), then the rest together
    const agent = parts.find((p) => p.agent);
    const rest = parts.filter((p) => !p.agent);
    if (agent && !this.agentDone) {
      await this.install([agent], rest.length === 0);
      this.agentDone = true;
      // the rest is a new activation: a failure in it is retried like any before its `activate`
      this.activated = false;
      this.pastActivate = false;
    }
    if (rest.length > 0) await this.install(rest);
  }

  /**
   * Offer, transfer and verify each image of `group` in turn, then activate them together in one
   * reboot, wait for the boot report and confirm them together (§6.15.2, §6.15.3). `[undefined]`:
   * the single image of deps.image, as before releases. `last`: the device gives back its transfer
   * slot after this group's images are verified.
   */
  private async install(group: readonly (SessionPart | undefined)[], last = true): Promise<void> {
    const sids: number[] = [];
    this.doneBytes = 0;
    for (const part of group) {
      this.part = part;
      this.held = 0;
      await this.offer();
      await this.transfer();
      await this.verify();
      sids.push(this.sid);
      this.doneBytes += this.image.size;
      this.held = 0;
    }
    this.held = this.doneBytes;
    this.doneBytes = 0;
    if (last) this.deps.onTransferred?.();
    const notNow = this.deps.mayActivate?.();
    if (notNow !== undefined) throw new SessionFailure('skipped', 'deferred', notNow, true);
    await this.activate(sids);
    await this.awaitReboot(group);
    await this.confirm(group);
  }

  /** The image being offered or transferred now. */
  private get image(): ImageSource {
    return this.part?.image ?? this.deps.image;
  }

  /** Bytes to report with a phase: the verified parts of this group plus what the device holds of the current one. */
  private get bytes(): number {
    return this.doneBytes + this.held;
  }

  // ---- steps ----

  /**
   * After a gateway restart past `activate`: where is the device? Running the image in trial →
   * confirm it; running it confirmed → done; the image `pending` in its other slot → the reboot is
   * under way: wait for it, then confirm. Anything else (still `ready`, or reverted and marked
   * `bad`) means no activation is in effect: false, and the normal attempt follows, within the
   * same bounds. True when the device is updated; failures are thrown like any step's.
   */
  private async resumeAfterRestart(status: NonNullable<SessionDeps['resumeAfterActivate']>): Promise<boolean> {
    const s = status();
    if (!s) return false;
    const parts = this.deps.parts;
    const d: ResumeDecision<SessionPart | undefined> = parts ? resumeRelease(s, parts) : resumeSingle(s, this.deps.image.manifest);
    this.deps.log.info({ device: this.deviceId, version: s.version, trial: s.trial, resume: d.kind }, 'resuming an update that was past activate');
    if (parts) this.agentDone = d.kind === 'done' || (d.kind !== 'normal' && !d.left.some((p) => p?.agent === true));
    if (d.kind === 'normal') {
      // the trial of the activation before the restart was reverted (the slot is `bad`): the
      // next activation is a second one, and the result says so (issue 17.5)
      if (d.reverted) {
        this.retries++;
        this.note = 'its first activation was reverted (trial not confirmed while the gateway was down); activated a second time';
      }
      return false;
    }
    this.activated = true;
    this.pastActivate = true;
    this.activateSentAt = this.deps.timers.now();
    this.bootAt = this.deps.timers.now();
    if (!parts) this.held = this.deps.image.size;
    if (d.kind === 'done') return true;
    if (d.kind === 'reboot-then-confirm') await this.awaitReboot(d.left);
    await this.confirm(d.left);
    return true;
  }

  private async ensureOnline(): Promise<void> {
    if (this.deps.channel.isOnline(this.deviceId)) return;
    this.deps.onPhase('queued', this.held);
    await this.expect((e): e is Ev<'status'> => e.t === 'status', this.deps.config.offlineWaitMs, 'the device to come back online', false)
      .catch((err: unknown) => {
        throw isFwError(err, 'E_DEVICE_TIMEOUT') ? new SessionFailure('failed', 'offline', `device stayed offline for ${this.deps.config.offlineWaitMs} ms`, true) : err;
      });
  }

  private async offer(): Promise<void> {
    const m = this.image.manifest;
    const part = this.part;
    this.sid = randomInt(1, 0xffff_ffff);
    this.deps.onPhase('offering', this.bytes);
    this.inbox.takeAll();
    await this.deps.channel.send(this.deviceId, {
      t: 'offer', sid: this.sid, name: m.name, version: m.version, hw: m.hw, size: m.size, crc32: m.crc32, sha256: m.sha256, chunk: m.chunk,
      ...(this.deps.downgrade ? { downgrade: true } : {}),
      ...(this.deps.force ? { force: true } : {}),
      ...(m.seq !== undefined ? { seq: m.seq } : {}),
      ...(m.signature ? { keyId: m.signature.keyId, sig: m.signature.sig } : {}),
      ...(part ? { component: part.component, release: part.release } : {}),
    });
    const sid = this.sid;
    const reply = await this.expect((e): e is Ev<'accept'> | Ev<'reject'> => (e.t === 'accept' || e.t === 'reject') && e.sid === sid, this.deps.config.offerTimeoutMs, 'accept or reject');
    if (reply.t === 'reject') throw rejection(reply);
    if (reply.chunk > m.chunk || reply.chunk < MIN_CHUNK_SIZE) {
      throw new SessionFailure('failed', 'unsupported', `device asked for chunk size ${reply.chunk}, offered ${m.chunk}`, true);
    }
    this.chunkSize = reply.chunk;
    this.acceptWindow = Math.max(1, reply.window);
    this.window = Math.max(1, Math.min(this.deps.window, reply.window));
    // Resume point: must be on a chunk boundary and within the image, else start over.
    this.held = reply.next <= m.size && (reply.next % this.chunkSize === 0 || reply.next === m.size) ? reply.next : 0;
  }

  private async transfer(): Promise<void> {
    const { config, timers, channel } = this.deps;
    const bps = await transferChunks({
      deviceId: this.deviceId, image: this.image, chunk: this.chunkSize, sid: this.sid, from: this.held,
      window: this.window, acceptWindow: this.acceptWindow, config, timers, channel,
      ...(this.deps.rttMs !== undefined ? { rttMs: this.deps.rttMs } : {}),
      ...(this.deps.bandwidth ? { bandwidth: this.deps.bandwidth } : {}),
      ...(this.deps.signal ? { signal: this.deps.signal } : {}),
      expectAck: (sid, ms) => this.expect((e): e is Extract<DeviceEvent, { t: 'ack' }> => e.t === 'ack' && e.sid === sid, ms, 'chunk ack'),
      onHeld: (next) => {
        this.held = next;
        this.deps.onPhase('transferring', this.bytes);
      },
    });
    if (bps !== undefined) this.transferBps = bps;
  }

  private async verify(): Promise<void> {
    this.deps.onPhase('verifying', this.bytes);
    const sid = this.sid;
    await this.deps.channel.send(this.deviceId, { t: 'verify', sid });
    const v = await this.expect((e): e is Ev<'verified'> => e.t === 'verified' && e.sid === sid, this.deps.config.verifyTimeoutMs, 'verify result');
    if (v.ok) return;
    if (v.code !== 'incomplete') this.held = 0; // the device discards what it holds
    if (v.code === 'signature') {
      // Not retried: the same manifest would fail the same way (§6.7.2).
      throw new SessionFailure('failed', 'bad-signature', `device refuses the image's signature${v.reason ? `: ${v.reason}` : ''}`, true);
    }
    throw new SessionFailure('failed', 'integrity-failure', `device reports the image does not verify (${v.code ?? 'no code'}${v.reason ? `: ${v.reason}` : ''})`, false);
  }

  private async activate(sids: readonly number[]): Promise<void> {
    this.deps.onPhase('activating', this.held);
    this.pastActivate = true;
    if (this.deps.beforeActivate) {
      await this.deps.beforeActivate();
      // stopped while the record was made durable: the activation is not sent
      if (this.deps.signal?.aborted) throw new SessionFailure('failed', 'cancelled', 'campaign cancelled before activate was sent', true);
    }
    const [sid, ...others] = sids as [number, ...number[]];
    this.activateSentAt = this.deps.timers.now();
    await this.deps.channel.send(this.deviceId, { t: 'activate', sid, ...(others.length > 0 ? { with: others } : {}) });
    // The device answers `activated` and drops off to reboot; either one means it acted on the
    // command. Only from then on is the session committed to this activation (no second one);
    // a device that does neither is still running its old image and may be offered again.
    await this.expect((e): e is Ev<'activated'> | Ev<'offline'> => (e.t === 'activated' && e.sid === sid) || e.t === 'offline',
      this.deps.config.activateTimeoutMs, 'activation', false);
    this.activated = true;
  }

  private async awaitReboot(group: readonly (SessionPart | undefined)[]): Promise<void> {
    const { config, timers } = this.deps;
    this.deps.onPhase('rebooting', this.held);
    // §6.9.1: a `boot` lost with its connection is recovered from the `status` that follows every
    // connection — a device in trial on the new version can only be there after this reboot.
    const boot = await this.expect((e): e is Ev<'boot'> | Ev<'status'> => e.t === 'boot' || (e.t === 'status' && this.trialOf(trialBootOf(e), group)),
      config.rebootTimeoutMs, 'the device to reboot and report', false)
      .then((e) => (e.t === 'boot' ? e : trialBootOf(e)))
      .catch((err: unknown) => {
        throw isFwError(err, 'E_DEVICE_TIMEOUT')
          ? new SessionFailure('failed', 'timeout', `device did not report a boot within ${config.rebootTimeoutMs} ms of activation`, true)
          : err;
      });
    this.bootAt = timers.now();
    this.rebootMs = Math.round(this.bootAt - this.activateSentAt);
    if (!boot.reverted && group.every((p) => !this.runs(boot, p))) {
      // Rebooted (e.g. power lost) before the slot switch took effect: nothing was tried or
      // reverted, the image may still be ready on the device. Safe to offer again.
      this.activated = false;
      throw new SessionFailure('failed', 'connection-lost', `device rebooted on ${boot.version} before the activation took effect`, false);
    }
    if (boot.reverted || !group.every((p) => this.runs(boot, p))) {
      throw this.revertFailure(boot, 'before its trial was reported', group);
    }
    if (!this.trialOf(boot, group)) {
      throw new SessionFailure('failed', 'unsupported', 'device booted the new image without a trial state; it cannot be confirmed', true);
    }
  }

  /**
   * §6.10.2: `confirm` until the device confirms, at most confirmTries times that it stays online
   * for confirmTimeoutMs without answering. A device that does not confirm is then left to its own
   * trial deadline: the session waits for its `confirmed` or its next `boot`. The whole step ends
   * at the latest trialTimeoutMs + rebootTimeoutMs after the boot report.
   */
  private async confirm(group: readonly (SessionPart | undefined)[]): Promise<void> {
    const { config, channel, timers } = this.deps;
    this.deps.onPhase('confirming', this.held);
    // §6.15.3: one confirm names every image of the group, the first as `sha256`, the others in `with`
    const [first, ...others] = group.map((p) => (p ?? this.deps).image.manifest.sha256) as [string, ...string[]];
    const endAt = this.bootAt + config.trialTimeoutMs + config.rebootTimeoutMs;
    const within = (ms: number): number => Math.max(0, Math.min(ms, endAt - timers.now()));
    const isConfirmed = (e: DeviceEvent): e is Ev<'confirmed'> => e.t === 'confirmed' && e.sha256 === first;
    const sendConfirm = (): Promise<void> => channel.send(this.deviceId, { t: 'confirm', sha256: first, ...(others.length > 0 ? { with: others } : {}) });
    let tries = 0;
    const gaveUp = (): SessionFailure => new SessionFailure('failed', 'timeout',
      `device neither confirmed (${tries} unanswered confirms) nor reported a revert within ${config.trialTimeoutMs + config.rebootTimeoutMs} ms of its boot report`, true);
    const orGaveUp = (err: unknown): never => {
      throw isFwError(err, 'E_DEVICE_TIMEOUT') ? gaveUp() : err;
    };

    while (tries < config.confirmTries) {
      if (timers.now() >= endAt) throw gaveUp();
      await sendConfirm();
      const e = await this.expect((x): x is Ev<'confirmed'> | Ev<'offline'> => isConfirmed(x) || x.t === 'offline', within(config.confirmTimeoutMs), 'confirmation', false)
        .catch((err: unknown) => {
          if (isFwError(err, 'E_DEVICE_TIMEOUT')) return null;
          throw err;
        });
      if (e === null) {
        tries++;
        continue;
      }
      if (e.t === 'confirmed') return;
      // Offline: a reconnect (status) or a reboot (boot). Either way, confirm again.
      const back = await this.expect((x): x is Ev<'boot'> | Ev<'status'> => x.t === 'boot' || x.t === 'status', within(config.offlineWaitMs), 'the device to come back', false)
        .catch((err: unknown) => {
          throw isFwError(err, 'E_DEVICE_TIMEOUT')
            ? new SessionFailure('failed', 'timeout', `device went offline before confirming and did not come back in time (offlineWaitMs ${config.offlineWaitMs} ms)`, true)
            : err;
        });
      if (back.t === 'boot' && (back.reverted || !group.every((p) => this.runs(back, p)))) throw this.revertFailure(back, 'after it went offline before confirming', group);
    }

    // Online all along and never confirmed: its trial deadline reverts it (§6.9.3); a late
    // `confirmed` still counts. This revert is final: the image ran and did not confirm.
    for (;;) {
      const e = await this.expect((x): x is Ev<'confirmed'> | Ev<'boot'> => isConfirmed(x) || x.t === 'boot', within(Infinity), 'confirmation or a revert', false)
        .catch(orGaveUp);
      if (e.t === 'confirmed') return;
      if (e.reverted || !group.every((p) => this.runs(e, p))) {
        throw new SessionFailure('rolled-back', /self-test/i.test(e.reason ?? '') ? 'self-test-failed' : 'reverted',
          `device never confirmed the new image (${tries} confirms unanswered) and came back on ${e.version}${e.reason ? ` (${e.reason})` : ''}`, true);
      }
      await sendConfirm(); // back on the new image without a revert: it was confirmed; a repeated confirm is answered (§6.10.1)
    }
  }

  /**
   * What a boot report that is not the new image's trial means (§6.9.4): a failed self-test or an
   * unexpected image ends the session; a revert to another version without a self-test failure
   * (an unconfirmed trial ended by a reset, or a failed image check) leaves the device on its old
   * image with nothing in trial, so it is retried within the session's bounds.
   */
  private revertFailure(boot: Ev<'boot'>, when: string, group: readonly (SessionPart | undefined)[]): SessionFailure {
    const why = `device came back on ${boot.version}${boot.reason ? ` (${boot.reason})` : ''}`;
    if (/self-test/i.test(boot.reason ?? '')) return new SessionFailure('rolled-back', 'self-test-failed', why, true);
    if (boot.reverted && group.every((p) => !this.runs(boot, p))) {
      this.activated = false;
      return new SessionFailure('rolled-back', 'reverted', `${why}: the trial ended ${when}, unconfirmed`, false);
    }
    return new SessionFailure('rolled-back', 'reverted', why, true);
  }

  // ---- helpers ----

  /** The boot report shows the part's image running (the single image of deps.image for `undefined`). */
  private runs(boot: Ev<'boot'>, part: SessionPart | undefined): boolean {
    return runsImage(boot, part?.component, (part ?? this.deps).image.manifest);
  }

  /** Every image of the group runs, in trial. */
  private trialOf(boot: Ev<'boot'>, group: readonly (SessionPart | undefined)[]): boolean {
    return group.every((p) => runsInTrial(boot, p?.component, (p ?? this.deps).image.manifest));
  }

  /**
   * The next event that matches, skipping others; an `offline` ends the wait unless tolerated.
   * Before `activate`, the device deadline (deviceDeadlineMs) cuts the wait short (§8.1.1).
   */
  private async expect<R extends DeviceEvent>(match: (e: DeviceEvent) => e is R, timeoutMs: number, what: string, offlineIsError = true): Promise<R> {
    const { timers } = this.deps;
    const byDeadline = !this.pastActivate && this.deadlineAt < timers.now() + timeoutMs;
    const deadline = byDeadline ? this.deadlineAt : timers.now() + timeoutMs;
    for (;;) {
      const left = Math.max(0, Math.ceil(deadline - timers.now()));
      const e = await this.inbox.next(left, 'E_DEVICE_TIMEOUT', `${what} from ${this.deviceId}`).catch((err: unknown) => {
        throw byDeadline && isFwError(err, 'E_DEVICE_TIMEOUT')
          ? new SessionFailure('failed', 'timeout', `device deadline of ${this.deps.config.deviceDeadlineMs} ms passed in attempt ${this.attemptNo} while waiting for ${what}`, true)
          : err;
      });
      if (match(e)) return e;
      if (e.t === 'offline' && offlineIsError) throw new FwError('E_DEVICE_OFFLINE', `${this.deviceId} went offline while waiting for ${what}`);
    }
  }

  /** Bounded pause; a cancelled campaign ends it at once (the next wait then fails as cancelled). */
  private sleep(ms: number): Promise<void> {
    const { timers, signal } = this.deps;
    return new Promise((resolve) => {
      const done = (): void => {
        timers.clearTimeout(handle);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const handle = timers.setTimeout(done, ms);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  private result(outcome: Outcome, code: ResultCode, reason: string | undefined, started: number): SessionResult {
    return {
      ...(this.transferBps !== undefined ? { transferBps: this.transferBps } : {}),
      ...(this.rebootMs !== undefined ? { rebootMs: this.rebootMs } : {}),
      outcome, code, ...(reason ?? this.note ? { reason: reason ?? this.note } : {}),
      ...(this.deps.parts ? { components: this.deps.parts.map((p) => p.component) } : {}),
      from: this.fromVersion, to: this.deps.image.manifest.version,
      retries: this.retries, durationMs: Math.round(this.deps.timers.now() - started),
    };
  }
}
