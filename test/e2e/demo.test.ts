import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { startTs } from '../../scripts/lib/processes.ts';
import { runEntry, type EntryRun } from '../helpers/run-entry.ts';

/** Run a project entry point as a real process; bounded. */
function run(args: string[], timeoutMs: number): Promise<EntryRun> {
  return runEntry(args[0]!, args.slice(1), { timeoutMs });
}

describe('end to end: real processes (fwgate, fwsim, fwpush) over a socat pty and TCP', function () {
  this.timeout(180_000);

  it('npm run demo -- --devices 6 --json ends with every device updated and a summary line', async () => {
    const r = await run(['scripts/demo.ts', '--devices', '6', '--json'], 150_000);
    assert.equal(r.code, 0, `demo exit code; stderr:\n${r.stderr}`);
    const lines = r.stdout.trim().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
    const summary = lines.at(-1)!;
    assert.equal(summary.event, 'summary');
    assert.equal(summary.ok, true);
    assert.equal(summary.devices, 6);
    assert.equal(summary.updated, 6);
    assert.equal(summary.failed, 0);
    assert.equal(summary.skipped, 0);
    const order = lines.find((l) => l.event === 'order') as { devices: { id: string }[] } | undefined;
    assert.ok(order, 'an order event');
    assert.deepEqual(summary.order, order.devices.map((d) => d.id));
    assert.equal((summary.order as string[]).length, 6);
    const results = lines.filter((l) => l.event === 'result');
    assert.equal(results.length, 6);
    assert.ok(results.every((x) => x.outcome === 'updated' && x.to === '1.1.0'));
  });

  it('npm run demo -- --devices 6 --release --json: a two-component release, the devices that had its net get only app (checked on their files)', async () => {
    const r = await run(['scripts/demo.ts', '--devices', '6', '--release', '--json'], 170_000);
    assert.equal(r.code, 0, `demo exit code; stderr:\n${r.stderr}`);
    const lines = r.stdout.trim().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
    const summary = lines.at(-1)!;
    assert.equal(summary.event, 'summary');
    assert.equal(summary.updated, 6);
    assert.equal(summary.failed, 0);
    // 3 of the 6 already ran the release's net: 3 x app + 3 x (app, net) sent, 3 net skipped
    assert.equal(summary.componentsSkipped, 3);
    assert.equal(summary.componentsSent, 9);
    const order = lines.find((l) => l.event === 'order') as { devices: { id: string; components: { name: string }[]; savedBytes: number }[] };
    const gets = order.devices.map((d) => d.components.map((c) => c.name).join('+')).sort();
    assert.deepEqual(gets, ['app', 'app', 'app', 'app+net', 'app+net', 'app+net']);
    assert.ok(order.devices.every((d) => (d.components.length === 1) === (d.savedBytes > 0)), 'bytes saved exactly where net is skipped');
    // the demo's own check read every device's state.json and slot files (scripts/lib/demo-release.ts)
    assert.match(r.stderr, /checked on the devices' own files: 6\/6 run app 1\.1\.0 and net 1\.5\.0 of the release/);
  });

  it('fwpush: a missing version for a generated manifest is a usage error (exit 2) naming the flags', async () => {
    const r = await run(['laptop/cli.ts', '--port', '/nonexistent/tty', 'package.json'], 30_000);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--version.*--hw/);
  });

  it('fwpush: a serial port that cannot be opened exits 5 naming the port', async () => {
    const r = await run(['laptop/cli.ts', '--port', '/nonexistent/tty', 'package.json', '--image-version', '1.0.0', '--hw', 'x'], 30_000);
    assert.equal(r.code, 5);
    assert.match(r.stderr, /\/nonexistent\/tty/);
  });

  it('fwpush --json reports errors as a JSON line', async () => {
    const r = await run(['laptop/cli.ts', '--json', '--port', '/nonexistent/tty', 'no-such-image.bin', '--version', '1.0.0', '--hw', 'x'], 30_000);
    assert.equal(r.code, 2);
    const last = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { event: string; message: string };
    assert.equal(last.event, 'error');
    assert.match(last.message, /no-such-image\.bin/);
  });

  it('fwgate: a bad flag value exits 2 naming the field', async () => {
    const r = await run(['gateway/cli.ts', '--port', '99999', '--data', '/tmp/fwgate-never-created'], 30_000);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /broker\.port/);
  });

  it('fwgate: serves MQTT on the port it prints and stops cleanly on SIGTERM (exit 0, clients closed)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fwgate-e2e-'));
    const gw = startTs('fwgate', 'gateway/cli.ts', ['--data', dir, '--host', '127.0.0.1', '--port', '0', '--log-format', 'json']);
    try {
      const ready = await gw.waitForLine(/^fwgate ready: broker mqtt:\/\/127\.0\.0\.1:\d+$/, 30_000);
      const url = ready.split(' ').at(-1)!;
      const client = await mqtt.connectAsync(url, { protocolVersion: 4, clientId: 'probe-1', reconnectPeriod: 0, connectTimeout: 5000 });
      const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
      gw.child.kill('SIGTERM');
      assert.equal(await gw.exited, 0);
      await closed;
      client.end(true);
    } finally {
      await gw.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
