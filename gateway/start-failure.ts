import { describeError, FwError } from '../protocol/errors.ts';
import type { Logger } from './log.ts';

/** Errors of a listen() that mean the configuration must change: exit 2, as a bad config does. */
const LISTEN_CODES = new Set(['EADDRINUSE', 'EADDRNOTAVAIL', 'EACCES']);

/**
 * The gateway could not start: log the error with its cause chain (the listener's EADDRINUSE
 * stays visible), say it on stderr in one line, and exit — 2 for a configuration problem (a bad
 * value, an address in use or not available), 1 otherwise (docs/operations.md "Exit codes").
 */
export function startFailed(err: unknown, log: Logger): never {
  const code = errnoCode(err);
  const config = (err instanceof FwError && err.code === 'E_CONFIG') || (code !== undefined && LISTEN_CODES.has(code));
  const address = (err as { address?: string; port?: number }).address;
  const where = address !== undefined ? ` (${address}:${(err as { port?: number }).port ?? '?'})` : '';
  log.fatal({ err: describeError(err), ...(code ? { code } : {}), ...(err instanceof Error && err.cause ? { cause: describeError(err.cause) } : {}) }, 'gateway failed to start');
  const said = describeError(err);
  process.stderr.write(`fwgate: cannot start: ${said}${where}${code && !said.includes(code) ? ` (${code})` : ''}${code === 'EADDRINUSE' ? ' — another program (another fwgate?) listens there; stop it or choose another port' : ''}\n`);
  process.exit(config ? 2 : 1);
}

/** The errno code of an error or of the first error in its cause chain. */
function errnoCode(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && code.startsWith('E') && !code.startsWith('E_')) return code;
  }
  return undefined;
}
