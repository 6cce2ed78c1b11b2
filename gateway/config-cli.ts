import type { Command } from 'commander';
import { z } from 'zod';
import { describeError } from '../protocol/errors.ts';
import { brokerOptions } from './broker-setup.ts';
import { configSchema, loadConfigFile, parseConfig, type GatewayConfig } from './config.ts';

/** The JSON Schema of the config file, generated from the zod schema (what `fwgate config schema` prints; docs/config.schema.json is a copy). */
export function configJsonSchema(): Record<string, unknown> {
  return {
    ...z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }),
    title: 'fwgate configuration',
    description: 'The JSON config file of fwgate (--config). Every key, its default and meaning: docs/operations.md "Configuration reference".',
  };
}

/** The effective configuration for printing: secrets shown as set, not their value. */
export function printableConfig(config: GatewayConfig): GatewayConfig {
  return { ...config, http: { ...config.http, ...(config.http.token !== undefined ? { token: '(set)' } : {}) } };
}

/**
 * `fwgate config schema | check <file> | print`: the JSON Schema for editors, a validation that
 * starts nothing (also reads the files the config names: device list, TLS certificate and key),
 * and the effective configuration (defaults <- --config <- flags) as JSON. `check` exits 0 when
 * valid, 2 with the field and problem when not.
 */
export function addConfigCommands(program: Command, effective: (cmd: Command) => Promise<GatewayConfig>, setRun: (run: () => Promise<void>) => void): void {
  const config = program.command('config').description('The configuration: its JSON Schema, a check of a file, the effective settings');
  config.command('schema')
    .description('Print the JSON Schema of the config file (for editors; docs/config.schema.json is a copy)')
    .action(() => setRun(async () => {
      process.stdout.write(`${JSON.stringify(configJsonSchema(), null, 2)}\n`);
    }));
  config.command('check <file>')
    .description('Validate a config file and the files it names (device list, TLS files); starts nothing; exit 0 when valid, 2 when not')
    .action((file: string) => setRun(() => check(file)));
  config.command('print')
    .description('Print the effective configuration (defaults + --config file + flags) as JSON; http.token is shown as "(set)"')
    .action((_o: unknown, cmd: Command) => setRun(async () => {
      process.stdout.write(`${JSON.stringify(printableConfig(await effective(cmd)), null, 2)}\n`);
    }));
}

async function check(file: string): Promise<void> {
  try {
    const config = parseConfig(await loadConfigFile(file), file);
    await brokerOptions(config, () => undefined);
    process.stdout.write(`${file}: valid\n`);
  } catch (err) {
    process.stderr.write(`fwgate: ${describeError(err)}\n`);
    process.exitCode = 2;
  }
}
