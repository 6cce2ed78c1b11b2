import type { Command } from 'commander';
import { describeError, FwError } from '../protocol/errors.ts';
import { generatePassword, setDevicePassword } from './device-auth.ts';

/**
 * `fwgate device add <id> (--password <p> | --generate)`: writes the scrypt hash of the password
 * to the device list (`--devices` or broker.devicesFile of --config), never the password; with
 * --generate the new password goes to stdout. Exit 2 on a usage error, 1 when the file cannot be
 * written.
 */
export function addDeviceCommands(program: Command, devicesFile: (cmd: Command) => Promise<string | undefined>, setRun: (run: () => Promise<void>) => void): Command {
  const device = program.command('device').description('Manage the broker\'s device list (--devices or broker.devicesFile)');
  device.command('add <id>')
    .description('Add a device to the device list, or give it a new password; the file is created when missing')
    .option('--password <password>', 'the device\'s password (it stays in the shell history: prefer --generate)')
    .option('--generate', 'generate a random password and print it on stdout')
    .option('--group <name>', 'put the device in this group (repeat for several; replaces its groups; `fwpush --group` targets one)', (v: string, prev: string[] = []) => [...prev, v])
    .action((id: string, o: { password?: string; generate?: boolean; group?: string[] }, cmd: Command) => {
      setRun(() => addDevice(id, o, () => devicesFile(cmd)));
    });
  return device;
}

async function addDevice(id: string, opts: { password?: string; generate?: boolean; group?: string[] }, devicesFile: () => Promise<string | undefined>): Promise<void> {
  const usage = (msg: string): void => {
    process.stderr.write(`fwgate device add: ${msg}\n`);
    process.exitCode = 2;
  };
  if ((opts.password !== undefined) === (opts.generate === true)) return usage('give one of --password <password> and --generate');
  if (opts.password === '') return usage('--password must not be empty');
  const file = await devicesFile();
  if (!file) return usage('no device list: give --devices <file>, or --config with broker.devicesFile');
  const password = opts.password ?? generatePassword();
  try {
    const what = await setDevicePassword(file, id, password, undefined, opts.group);
    process.stderr.write(`fwgate: ${what === 'added' ? 'added' : 'new password for'} ${id} in ${file}\n`);
  } catch (err) {
    if (err instanceof FwError && err.code === 'E_USAGE') return usage(err.message);
    if (err instanceof Error && err.name === 'ZodError') return usage(`--group: ${describeError(err)}`);
    process.stderr.write(`fwgate: ${describeError(err)}\n`);
    process.exitCode = 1;
    return;
  }
  if (opts.generate) process.stdout.write(`${password}\n`);
}
