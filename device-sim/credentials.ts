import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { FwError } from '../protocol/errors.ts';
import { formatIssues } from '../protocol/schema.ts';
import { isValidDeviceId } from '../protocol/topics.ts';

/**
 * How a simulated device logs in to the broker (docs/protocol.md §6.1.8): a password (the MQTT
 * user name is the device id) and, for mqtts, the CA that signed the broker's certificate and
 * optionally the device's own certificate (CN = device id) and key — all PEM files.
 */
export const deviceTlsSchema = z.strictObject({
  ca: z.string().min(1).optional(),
  cert: z.string().min(1).optional(),
  key: z.string().min(1).optional(),
}).refine((t) => (t.cert === undefined) === (t.key === undefined), { message: 'cert and key go together', path: ['cert'] });

export type DeviceTls = z.infer<typeof deviceTlsSchema>;

/** The MQTT.js connect options that carry the credentials; files are read at each connect (a renewed certificate is picked up). */
export function connectCredentials(id: string, o: { password?: string | undefined; tls?: DeviceTls | undefined }): {
  username?: string; password?: string; ca?: Buffer; cert?: Buffer; key?: Buffer;
} {
  return {
    ...(o.password !== undefined ? { username: id, password: o.password } : {}),
    ...(o.tls?.ca ? { ca: readFileSync(o.tls.ca) } : {}),
    ...(o.tls?.cert ? { cert: readFileSync(o.tls.cert) } : {}),
    ...(o.tls?.key ? { key: readFileSync(o.tls.key) } : {}),
  };
}

/** A credentials file for fwsim --credentials: a JSON object mapping device ids to passwords. */
const credentialsFileSchema = z.record(z.string().refine(isValidDeviceId, 'must be a valid device id'), z.string().min(1));

export function readCredentialsFile(path: string): Map<string, string> {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (cause) {
    throw new FwError('E_USAGE', `--credentials: cannot read ${path}: ${(cause as Error).message}`, { cause });
  }
  const r = credentialsFileSchema.safeParse(json);
  if (!r.success) throw new FwError('E_USAGE', `--credentials: ${path}: ${formatIssues(r.error)}`);
  return new Map(Object.entries(r.data));
}
