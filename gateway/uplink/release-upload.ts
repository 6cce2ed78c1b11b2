import { describeError, isFwError } from '../../protocol/errors.ts';
import { checkReleaseSignature, componentManifest, releaseDigest, type ReleaseComponent, type ReleaseManifest } from '../../protocol/release.ts';
import type { KeyRing } from '../../protocol/signature.ts';
import type {
  CommittedMessage, DenyCode, PreflightInfo, ReleaseGrantMessage, ReleaseLiveMessage, ReleaseRtsMessage,
} from '../../protocol/uplink.ts';
import { compareVersions } from '../../protocol/version.ts';
import type { GatewayConfig } from '../config.ts';
import type { Logger } from '../log.ts';
import { goLive, storedRelease, type PreparedRelease } from '../release-live.ts';
import type { ReleaseRegistry } from '../releases.ts';
import type { ImageStore, Upload } from '../store.ts';
import type { CampaignRequest } from './session.ts';

/**
 * The release upload of an uplink session (docs/protocol.md §7.3.9) and `release-live`
 * (§7.12.6): one technician-authorised `release-rts` carries the signed release manifest; the
 * gateway checks it, grants the component images it does not already hold (by SHA-256, each
 * verified), takes their bytes in `data` messages whose offsets run over those images laid end to
 * end, and at `commit` verifies and stores each with its component manifest (§5.5.5), records the
 * release in the registry and, unless `deferred`, starts its campaign.
 */

export interface ReleaseUplinkDeps {
  store: ImageStore;
  releases: ReleaseRegistry;
  config: GatewayConfig['uplink'];
  log: Logger;
  keyRing: KeyRing;
  allowUnsigned: boolean;
  /** Why a campaign with this policy cannot be started now, or undefined (as for `rts`). */
  busyReason(request: CampaignRequest): string | undefined;
  /** Pre-flight counts of the release's campaign (§7.3.7); throws E_NO_TARGETS / E_NOT_ENOUGH_ONLINE to refuse it. */
  preflight(release: ReleaseManifest, request: CampaignRequest): Promise<PreflightInfo>;
  /** Create the release's campaign, not started (Gateway.prepareRelease). */
  prepareRelease(release: ReleaseManifest, request: CampaignRequest): Promise<PreparedRelease>;
}

/** A refusal of the request: the deny to send. */
export interface Refusal {
  deny: DenyCode;
  reason: string;
}

/** One component image being uploaded: where its bytes sit in the upload's offsets. */
interface Part {
  component: ReleaseComponent;
  base: number;
  upload: Upload;
}

/** The answer to `commit` and, when a campaign was created, how to start it after the answer is sent. */
export interface ReleaseCommit {
  committed: CommittedMessage;
  start?: () => void;
}

export class ReleaseUpload {
  private constructor(
    private readonly deps: ReleaseUplinkDeps,
    readonly release: ReleaseManifest,
    readonly digest: string,
    private readonly request: CampaignRequest,
    private readonly deferred: boolean,
    private readonly parts: Part[],
  ) {}

  /**
   * Check a `release-rts` and begin the uploads of the component images the gateway lacks. The
   * grant to send, or the refusal. Checks, in order: a campaign could start (unless deferred);
   * each component within `uplink.maxImageBytes`; the release's signature (§5.5.3); no other
   * release of this name and version stored; `seq` not below a stored lower version's; the
   * pre-flight (unless deferred); each stored component image verifies and matches its entry.
   */
  static async begin(deps: ReleaseUplinkDeps, msg: ReleaseRtsMessage, chunk: number): Promise<{ upload: ReleaseUpload; grant: ReleaseGrantMessage } | Refusal> {
    const { t: _t, auth: _a, release, deferred, ...request } = msg;
    const { log, store, config, releases } = deps;
    const what = `release ${release.release} ${release.version}`;
    if (!deferred) {
      const busy = deps.busyReason(request);
      if (busy) return { deny: 'busy', reason: `${busy} (an upload with --deferred is stored without a campaign)` };
    }
    for (const c of release.components) {
      if (c.size > config.maxImageBytes) {
        return { deny: 'too-large', reason: `${what}: component ${c.component} is ${c.size} bytes, this gateway accepts at most ${config.maxImageBytes} per image` };
      }
    }
    const signed = checkReleaseSignature(deps.keyRing, release);
    if (!signed.ok) {
      if (signed.failure !== 'unsigned' || !deps.allowUnsigned) return { deny: signed.failure, reason: `${what}: ${signed.reason}; nothing stored` };
      log.warn({ release: what }, 'DEVELOPMENT MODE: accepting an UNSIGNED release (security.allowUnsigned)');
    }
    const digest = releaseDigest(release);
    const stored = await releases.list();
    const same = stored.find((r) => r.manifest.release === release.release && r.manifest.version === release.version && r.digest !== digest);
    if (same) {
      return { deny: 'invalid-manifest', reason: `${what} is already stored with other contents (digest ${same.digest}); give this release a new version` };
    }
    const seq = release.seq ?? 0;
    const above = stored.filter((r) => r.manifest.release === release.release && compareVersions(r.manifest.version, release.version) < 0 && (r.manifest.seq ?? 0) > seq);
    if (above[0]) {
      return { deny: 'invalid-manifest', reason: `${what}: seq ${seq} is below seq ${above[0].manifest.seq ?? 0} of the older release ${above[0].manifest.version}: devices that installed it would refuse this one (seq-rollback); sign it with --seq ${above[0].manifest.seq ?? 0} or higher` };
    }
    let preflight: PreflightInfo | undefined;
    if (!deferred) {
      try {
        preflight = await deps.preflight(release, request);
      } catch (err) {
        if (isFwError(err, 'E_NO_TARGETS')) return { deny: 'no-targets', reason: err.message };
        if (isFwError(err, 'E_NOT_ENOUGH_ONLINE')) return { deny: 'not-enough-online', reason: err.message };
        return { deny: 'internal', reason: describeError(err) };
      }
    }
    const held: string[] = [];
    const send: ReleaseComponent[] = [];
    for (const c of release.components) {
      // two components with the same image: its bytes are uploaded once (with the first)
      const twin = send.find((x) => x.sha256 === c.sha256);
      if (twin) {
        if (twin.size !== c.size || twin.crc32 !== c.crc32) {
          return { deny: 'invalid-manifest', reason: `${what}: components ${twin.component} and ${c.component} give the same sha256 with different ${twin.size !== c.size ? 'size' : 'crc32'}; nothing stored` };
        }
        continue;
      }
      // what the gateway holds is verified now: a rotten copy is quarantined and uploaded afresh;
      // one the disk cannot read is kept and the request refused (try again)
      let holds: boolean;
      try {
        holds = store.has(c.sha256) && (await store.verify(c.sha256));
      } catch (err) {
        return { deny: 'internal', reason: `${what}: the gateway could not read its stored copy of component ${c.component} (${describeError(err)}); nothing stored, try again` };
      }
      if (holds) {
        const have = store.get(c.sha256)!.manifest;
        const field = have.size !== c.size ? ['size', c.size, have.size] : have.crc32 !== c.crc32 ? ['crc32', c.crc32, have.crc32] : undefined;
        if (field) {
          return { deny: 'invalid-manifest', reason: `${what}: component ${c.component} gives ${field[0]} ${field[1]}, the stored image with sha256 ${c.sha256} has ${field[2]}; nothing stored` };
        }
        held.push(c.component);
      } else {
        send.push(c);
      }
    }
    const total = send.reduce((n, c) => n + c.size, 0);
    if (total > 0xffff_ffff) return { deny: 'too-large', reason: `${what}: the components to upload are ${total} bytes together, more than an upload's offsets reach (4 GiB)` };
    const parts: Part[] = [];
    let base = 0;
    try {
      for (const c of send) {
        parts.push({ component: c, base, upload: await store.beginUpload(componentManifest(release, c)) });
        base += c.size;
      }
    } catch (err) {
      for (const p of parts) await p.upload.abandon().catch(() => undefined);
      return { deny: isFwError(err, 'E_IMAGE_TOO_LARGE') ? 'too-large' : 'internal', reason: describeError(err) };
    }
    log.info({ release: what, digest, upload: send.map((c) => c.component), stored: held, deferred: deferred === true }, 'release upload granted');
    const upload = new ReleaseUpload(deps, release, digest, request, deferred === true, parts);
    return {
      upload,
      grant: {
        t: 'release-grant', digest, chunk,
        send: parts.map((p) => ({ component: p.component.component, sha256: p.component.sha256, size: p.component.size, offset: p.upload.offset })),
        stored: held,
        ...(preflight ? { preflight } : {}),
      },
    };
  }

  /**
   * `data` at `off` in the upload's offsets: written to the component image it falls in. Data may
   * not cross from one component's bytes into the next (E_UPLINK_OFFSET).
   */
  async write(off: number, data: Uint8Array): Promise<void> {
    const part = this.parts.find((p) => off >= p.base && off < p.base + p.component.size);
    if (!part) throw new RangeError(`data at ${off} is outside every component of the release upload`);
    if (off + data.length > part.base + part.component.size) {
      throw new RangeError(`data at ${off} (${data.length} bytes) runs past the end of component ${part.component.component} at ${part.base + part.component.size}`);
    }
    await part.upload.write(off - part.base, data);
  }

  /** Close the uploads, keeping their partials for a later resume (a lost link, a new hello). */
  async abandon(): Promise<void> {
    for (const p of this.parts) await p.upload.abandon().catch(() => undefined);
  }

  /** Close the uploads and delete their partials (disk full). */
  async discard(): Promise<void> {
    for (const p of this.parts) await p.upload.discard().catch(() => undefined);
  }

  /**
   * Verify and store every uploaded component image, record the release, and create its campaign
   * unless deferred. A component whose bytes do not match its entry is refused naming it; the
   * release is then not recorded.
   */
  async commit(): Promise<ReleaseCommit> {
    const { log, releases } = this.deps;
    const what = `release ${this.release.release} ${this.release.version}`;
    for (let i = 0; i < this.parts.length; i++) {
      const p = this.parts[i]!;
      try {
        await p.upload.commit();
      } catch (err) {
        for (const rest of this.parts.slice(i + 1)) await rest.upload.abandon().catch(() => undefined);
        const code = isFwError(err) ? err.code : 'E_STORE_IO';
        log.warn({ release: what, component: p.component.component, err: describeError(err) }, 'release refused: a component image does not verify');
        return { committed: { t: 'committed', ok: false, sha256: this.digest, code, reason: `${what}: component ${p.component.component} does not match its entry in the release (${describeError(err)}); the release is not stored` } };
      }
    }
    let stored;
    try {
      // recorded durably first: deferred until its campaign exists
      stored = await releases.put(this.release, 'deferred');
    } catch (err) {
      return { committed: { t: 'committed', ok: false, sha256: this.digest, code: isFwError(err) ? err.code : 'E_STORE_IO', reason: `${what}: its component images are stored, but the release record could not be written: ${describeError(err)}` } };
    }
    log.info({ release: what, digest: this.digest, deferred: this.deferred }, 'release verified and stored');
    if (this.deferred) return { committed: { t: 'committed', ok: true, sha256: this.digest, deferred: true } };
    try {
      const live = await goLive(this.deps, stored, this.request);
      return {
        committed: {
          t: 'committed', ok: true, sha256: this.digest, campaign: live.id,
          ...(live.queued ? { queued: live.queued } : {}), ...(live.supersedes ? { supersedes: live.supersedes } : {}),
        },
        start: live.start,
      };
    } catch (err) {
      log.error({ release: what, err: describeError(err) }, 'release stored (deferred), campaign not started');
      return {
        committed: {
          t: 'committed', ok: false, sha256: this.digest, code: 'E_UPLINK_BUSY',
          reason: `${what} is stored (deferred), but its campaign could not start: ${describeError(err)}; start it with fwpush release live ${this.release.release} ${this.release.version}`,
        },
      };
    }
  }
}

/** `release-live` (§7.12.6): the stored release's campaign, created and recorded live; or the refusal. */
export async function releaseLive(deps: ReleaseUplinkDeps, msg: ReleaseLiveMessage): Promise<(PreparedRelease & { reason: string }) | Refusal> {
  const { t: _t, auth: _a, release: name, version, ...request } = msg;
  try {
    const busy = deps.busyReason(request);
    if (busy) return { deny: 'busy', reason: busy };
    const stored = await storedRelease(deps, name, version);
    const live = await goLive(deps, stored, request);
    const sup = live.superseded.map((r) => r.manifest.version);
    return { ...live, reason: `release ${name} ${version} is live${sup.length > 0 ? `; it supersedes ${sup.join(', ')}` : ''}` };
  } catch (err) {
    if (isFwError(err, 'E_UNKNOWN_RELEASE')) return { deny: 'unknown-release', reason: err.message };
    if (isFwError(err, 'E_NO_TARGETS')) return { deny: 'no-targets', reason: err.message };
    if (isFwError(err, 'E_NOT_ENOUGH_ONLINE')) return { deny: 'not-enough-online', reason: err.message };
    return { deny: 'internal', reason: describeError(err) };
  }
}
