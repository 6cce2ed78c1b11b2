import { pino, type Logger as PinoLogger } from 'pino';
import pretty from 'pino-pretty';

export type Logger = PinoLogger;

/**
 * Structured logs: JSON lines for machines, or pretty one-liners for a person at the console.
 * Written synchronously to stderr so the last lines survive a crash.
 */
export function createLogger(opts: { level: string; format: 'pretty' | 'json'; name?: string; destination?: NodeJS.WritableStream }): Logger {
  const base = { level: opts.level, name: opts.name ?? 'fwgate', base: undefined };
  if (opts.format === 'json') return pino(base, opts.destination ?? pino.destination({ fd: 2, sync: true }));
  return pino(base, pretty({
    sync: true,
    destination: opts.destination ?? 2,
    colorize: false,
    translateTime: 'HH:MM:ss.l',
    ignore: 'pid,hostname,name',
    singleLine: true,
  }));
}

export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
