#!/usr/bin/env node
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { describeError, FwError, isFwError } from '../protocol/errors.ts';
import { checkDigest, digestImage, manifestForImage, parseManifest, type Manifest } from '../protocol/manifest.ts';
import type { CompleteMessage, GatewayUplinkMessage, OrderMessage, QueuedInfo, ResultMessage, WaitingMessage } from '../protocol/uplink.ts';
import { TOOL_VERSION } from '../protocol/tool-version.ts';
import { campaignOptions, parseArgs, retryOutcomes, type Opts } from './args.ts';
import { portOpenHint, resolveDefaults, waitingHint } from './defaults.ts';
import { preflightSeqWarning, seqWarning } from './seq-warning.ts';
import { listPorts, portsTable } from './ports.ts';
import { defaultClientOptions, type UplinkClient } from './client.ts';
import { openConnection, type Connection, type ConnectionOptions } from './connection.ts';
import { noticeWriter } from './notices.ts';
import { pushAndFollow, SeenEvents, statusAndFollow, type FlowDeps } from './push.ts';
import { Reconnecting } from './reconnect.ts';
import { applySigning, keygen } from './signing.ts';
import { loadTechKey, unauthorisedHint } from './tech-key.ts';
import type { TechnicianKey } from '../protocol/uplink-auth.ts';
import { EXIT, exitCodeFor, HumanRenderer, JsonRenderer, summarise, type Renderer, type Summary } from './render.ts';
import { laptopSettings as settings } from './settings.ts';
import { loadRelease, releaseModeOf, type ReleaseMode } from './release-cli.ts';
import { pushReleaseAndFollow } from './release-push.ts';
import { releaseDigest, type ReleaseManifest } from '../protocol/release.ts';

export { EXIT };

async function loadInputs(imagePath: string, o: Opts): Promise<{ manifest: Manifest; image: Buffer }> {
  let image: Buffer;
  try {
    image = await readFile(imagePath);
  } catch (err) {
    throw new FwError('E_USAGE', `cannot read image ${imagePath}: ${(err as Error).message}`);
  }
  if (o.manifest) {
    let raw: unknown;
    try {
      raw = JSON.parse(await readFile(o.manifest, 'utf8'));
    } catch (err) {
      throw new FwError('E_MANIFEST_INVALID', `cannot read manifest ${o.manifest}: ${(err as Error).message}`);
    }
    const manifest = parseManifest(raw);
    // Check locally first, so a technician learns of a wrong manifest before a long upload.
    // The gateway checks again whatever the laptop says.
    if (o.localCheck) checkDigest(manifest, digestImage(image));
    return { manifest: await applySigning(manifest, false, o), image };
  }
  const version = o.version ?? o.imageVersion;
  if (!version || !o.hw) {
    throw new FwError('E_USAGE', 'without --manifest, give --version <semver> and --hw <models> so a manifest can be made');
  }
  const name = o.name ?? basename(imagePath).replace(/\.[^.]*$/, '');
  const manifest = manifestForImage(image, { name, version, hw: o.hw.split(',').map((s) => s.trim()).filter(Boolean), chunk: o.chunk });
  return { manifest: await applySigning(manifest, true, o), image };
}

/** What this run does: push an image and follow its campaign, or follow/replay what the gateway is doing. */
type Mode =
  | { kind: 'push'; imagePath: string } | { kind: 'plan'; imagePath: string } | { kind: 'status'; campaign?: string }
  | { kind: 'cancel'; campaign?: string } | { kind: 'retry'; campaign: string } | { kind: 'resume'; campaign: string } | ReleaseMode;

/** The command line's first words as what this run does; a usage problem as E_USAGE. */
function modeOf(target: string, arg: string | undefined, o: Opts, more: readonly string[] = []): Mode {
  if (target === 'release') return releaseModeOf(arg, more);
  if (more.length > 0) throw new FwError('E_USAGE', `unexpected argument "${more[0]}"; see --help`);
  const needs = (what: string): string => {
    if (arg === undefined) throw new FwError('E_USAGE', `${what} needs a campaign id (fwgate campaigns, or fwpush status, shows them); see --help`);
    return arg;
  };
  switch (target) {
    case 'status': {
      const campaign = o.campaign ?? arg;
      return { kind: 'status', ...(campaign !== undefined ? { campaign } : {}) };
    }
    case 'cancel': return { kind: 'cancel', ...(arg !== undefined ? { campaign: arg } : {}) };
    case 'retry': return { kind: 'retry', campaign: needs('retry') };
    case 'resume': return { kind: 'resume', campaign: needs('resume') };
    case 'plan':
      if (arg === undefined) throw new FwError('E_USAGE', 'plan needs an image file (and --manifest or --version/--hw); see --help');
      return { kind: 'plan', imagePath: arg };
    default:
      if (arg !== undefined) throw new FwError('E_USAGE', `unexpected argument "${arg}" after the image ${target}; see --help`);
      return { kind: 'push', imagePath: target };
  }
}

/** A campaign's order and results as they arrive, for the summary; events of another campaign are left out. */
class CampaignWatch {
  campaign: string | undefined;
  order: OrderMessage | undefined;
  readonly results = new Map<string, ResultMessage>();
  complete: CompleteMessage | undefined;
  waiting: WaitingMessage | undefined;
  see(m: GatewayUplinkMessage): void {
    if ((m.t === 'committed' && m.ok) || m.t === 'state' || m.t === 'accepted') this.campaign = m.campaign;
    if (m.t === 'waiting' && m.campaign === this.campaign) this.waiting = m;
    if ((m.t === 'order' || m.t === 'result' || m.t === 'complete') && this.campaign !== undefined && m.campaign !== this.campaign) return;
    if (m.t === 'order') this.order = m;
    if (m.t === 'result') this.results.set(m.id, m);
    if (m.t === 'complete') this.complete = m;
  }
}

async function main(): Promise<number> {
  if (process.argv[2] === 'keygen') return keygen(process.argv.slice(3), (l) => console.log(l), (l) => console.error(l));
  if (process.argv[2] === 'ports') return portsCommand(process.argv.slice(3));
  if (process.argv.slice(2).some((a) => a === '-V' || a === '--tool-version')) {
    console.log(`fwpush ${TOOL_VERSION}`);
    return EXIT.ok;
  }
  const args = parseArgs(process.argv.slice(2));
  if (args.kind === 'exit') return args.code === 0 ? EXIT.ok : EXIT.usage;
  const { opts: given, target, arg, more } = args;
  let o: Opts & { port: string };
  try {
    const resolved = await resolveDefaults({ ...(given.port !== undefined ? { port: given.port } : {}), ...(given.techKey !== undefined ? { techKey: given.techKey } : {}) }, { listPorts: () => listPorts() });
    for (const note of resolved.notes) process.stderr.write(`fwpush: using ${note}\n`);
    o = { ...given, port: resolved.port, ...(resolved.techKey !== undefined ? { techKey: resolved.techKey } : {}) };
  } catch (err) {
    process.stderr.write(`fwpush: ${describeError(err)}\n`);
    return EXIT.usage;
  }
  const render: Renderer = o.json ? new JsonRenderer() : new HumanRenderer({ maxBars: settings.maxBars, totalsEveryMs: settings.totalsEveryMs, fps: settings.fps });
  let mode: Mode;
  let inputs: { manifest: Manifest; image: Buffer } | undefined;
  let release: { release: ReleaseManifest; images: Map<string, Buffer> } | undefined;
  let techKey: TechnicianKey | undefined;
  try {
    mode = modeOf(target, arg, o, more);
  } catch (err) {
    render.error(describeError(err), 'E_USAGE');
    return EXIT.usage;
  }
  if (mode.kind !== 'status') {
    try {
      if (mode.kind === 'push' || mode.kind === 'plan') inputs = await loadInputs(mode.imagePath, o);
      if (mode.kind === 'release') release = await loadRelease(mode.descPath, o);
      if (o.techKey !== undefined) techKey = await loadTechKey(o.techKey);
    } catch (err) {
      render.error(describeError(err), isFwError(err) ? err.code : undefined);
      return isFwError(err, 'E_USAGE') ? EXIT.usage : EXIT.refused;
    }
  }

  const notify = noticeWriter(o.json === true, process.stdout, () => render.close());
  const watch = new CampaignWatch();
  const seen = new SeenEvents();
  const connection: ConnectionOptions = {
    path: o.port,
    baudRate: o.baud,
    client: { ...defaultClientOptions, maxFrame: o.frame, window: o.window, idleTimeoutMs: o.timeout * 1000, ...(techKey ? { techKey } : {}) },
    // only before the first hello: a reconnect says what it does in its own notices
    onWaiting: (remainingMs) => first === undefined && notify({ event: 'waiting', port: o.port, remainingMs, message: waitingHint(o.port, Math.round(remainingMs / 1000)) }),
    attach: (client) => {
      client.on('event', (m) => {
        if (!seen.fresh(m)) return; // repeated by a replay after a reconnect
        watch.see(m);
        render.event(m);
        const early = m.t === 'grant' && inputs ? preflightSeqWarning(inputs.manifest.seq, m.preflight?.confirmedSeq) : undefined;
        if (early) process.stderr.write(`fwpush: ${early}\n`);
      });
      client.on('upload', (sent, total, resumedAt) => render.upload(sent, total, resumedAt));
    },
  };
  let first: Connection | undefined;
  try {
    first = await openConnection(connection, settings.connectTimeoutMs);
  } catch (err) {
    render.error(describeError(err), isFwError(err) ? err.code : 'E_LINK_CLOSED', portOpenHint(err, o.port) ?? (isFwError(err, 'E_LINK_TIMEOUT') ? waitingHint(o.port, 0).replace(/ Still trying for 0 s\.$/, '') : undefined));
    render.close();
    return isLinkError(err) ? EXIT.link : EXIT.refused;
  }
  render.connected(first.hello, o.port);
  const abort = new AbortController();
  const session = new Reconnecting(first, {
    port: o.port,
    open: (timeoutMs) => openConnection(connection, timeoutMs),
    timeoutMs: o.reconnectTimeout * 1000,
    backoffMs: settings.reconnectBackoffMs,
    backoffMaxMs: settings.reconnectBackoffMaxMs,
    attemptTimeoutMs: settings.connectTimeoutMs,
    notify,
    signal: abort.signal,
  });
  const flow: FlowDeps = { session, notify, replayIdleMs: settings.replayIdleMs };

  let stopping = false;
  const interrupt = (): void => {
    if (stopping) process.exit(130);
    stopping = true;
    abort.abort();
    render.error('interrupted; the gateway carries on with the rollout');
    void session.current.close().finally(() => process.exit(130));
  };
  process.on('SIGINT', interrupt);
  process.on('SIGTERM', interrupt);

  const started = Date.now();
  try {
    if (mode.kind === 'status') {
      const { state, followed } = await statusAndFollow(flow, mode.campaign);
      if (!followed) return EXIT.ok; // the renderer said "gateway idle: no campaign"
      const image = state.image ?? watch.order?.image ?? { name: '?', version: '?', sha256: '' };
      return finish(render, watch, followed.campaign, image, followed.complete?.durationMs ?? Date.now() - started);
    }
    if (mode.kind === 'plan') {
      await session.current.client.plan(inputs!.manifest, campaignOptions(o));
      render.close();
      return EXIT.ok;
    }
    if (mode.kind === 'cancel' || mode.kind === 'resume') {
      const accepted = await session.current.client.control({ t: mode.kind, ...(mode.campaign !== undefined ? { campaign: mode.campaign } : {}) } as Parameters<UplinkClient['control']>[0]);
      if (mode.kind === 'resume') {
        const { state, followed } = await statusAndFollow(flow, accepted.campaign);
        return followed ? finish(render, watch, followed.campaign, state.image ?? { name: '?', version: '?', sha256: '' }, Date.now() - started) : EXIT.ok;
      }
      return EXIT.ok;
    }
    if (mode.kind === 'retry') {
      const accepted = await session.current.client.control({
        t: 'retry', campaign: mode.campaign, outcomes: retryOutcomes(o),
        ...(o.now ? { policy: 'now' as const } : o.inWindow ? { policy: 'window' as const } : {}), ...(o.force ? { force: true } : {}),
      });
      const { state, followed } = await statusAndFollow(flow, accepted.campaign);
      return followed ? finish(render, watch, followed.campaign, state.image ?? { name: '?', version: '?', sha256: '' }, Date.now() - started) : EXIT.ok;
    }
    if (mode.kind === 'release-live') {
      const accepted = await session.current.client.control({ t: 'release-live', release: mode.release, version: mode.version, ...campaignOptions(o) });
      const { state, followed } = await statusAndFollow(flow, accepted.campaign);
      return followed ? finish(render, watch, followed.campaign, state.image ?? { name: mode.release, version: mode.version, sha256: '' }, Date.now() - started) : EXIT.ok;
    }
    if (mode.kind === 'release') {
      const r = release!.release;
      const pushed = await pushReleaseAndFollow(flow, r, release!.images, { ...campaignOptions(o), ...(o.deferred ? { deferred: true } : {}) });
      if (pushed.deferred) return EXIT.ok; // the renderer said it is stored, deferred
      const image = { name: r.release, version: r.version, sha256: releaseDigest(r) };
      return finish(render, watch, pushed.campaign, watch.order?.image ?? image, pushed.complete?.durationMs || Date.now() - started, pushed.queued);
    }
    const { manifest, image } = inputs!;
    const { campaign, complete, queued } = await pushAndFollow(flow, manifest, image, campaignOptions(o));
    // A campaign queued for a maintenance window is not followed: fwpush says when it opens and exits 0.
    const warning = seqWarning(manifest.seq, watch.results.values());
    if (warning) process.stderr.write(`fwpush: ${warning}\n`);
    return finish(render, watch, campaign, manifest, complete?.durationMs || Date.now() - started, queued);
  } catch (err) {
    if (isFwError(err) && err.details?.deny === 'busy') {
      render.error(describeError(err), err.code, `run \`fwpush --port ${o.port} status\` to follow it`);
      return EXIT.refused;
    }
    if (isFwError(err) && err.details?.deny === 'unauthorised') {
      render.error(describeError(err), err.code, unauthorisedHint(o.techKey));
      return EXIT.refused;
    }
    render.error(describeError(err), isFwError(err) ? err.code : undefined, isFwError(err) ? lostLinkHint(err, o) : undefined);
    return isLinkError(err) ? EXIT.link : EXIT.refused;
  } finally {
    render.close();
    await session.current.close();
  }
}

/** `fwpush ports [--json]`: the serial ports of this machine. */
async function portsCommand(argv: string[]): Promise<number> {
  if (argv.some((a) => a !== '--json')) {
    console.error(`fwpush ports: unknown argument ${argv.find((a) => a !== '--json')} (see fwpush --help)`);
    return EXIT.usage;
  }
  const ports = await listPorts();
  console.log(argv.includes('--json') ? JSON.stringify({ ports }) : portsTable(ports).join('\n'));
  return EXIT.ok;
}

function isLinkError(err: unknown): boolean {
  return isFwError(err, 'E_LINK_TIMEOUT') || isFwError(err, 'E_LINK_CLOSED') || isFwError(err, 'E_LINK_RESET');
}

/** What to do after fwpush gave up on a lost link: the gateway kept what it had. */
function lostLinkHint(err: FwError, o: Opts): string | undefined {
  if (err.details?.port === undefined) return undefined;
  return err.details.phase === 'upload'
    ? 'run the same fwpush command again once the link is back: the upload resumes from what the gateway holds'
    : `the gateway carries on with the rollout; run \`fwpush --port ${o.port} status\` to follow it`;
}

/** Summary and exit code, the same for a push and for status. */
function finish(render: Renderer, watch: CampaignWatch, campaign: string, image: Summary['image'], durationMs: number, queued?: QueuedInfo): number {
  const summary = summarise({
    campaign, image: { name: image.name, version: image.version, sha256: image.sha256 }, order: watch.order, results: watch.results.values(), durationMs,
    ...(watch.complete ? { complete: watch.complete } : {}),
    ...(queued ? { queued } : {}),
    ...(watch.waiting && watch.waiting.campaign === campaign ? { waiting: watch.waiting } : {}),
  });
  render.summary(summary);
  return exitCodeFor(summary);
}

process.exitCode = await main();
