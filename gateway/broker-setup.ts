import { readFile } from 'node:fs/promises';
import { FwError } from '../protocol/errors.ts';
import type { BrokerOptions } from './broker.ts';
import type { GatewayConfig } from './config.ts';
import { FailureBackoff, ScryptLimiter } from './auth-guard.ts';
import { checkExposure } from './broker-exposure.ts';
import { DeviceCredentials } from './device-auth.ts';
import { LoginCache } from './login-cache.ts';
import { join } from 'node:path';

/**
 * The broker's options from the `broker` section of the config: the device list opened, the TLS
 * files read. `requireAuth` defaults to whether a device list is configured (docs/operations.md
 * "Device credentials"). A missing or invalid file is E_CONFIG.
 */
export async function brokerOptions(config: GatewayConfig, logger: (line: string) => void): Promise<BrokerOptions> {
  const b = config.broker;
  const limiter = new ScryptLimiter(b.maxConcurrentScrypt, b.maxQueuedScrypt);
  // verified logins survive a restart (docs/security.md "Reconnect storms"), unless turned off
  const logins = b.devicesFile && b.persistLogins ? await LoginCache.open(join(config.dataDir, 'verified-logins.json'), { log: logger }) : undefined;
  const credentials = b.devicesFile ? await DeviceCredentials.open(b.devicesFile, { log: logger, limiter, ...(logins ? { logins } : {}) }) : undefined;
  const backoff = new FailureBackoff({ baseMs: b.authBackoffMs, maxMs: b.authBackoffMaxMs });
  const requireAuth = b.requireAuth ?? (credentials !== undefined || (b.tls?.ca !== undefined && b.tls.requestCert));
  const file = async (what: string, path: string): Promise<Buffer> => {
    try {
      return await readFile(path);
    } catch (cause) {
      throw new FwError('E_CONFIG', `broker.tls.${what}: cannot read ${path}: ${(cause as Error).message}`, { cause });
    }
  };
  const tls = b.tls && {
    ...(b.tls.host ? { host: b.tls.host } : {}),
    port: b.tls.port,
    cert: await file('cert', b.tls.cert),
    key: await file('key', b.tls.key),
    ...(b.tls.ca ? { ca: await file('ca', b.tls.ca) } : {}),
    requestCert: b.tls.requestCert,
  };
  for (const line of checkExposure(b).warnings) logger(`broker: ${line}`);
  return {
    host: b.host, port: b.port, plain: b.plain !== false, maxPacketBytes: b.maxPacketBytes, maxClients: b.maxClients,
    connectRatePerMin: b.connectRatePerMin,
    publishRate: { perSec: b.publishRatePerSec, burst: b.publishBurst, dropLimit: b.publishDropLimit },
    refusalLogIntervalMs: b.refusalLogIntervalMs,
    access: { requireAuth, backoff, ...(credentials ? { credentials } : {}) },
    ...(tls ? { tls } : {}),
    logger,
  };
}
