import { Command, InvalidArgumentError, Option, type OutputConfiguration } from 'commander';
import type { CampaignOptions } from './client.ts';
import { laptopSettings } from './settings.ts';
import { parseSeq } from './signing.ts';
import { retryOutcomesOf, type RetryMessage, type WaveSize } from '../protocol/uplink.ts';
import { parseWaves } from '../protocol/wave-list.ts';

/** fwpush's flags, parsed and range-checked. Times are as given (seconds). */
export interface Opts {
  /** Absent: FWPUSH_PORT, the profile, or the one USB-serial adapter (laptop/defaults.ts). */
  port?: string; manifest?: string; name?: string; version?: string; imageVersion?: string; hw?: string; chunk: number;
  baud: number; frame: number; window: number; timeout: number; reconnectTimeout: number; json?: boolean; localCheck: boolean;
  /** Campaign policy (docs/protocol.md §7.3.5): at once, or in the next maintenance window; neither: the gateway's default. */
  now?: boolean; inWindow?: boolean; allowDowngrade?: boolean; force?: boolean;
  /** Technician key (PKCS#8 PEM) answering the gateway's challenge (docs/protocol.md §7.2.4); needed to push. */
  techKey?: string;
  /** Manifest signing (laptop/signing.ts, docs/protocol.md §5.4). */
  signKey?: string; seq?: number; allowSeqZero?: boolean;
  /** Targeting and waves (docs/protocol.md §7.3.6). */
  only?: string[]; group?: string; waves?: WaveSize[]; waveGate?: number; wavePause?: boolean; requireOnline?: number;
  /** `status --campaign`: that campaign (§7.11.5). */
  campaign?: string;
  /** `retry`: which device results (§7.12.2). */
  failed?: boolean; rolledBack?: boolean; expired?: boolean; cancelled?: boolean; skippedDevices?: boolean;
  /** `release <desc.json>`: store the release without a campaign (docs/operations.md "Releases"). */
  deferred?: boolean;
}

/** What the command line asks for, or the exit code when it asks for nothing more (help, a usage error). */
export type ParsedArgs = { kind: 'run'; opts: Opts; target: string; arg?: string; more?: string[] } | { kind: 'exit'; code: 0 | 2 };

type Range = readonly [number, number];

function int(flag: string, [min, max]: Range, hint = '') {
  return (v: string): number => {
    const n = Number(v);
    if (!/^\d+$/.test(v) || n < min || n > max) throw new InvalidArgumentError(`${flag} must be a whole number from ${min} to ${max}, got "${v}"${/^\d+$/.test(v) ? '' : hint}`);
    return n;
  };
}

/** The campaign options of a push, as the request to send carries them: only the flags given. */
export function campaignOptions(o: Opts): CampaignOptions {
  return {
    ...(o.now ? { policy: 'now' as const } : o.inWindow ? { policy: 'window' as const } : {}),
    ...(o.allowDowngrade ? { downgrade: true } : {}),
    ...(o.force ? { force: true } : {}),
    ...(o.only ? { only: o.only } : {}),
    ...(o.group !== undefined ? { group: o.group } : {}),
    ...(o.waves ? { waves: o.waves } : {}),
    ...(o.waveGate !== undefined ? { waveGate: o.waveGate } : {}),
    ...(o.wavePause ? { wavePause: true } : {}),
    ...(o.requireOnline !== undefined ? { requireOnline: o.requireOnline } : {}),
  };
}

/** `retry`'s result flags as the outcomes the request names; none given: failed and rolled back. */
export function retryOutcomes(o: Opts): RetryMessage['outcomes'] {
  return retryOutcomesOf({ ...o, skipped: o.skippedDevices });
}

/** A fresh program each time (no module-level state), so tests can parse many command lines. */
function program(output: OutputConfiguration | undefined): Command {
  const r = laptopSettings.flagRanges;
  const s = laptopSettings;
  const cmd = new Command('fwpush')
    .description('Send a firmware image to an fwgate gateway over its serial link and follow the rollout to every device — or, when the gateway queues it for a maintenance window, say when the window opens and exit (code 0); with "status", show the running or last campaign and the queued ones instead, and follow the running one to its end.')
    .argument('<image|command>', 'firmware image file to push, or a command: "status" (show and follow what the gateway is doing), "cancel [campaign]", "retry <campaign>", "resume <campaign>", "plan <image>" (an image file named like a command: ./status)')
    .argument('[arg]', 'the campaign of cancel / retry / resume, the image of plan, the release description of release (or "live")')
    .argument('[more...]', 'release live: the release name and version')
    .option('-P, --port <tty>', 'serial port connected to the gateway, e.g. /dev/ttyUSB0 (default: $FWPUSH_PORT, the profile\'s port, or the only USB-serial adapter plugged in)')
    .option('-K, --tech-key <file>', 'technician key (Ed25519 private key, PKCS#8 PEM, from `fwpush keygen`) the gateway trusts: needed to push, not for status (default: $FWPUSH_TECH_KEY or the profile\'s techKey)')
    .option('-m, --manifest <file>', 'JSON manifest for the image (otherwise one is made from the image and the flags below)')
    .option('--name <name>', 'image name for a generated manifest (default: file name without extension)')
    .option('--version <semver>', 'image version for a generated manifest')
    .option('--image-version <semver>', 'same as --version')
    .option('--hw <models>', 'comma-separated hardware models for a generated manifest')
    .option('--chunk <bytes>', 'chunk size towards devices for a generated manifest', int('--chunk', r.chunk), s.deviceChunk)
    .option('--seq <n>', 'anti-rollback sequence number for the manifest (required with --sign-key for a generated one)', parseSeq)
    .option('--allow-seq-zero', 'sign with seq 0 (refused otherwise: devices that installed a higher seq refuse it)')
    .option('--sign-key <file>', 'sign the manifest with this Ed25519 private key (PEM, from `fwpush keygen`); a --manifest already signed is sent unchanged')
    .option('--baud <rate>', 'serial baud rate', int('--baud', r.baud), s.baudRate)
    .option('--frame <bytes>', 'largest serial frame payload to offer', int('--frame', r.frame), s.maxFrame)
    .option('--window <frames>', 'ARQ window of the serial link to offer (for the maintenance-window policy see --in-window)',
      int('--window', r.window, ' (it is the link\'s ARQ window; to wait for a maintenance window, use --in-window)'), s.window)
    .option('--timeout <seconds>', 'give up when the gateway is silent this long', int('--timeout', r.timeout), s.idleTimeoutMs / 1000)
    .option('--reconnect-timeout <seconds>', 'when the link is lost mid-push (cable pulled, port gone), keep reopening the port this long and resume; 0: exit at once',
      int('--reconnect-timeout', r.reconnectTimeout), s.reconnectTimeoutMs / 1000)
    .addOption(new Option('--now', 'start the campaign at once, inside or outside a maintenance window (the technician is present)').conflicts('inWindow'))
    .addOption(new Option('--in-window', 'queue the campaign for the next maintenance window and exit once the gateway has accepted the image (the gateway\'s default when it has windows configured)').conflicts('now'))
    .option('--allow-downgrade', 'let the campaign install the image on devices that run a newer version (otherwise they are left out: not-newer)')
    .option('--force', 'update devices that report themselves busy (otherwise they are deferred, never forced)')
    .option('--no-local-check', 'do not check the image against --manifest before sending (the gateway always checks)')
    .option('--json', 'print one JSON object per event and a final summary line')
    .option('--only <ids>', 'update only these devices (comma-separated ids), in this order for waves', (v: string) => v.split(',').map((x) => x.trim()).filter(Boolean))
    .option('--group <name>', 'update only the devices of this group (fwgate device add --group)')
    .option('--waves <list>', 'staged waves, cumulative: counts or percentages of the targets, e.g. 1,10%,100% (the first is a canary)', (v: string) => {
      const w = parseWaves(v);
      if (!w) throw new InvalidArgumentError(`--waves takes a comma-separated list of counts (1..) and percentages (1%..100%), e.g. 1,10%,100%; got "${v}"`);
      return w;
    })
    .option('--wave-gate <pct>', 'failure share (percent) of a wave at which later waves are not started (default: the gateway\'s rollback threshold)', int('--wave-gate', [1, 100]))
    .option('--wave-pause', 'stop after each wave until `fwpush resume <campaign>`')
    .option('--require-online <n>', 'refuse to start a now campaign with fewer than n eligible devices online (nothing is uploaded)', int('--require-online', [1, 1_000_000]))
    .option('--campaign <id>', 'status: show (and follow) this campaign instead of the current one')
    .option('--failed', 'retry: the devices that failed')
    .option('--rolled-back', 'retry: the devices that rolled back')
    .option('--expired', 'retry: the devices whose campaign expired before they checked in')
    .option('--cancelled', 'retry: the devices a cancel left on their old image')
    .option('--skipped-devices', 'retry: the devices that were skipped')
    .option('--deferred', 'release: upload and store the release without starting a campaign (fwpush release live starts it later)')
    .addHelpText('after', `
Commands:
  fwpush keygen --out <base>   make an Ed25519 key pair (technician key: <base>.key; give <base>.pub to the gateway)
  fwpush ports [--json]        list the serial ports, their /dev/serial/by-id names and USB ids
  fwpush -V, --tool-version    print fwpush's own version (--version is the image's version)
  fwpush release <desc.json> [--manifest <signed release>] [--deferred]
                               upload a multi-component release: only the component images the gateway lacks
  fwpush release live <name> <version>
                               start a stored (deferred) release's campaign, with --now/--only/--group/--waves …

Defaults: --port and --tech-key from FWPUSH_PORT / FWPUSH_TECH_KEY, else from the profile
(FWPUSH_PROFILE, default ~/.config/fwpush/profile.json: {"port": "...", "techKey": "..."});
with exactly one USB-serial adapter plugged in, --port may be left out.

Campaign policy: with neither --now nor --in-window the gateway decides (the next
maintenance window when it has windows configured, else at once); the two exclude
each other. --allow-downgrade and --force hold for this campaign only.`)
    .exitOverride()
    .configureOutput({ outputError: (str, write) => write(`${str.trimEnd()} (see fwpush --help)\n`) });
  if (output) cmd.configureOutput(output);
  return cmd;
}

/**
 * Parse fwpush's arguments (without the node and script paths). Help and usage errors are
 * written through `output` (default: stdout and stderr) and come back as an exit code.
 */
export function parseArgs(argv: readonly string[], output?: OutputConfiguration): ParsedArgs {
  const cmd = program(output);
  try {
    cmd.parse([...argv], { from: 'user' });
  } catch (err) {
    return { kind: 'exit', code: (err as { exitCode?: number }).exitCode === 0 ? 0 : 2 };
  }
  const [target, arg, ...more] = cmd.args as [string, string | undefined, ...string[]];
  return { kind: 'run', opts: cmd.opts<Opts>(), target, ...(arg !== undefined ? { arg } : {}), ...(more.length > 0 ? { more } : {}) };
}

export { parseWaves } from '../protocol/wave-list.ts';
