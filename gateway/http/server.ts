import { timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Registry } from 'prom-client';
import { FwError } from '../../protocol/errors.ts';
import { isLoopback } from './loopback.ts';
import { STATUS_PAGE } from './page.ts';
import type { StatusEvents, StatusSource } from './status-source.ts';

export interface HttpOptions {
  host: string;
  port: number;
  /** Required on every route but /healthz when set: `Authorization: Bearer <token>` or `?token=<token>` (the page passes it on). */
  token?: string;
}

const SSE_EVENTS: (keyof StatusEvents)[] = ['campaign', 'order', 'progress', 'totals', 'result', 'complete', 'device'];

/**
 * fwgate's HTTP listener (docs/operations.md "HTTP: metrics, health, API, status page"): a reader
 * of the StatusSource and a subscriber of its events, nothing else. Routes: /metrics, /healthz,
 * /api/fleet, /api/campaigns, /api/campaigns/:id, /api/events (server-sent events) and the page.
 */
export class HttpListener {
  private constructor(private readonly app: FastifyInstance, readonly url: string) {}

  static async start(opts: HttpOptions, source: StatusSource, metrics: Registry): Promise<HttpListener> {
    if (!isLoopback(opts.host) && !opts.token) {
      throw new FwError('E_CONFIG', `http.host ${opts.host} is not loopback: set http.token (or http.tokenFile) so that only holders of the token can read the fleet`);
    }
    const app = Fastify({ logger: false, forceCloseConnections: true });
    const expected = opts.token ? Buffer.from(opts.token) : undefined;
    app.addHook('onRequest', async (req: FastifyRequest, reply: FastifyReply) => {
      if (!expected || req.url === '/healthz') return;
      const header = req.headers.authorization;
      const given = header?.startsWith('Bearer ') ? header.slice(7) : (req.query as { token?: string } | undefined)?.token;
      const ok = given !== undefined && Buffer.byteLength(given) === expected.length && timingSafeEqual(Buffer.from(given), expected);
      if (!ok) await reply.code(401).header('www-authenticate', 'Bearer').send({ error: 'a bearer token is required (http.token)' });
    });
    app.get('/metrics', async (_req, reply) => reply.type(metrics.contentType).send(await metrics.metrics()));
    app.get('/healthz', async (_req, reply) => {
      const h = await source.health();
      return reply.code(h.ok ? 200 : 503).send(h);
    });
    app.get('/api/fleet', async () => ({ now: Date.now(), devices: source.fleet() }));
    app.get('/api/campaigns', async () => ({ campaigns: await source.campaigns() }));
    app.get<{ Params: { id: string } }>('/api/campaigns/:id', async (req, reply) => {
      const c = await source.campaign(req.params.id);
      return c ? c : reply.code(404).send({ error: `no campaign ${req.params.id}` });
    });
    app.get('/api/events', (req, reply) => {
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
      res.write(': fwgate events\n\n');
      const offs = SSE_EVENTS.map((name) => {
        const fn = (data: unknown): void => {
          res.write(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`);
        };
        source.events.on(name, fn as never);
        return () => source.events.off(name, fn as never);
      });
      const ping = setInterval(() => res.write(': ping\n\n'), 15_000);
      req.raw.once('close', () => {
        clearInterval(ping);
        for (const off of offs) off();
      });
    });
    app.get('/', async (_req, reply) => reply.type('text/html; charset=utf-8').header('cache-control', 'no-store').send(STATUS_PAGE));
    try {
      await app.listen({ host: opts.host, port: opts.port });
    } catch (err) {
      await app.close();
      const code = (err as NodeJS.ErrnoException).code;
      throw new FwError('E_CONFIG', `HTTP listener cannot listen on ${opts.host}:${opts.port}: ${code === 'EADDRINUSE' ? 'the address is in use (another fwgate, or http.port taken)' : (err as Error).message}`, { cause: err });
    }
    const addr = app.server.address();
    const port = typeof addr === 'object' && addr ? addr.port : opts.port;
    const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
    return new HttpListener(app, `http://${host}:${port}`);
  }

  async close(): Promise<void> {
    await this.app.close();
  }
}
