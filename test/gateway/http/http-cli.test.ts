import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Fleet as SimFleet } from '../../../device-sim/fleet.ts';
import { startTs, type Proc } from '../../../scripts/lib/processes.ts';
import { runEntry } from '../../helpers/run-entry.ts';
import { waitUntil } from '../../helpers/wait.ts';

/** One metric's value from a Prometheus text exposition. */
function metric(text: string, name: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.split(' ')[1]);
}

describe('fwgate --http-port (a real process)', function () {
  this.timeout(90_000);
  let dir: string;
  let gw: Proc | undefined;
  let sims: SimFleet | undefined;
  let blocker: Server | undefined;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fwgate-http-'));
  });
  afterEach(async () => {
    await sims?.stop();
    sims = undefined;
    await gw?.stop();
    gw = undefined;
    await new Promise<void>((resolve) => (blocker ? blocker.close(() => resolve()) : resolve()));
    blocker = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  it('prints its URL; /metrics counts the connected devices, /healthz is 200, the API lists the fleet', async () => {
    gw = startTs('fwgate', 'gateway/cli.ts', ['--data', join(dir, 'gw'), '--port', '0', '--http-port', '0', '--log-level', 'warn']);
    const broker = (await gw.waitForLine(/^fwgate ready: broker /, 30_000)).replace(/^fwgate ready: broker /, '');
    const url = (await gw.waitForLine(/^fwgate http: http:\/\/127\.0\.0\.1:\d+$/, 30_000)).replace(/^fwgate http: /, '');
    const scrape = async (): Promise<string> => (await fetch(`${url}/metrics`)).text();
    assert.equal(metric(await scrape(), 'fwgate_devices_online'), 0);

    sims = new SimFleet({ broker, count: 3, dataDir: join(dir, 'sims'), device: { hw: 'sensor-v1', factoryVersion: '1.0.0', factoryImageSize: 4096 } });
    await sims.start();
    await waitUntil(async () => metric(await scrape(), 'fwgate_devices_online') === 3, 20_000, 'fwgate_devices_online 3', 100);
    const text = await scrape();
    assert.equal(metric(text, 'fwgate_devices_known'), 3);
    assert.equal(metric(text, 'fwgate_broker_clients'), 3);
    assert.ok(metric(text, 'fwgate_nodejs_eventloop_lag_seconds') !== undefined, 'event-loop lag');
    assert.ok(metric(text, 'fwgate_process_cpu_seconds_total') !== undefined, 'process metrics');
    assert.match(text, /^fwgate_campaigns\{state="running"\} 0$/m);

    const health = await fetch(`${url}/healthz`);
    assert.equal(health.status, 200);
    assert.deepEqual(await health.json(), { ok: true, checks: { broker: { ok: true }, store: { ok: true }, journal: { ok: true } } });
    const fleet = await (await fetch(`${url}/api/fleet`)).json() as { devices: { id: string; online: boolean; slot: string }[] };
    assert.deepEqual(fleet.devices.map((d) => [d.online, d.slot]), [[true, 'a'], [true, 'a'], [true, 'a']]);
    assert.deepEqual(await (await fetch(`${url}/api/campaigns`)).json(), { campaigns: [] });
    assert.equal((await fetch(`${url}/api/campaigns/c-00000000`)).status, 404);
    const page = await fetch(`${url}/`);
    assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
    assert.doesNotMatch(await page.text(), /https?:\/\//, 'the page loads nothing from elsewhere');

    await sims.devices[0]!.stop();
    await waitUntil(async () => metric(await scrape(), 'fwgate_devices_online') === 2, 20_000, 'fwgate_devices_online 2', 100);
  });

  it('with a token, every route but /healthz needs it (header or ?token=)', async () => {
    const token = 'abcdefghijklmnop-0123';
    await import('node:fs/promises').then((fs) => fs.writeFile(join(dir, 'cfg.json'), JSON.stringify({ http: { token } })));
    gw = startTs('fwgate', 'gateway/cli.ts', ['--config', join(dir, 'cfg.json'), '--data', join(dir, 'gw'), '--port', '0', '--http-port', '0', '--log-level', 'warn']);
    const url = (await gw.waitForLine(/^fwgate http: /, 30_000)).replace(/^fwgate http: /, '');
    assert.equal((await fetch(`${url}/metrics`)).status, 401);
    assert.equal((await fetch(`${url}/metrics`, { headers: { authorization: 'Bearer wrong-token-0000000' } })).status, 401);
    assert.equal((await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${token}` } })).status, 200);
    assert.equal((await fetch(`${url}/api/fleet?token=${token}`)).status, 200);
    assert.equal((await fetch(`${url}/healthz`)).status, 200);
  });

  it('a non-loopback http.host without a token is a config error (exit 2)', async () => {
    const r = await runEntry('gateway/cli.ts', ['--data', join(dir, 'gw'), '--port', '0', '--http-port', '0', '--http-host', '0.0.0.0']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /http\.token: 0\.0\.0\.0 is not loopback: set http\.token or http\.tokenFile/);
  });

  it('a port in use: the cause (EADDRINUSE) is logged and said, exit 2', async () => {
    blocker = createServer();
    await new Promise<void>((resolve) => blocker!.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as { port: number }).port;
    for (const args of [['--port', String(port)], ['--port', '0', '--http-port', String(port)]]) {
      const r = await runEntry('gateway/cli.ts', ['--data', join(dir, 'gw'), '--log-format', 'json', ...args]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /EADDRINUSE/, args.join(' '));
      assert.match(r.stderr, /fwgate: cannot start: .*another program/, args.join(' '));
    }
  });
});
