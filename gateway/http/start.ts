import { readFile } from 'node:fs/promises';
import { FwError } from '../../protocol/errors.ts';
import type { GatewayConfig } from '../config.ts';
import type { Gateway } from '../gateway.ts';
import { gatewayStatus } from './gateway-status.ts';
import { createMetrics } from './metrics.ts';
import { HttpListener } from './server.ts';

/**
 * Start the HTTP listener of a running gateway when http.port is set: the gateway's status
 * source, its metrics, the server. Resolves undefined when the listener is off.
 */
export async function startHttp(gw: Gateway, http: GatewayConfig['http']): Promise<{ url: string; stop(): Promise<void> } | undefined> {
  if (http.port === undefined) return undefined;
  const token = http.tokenFile ? await readToken(http.tokenFile) : http.token;
  const status = gatewayStatus(gw);
  const metrics = createMetrics(status.source, status.counters);
  let listener: HttpListener;
  try {
    listener = await HttpListener.start({ host: http.host, port: http.port, ...(token ? { token } : {}) }, status.source, metrics);
  } catch (err) {
    status.close();
    throw err;
  }
  return {
    url: listener.url,
    async stop() {
      status.close();
      await listener.close();
    },
  };
}

async function readToken(path: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (cause) {
    throw new FwError('E_CONFIG', `cannot read http.tokenFile ${path}: ${(cause as Error).message}`, { cause });
  }
  const token = text.split('\n')[0]!.trim();
  if (token.length < 16) throw new FwError('E_CONFIG', `http.tokenFile ${path}: the token (first line) must be at least 16 characters`);
  return token;
}
