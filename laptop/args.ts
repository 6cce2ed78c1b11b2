import { Command, InvalidArgumentError, type OutputConfiguration } from 'commander';
import { laptopSettings } from './settings.ts';

/** fwpush's flags, parsed and range-checked. Times are as given (seconds). */
export interface Opts {
  port: string; manifest?: string; name?: string; version?: string; imageVersion?: string; hw?: string; chunk: number;
  baud: number; frame: number; window: number; timeout: number; reconnectTimeout: number; json?: boolean; localCheck: boolean;
}

/** What the command line asks for, or the exit code when it asks for nothing more (help, a usage error). */
export type ParsedArgs = { kind: 'run'; opts: Opts; target: string } | { kind: 'exit'; code: 0 | 2 };

type Range = readonly [number, number];

function int(flag: string, [min, max]: Range) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^\d+$/.test(v) || n < min || n > max) throw new InvalidArgumentError(`${flag} must be a whole number from ${min} to ${max}, got "${v}"`);
    return n;
  };
}

/** A fresh program each time (no module-level state), so tests can parse many command lines. */
function program(output: OutputConfiguration | undefined): Command {
  const r = laptopSettings.flagRanges;
  const s = laptopSettings;
  const cmd = new Command('fwpush')
    .description('Send a firmware image to an fwgate gateway over its serial link and follow the rollout to every device; with "status", show the running or last campaign instead and follow it to its end.')
    .argument('<image|status>', 'firmware image file to push, or the word "status" to show and follow what the gateway is doing (an image file named status: ./status)')
    .requiredOption('-P, --port <tty>', 'serial port connected to the gateway, e.g. /dev/ttyUSB0')
    .option('-m, --manifest <file>', 'JSON manifest for the image (otherwise one is made from the image and the flags below)')
    .option('--name <name>', 'image name for a generated manifest (default: file name without extension)')
    .option('--version <semver>', 'image version for a generated manifest')
    .option('--image-version <semver>', 'same as --version')
    .option('--hw <models>', 'comma-separated hardware models for a generated manifest')
    .option('--chunk <bytes>', 'chunk size towards devices for a generated manifest', int('--chunk', r.chunk), s.deviceChunk)
    .option('--baud <rate>', 'serial baud rate', int('--baud', r.baud), s.baudRate)
    .option('--frame <bytes>', 'largest serial frame payload to offer', int('--frame', r.frame), s.maxFrame)
    .option('--window <frames>', 'ARQ window to offer', int('--window', r.window), s.window)
    .option('--timeout <seconds>', 'give up when the gateway is silent this long', int('--timeout', r.timeout), s.idleTimeoutMs / 1000)
    .option('--reconnect-timeout <seconds>', 'when the link is lost mid-push (cable pulled, port gone), keep reopening the port this long and resume; 0: exit at once',
      int('--reconnect-timeout', r.reconnectTimeout), s.reconnectTimeoutMs / 1000)
    .option('--no-local-check', 'do not check the image against --manifest before sending (the gateway always checks)')
    .option('--json', 'print one JSON object per event and a final summary line')
    .showHelpAfterError()
    .exitOverride();
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
  return { kind: 'run', opts: cmd.opts<Opts>(), target: cmd.args[0]! };
}
