import { chmod, unlink } from 'node:fs/promises';
import { createConnection, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { z } from 'zod';
import { describeError, FwError, isFwError } from '../protocol/errors.ts';
import { formatIssues } from '../protocol/schema.ts';
import { RetryOutcomes, waveSize } from '../protocol/uplink.ts';

/**
 * The gateway's control socket (docs/operations.md "Campaign control on the host"): a Unix domain
 * socket `<dataDir>/fwgate.sock`, mode 0600, so only the user the gateway runs as (and root) can
 * cancel, retry or resume a campaign from the host (`fwgate campaign cancel <id>` …). One JSON
 * request per line, one JSON answer per line. The serial link's technician authorisation is not
 * needed here: access to the gateway's data directory is the operator's authority.
 */
export const CONTROL_SOCKET = 'fwgate.sock';

const campaignId = z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'a campaign id');
export const controlRequest = z.discriminatedUnion('op', [
  z.strictObject({ op: z.literal('cancel'), campaign: campaignId }),
  z.strictObject({ op: z.literal('resume'), campaign: campaignId }),
  z.strictObject({ op: z.literal('retry'), campaign: campaignId, outcomes: z.array(z.enum(RetryOutcomes)).min(1), policy: z.enum(['now', 'window']).optional(), force: z.boolean().optional() }),
  // `fwgate release live <name> <version>` (docs/operations.md "Releases")
  z.strictObject({
    op: z.literal('release-live'), release: z.string().min(1).max(64), version: z.string().min(1).max(64),
    policy: z.enum(['now', 'window']).optional(), force: z.boolean().optional(), downgrade: z.boolean().optional(),
    only: z.array(z.string().min(1).max(64)).min(1).optional(), group: z.string().min(1).max(64).optional(), waves: z.array(waveSize).min(1).max(16).optional(),
    waveGate: z.number().int().min(1).max(100).optional(), wavePause: z.boolean().optional(),
  }),
]);
export type ControlRequest = z.infer<typeof controlRequest>;
export type ControlAnswer = { ok: true; campaign: string } | { ok: false; code: string; message: string };

/** Serve the control socket; `act` carries a request out (throws FwError to refuse it). */
export async function serveControl(dataDir: string, act: (r: ControlRequest) => Promise<string>, log: (msg: string) => void): Promise<{ close(): Promise<void> }> {
  const path = join(dataDir, CONTROL_SOCKET);
  await unlink(path).catch(() => undefined); // a socket left by a crash
  const server: Server = createServer((sock) => {
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('error', () => undefined);
    sock.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > 64 * 1024) return sock.destroy();
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      const line = buf.slice(0, nl);
      buf = '';
      void answer(line).then((a) => sock.end(`${JSON.stringify(a)}\n`));
    });
  });
  const answer = async (line: string): Promise<ControlAnswer> => {
    let req: ControlRequest;
    try {
      const r = controlRequest.safeParse(JSON.parse(line));
      if (!r.success) return { ok: false, code: 'E_USAGE', message: `control request: ${formatIssues(r.error)}` };
      req = r.data;
    } catch (err) {
      return { ok: false, code: 'E_USAGE', message: `control request is not JSON: ${(err as Error).message}` };
    }
    try {
      const campaign = await act(req);
      log(`control: ${req.op} ${req.op === 'release-live' ? `${req.release} ${req.version}` : req.campaign} -> ${campaign}`);
      return { ok: true, campaign };
    } catch (err) {
      return { ok: false, code: isFwError(err) ? err.code : 'E_CONFIG', message: describeError(err) };
    }
  };
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  await chmod(path, 0o600);
  return {
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      void unlink(path).catch(() => undefined);
    }),
  };
}

/** Send one request to a running gateway's control socket (the host CLI). E_LINK_CLOSED when none answers. */
export function controlCall(dataDir: string, req: ControlRequest, timeoutMs = 30_000): Promise<ControlAnswer> {
  const path = join(dataDir, CONTROL_SOCKET);
  return new Promise((resolve, reject) => {
    const sock = createConnection(path);
    let buf = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new FwError('E_LINK_TIMEOUT', `no answer from the gateway's control socket ${path} within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(`${JSON.stringify(req)}\n`));
    sock.on('data', (c: string) => { buf += c; });
    sock.on('error', (err) => {
      clearTimeout(timer);
      reject(new FwError('E_LINK_CLOSED', `no gateway is running on ${dataDir} (control socket ${path}: ${(err as NodeJS.ErrnoException).code ?? err.message})`, { cause: err }));
    });
    sock.on('end', () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(buf) as ControlAnswer);
      } catch (err) {
        reject(new FwError('E_LINK_CLOSED', `the gateway's control socket answered no JSON: ${buf.slice(0, 200)}`, { cause: err }));
      }
    });
  });
}
