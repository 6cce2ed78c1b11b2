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
import { HumanRenderer, JsonRenderer, type Renderer, type Summary } from './render.ts';

/** Exit codes (docs/operations.md): stable, for scripts. */
export const EXIT = { ok: 0, devicesFailed: 1, usage: 2, nothingToUpdate: 3, refused: 4, link: 5 } as const;

function int(name: string, min: number, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^\d+$/.test(v) || n < min || n > max) throw new InvalidArgumentError(`${name} must be a whole number from ${min} to ${max}, got "${v}"`);
    return n;
  };
}

const program = new Command('fwpush')
  .description('Send a firmware image to an fwgate gateway over its serial link and follow the rollout to every device.')
  .argument('<image>', 'firmware image file')
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

async function main(): Promise<number> {
  try {
    program.parse();
  } catch (err) {
    return (err as { exitCode?: number }).exitCode === 0 ? EXIT.ok : EXIT.usage;
  }
  const o = program.opts<Opts>();
  const render: Renderer = o.json ? new JsonRenderer() : new HumanRenderer();
  let inputs: { manifest: Manifest; image: Buffer };
  try {
    inputs = await loadInputs(program.args[0]!, o);
  } catch (err) {
    render.error(describeError(err), isFwError(err) ? err.code : undefined);
    return isFwError(err, 'E_USAGE') ? EXIT.usage : EXIT.refused;
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
  let order: OrderMessage | undefined;
  const results = new Map<string, ResultMessage>();
  client.on('event', (m) => {
    if (m.t === 'order') order = m;
    if (m.t === 'result') results.set(m.id, m);
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
    const { campaign } = await client.push(inputs.manifest, inputs.image);
    const complete = await client.follow(campaign);
    const summary = summarise(inputs.manifest, campaign, order, results, complete.durationMs || Date.now() - started);
    render.summary(summary);
    return summary.ok ? EXIT.ok : summary.targeted === 0 ? EXIT.nothingToUpdate : EXIT.devicesFailed;
  } catch (err) {
    render.error(describeError(err), isFwError(err) ? err.code : undefined);
    return isFwError(err, 'E_LINK_TIMEOUT') || isFwError(err, 'E_LINK_CLOSED') ? EXIT.link : EXIT.refused;
  } finally {
    render.close();
    link.close();
    await closeSerialPort(port);
  }
}

function summarise(m: Manifest, campaign: string, order: OrderMessage | undefined, results: Map<string, ResultMessage>, durationMs: number): Summary {
  const all = [...results.values()];
  const count = (x: ResultMessage['outcome']): number => all.filter((r) => r.outcome === x).length;
  const targeted = order?.devices.length ?? 0;
  const updated = count('updated');
  const ok = targeted > 0 && updated === targeted;
  const message = ok
    ? `all ${targeted} targeted devices run ${m.version}`
    : targeted === 0
      ? `no device needed ${m.name} ${m.version}: ${order?.excluded.length ?? 0} skipped (${[...new Set(order?.excluded.map((x) => x.code))].join(', ') || 'no devices known'})`
      : `${targeted - updated} of ${targeted} targeted devices were not updated`;
  return {
    event: 'summary', ok, campaign,
    image: { name: m.name, version: m.version, sha256: m.sha256 },
    devices: all.length, targeted, updated, failed: count('failed'), rolledBack: count('rolled-back'), skipped: count('skipped'),
    order: order?.devices.map((d) => d.id) ?? [], durationMs, message,
  };
}

process.exitCode = await main();
