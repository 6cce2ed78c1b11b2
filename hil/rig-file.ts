import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { FwError } from '../protocol/errors.ts';
import { formatIssues } from '../protocol/schema.ts';
import { isValidDeviceId } from '../protocol/topics.ts';

/**
 * The rig file (docs/hil.md "The rig file"): what the HIL runner drives. JSON, validated here;
 * every error names the field (`devices.2.power.off: Invalid input: expected string, received
 * undefined`). Paths in the rig file are relative to its folder (what goes to fwgate unchanged —
 * `gateway.local.config` and `args` — is read by fwgate from the project root). Shell commands run with `sh -c` in that folder and get the HIL_* environment
 * (hil/shell.ts), so one command line can serve every device.
 */

const command = z.string().min(1, 'must be a shell command');
const path = z.string().min(1, 'must be a path');
const hwModel = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'must be a hardware model name (letters, digits, ".", "_", "-")');
const ms = (max: number) => z.number().int('must be whole milliseconds').min(0).max(max);

const consoleSpec = z.union([
  z.strictObject({
    /** A console UART (USB-serial adapter), e.g. /dev/serial/by-id/usb-FTDI_...-if00-port0. */
    port: path,
    baud: z.number().int().min(50).max(16_000_000).default(115_200),
  }),
  z.strictObject({
    /** A file the console is written to (the simulated rig: the fwsim process's output). */
    file: path,
  }),
]);

const deviceSpec = z.strictObject({
  id: z.string().refine(isValidDeviceId, 'must be a device id (letters, digits, ".", "_", "-"; at most 64)'),
  hw: hwModel,
  power: z.strictObject({
    /** Switch the board's power on (relay, `uhubctl -a on`, lab supply over SCPI, ...). */
    on: command,
    /** Switch it off: this is the power cut. */
    off: command,
  }),
  console: consoleSpec.optional(),
  /**
   * Regular expression that, seen on the console, means "booted": waited for (bootMs) after every
   * power-on inside a scenario, and noted on its timeline whether it came.
   */
  booted: z.string().min(1).superRefine((v, ctx) => {
    try {
      new RegExp(v);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: `not a regular expression: ${(err as Error).message}` });
    }
  }).optional(),
});

const gatewaySpec = z.union([
  z.strictObject({
    /** Start fwgate on this machine, as its own process, for the run. */
    local: z.strictObject({
      /** The gateway's end of the laptop link; omit with `laptop.pty` (the runner makes the pair). */
      serial: path.optional(),
      /** MQTT listen address and port the devices reach (0: any free port). */
      host: z.string().min(1).default('127.0.0.1'),
      port: z.number().int().min(0).max(65_535).default(0),
      /** Extra fwgate configuration (gateway/config.ts), merged under what the runner sets. */
      config: z.record(z.string(), z.unknown()).default({}),
      /** Extra fwgate flags. */
      args: z.array(z.string()).default([]),
    }),
  }),
  z.strictObject({
    /** A gateway already running elsewhere: the broker URL its devices use. */
    remote: z.strictObject({
      broker: z.string().regex(/^(mqtts?|tcp|tls):\/\/[^/]+$/, 'must be a broker URL such as mqtt://192.168.10.1:1883'),
      /** How to restart it (scenario gateway-restart); without it that scenario is skipped. */
      restart: command.optional(),
    }),
  }),
]);

const laptopSpec = z.strictObject({
  /** The laptop's serial port towards the gateway; with `pty` the runner makes it. */
  port: path.optional(),
  /**
   * Make the link in the work folder (the simulated rig): a socat pty pair, or with `baud` an
   * emulated UART at that rate (two pty pairs and a pacing relay, hil/uart-cable.ts); unplug =
   * the cable's processes killed, both ttys gone.
   */
  pty: z.boolean().default(false),
  /** fwpush --baud; with `pty`, the emulated UART's rate. */
  baud: z.number().int().min(50).max(16_000_000).optional(),
  /** Technician key fwpush authenticates with (omit with keys.generate). */
  techKey: path.optional(),
  /** Pull the cable (e.g. `uhubctl -l 1-1 -p 4 -a off`); with `plug`, enables scenario laptop-unplug. */
  unplug: command.optional(),
  plug: command.optional(),
}).refine((l) => l.pty || l.port !== undefined, { message: 'give the laptop\'s serial port, or "pty": true for a socat pty pair', path: ['port'] })
  .refine((l) => (l.unplug === undefined) === (l.plug === undefined), { message: 'unplug and plug go together', path: ['plug'] });

const imagesSpec = z.strictObject({
  name: z.string().min(1).max(64).default('sensor-fw'),
  /**
   * `sample`: images in the firmware-samples format (what fwsim runs), made by the runner.
   * `command`: a shell command that writes the image for HIL_VERSION and HIL_VARIANT (good |
   * selftest-fail) of HIL_HW to HIL_OUT — your firmware build, for real boards.
   */
  make: z.union([
    z.strictObject({ sample: z.strictObject({ size: z.number().int().min(1024).max(64 * 1024 * 1024).default(256 * 1024) }) }),
    z.strictObject({ command }),
  ]),
  /** Vendor signing key (Ed25519 PEM) for the manifests; omit with keys.generate. */
  signKey: path.optional(),
});

const timeoutsSpec = z.strictObject({
  /** One scenario, end to end. */
  scenarioMs: ms(3_600_000).default(180_000),
  /** A power command, a plug command, an image command. */
  commandMs: ms(600_000).default(30_000),
  /** How long a board stays off in a power cut. */
  powerOffMs: ms(600_000).default(1_000),
  /** Power-on until it is back online at the gateway (and its `booted` line seen). */
  bootMs: ms(600_000).default(60_000),
  /** How long the cable stays out in laptop-unplug. */
  unplugMs: ms(600_000).default(1_500),
}).default({ scenarioMs: 180_000, commandMs: 30_000, powerOffMs: 1_000, bootMs: 60_000, unplugMs: 1_500 });

export const rigFileSchema = z.strictObject({
  name: z.string().min(1).max(80),
  gateway: gatewaySpec,
  laptop: laptopSpec,
  images: imagesSpec,
  /**
   * `generate`: make a throw-away vendor key and technician key in the work folder; a local
   * gateway trusts them and the commands get their paths (HIL_VENDOR_PUB, ...). Off: bring
   * laptop.techKey and images.signKey, trusted by your gateway and boards.
   */
  keys: z.strictObject({ generate: z.boolean() }).default({ generate: false }),
  devices: z.array(deviceSpec).min(1, 'must list at least one device').max(256),
  timeouts: timeoutsSpec,
  /**
   * Run once before anything else; a non-zero exit skips the whole suite with its stderr as the
   * reason (e.g. the network-namespace rig when not root).
   */
  preflight: command.optional(),
  /** Run once at the end, after every board is off and the gateway stopped. */
  teardown: command.optional(),
})
  .superRefine((r, ctx) => {
    const seen = new Set<string>();
    r.devices.forEach((d, i) => {
      if (seen.has(d.id)) ctx.addIssue({ code: 'custom', message: `device id "${d.id}" listed twice`, path: ['devices', i, 'id'] });
      seen.add(d.id);
      if (d.booted !== undefined && d.console === undefined) ctx.addIssue({ code: 'custom', message: 'a booted pattern needs a console to watch', path: ['devices', i, 'booted'] });
    });
    if (!r.keys.generate) {
      if (r.laptop.techKey === undefined) ctx.addIssue({ code: 'custom', message: 'give the technician key (or keys.generate)', path: ['laptop', 'techKey'] });
      if (r.images.signKey === undefined) ctx.addIssue({ code: 'custom', message: 'give the vendor signing key (or keys.generate)', path: ['images', 'signKey'] });
    }
    if (r.laptop.pty && 'remote' in r.gateway) ctx.addIssue({ code: 'custom', message: 'a pty cable needs the local gateway at its other end', path: ['laptop', 'pty'] });
    const models = [...new Set(r.devices.map((d) => d.hw))];
    if (models.length > 1) ctx.addIssue({ code: 'custom', message: `one hardware model per rig (one image per push), got ${models.join(', ')}: make a rig file per model`, path: ['devices'] });
    if (r.keys.generate && 'remote' in r.gateway) ctx.addIssue({ code: 'custom', message: 'generated keys need a local gateway that trusts them', path: ['keys', 'generate'] });
    if (r.laptop.pty && 'local' in r.gateway && r.gateway.local.serial !== undefined) {
      ctx.addIssue({ code: 'custom', message: 'with laptop.pty the runner makes the gateway\'s end; leave serial out', path: ['gateway', 'local', 'serial'] });
    }
    if (!r.laptop.pty && 'local' in r.gateway && r.gateway.local.serial === undefined) {
      ctx.addIssue({ code: 'custom', message: 'the gateway\'s serial port (or laptop.pty)', path: ['gateway', 'local', 'serial'] });
    }
  });

export type RigFile = z.output<typeof rigFileSchema>;
export type RigDevice = RigFile['devices'][number];

/** A parsed rig file, with the folder its relative paths and commands start from. */
export interface LoadedRig {
  file: RigFile;
  /** Absolute path of the rig file. */
  path: string;
  /** Its folder: relative paths resolve here; commands run here. */
  dir: string;
}

/** Validate a rig object; FwError E_RIG naming each bad field. `source` names it in messages. */
export function parseRig(raw: unknown, source: string): RigFile {
  const r = rigFileSchema.safeParse(raw);
  if (!r.success) throw new FwError('E_RIG', `${source}: ${formatIssues(r.error)}`);
  return r.data;
}

/** Read and validate a rig file. */
export async function loadRigFile(file: string): Promise<LoadedRig> {
  const abs = resolve(file);
  let text: string;
  try {
    text = await readFile(abs, 'utf8');
  } catch (err) {
    throw new FwError('E_RIG', `cannot read rig file ${abs}: ${(err as Error).message}`, { cause: err });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new FwError('E_RIG', `rig file ${abs} is not JSON: ${(err as Error).message}`, { cause: err });
  }
  return { file: parseRig(raw, `rig file ${abs}`), path: abs, dir: dirname(abs) };
}

/** A path of the rig file, made absolute from the rig's folder. */
export function rigPath(rig: LoadedRig, p: string): string {
  return isAbsolute(p) ? p : resolve(rig.dir, p);
}
