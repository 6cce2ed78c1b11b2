import { createPublicKey } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { makeSampleImage } from '../firmware-samples/image-format.ts';
import { describeError, FwError } from '../protocol/errors.ts';
import { generateSigningKey } from '../protocol/signature.ts';
import { compareVersions } from '../protocol/version.ts';
import { freePort, ROOT, startTs, type Proc } from '../scripts/lib/processes.ts';
import { makeSimCable, type SimCable } from './cable.ts';
import { ConsoleCapture } from './console.ts';
import { LaptopRun, type LaptopEvent } from './laptop.ts';
import { rigPath, type LoadedRig, type RigDevice } from './rig-file.ts';
import { runCommand, type HilEnv } from './shell.ts';

/** A device as the gateway reports it (`fwpush status`, docs/protocol.md §7.11.4). */
export interface FleetDevice {
  id: string;
  hw: string;
  version: string;
  online: boolean;
  lastResult?: { campaign: string; outcome: string; code: string; version: string; at: number };
}

export type ImageVariant = 'good' | 'selftest-fail';

/** One image the runner made for a push: where it is and what fwpush needs to send it. */
export interface PushImage {
  path: string;
  version: string;
  variant: ImageVariant;
  seq: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * The rig while the suite runs (docs/hil.md): the gateway (a local fwgate process, or a remote
 * one), the laptop's link (a real port, or a socat pty pair the runner makes), each board's power,
 * console and the gateway's view of it. Every command is bounded by the rig's timeouts; every
 * action lands on the timeline of the running scenario.
 */
export class RigRuntime {
  private gateway: Proc | undefined;
  private gatewayArgs: string[] = [];
  private gatewayLog: WriteStream | undefined;
  private cable: SimCable | undefined;
  private brokerUrl = '';
  private keys: { vendorKey: string; vendorPub: string; techKey: string } | undefined;
  private lastVersion = '0.0.0';
  private lastSeq = 0;
  private readonly consoles = new Map<string, ConsoleCapture>();
  /** fwpush processes started in the running scenario (killed at its end if still running). */
  private readonly runs = new Set<LaptopRun>();
  private timeline: ((who: string, text: string) => void) | undefined;
  private scenarioStart = Date.now();

  constructor(readonly rig: LoadedRig, readonly workDir: string, readonly reportDir: string, private readonly log: (line: string) => void) {}

  get devices(): readonly RigDevice[] {
    return this.rig.file.devices;
  }
  get timeouts(): LoadedRig['file']['timeouts'] {
    return this.rig.file.timeouts;
  }
  get laptopPort(): string {
    return this.cable?.laptopEnd ?? rigPath(this.rig, this.rig.file.laptop.port!);
  }
  get canRestartGateway(): boolean {
    const g = this.rig.file.gateway;
    return 'local' in g || g.remote.restart !== undefined;
  }
  get canUnplug(): boolean {
    return this.rig.file.laptop.pty || this.rig.file.laptop.unplug !== undefined;
  }
  get broker(): string {
    return this.brokerUrl;
  }

  /** ms since the running scenario started. */
  now(): number {
    return Date.now() - this.scenarioStart;
  }

  /**
   * The rig's preflight command: the reason it cannot run here (its stderr), or undefined.
   */
  async preflight(): Promise<string | undefined> {
    await mkdir(this.workDir, { recursive: true });
    await mkdir(this.reportDir, { recursive: true });
    const cmd = this.rig.file.preflight;
    if (cmd === undefined) return undefined;
    try {
      await this.run('preflight', cmd);
      return undefined;
    } catch (err) {
      const stderr = (err as FwError).details?.stderr;
      return typeof stderr === 'string' && stderr.trim() ? stderr.trim().split('\n').slice(-3).join(' | ') : describeError(err);
    }
  }

  /** Keys, the laptop link, the gateway, every board on and online. */
  async setUp(): Promise<void> {
    if (this.rig.file.keys.generate) await this.generateKeys();
    if (this.rig.file.laptop.pty) this.cable = await makeSimCable(this.workDir, this.rig.file.laptop.baud);
    const g = this.rig.file.gateway;
    if ('local' in g) await this.startLocalGateway(g.local);
    else this.brokerUrl = g.remote.broker;
    this.log(`rig ${this.rig.file.name}: broker ${this.brokerUrl}, laptop port ${this.laptopPort}, ${this.devices.length} device(s)`);
    await Promise.all(this.devices.map((d) => this.power(d, 'on')));
    await this.waitOnline(this.devices.map((d) => d.id), this.timeouts.bootMs);
    const fleet = await this.fleet();
    for (const d of fleet) if (compareVersions(d.version, this.lastVersion) > 0) this.lastVersion = d.version;
  }

  async tearDown(): Promise<void> {
    await Promise.allSettled(this.devices.map((d) => this.power(d, 'off')));
    await this.gateway?.stop(5_000);
    await new Promise<void>((r) => (this.gatewayLog ? this.gatewayLog.end(() => r()) : r()));
    await this.cable?.close();
    if (this.rig.file.teardown !== undefined) await this.run('teardown', this.rig.file.teardown);
  }

  /** Scenario bookkeeping: consoles captured into `dir`, actions and events onto `timeline`. */
  async beginScenario(dir: string, timeline: (who: string, text: string) => void): Promise<void> {
    this.scenarioStart = Date.now();
    this.timeline = timeline;
    this.gatewayLog?.write(`${JSON.stringify({ hil: 'scenario', dir, at: new Date().toISOString() })}\n`);
    for (const d of this.devices) {
      if (!d.console) continue;
      const src = 'port' in d.console ? { port: rigPath(this.rig, d.console.port), baud: d.console.baud } : { file: rigPath(this.rig, this.expand(d.console.file, d)) };
      this.consoles.set(d.id, await ConsoleCapture.start(src, join(dir, `console-${d.id}.log`)));
    }
  }

  async endScenario(): Promise<void> {
    // a scenario that ran out of time leaves nothing behind for the next one
    await Promise.all([...this.runs].map((r) => r.kill()));
    this.runs.clear();
    await Promise.all([...this.consoles.values()].map((c) => c.stop()));
    this.consoles.clear();
    this.timeline = undefined;
  }

  private note(who: string, text: string): void {
    this.timeline?.(who, text);
  }

  /** The environment of a rig command (docs/hil.md "Commands"). */
  env(extra: HilEnv = {}): HilEnv {
    return {
      HIL_RIG_DIR: this.rig.dir, HIL_WORK: this.workDir, HIL_REPO: ROOT, HIL_BROKER: this.brokerUrl,
      ...(this.keys ? { HIL_VENDOR_KEY: this.keys.vendorKey, HIL_VENDOR_PUB: this.keys.vendorPub, HIL_TECH_KEY: this.keys.techKey } : {}),
      ...extra,
    };
  }

  /** `${HIL_WORK}` and friends in a rig path. */
  private expand(s: string, d?: RigDevice): string {
    const env = this.env(d ? { HIL_DEVICE: d.id, HIL_HW: d.hw } : {}) as Record<string, string | undefined>;
    return s.replace(/\$\{(HIL_[A-Z_]+)\}/g, (m, k: string) => env[k] ?? m);
  }

  private async run(what: string, command: string, extra: HilEnv = {}): Promise<void> {
    await runCommand(what, command, { cwd: this.rig.dir, env: this.env(extra), timeoutMs: this.timeouts.commandMs });
  }

  // ---- power and consoles ----

  async power(d: RigDevice, to: 'on' | 'off'): Promise<void> {
    const mark = this.consoles.get(d.id)?.mark();
    this.note(d.id, `power ${to} (rig)`);
    await this.run(`${d.id} power ${to}`, d.power[to], { HIL_DEVICE: d.id, HIL_DEVICE_INDEX: String(this.devices.indexOf(d)), HIL_HW: d.hw });
    if (to === 'on' && d.booted !== undefined && mark !== undefined) {
      const booted = await this.consoles.get(d.id)!.waitFor(new RegExp(d.booted), mark, this.timeouts.bootMs);
      this.note(d.id, booted ? 'console: booted' : `console: no "${d.booted}" within ${this.timeouts.bootMs} ms`);
    }
  }

  /** A power cut: off, `powerOffMs` dark, on again. */
  async powerCut(d: RigDevice): Promise<void> {
    await this.power(d, 'off');
    await sleep(this.timeouts.powerOffMs);
    await this.power(d, 'on');
  }

  // ---- the laptop's link ----

  async unplug(): Promise<void> {
    this.note('laptop', 'cable unplugged (rig)');
    if (this.cable) await this.cable.unplug();
    else await this.run('laptop unplug', this.rig.file.laptop.unplug!);
  }

  async plug(): Promise<void> {
    if (this.cable) {
      await this.cable.plug();
    } else {
      await this.run('laptop plug', this.rig.file.laptop.plug!);
    }
    this.note('laptop', 'cable plugged in (rig)');
  }

  /** fwpush with this rig's port and keys; `args` are the rest (image or `status`, flags). */
  fwpush(args: string[], onEvent: (e: LaptopEvent) => void = () => undefined, opts: { timeline?: boolean } = {}): LaptopRun {
    const baud = this.rig.file.laptop.baud;
    const run = new LaptopRun(['--port', this.laptopPort, ...(baud ? ['--baud', String(baud)] : []), ...args], () => this.now(), (e) => {
      if (opts.timeline === false) return onEvent(e);
      if (typeof e.id === 'string') this.note(e.id, describeEvent(e));
      else if (['order', 'complete', 'link-lost', 'reconnected', 'upload-resumed', 'committed', 'error', 'summary', 'queued'].includes(e.event)) this.note('laptop', describeEvent(e));
      onEvent(e);
    }, this.timeouts.scenarioMs);
    this.runs.add(run);
    void run.exited.then(() => this.runs.delete(run));
    return run;
  }

  /** Push `image` to the rig's hardware model(s) and follow the rollout. */
  push(image: PushImage, flags: string[] = [], onEvent?: (e: LaptopEvent) => void): LaptopRun {
    const hw = [...new Set(this.devices.map((d) => d.hw))].join(',');
    const techKey = this.keys?.techKey ?? rigPath(this.rig, this.rig.file.laptop.techKey!);
    const signKey = this.keys?.vendorKey ?? rigPath(this.rig, this.rig.file.images.signKey!);
    this.note('laptop', `fwpush ${image.version} (${image.variant}) ${flags.join(' ')}`.trim());
    return this.fwpush([image.path, '--tech-key', techKey, '--name', this.rig.file.images.name, '--version', image.version, '--hw', hw,
      '--sign-key', signKey, '--seq', String(image.seq), ...flags], onEvent);
  }

  /** What the gateway knows of every device (`fwpush status --json`, its `fleet` message). */
  async fleet(): Promise<FleetDevice[]> {
    const r = await this.fwpush(['status'], undefined, { timeline: false }).exited;
    const fleet = r.events.find((e) => e.event === 'fleet');
    if (!fleet) throw new FwError('E_RIG_COMMAND', `fwpush status gave no fleet report (exit ${r.code}): ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`);
    return fleet.devices as FleetDevice[];
  }

  /** Waits until every id is online at the gateway; FwError naming the missing ones at the bound. */
  async waitOnline(ids: string[], timeoutMs: number, online = true): Promise<FleetDevice[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const fleet = await this.fleet().catch((err: unknown) => {
        this.log(`fleet: ${describeError(err)}`);
        return [];
      });
      const missing = ids.filter((id) => fleet.find((f) => f.id === id)?.online !== online);
      if (missing.length === 0) return fleet;
      if (Date.now() > deadline) throw new FwError('E_RIG_COMMAND', `${missing.join(', ')} not ${online ? 'online' : 'offline'} at the gateway within ${timeoutMs} ms`);
      await sleep(500);
    }
  }

  // ---- images ----

  /**
   * A new image, newer than anything the rig has run or been offered, with a fresh anti-rollback seq
   * (seconds since 1970, so it also rises across runs). `minSize` applies to sample images; an
   * image command makes what the firmware build makes.
   */
  async image(variant: ImageVariant, opts: { minSize?: number } = {}): Promise<PushImage> {
    const [maj, min] = this.lastVersion.split('.').map(Number) as [number, number];
    const version = `${maj}.${min + 1}.0`;
    this.lastVersion = version;
    this.lastSeq = Math.max(this.lastSeq + 1, Math.floor(Date.now() / 1000));
    const dir = join(this.workDir, 'images');
    await mkdir(dir, { recursive: true });
    const path = join(dir, `${this.rig.file.images.name}-${version}-${variant}.bin`);
    const make = this.rig.file.images.make;
    const hw = this.devices[0]!.hw;
    if ('sample' in make) {
      await writeFile(path, makeSampleImage({ name: this.rig.file.images.name, version, hw, size: Math.max(make.sample.size, opts.minSize ?? 0), selftest: variant === 'good' ? 'pass' : 'fail' }));
    } else {
      await this.run(`image ${version} ${variant}`, make.command, { HIL_VERSION: version, HIL_VARIANT: variant, HIL_HW: hw, HIL_OUT: path });
    }
    return { path, version, variant, seq: this.lastSeq };
  }

  // ---- the gateway ----

  private async generateKeys(): Promise<void> {
    const dir = join(this.workDir, 'keys');
    await mkdir(dir, { recursive: true });
    const vendor = generateSigningKey();
    const tech = generateSigningKey();
    this.keys = { vendorKey: join(dir, 'vendor.key'), vendorPub: join(dir, 'vendor.pub'), techKey: join(dir, 'technician.key') };
    await writeFile(this.keys.vendorKey, vendor.privateKeyPem, { mode: 0o600 });
    await writeFile(this.keys.vendorPub, vendor.publicKeyPem);
    await writeFile(this.keys.techKey, tech.privateKeyPem, { mode: 0o600 });
    await writeFile(join(dir, 'technician.pub'), tech.publicKeyPem);
  }

  private async startLocalGateway(local: Extract<LoadedRig['file']['gateway'], { local: unknown }>['local']): Promise<void> {
    const port = local.port === 0 ? await freePort() : local.port;
    // a gateway listening on every address is reached at loopback by simulated boards on this host
    this.brokerUrl = `mqtt://${local.host === '0.0.0.0' ? '127.0.0.1' : local.host}:${port}`;
    const config: Record<string, unknown> = structuredClone(local.config);
    {
      // A local gateway trusts the rig's own keys: the generated ones, or the public halves of
      // images.signKey and laptop.techKey (added to whatever the config lists).
      const vendorKey = this.keys?.vendorKey ?? rigPath(this.rig, this.rig.file.images.signKey!);
      const techKey = this.keys?.techKey ?? rigPath(this.rig, this.rig.file.laptop.techKey!);
      const section = (k: string): Record<string, unknown> => (config[k] ??= {}) as Record<string, unknown>;
      const append = (k: string, list: string, entry: unknown): void => {
        const s = section(k);
        s[list] = [...(Array.isArray(s[list]) ? s[list] as unknown[] : []), entry];
      };
      append('security', 'trustedKeys', { publicKey: await publicHalf(vendorKey, 'images.signKey') });
      append('uplink', 'technicianKeys', { publicKey: await publicHalf(techKey, 'laptop.techKey') });
    }
    const configPath = join(this.workDir, 'gateway.json');
    await writeFile(configPath, JSON.stringify(config, null, 2));
    const serial = this.cable?.gatewayEnd ?? rigPath(this.rig, local.serial!);
    this.gatewayArgs = ['--config', configPath, '--data', join(this.workDir, 'gateway'), '--serial', serial,
      '--host', local.host, '--port', String(port), '--log-format', 'json',
      ...(this.rig.file.laptop.baud !== undefined ? ['--baud', String(this.rig.file.laptop.baud)] : []), ...local.args];
    this.gatewayLog = createWriteStream(join(this.reportDir, 'gateway.log'), { flags: 'a' });
    await this.launchGateway();
  }

  private async launchGateway(): Promise<void> {
    const proc = startTs('fwgate', 'gateway/cli.ts', this.gatewayArgs, { stderr: 'pipe' });
    const log = this.gatewayLog!;
    createInterface({ input: proc.child.stderr! }).on('line', (l) => log.write(`${l}\n`));
    this.gateway = proc;
    try {
      await proc.waitForLine(/^fwgate ready/, 30_000);
    } catch (err) {
      throw new FwError('E_RIG_COMMAND', `fwgate did not start (see ${join(this.reportDir, 'gateway.log')}): ${describeError(err)}`, { cause: err });
    }
  }

  /** Gateway restart: a local fwgate is killed (SIGKILL, as a power cut) and started again; a remote one gets its restart command. */
  async restartGateway(): Promise<void> {
    this.note('gateway', 'restart (rig): killed');
    const g = this.rig.file.gateway;
    if ('local' in g) {
      this.gateway!.child.kill('SIGKILL');
      await this.gateway!.exited;
      await this.launchGateway();
    } else {
      await this.run('gateway restart', g.remote.restart!);
      // up again once it answers the laptop (bounded by bootMs)
      const deadline = Date.now() + this.timeouts.bootMs;
      while (!(await this.fleet().then(() => true, () => false))) {
        if (Date.now() > deadline) throw new FwError('E_RIG_COMMAND', `the gateway did not answer fwpush status within ${this.timeouts.bootMs} ms of its restart`);
        await sleep(1_000);
      }
    }
    this.note('gateway', 'restart (rig): up again');
  }
}

/** The public key (SPKI PEM) of an Ed25519 private key file. */
async function publicHalf(privateKeyPath: string, field: string): Promise<string> {
  try {
    return createPublicKey(await readFile(privateKeyPath, 'utf8')).export({ type: 'spki', format: 'pem' }).toString();
  } catch (err) {
    throw new FwError('E_RIG', `${field}: cannot read the private key ${privateKeyPath}: ${(err as Error).message}`, { cause: err });
  }
}

/** A timeline line for an fwpush event. */
export function describeEvent(e: LaptopEvent): string {
  switch (e.event) {
    case 'progress': {
      const pct = typeof e.total === 'number' && e.total > 0 && typeof e.bytes === 'number' ? ` ${Math.floor((e.bytes / e.total) * 100)}%` : '';
      return `${String(e.phase)}${e.phase === 'transferring' ? pct : ''}`;
    }
    case 'result': return `result ${String(e.outcome)} (${String(e.code)})${e.reason ? `: ${String(e.reason)}` : ''} ${String(e.from)} -> ${String(e.to)}, retries ${String(e.retries)}`;
    case 'order': return `order: ${(e.devices as { id: string }[]).map((d) => d.id).join(', ') || '-'}${(e.excluded as unknown[]).length ? `; excluded ${(e.excluded as { id: string; code: string }[]).map((x) => `${x.id} (${x.code})`).join(', ')}` : ''}`;
    case 'complete': return `complete: updated ${String(e.updated)}, failed ${String(e.failed)}, rolled back ${String(e.rolledBack)}, skipped ${String(e.skipped)}${e.halted ? ' (halted)' : ''}`;
    default: {
      const { event, at: _at, ...rest } = e;
      return `${event} ${JSON.stringify(rest)}`;
    }
  }
}
