import { readFileSync, realpathSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Command, CommanderError, Option } from 'commander';
import { FwError, describeError } from '../protocol/errors.ts';
import type { Task } from '../protocol/ota.ts';
import type { SimEvent } from './device.ts';
import {
  AllPowerCutPhases, parseSelector, parseTargetSpec, selects, type DeviceSelector, type Faults, type PowerCutPhase,
} from './faults.ts';
import { componentFlags, type ComponentRule } from './cli-components.ts';
import { Fleet, MAX_FLEET_SIZE, fleetDeviceId, type FleetLink, type FleetOptions } from './fleet.ts';
import { MAX_CHUNK_SIZE, MAX_WINDOW, MIN_CHUNK_SIZE } from '../protocol/limits.ts';
import { isValidDeviceId } from '../protocol/topics.ts';
import { TOOL_VERSION } from '../protocol/tool-version.ts';
import { compareVersions, isValidVersion } from '../protocol/version.ts';
import { DEVICE_DEFAULTS, isBrokerUrl, resolveDeviceOptions } from './options.ts';
import { readCredentialsFile } from './credentials.ts';
import { BUILTIN_PROFILE_NAMES, MIXED, describeProfile, resolveProfilesSync } from './profiles.ts';

/**
 * fwsim — a fleet of simulated devices speaking the OTA protocol over MQTT.
 *
 *   npx tsx device-sim/cli.ts --broker mqtt://127.0.0.1:1883 --count 5 --data data/sim
 *
 * Usage errors exit with 2; SIGINT/SIGTERM close every device cleanly and exit 0.
 */
export interface CliConfig {
  fleet: FleetOptions;
  json: boolean;
  /** The --profile argument, when given. */
  profile?: string;
}

type FaultRule = { who: DeviceSelector; faults: Faults };

function int(flag: string, min: number, max: number): (v: string) => number {
  return (v) => {
    if (!/^\d+$/.test(v)) throw new FwError('E_USAGE', `${flag}: expected an integer, got "${v}"`);
    const n = Number(v);
    if (n < min || n > max) throw new FwError('E_USAGE', `${flag}: must be ${min}..${max}, got ${n}`);
    return n;
  };
}

function buildProgram(): Command {
  return new Command('fwsim')
    .description('Simulated devices for fwgate: A/B slots on files, OTA over MQTT, fault switches')
    .option('--broker <url>', 'MQTT broker URL', 'mqtt://127.0.0.1:1883')
    .option('--count <n>', `number of devices (1..${MAX_FLEET_SIZE})`, '1')
    .option('--data <dir>', 'data folder; each device uses <dir>/<id>/', 'data/sim')
    .option('--hw <model>', 'hardware model', DEVICE_DEFAULTS.hw)
    .option('--version <v>', 'factory version for blank devices (--version alone, or -V: print fwsim\'s own version)', DEVICE_DEFAULTS.factoryVersion)
    .option('--security-floor <version>', 'anti-rollback floor: refuse every image older than this, even as a downgrade (default: none)')
    .option('--pinned-key <file>', 'pin this Ed25519 public key (PEM from `fwpush keygen`): verify checks the offer\'s signature; repeat for a key rotation (default: none, no signature check)', (v: string, prev: string[] = []) => [...prev, v])
    .option('--prefix <p>', 'device id prefix (ids are <p>-001, <p>-002, ...)', 'dev')
    .option('--id <id>', 'give the device this id instead of <prefix>-NNN; repeat for several (sets --count); e.g. one device per process on a HIL rig', (v: string, prev: string[] = []) => [...prev, v])
    .option('--credentials <file>', 'JSON object of device id -> MQTT password (user name = device id); devices not in it connect without credentials')
    .option('--ca <file>', 'mqtts: PEM CA certificate that signed the broker\'s certificate')
    .option('--boot-delay <ms>', 'reboot delay', String(DEVICE_DEFAULTS.bootDelayMs))
    .option('--trial-timeout <ms>', 'revert a trial image not confirmed within this much time connected to the broker', String(DEVICE_DEFAULTS.trialTimeoutMs))
    .option('--trial-max <ms>', 'revert a trial image not confirmed within this time of its boot, connected or not', String(DEVICE_DEFAULTS.trialMaxMs))
    .option('--reconnect-delay <ms>', 'first reconnect delay (doubles up to --reconnect-max)', String(DEVICE_DEFAULTS.reconnectDelayMs))
    .option('--reconnect-max <ms>', 'largest reconnect delay', String(DEVICE_DEFAULTS.reconnectMaxMs))
    .option('--power-off <ms>', 'how long a power cut lasts', String(DEVICE_DEFAULTS.powerOffMs))
    .option('--max-chunk <bytes>', 'largest chunk accepted', String(DEVICE_DEFAULTS.maxChunk))
    .option('--window <n>', 'chunks in flight granted in accept', String(DEVICE_DEFAULTS.window))
    .option('--fsync', 'also fsync every flash flush and slot-state/progress replace (survives a host OS crash; the simulated power cut does not need it)', DEVICE_DEFAULTS.fsync)
    .option('--profile <name|file>', `give each device its own shaped link: ${[...BUILTIN_PROFILE_NAMES, MIXED].join(', ')}, or a JSON profile file (default: direct connection)`)
    .option('--busy <who>', 'reject offers as busy: first k devices, or ids (a,b,...)')
    .option('--fail-self-test <who>', 'trial boots fail their self-test')
    .option('--corrupt-chunk <who:n>', 'flip a byte of the n-th chunk received, once')
    .option('--drop-after <who:n>', 'drop the MQTT connection after n chunks, once')
    .addOption(new Option('--power-cut <who:phase>', `cut power once at phase (${AllPowerCutPhases.join(', ')})`))
    .option('--components <list>', 'components of each device, A/B slots each: app,net[,agent] (default: app alone, a single-image device)')
    .option('--component-image <[who:]comp=file>', 'factory image of a component from this file (version from its sample header); repeatable', (v: string, prev: string[] = []) => [...prev, v])
    .option('--component-version <[who:]comp=version>', 'factory version of a component (default --version); repeatable', (v: string, prev: string[] = []) => [...prev, v])
    .option('--fail-selftest-component <[who:]comp>', 'trial boots that include this component fail their self-test')
    .option('--power-cut-component <[who:]comp>', 'limit --power-cut to the steps of this component')
    .option('--json', 'print events as JSON lines', false)
    .helpOption('-h, --help')
    .allowExcessArguments(false);
}

/** Parse and validate argv (without node and script); throws FwError E_USAGE or CommanderError. */
export function parseCli(argv: readonly string[]): CliConfig {
  const program = buildProgram().exitOverride().configureOutput({ writeErr: () => undefined, writeOut: (s) => process.stdout.write(s) });
  program.parse([...argv], { from: 'user' });
  const o = program.opts<Record<string, string | boolean | undefined>>();
  const pinnedKeys = (program.opts<{ pinnedKey?: string[] }>().pinnedKey ?? []).map((path) => {
    try {
      return readFileSync(path, 'utf8');
    } catch (err) {
      throw new FwError('E_USAGE', `--pinned-key: cannot read ${path}: ${(err as Error).message}`);
    }
  });
  const str = (k: string): string => String(o[k]);
  const explicitIds = program.opts<{ id?: string[] }>().id;
  if (explicitIds !== undefined) {
    const bad = explicitIds.find((id) => !isValidDeviceId(id));
    if (bad !== undefined) throw new FwError('E_USAGE', `--id: "${bad}" is not a device id (letters, digits, ".", "_", "-"; at most 64)`);
    const twice = explicitIds.find((id, i) => explicitIds.indexOf(id) !== i);
    if (twice !== undefined) throw new FwError('E_USAGE', `--id: "${twice}" given twice`);
    if (program.getOptionValueSource('count') === 'cli' && Number(str('count')) !== explicitIds.length) {
      throw new FwError('E_USAGE', `--count ${str('count')} does not match the ${explicitIds.length} --id given`);
    }
  }
  const count = explicitIds?.length ?? int('--count', 1, MAX_FLEET_SIZE)(str('count'));
  const idAt = (i: number): string => explicitIds?.[i] ?? fleetDeviceId(str('prefix'), i);
  if (!isBrokerUrl(str('broker'))) throw new FwError('E_USAGE', `--broker: "${str('broker')}" is not a broker URL such as mqtt://127.0.0.1:1883`);
  const ms = (flag: string, key: string, min = 0): number => int(flag, min, 24 * 3600 * 1000)(str(key));

  const rules: FaultRule[] = [];
  const level = (flag: string, key: string, faults: Faults): void => {
    if (o[key] !== undefined) rules.push({ who: parseSelector(str(key), flag), faults });
  };
  level('--busy', 'busy', { busy: true });
  level('--fail-self-test', 'failSelfTest', { failSelfTest: true });
  const counted = (flag: string, key: string, make: (n: number) => Faults): void => {
    if (o[key] === undefined) return;
    const spec = parseTargetSpec(str(key), flag);
    rules.push({ who: spec.who, faults: make(int(flag, 1, 0xffff_ffff)(spec.value)) });
  };
  counted('--corrupt-chunk', 'corruptChunk', (n) => ({ corruptChunk: n }));
  counted('--drop-after', 'dropAfter', (n) => ({ dropAfterChunks: n }));
  if (o.powerCut !== undefined) {
    const spec = parseTargetSpec(str('powerCut'), '--power-cut');
    if (!(AllPowerCutPhases as readonly string[]).includes(spec.value)) {
      throw new FwError('E_USAGE', `--power-cut: phase must be one of ${AllPowerCutPhases.join(', ')}, got "${spec.value}"`);
    }
    rules.push({ who: spec.who, faults: { powerCutAt: spec.value as PowerCutPhase } });
  }

  const comps = componentFlags(program.opts(), count);
  rules.push(...comps.faults);
  const perDevice: ComponentRule[] = comps.perDevice;

  const fleet: FleetOptions = {
    broker: str('broker'),
    count,
    dataDir: resolve(str('data')),
    prefix: str('prefix'),
    ...(explicitIds !== undefined ? { ids: explicitIds } : {}),
    device: {
      hw: str('hw'),
      factoryVersion: str('version'),
      bootDelayMs: ms('--boot-delay', 'bootDelay'),
      trialTimeoutMs: ms('--trial-timeout', 'trialTimeout', 1),
      trialMaxMs: ms('--trial-max', 'trialMax', 1),
      reconnectDelayMs: ms('--reconnect-delay', 'reconnectDelay', 1),
      reconnectMaxMs: ms('--reconnect-max', 'reconnectMax', 1),
      powerOffMs: ms('--power-off', 'powerOff'),
      maxChunk: int('--max-chunk', MIN_CHUNK_SIZE, MAX_CHUNK_SIZE)(str('maxChunk')),
      window: int('--window', 1, MAX_WINDOW)(str('window')),
      fsync: o.fsync === true,
      ...(o.securityFloor !== undefined ? { securityFloor: str('securityFloor') } : {}),
      ...(o.ca !== undefined ? { tls: { ca: resolve(str('ca')) } } : {}),
      ...(pinnedKeys.length > 0 ? { pinnedKeys } : {}),
      ...(comps.components !== undefined ? { components: comps.components } : {}),
    },
    ...(perDevice.length > 0 ? { perDevice: (index: number, id: string) => {
      const hits = perDevice.filter((r) => selects(r.who, index, id));
      if (hits.length === 0) return undefined;
      return {
        componentImages: Object.assign({}, ...hits.map((r) => r.images)) as Record<string, string>,
        componentVersions: Object.assign({}, ...hits.map((r) => r.versions)) as Record<string, string>,
      };
    } } : {}),
    ...(o.credentials !== undefined ? { passwords: readCredentialsFile(str('credentials')) } : {}),
    faults: (index, id) => {
      const hits = rules.filter((r) => selects(r.who, index, id));
      return hits.length ? Object.assign({}, ...hits.map((r) => r.faults)) as Faults : undefined;
    },
  };
  if (!isValidVersion(str('version'))) throw new FwError('E_USAGE', `--version: "${str('version')}" is not a semantic version such as 1.0.0`);
  if (o.securityFloor !== undefined) {
    if (!isValidVersion(str('securityFloor'))) throw new FwError('E_USAGE', `--security-floor: "${str('securityFloor')}" is not a semantic version such as 1.0.0`);
    if (compareVersions(str('version'), str('securityFloor')) < 0) throw new FwError('E_USAGE', `--security-floor ${str('securityFloor')} is above --version ${str('version')}: the factory image would be below the floor`);
  }
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(str('hw'))) throw new FwError('E_USAGE', `--hw: "${str('hw')}" is not a hardware model name`);
  if (explicitIds === undefined && !isValidDeviceId(fleetDeviceId(str('prefix'), count - 1))) throw new FwError('E_USAGE', `--prefix: "${str('prefix')}" does not make valid device ids`);
  if (fleet.device!.reconnectMaxMs! < fleet.device!.reconnectDelayMs!) throw new FwError('E_USAGE', '--reconnect-max must be >= --reconnect-delay');
  // Backstop: the device schema itself, with the first and the last device.
  try {
    const first = idAt(0);
    resolveDeviceOptions({ ...fleet.device, ...fleet.perDevice?.(0, first), id: first, broker: fleet.broker, dataDir: fleet.dataDir, faults: fleet.faults!(0, first) ?? {} });
    const last = idAt(count - 1);
    resolveDeviceOptions({ id: last, broker: fleet.broker, dataDir: fleet.dataDir });
    for (let i = 1; i < count && fleet.perDevice !== undefined; i++) {
      const id = idAt(i);
      resolveDeviceOptions({ ...fleet.device, ...fleet.perDevice(i, id), id, broker: fleet.broker, dataDir: fleet.dataDir, faults: fleet.faults!(i, id) ?? {} });
    }
  } catch (err) {
    throw new FwError('E_USAGE', describeError(err).replace(/^E_CONFIG: device options: /, ''), { cause: err });
  }
  for (const r of [...rules, ...perDevice]) {
    if ('ids' in r.who) {
      const unknown = r.who.ids.filter((id) => !Array.from({ length: count }, (_, i) => idAt(i)).includes(id));
      if (unknown.length) throw new FwError('E_USAGE', `no device ${unknown.join(', ')} in this fleet (${idAt(0)}..${idAt(count - 1)})`);
    }
  }
  if (o.profile !== undefined) {
    const ids = Array.from({ length: count }, (_, i) => idAt(i));
    try {
      fleet.profiles = resolveProfilesSync(str('profile'), ids);
    } catch (err) {
      throw new FwError('E_USAGE', `--profile: ${describeError(err).replace(/^E_CONFIG: /, '')}`, { cause: err });
    }
    return { fleet, json: o.json === true, profile: str('profile') };
  }
  return { fleet, json: o.json === true };
}

/** One line per event: human text, or a JSON object with a timestamp. */
export function formatEvent(e: SimEvent, json: boolean): string {
  if (json) return JSON.stringify({ ts: new Date().toISOString(), ...e });
  return `${new Date().toISOString().slice(11, 23)} ${e.id} ${describeEvent(e)}`;
}

/** The line announcing a device's link profile (fwsim --profile), before the device boots. */
export function formatLink(l: FleetLink, json: boolean): string {
  if (json) return JSON.stringify({ ts: new Date().toISOString(), type: 'link', id: l.id, profile: l.profile.name, url: l.url });
  return `${new Date().toISOString().slice(11, 23)} ${l.id} link ${describeProfile(l.profile)} via ${l.url.replace(/^mqtt:\/\//, '')}`;
}

function describeEvent(e: SimEvent): string {
  switch (e.type) {
    case 'booted': {
      const notes = [e.trial ? 'trial' : '', e.reverted ? `reverted: ${e.reason ?? ''}` : '', e.factory ? 'factory image' : ''].filter(Boolean);
      const others = (e.components ?? []).slice(1).map((c) => `${c.name} v${c.version} slot ${c.slot}${c.trial ? ' trial' : ''}`);
      return `booted v${e.version} from slot ${e.slot}${others.length ? ` + ${others.join(', ')}` : ''}${notes.length ? ` (${notes.join(', ')})` : ''}`;
    }
    case 'reverted': return `reverted to v${e.version} (slot ${e.slot}): ${e.reason}`;
    case 'connected': return e.reconnect ? 'reconnected' : 'connected';
    case 'disconnected': return 'disconnected';
    case 'offer-accepted': return `offer sid=${e.sid}${e.component ? ` ${e.component}` : ''} v${e.version} accepted (${e.resumed ? `resume at ${e.next}` : 'from 0'}, chunk ${e.chunk})`;
    case 'offer-rejected': return `offer sid=${e.sid}${e.component ? ` ${e.component}` : ''} v${e.version} rejected: ${e.code} (${e.reason})`;
    case 'chunk-bad': return `bad chunk sid=${e.sid} off=${e.off}: ${e.why}`;
    case 'transfer-complete': return `transfer sid=${e.sid} complete`;
    case 'verified': return e.ok ? `verified sid=${e.sid}` : `verify sid=${e.sid} failed: ${e.code ?? '?'}`;
    case 'activated': return `activated sid=${e.sid}${e.with ? ` with ${e.with.join(',')}` : ''} in slot ${e.slot}`;
    case 'rebooting': return `rebooting (${e.reason})`;
    case 'trial-timeout': return 'trial not confirmed in time';
    case 'confirmed': return `confirmed v${e.version}${e.repeat ? ' (again)' : ''}`;
    case 'aborted': return `aborted sid=${e.sid}`;
    case 'tasks': return e.tasks.length === 0 ? 'tasks: none pending' : `tasks: ${e.tasks.length} pending: ${e.tasks.map(describeTask).join('; ')}`;
    case 'invalid': return `invalid message ignored: ${e.reason}`;
    case 'dropped': return 'connection dropped (fault)';
    case 'power-cut': return `power cut${e.phase ? ` at ${e.phase}` : ''} (${e.lostWrites} unflushed writes lost)`;
    case 'stopped': return 'stopped';
    case 'error': return `error: ${e.message}`;
    default: {
      const never: never = e;
      return JSON.stringify(never);
    }
  }
}

function describeTask(t: Task): string {
  const at = t.notBefore !== undefined ? new Date(t.notBefore) : undefined;
  const when = at === undefined ? '' : ` not before ${Number.isNaN(at.getTime()) ? `${t.notBefore} ms` : at.toISOString()}`;
  return `${t.campaign} ${t.name} v${t.version} (${t.steps.join(', ')})${when}`;
}

/** Run the CLI; resolves with the exit code once the fleet has stopped. */
export async function main(argv: readonly string[]): Promise<number> {
  // `--version` alone (or -V) is fwsim's own version; `--version <v>` stays the factory version
  const v = argv.findIndex((a) => a === '--version' || a === '-V');
  if (v >= 0 && (argv[v] === '-V' || argv[v + 1] === undefined || argv[v + 1]!.startsWith('-'))) {
    process.stdout.write(`fwsim ${TOOL_VERSION}\n`);
    return 0;
  }
  let cfg: CliConfig;
  try {
    cfg = parseCli(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.help') return 0;
      process.stderr.write(`fwsim: ${err.message.replace(/^error: /, '')}\n`);
      return 2;
    }
    if (err instanceof FwError && err.code === 'E_USAGE') {
      process.stderr.write(`fwsim: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const fleet = new Fleet(cfg.fleet);
  fleet.on('event', (e) => process.stdout.write(`${formatEvent(e, cfg.json)}\n`));
  fleet.on('link', (l) => process.stdout.write(`${formatLink(l, cfg.json)}\n`));
  const { count, prefix, broker, dataDir, ids } = cfg.fleet;
  const idAt = (i: number): string => ids?.[i] ?? fleetDeviceId(prefix!, i);
  const via = cfg.profile !== undefined ? ` (link profile ${cfg.profile}, one proxy per device)` : '';
  process.stderr.write(`fwsim: ${count} device(s) ${count === 1 ? idAt(0) : `${idAt(0)}..${idAt(count - 1)}`} -> ${broker}${via}, data in ${dataDir}\n`);

  let stopping: Promise<void> | null = null;
  const done = new Promise<number>((resolveExit) => {
    const onSignal = (sig: NodeJS.Signals): void => {
      if (stopping) return;
      process.stderr.write(`fwsim: ${sig}, closing devices\n`);
      stopping = fleet.stop();
      stopping.then(() => resolveExit(0), (err: unknown) => {
        process.stderr.write(`fwsim: ${describeError(err)}\n`);
        resolveExit(1);
      });
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
  });
  try {
    await fleet.start();
  } catch (err) {
    process.stderr.write(`fwsim: ${describeError(err)}\n`);
    return 1;
  }
  return done;
}

function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return import.meta.url === pathToFileURL(realpathSync(script)).href;
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  main(process.argv.slice(2)).then((code) => process.exit(code), (err: unknown) => {
    process.stderr.write(`fwsim: ${describeError(err)}\n`);
    process.exit(1);
  });
}
