#!/usr/bin/env node
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { describeError, FwError, isFwError } from '../protocol/errors.ts';
import { checkDigest, digestImage, manifestForImage, parseManifest, type Manifest } from '../protocol/manifest.ts';
import type { CompleteMessage, GatewayUplinkMessage, OrderMessage, QueuedInfo, ResultMessage } from '../protocol/uplink.ts';
import { campaignOptions, parseArgs, type Opts } from './args.ts';
import { defaultClientOptions } from './client.ts';
import { openConnection, type Connection, type ConnectionOptions } from './connection.ts';
import { noticeWriter } from './notices.ts';
import { pushAndFollow, SeenEvents, statusAndFollow, type FlowDeps } from './push.ts';
import { Reconnecting } from './reconnect.ts';
import { applySigning, keygen } from './signing.ts';
import { loadTechKey, unauthorisedHint } from './tech-key.ts';
import type { TechnicianKey } from '../protocol/uplink-auth.ts';
import { EXIT, exitCodeFor, HumanRenderer, JsonRenderer, summarise, type Renderer, type Summary } from './render.ts';
import { laptopSettings as settings } from './settings.ts';

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
type Mode = { kind: 'push'; imagePath: string } | { kind: 'status' };

/** A campaign's order and results as they arrive, for the summary; events of another campaign are left out. */
class CampaignWatch {
  campaign: string | undefined;
  order: OrderMessage | undefined;
  readonly results = new Map<string, ResultMessage>();
  complete: CompleteMessage | undefined;
  see(m: GatewayUplinkMessage): void {
    if ((m.t === 'committed' && m.ok) || m.t === 'state') this.campaign = m.campaign;
    if ((m.t === 'order' || m.t === 'result' || m.t === 'complete') && this.campaign !== undefined && m.campaign !== this.campaign) return;
    if (m.t === 'order') this.order = m;
    if (m.t === 'result') this.results.set(m.id, m);
    if (m.t === 'complete') this.complete = m;
  }
}

async function main(): Promise<number> {
  if (process.argv[2] === 'keygen') return keygen(process.argv.slice(3), (l) => console.log(l), (l) => console.error(l));
  const args = parseArgs(process.argv.slice(2));
  if (args.kind === 'exit') return args.code === 0 ? EXIT.ok : EXIT.usage;
  const { opts: o, target } = args;
  const mode: Mode = target === 'status' ? { kind: 'status' } : { kind: 'push', imagePath: target };
  const render: Renderer = o.json ? new JsonRenderer() : new HumanRenderer({ maxBars: settings.maxBars, totalsEveryMs: settings.totalsEveryMs, fps: settings.fps });
  let inputs: { manifest: Manifest; image: Buffer } | undefined;
  let techKey: TechnicianKey | undefined;
  if (mode.kind === 'push') {
    try {
      inputs = await loadInputs(mode.imagePath, o);
      if (o.techKey !== undefined) techKey = await loadTechKey(o.techKey);
    } catch (err) {
      render.error(describeError(err), isFwError(err) ? err.code : undefined);
      return isFwError(err, 'E_USAGE') ? EXIT.usage : EXIT.refused;
    }
  }

  const watch = new CampaignWatch();
  const seen = new SeenEvents();
  const connection: ConnectionOptions = {
    path: o.port,
    baudRate: o.baud,
    client: { ...defaultClientOptions, maxFrame: o.frame, window: o.window, idleTimeoutMs: o.timeout * 1000, ...(techKey ? { techKey } : {}) },
    attach: (client) => {
      client.on('event', (m) => {
        if (!seen.fresh(m)) return; // repeated by a replay after a reconnect
        watch.see(m);
        render.event(m);
      });
      client.on('upload', (sent, total, resumedAt) => render.upload(sent, total, resumedAt));
    },
  };
  let first: Connection;
  try {
    first = await openConnection(connection, settings.connectTimeoutMs);
  } catch (err) {
    render.error(describeError(err), isFwError(err) ? err.code : 'E_LINK_CLOSED');
    render.close();
    return isLinkError(err) ? EXIT.link : EXIT.refused;
  }
  render.connected(first.hello, o.port);
  const notify = noticeWriter(o.json === true, process.stdout, () => render.close());
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
      const { state, followed } = await statusAndFollow(flow);
      if (!followed) return EXIT.ok; // the renderer said "gateway idle: no campaign"
      const image = state.image ?? watch.order?.image ?? { name: '?', version: '?', sha256: '' };
      return finish(render, watch, followed.campaign, image, followed.complete?.durationMs ?? Date.now() - started);
    }
    const { manifest, image } = inputs!;
    const { campaign, complete, queued } = await pushAndFollow(flow, manifest, image, campaignOptions(o));
    // A campaign queued for a maintenance window is not followed: fwpush says when it opens and exits 0.
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
  });
  render.summary(summary);
  return exitCodeFor(summary);
}

process.exitCode = await main();
