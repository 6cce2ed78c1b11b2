#!/usr/bin/env node
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { describeError, FwError, isFwError } from '../protocol/errors.ts';
import { checkDigest, digestImage, manifestForImage, parseManifest, type Manifest } from '../protocol/manifest.ts';
import {
  decodeGatewayUplinkMessage, encodeUplinkMessage, type GatewayUplinkMessage, type LaptopMessage, type OrderMessage, type ResultMessage,
} from '../protocol/uplink.ts';
import { MessageLink } from '../transport/message-link.ts';
import { closeSerialPort, openSerialPort } from '../transport/serial-port.ts';
import { defaultClientOptions, UplinkClient } from './client.ts';
import { EXIT, exitCodeFor, HumanRenderer, JsonRenderer, summarise, type Renderer, type Summary } from './render.ts';

export { EXIT };

function int(name: string, min: number, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^\d+$/.test(v) || n < min || n > max) throw new InvalidArgumentError(`${name} must be a whole number from ${min} to ${max}, got "${v}"`);
    return n;
  };
}

const program = new Command('fwpush')
  .description('Send a firmware image to an fwgate gateway over its serial link and follow the rollout to every device; with "status", show the running or last campaign instead and follow it to its end.')
  .argument('<image|status>', 'firmware image file to push, or the word "status" to show and follow what the gateway is doing (an image file named status: ./status)')
  .requiredOption('-P, --port <tty>', 'serial port connected to the gateway, e.g. /dev/ttyUSB0')
  .option('-m, --manifest <file>', 'JSON manifest for the image (otherwise one is made from the image and the flags below)')
  .option('--name <name>', 'image name for a generated manifest (default: file name without extension)')
  .option('--version <semver>', 'image version for a generated manifest')
  .option('--image-version <semver>', 'same as --version')
  .option('--hw <models>', 'comma-separated hardware models for a generated manifest')
  .option('--chunk <bytes>', 'chunk size towards devices for a generated manifest', int('--chunk', 64, 65536), 4096)
  .option('--baud <rate>', 'serial baud rate', int('--baud', 50, 20_000_000), 921_600)
  .option('--frame <bytes>', 'largest serial frame payload to offer', int('--frame', 64, 16384), 4096)
  .option('--window <frames>', 'ARQ window to offer', int('--window', 1, 64), 16)
  .option('--timeout <seconds>', 'give up when the gateway is silent this long', int('--timeout', 1, 86_400), 300)
  .option('--no-local-check', 'do not check the image against --manifest before sending (the gateway always checks)')
  .option('--json', 'print one JSON object per event and a final summary line')
  .showHelpAfterError()
  .exitOverride();

interface Opts {
  port: string; manifest?: string; name?: string; version?: string; imageVersion?: string; hw?: string; chunk: number;
  baud: number; frame: number; window: number; timeout: number; json?: boolean; localCheck: boolean;
}

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
    return { manifest, image };
  }
  const version = o.version ?? o.imageVersion;
  if (!version || !o.hw) {
    throw new FwError('E_USAGE', 'without --manifest, give --version <semver> and --hw <models> so a manifest can be made');
  }
  const name = o.name ?? basename(imagePath).replace(/\.[^.]*$/, '');
  return { manifest: manifestForImage(image, { name, version, hw: o.hw.split(',').map((s) => s.trim()).filter(Boolean), chunk: o.chunk }), image };
}

/** What this run does: push an image and follow its campaign, or follow/replay what the gateway is doing. */
type Mode = { kind: 'push'; imagePath: string } | { kind: 'status' };

/** A campaign's order and results as they arrive, for the summary; events of another campaign are left out. */
class CampaignWatch {
  campaign: string | undefined;
  order: OrderMessage | undefined;
  readonly results = new Map<string, ResultMessage>();
  see(m: GatewayUplinkMessage): void {
    if ((m.t === 'committed' && m.ok) || m.t === 'state') this.campaign = m.campaign;
    if ((m.t === 'order' || m.t === 'result') && this.campaign !== undefined && m.campaign !== this.campaign) return;
    if (m.t === 'order') this.order = m;
    if (m.t === 'result') this.results.set(m.id, m);
  }
}

/** Longest silence while replaying a finished campaign that has no `complete` (it ended abnormally). */
const REPLAY_IDLE_MS = 5000;

async function main(): Promise<number> {
  try {
    program.parse();
  } catch (err) {
    return (err as { exitCode?: number }).exitCode === 0 ? EXIT.ok : EXIT.usage;
  }
  const o = program.opts<Opts>();
  const target = program.args[0]!;
  const mode: Mode = target === 'status' ? { kind: 'status' } : { kind: 'push', imagePath: target };
  const render: Renderer = o.json ? new JsonRenderer() : new HumanRenderer();
  let inputs: { manifest: Manifest; image: Buffer } | undefined;
  if (mode.kind === 'push') {
    try {
      inputs = await loadInputs(mode.imagePath, o);
    } catch (err) {
      render.error(describeError(err), isFwError(err) ? err.code : undefined);
      return isFwError(err, 'E_USAGE') ? EXIT.usage : EXIT.refused;
    }
  }

  let port: Awaited<ReturnType<typeof openSerialPort>>;
  try {
    port = await openSerialPort(o.port, o.baud);
  } catch (err) {
    render.error(describeError(err), 'E_LINK_CLOSED');
    return EXIT.link;
  }
  const link = new MessageLink<GatewayUplinkMessage, LaptopMessage>(port, {
    decode: decodeGatewayUplinkMessage,
    encode: encodeUplinkMessage,
    arq: { window: o.window, maxPayload: 256 },
  });
  const client = new UplinkClient(link, { ...defaultClientOptions, maxFrame: o.frame, window: o.window, idleTimeoutMs: o.timeout * 1000 });
  const watch = new CampaignWatch();
  client.on('event', (m) => {
    watch.see(m);
    render.event(m);
  });
  client.on('upload', (sent, total, resumedAt) => render.upload(sent, total, resumedAt));

  let stopping = false;
  const interrupt = (): void => {
    if (stopping) process.exit(130);
    stopping = true;
    render.error('interrupted; the gateway carries on with the rollout');
    link.close();
    void closeSerialPort(port).finally(() => process.exit(130));
  };
  process.on('SIGINT', interrupt);
  process.on('SIGTERM', interrupt);

  const started = Date.now();
  try {
    const hello = await client.connect();
    render.connected(hello, o.port);
    if (mode.kind === 'status') return await status(client, watch, render, started);
    const { manifest, image } = inputs!;
    const { campaign } = await client.push(manifest, image);
    const complete = await client.follow(campaign);
    return finish(render, watch, campaign, manifest, complete.durationMs || Date.now() - started);
  } catch (err) {
    if (isFwError(err) && err.details?.deny === 'busy') {
      render.error(describeError(err), err.code, `run \`fwpush --port ${o.port} status\` to follow it`);
      return EXIT.refused;
    }
    render.error(describeError(err), isFwError(err) ? err.code : undefined);
    return isFwError(err, 'E_LINK_TIMEOUT') || isFwError(err, 'E_LINK_CLOSED') ? EXIT.link : EXIT.refused;
  } finally {
    render.close();
    link.close();
    await closeSerialPort(port);
  }
}

/**
 * `fwpush status`: the gateway answers `state` and replays its current or last campaign. A
 * running campaign is followed to its end; a finished one is summarised from the replay.
 */
async function status(client: UplinkClient, watch: CampaignWatch, render: Renderer, started: number): Promise<number> {
  const state = await client.status();
  if (!state.campaign) return EXIT.ok; // the renderer said "gateway idle: no campaign"
  const image = state.image ?? watch.order?.image ?? { name: '?', version: '?', sha256: '' };
  let durationMs: number;
  if (state.running) {
    durationMs = (await client.follow(state.campaign)).durationMs;
  } else {
    try {
      durationMs = (await client.follow(state.campaign, REPLAY_IDLE_MS)).durationMs;
    } catch (err) {
      if (!isFwError(err, 'E_LINK_TIMEOUT')) throw err;
      durationMs = Date.now() - started; // it ended without a completion: summarise what was replayed
    }
  }
  return finish(render, watch, state.campaign, image, durationMs);
}

/** Summary and exit code, the same for a push and for status. */
function finish(render: Renderer, watch: CampaignWatch, campaign: string, image: Summary['image'], durationMs: number): number {
  const summary = summarise({ campaign, image: { name: image.name, version: image.version, sha256: image.sha256 }, order: watch.order, results: watch.results.values(), durationMs });
  render.summary(summary);
  return exitCodeFor(summary);
}

process.exitCode = await main();
