import { randomInt } from 'node:crypto';
import { FwError, isFwError } from '../../protocol/errors.ts';
import { MIN_CHUNK_SIZE } from '../../protocol/limits.ts';
import type { DevicePhase, Outcome, ResultCode } from '../../protocol/uplink.ts';
import type { GatewayConfig } from '../config.ts';
import type { DeviceChannel, DeviceEvent } from '../device-channel.ts';
import type { Logger } from '../log.ts';
import { Inbox, type Timers } from '../waiter.ts';
import type { TokenBucket } from './bandwidth.ts';
import type { ImageSource } from './image-source.ts';

type Ev<T extends DeviceEvent['t']> = Extract<DeviceEvent, { t: T }>;

export interface SessionResult {
  /** Throughput of the chunk transfer, bytes/s, when one completed in this session. */
  transferBps?: number;
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
  /** Chunks in flight, sized from the device's bandwidth-delay product (the device may ask for fewer). */
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
}

/** How one attempt ended when it did not succeed: terminal ends the session, otherwise retry. */
class SessionFailure extends Error {
  constructor(readonly outcome: Outcome, readonly code: ResultCode, reason: string, readonly terminal: boolean) {
    super(reason);
  }
}

/**
 * The per-device update, one attempt being the named steps below (docs/protocol.md §8).
 * Transient failures (timeouts, the device dropping off) retry from `offer`, which resumes from
 * what the device already holds; a device that rejects, reverts or fails integrity repeatedly
 * ends with its reason. After `activate` has been sent the session never activates again: it
 * only waits for the reboot and confirms.
 */
export class DeviceSession {
  static readonly steps = ['offer', 'transfer', 'verify', 'activate', 'awaitReboot', 'confirm'] as const;

  private readonly inbox: Inbox<DeviceEvent>;
  private retries = 0;
  private activated = false;
  private sid = 0;
  private chunkSize = 0;
  private window = 1;
  private held = 0;
  private transferBps: number | undefined;
  private rebootMs: number | undefined;
  private activateSentAt = 0;

  constructor(readonly deviceId: string, readonly fromVersion: string, private readonly deps: SessionDeps) {
    this.inbox = new Inbox<DeviceEvent>(deps.timers);
  }

  async run(): Promise<SessionResult> {
    const { timers, config, log } = this.deps;
    const started = timers.now();
    const stopListening = this.deps.channel.listen(this.deviceId, (e) => this.inbox.push(e));
    const onAbort = (): void => this.inbox.close(new SessionFailure('failed', 'cancelled', 'campaign cancelled', true));
    this.deps.signal?.addEventListener('abort', onAbort);
    try {
      for (let attempt = 1; ; attempt++) {
        try {
          await this.attempt();
          return this.result('updated', 'ok', undefined, started);
        } catch (err) {
          const f = classify(err);
          if (f.terminal || this.activated || attempt >= config.maxAttempts) {
            const exhausted = !f.terminal && !this.activated && attempt >= config.maxAttempts;
            return this.result(f.outcome, exhausted && f.code === 'timeout' ? 'retries-exhausted' : f.code,
              exhausted ? `${f.message} (after ${attempt} attempts)` : f.message, started);
          }
          this.retries++;
          log.info({ device: this.deviceId, attempt, reason: f.message }, 'update attempt failed, retrying');
          await this.sleep(config.retryBackoffMs * attempt);
        }
      }
    } finally {
      stopListening();
      this.deps.signal?.removeEventListener('abort', onAbort);
      this.inbox.close(new FwError('E_CANCELLED', 'session ended'));
    }
  }

  private async attempt(): Promise<void> {
    await this.ensureOnline();
    await this.offer();
    await this.transfer();
    await this.verify();
    this.deps.onTransferred?.();
    await this.activate();
    await this.awaitReboot();
    await this.confirm();
  }

  // ---- steps ----

  private async ensureOnline(): Promise<void> {
    if (this.deps.channel.isOnline(this.deviceId)) return;
    this.deps.onPhase('queued', this.held);
    await this.expect((e): e is Ev<'status'> => e.t === 'status', this.deps.config.offlineWaitMs, 'the device to come back online', false)
      .catch((err: unknown) => {
        throw isFwError(err, 'E_DEVICE_TIMEOUT') ? new SessionFailure('failed', 'offline', `device stayed offline for ${this.deps.config.offlineWaitMs} ms`, true) : err;
      });
  }

  private async offer(): Promise<void> {
    const m = this.deps.image.manifest;
    this.sid = randomInt(1, 0xffff_ffff);
    this.deps.onPhase('offering', this.held);
    this.inbox.takeAll();
    await this.deps.channel.send(this.deviceId, {
      t: 'offer', sid: this.sid, name: m.name, version: m.version, hw: m.hw, size: m.size, crc32: m.crc32, sha256: m.sha256, chunk: m.chunk,
    });
    const sid = this.sid;
    const reply = await this.expect((e): e is Ev<'accept'> | Ev<'reject'> => (e.t === 'accept' || e.t === 'reject') && e.sid === sid, this.deps.config.offerTimeoutMs, 'accept or reject');
    if (reply.t === 'reject') throw rejection(reply);
    if (reply.chunk > m.chunk || reply.chunk < MIN_CHUNK_SIZE) {
      throw new SessionFailure('failed', 'unsupported', `device asked for chunk size ${reply.chunk}, offered ${m.chunk}`, true);
    }
    this.chunkSize = reply.chunk;
    this.window = Math.max(1, Math.min(this.deps.window, reply.window));
    // Resume point: must be on a chunk boundary and within the image, else start over.
    this.held = reply.next <= m.size && (reply.next % this.chunkSize === 0 || reply.next === m.size) ? reply.next : 0;
  }

  private async transfer(): Promise<void> {
    const { image, config, timers, channel } = this.deps;
    const size = image.size;
    const chunk = this.chunkSize;
    const sid = this.sid;
    const lastSent = new Float64Array(image.chunkCount(chunk)).fill(-Infinity);
    const resent = new Uint8Array(image.chunkCount(chunk));
    const resendGuardMs = Math.max(20, (this.deps.rttMs ?? 20) * 1.5);
    let next = this.held;
    let cursor = next;
    let timeouts = 0;
    const startedAt = timers.now();
    const startedFrom = next;
    const send = async (off: number): Promise<void> => {
      const c = image.chunk(off, chunk);
      if (this.deps.bandwidth) await this.deps.bandwidth.take(c.data.length);
      lastSent[off / chunk] = timers.now();
      await channel.send(this.deviceId, { t: 'chunk', sid, off, data: c.data, crc: c.crc });
    };
    this.deps.onPhase('transferring', next);
    while (next < size) {
      while (cursor < size && cursor - next < this.window * chunk) {
        await send(cursor);
        cursor += chunk;
      }
      let ack: Ev<'ack'>;
      try {
        ack = await this.expect((e): e is Ev<'ack'> => e.t === 'ack' && e.sid === sid, config.ackTimeoutMs, 'chunk ack');
      } catch (err) {
        if (!isFwError(err, 'E_DEVICE_TIMEOUT')) throw err;
        if (++timeouts >= config.maxAckTimeouts) {
          throw new SessionFailure('failed', 'connection-lost', `no chunk ack in ${timeouts} x ${config.ackTimeoutMs} ms`, false);
        }
        cursor = next; // resend the window from the device's cumulative offset
        continue;
      }
      timeouts = 0;
      if (ack.next > size || (ack.next % chunk !== 0 && ack.next !== size)) {
        throw new SessionFailure('failed', 'rejected', `device acked offset ${ack.next}, not a chunk boundary of ${chunk}`, false);
      }
      if (ack.next > next) {
        next = ack.next;
        this.held = next;
        this.deps.onPhase('transferring', next);
      }
      if (cursor < next) cursor = next;
      const now = timers.now();
      // Acks are sent in the order chunks arrive (TCP keeps order), so a chunk listed as missing
      // was lost or bad: resend it at once the first time. Later acks may still list it until the
      // resend arrives; only resend again after a guard time.
      for (const m of ack.missing) {
        if (m < next || m >= cursor || m % chunk !== 0) continue;
        const i = m / chunk;
        if (resent[i] && now - lastSent[i]! < resendGuardMs) continue;
        resent[i] = 1;
        await send(m);
      }
    }
    const ms = timers.now() - startedAt;
    if (size - startedFrom >= 4 * chunk && ms > 0) this.transferBps = Math.round(((size - startedFrom) * 1000) / ms);
  }

  private async verify(): Promise<void> {
    this.deps.onPhase('verifying', this.held);
    const sid = this.sid;
    await this.deps.channel.send(this.deviceId, { t: 'verify', sid });
    const v = await this.expect((e): e is Ev<'verified'> => e.t === 'verified' && e.sid === sid, this.deps.config.verifyTimeoutMs, 'verify result');
    if (v.ok) return;
    if (v.code !== 'incomplete') this.held = 0; // the device discards what it holds
    throw new SessionFailure('failed', 'integrity-failure', `device reports the image does not verify (${v.code ?? 'no code'}${v.reason ? `: ${v.reason}` : ''})`, false);
  }

  private async activate(): Promise<void> {
    this.deps.onPhase('activating', this.held);
    const sid = this.sid;
    this.activateSentAt = this.deps.timers.now();
    await this.deps.channel.send(this.deviceId, { t: 'activate', sid });
    // The device answers `activated` and drops off to reboot; either one means it acted on the
    // command. Only from then on is the session committed to this activation (no second one);
    // a device that does neither is still running its old image and may be offered again.
    await this.expect((e): e is Ev<'activated'> | Ev<'offline'> => (e.t === 'activated' && e.sid === sid) || e.t === 'offline',
      this.deps.config.activateTimeoutMs, 'activation', false);
    this.activated = true;
  }

  private async awaitReboot(): Promise<void> {
    this.deps.onPhase('rebooting', this.held);
    const target = this.deps.image.manifest;
    const boot = await this.expect((e): e is Ev<'boot'> => e.t === 'boot', this.deps.config.rebootTimeoutMs, 'the device to reboot and report', false)
      .catch((err: unknown) => {
        throw isFwError(err, 'E_DEVICE_TIMEOUT')
          ? new SessionFailure('failed', 'timeout', `device did not report a boot within ${this.deps.config.rebootTimeoutMs} ms of activation`, true)
          : err;
      });
    this.rebootMs = Math.round(this.deps.timers.now() - this.activateSentAt);
    if (!boot.reverted && boot.version === this.fromVersion) {
      // Rebooted (e.g. power lost) before the slot switch took effect: nothing was tried or
      // reverted, the image may still be ready on the device. Safe to offer again.
      this.activated = false;
      throw new SessionFailure('failed', 'connection-lost', `device rebooted on ${boot.version} before the activation took effect`, false);
    }
    if (boot.reverted || boot.version !== target.version || (boot.sha256 !== undefined && boot.sha256 !== target.sha256)) {
      const selfTest = /self-test/i.test(boot.reason ?? '');
      throw new SessionFailure('rolled-back', selfTest ? 'self-test-failed' : 'reverted',
        `device came back on ${boot.version}${boot.reason ? ` (${boot.reason})` : ''}`, true);
    }
    if (!boot.trial) {
      throw new SessionFailure('failed', 'unsupported', 'device booted the new image without a trial state; it cannot be confirmed', true);
    }
  }

  private async confirm(): Promise<void> {
    this.deps.onPhase('confirming', this.held);
    const target = this.deps.image.manifest;
    for (let i = 1; ; i++) {
      try {
        await this.deps.channel.send(this.deviceId, { t: 'confirm', sha256: target.sha256 });
        await this.expect((e): e is Ev<'confirmed'> => e.t === 'confirmed' && e.sha256 === target.sha256, this.deps.config.confirmTimeoutMs, 'confirmation');
        return;
      } catch (err) {
        if (i >= 3) {
          throw new SessionFailure('failed', 'timeout', `device did not confirm: ${(err as Error).message}`, true);
        }
        if (isFwError(err, 'E_DEVICE_OFFLINE')) {
          await this.expect((e): e is Ev<'boot'> | Ev<'status'> => e.t === 'boot' || e.t === 'status', this.deps.config.offlineWaitMs, 'the device to come back', false)
            .then((e) => {
              if (e.t === 'boot' && (e.reverted || e.version !== target.version)) {
                throw new SessionFailure('rolled-back', 'reverted', `device reverted to ${e.version} before confirming`, true);
              }
            });
        }
      }
    }
  }

  // ---- helpers ----

  /** The next event that matches, skipping others; an `offline` ends the wait unless tolerated. */
  private async expect<R extends DeviceEvent>(match: (e: DeviceEvent) => e is R, timeoutMs: number, what: string, offlineIsError = true): Promise<R> {
    const deadline = this.deps.timers.now() + timeoutMs;
    for (;;) {
      const left = Math.max(0, Math.ceil(deadline - this.deps.timers.now()));
      const e = await this.inbox.next(left, 'E_DEVICE_TIMEOUT', `${what} from ${this.deviceId}`);
      if (match(e)) return e;
      if (e.t === 'offline' && offlineIsError) throw new FwError('E_DEVICE_OFFLINE', `${this.deviceId} went offline while waiting for ${what}`);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.deps.timers.setTimeout(resolve, ms));
  }

  private result(outcome: Outcome, code: ResultCode, reason: string | undefined, started: number): SessionResult {
    return {
      ...(this.transferBps !== undefined ? { transferBps: this.transferBps } : {}),
      ...(this.rebootMs !== undefined ? { rebootMs: this.rebootMs } : {}),
      outcome, code, ...(reason ? { reason } : {}),
      from: this.fromVersion, to: this.deps.image.manifest.version,
      retries: this.retries, durationMs: Math.round(this.deps.timers.now() - started),
    };
  }
}

function rejection(r: Ev<'reject'>): SessionFailure {
  const why = r.reason ? `: ${r.reason}` : '';
  switch (r.code) {
    case 'busy': return new SessionFailure('skipped', 'busy', `device is busy${why}`, true);
    case 'incompatible': return new SessionFailure('skipped', 'incompatible-hw', `device refuses the hardware model${why}`, true);
    case 'not-newer': return new SessionFailure('skipped', 'not-newer', `device refuses: image is not newer${why}`, true);
    case 'no-space': return new SessionFailure('failed', 'no-space', `device has no space for the image${why}`, true);
    case 'invalid': return new SessionFailure('failed', 'rejected', `device rejected the offer as invalid${why}`, true);
    default: {
      const never: never = r.code;
      return new SessionFailure('failed', 'rejected', `device rejected the offer (${String(never)})`, true);
    }
  }
}

function classify(err: unknown): SessionFailure {
  if (err instanceof SessionFailure) return err;
  if (isFwError(err, 'E_DEVICE_OFFLINE')) return new SessionFailure('failed', 'connection-lost', err.message, false);
  if (isFwError(err, 'E_DEVICE_TIMEOUT')) return new SessionFailure('failed', 'timeout', err.message, false);
  if (isFwError(err, 'E_CANCELLED')) return new SessionFailure('failed', 'cancelled', err.message, true);
  return new SessionFailure('failed', 'connection-lost', err instanceof Error ? err.message : String(err), false);
}
