import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { SerialPort } from 'serialport';
import type { Manifest } from '../../protocol/manifest.ts';
import type { LaptopMessage } from '../../protocol/uplink.ts';
import { createPtyPair, type PtyPair } from '../../scripts/lib/pty-pair.ts';
import { closeSerialPort, openSerialPort } from '../../transport/serial-port.ts';
import { Rig, sampleImage } from '../helpers/rig.ts';
import { bounded } from '../helpers/wait.ts';
import { jsonLines, startFwpush } from '../laptop/run-fwpush.ts';

/**
 * A cable pulled while fwpush runs (docs/operations.md, "Cable pulled"): the socat process that
 * is the cable is killed, so the laptop's tty vanishes and its port fails; a new pty pair is made
 * at the same paths and the gateway is attached to its end, as if the cable were plugged back.
 * fwpush is a real process with --json; the gateway, its store and the devices are the rig's.
 */
describe('integration: fwpush survives a pulled cable (real pty pair, gateway, simulated devices)', function () {
  this.timeout(120_000);
  let rig: Rig | undefined;
  let cable: { pty: PtyPair; port: SerialPort } | undefined;

  afterEach(async () => {
    if (cable) {
      await closeSerialPort(cable.port).catch(() => undefined);
      await cable.pty.close().catch(() => undefined);
      cable = undefined;
    }
    await rig?.stop();
    rig = undefined;
  });

  /** A rig whose laptop end is left free for fwpush, and an image with its manifest in files. */
  async function setUp(devices: number, version: string): Promise<{ rig: Rig; image: Buffer; manifest: Manifest; args: string[] }> {
    const r = await Rig.start({ devices });
    r.laptopLink.close();
    await closeSerialPort(r.laptopPort);
    const { image, manifest } = sampleImage({ version, size: 512 * 1024 });
    const imagePath = join(r.dir, `sensor-fw-${version}.bin`);
    const manifestPath = join(r.dir, `sensor-fw-${version}.json`);
    await writeFile(imagePath, image);
    await writeFile(manifestPath, JSON.stringify(manifest));
    return { rig: r, image, manifest, args: ['--port', r.pty.b, '--tech-key', r.techKeyPath, imagePath, '--manifest', manifestPath, '--json'] };
  }

  /** Resolves at the first message the gateway's current uplink receives that matches. */
  function gatewayReceives(r: Rig, match: (m: LaptopMessage) => boolean, timeoutMs = 60_000): Promise<void> {
    const link = r.gateway.uplinkLink!;
    let on: ((m: LaptopMessage) => void) | undefined;
    return bounded(new Promise<void>((resolve) => {
      on = (m: LaptopMessage): void => {
        if (match(m)) resolve();
      };
      link.on('message', on);
    }), timeoutMs, 'the gateway to receive the awaited uplink message').finally(() => link.off('message', on!));
  }

  /** Pull the cable: the gateway stops reading (so the cut lands where it was seen), then socat dies. */
  async function pullCable(r: Rig): Promise<void> {
    r.gatewayPort.pause();
    await r.pty.close();
  }

  /** Plug a new cable: a pty pair at the same paths; the gateway serves its end. Returns what the gateway then receives. */
  async function plugCable(r: Rig): Promise<LaptopMessage[]> {
    const pty = await createPtyPair(r.dir);
    assert.equal(pty.b, r.pty.b, 'the laptop end is at the same path');
    const port = await openSerialPort(pty.a, 921_600);
    cable = { pty, port };
    r.gateway.attachUplink(port);
    const received: LaptopMessage[] = [];
    r.gateway.uplinkLink!.on('message', (m) => received.push(m));
    return received;
  }

  const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

  it('cable pulled mid-upload: fwpush reconnects, resumes from the gateway\'s offset and completes the rollout in one run', async () => {
    const s = await setUp(2, '1.1.0');
    rig = s.rig;
    const size = s.image.length;
    const midway = gatewayReceives(rig, (m) => m.t === 'data' && m.off >= size * 0.3);
    const run = startFwpush(s.args, 90_000);
    await Promise.race([midway, run.exited.then((r) => assert.fail(`fwpush ended before the cable was pulled (${r.code})\n${r.stdout}\n${r.stderr}`))]);
    await pullCable(rig);
    await run.saw(/"event":"link-lost"/);
    await pause(500);
    const received = await plugCable(rig);

    const r = await run.exited;
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    const lines = jsonLines(r.stdout);
    const lost = lines.find((l) => l.event === 'link-lost');
    assert.deepEqual([lost?.port, lost?.phase, lost?.code], [rig.pty.b, 'upload', 'E_LINK_CLOSED']);
    assert.equal(lines.filter((l) => l.event === 'reconnected').length, 1);
    const resumed = lines.find((l) => l.event === 'upload-resumed') as { offset: number; size: number; sha256: string } | undefined;
    assert.ok(resumed, 'an upload-resumed line');
    assert.deepEqual([resumed.sha256, resumed.size], [s.manifest.sha256, size]);
    assert.ok(resumed.offset > 0 && resumed.offset < size, `resumed at ${resumed.offset} of ${size}`);

    // What crossed the new cable: a request to send for the same digest, authorised with the new
    // hello's challenge (docs/protocol.md §7.2.4: counter 1 again), then only the rest of the image.
    const rts = received.filter((m) => m.t === 'rts');
    assert.equal(rts.length, 1);
    assert.equal(rts[0]!.t === 'rts' && rts[0]!.manifest.sha256, s.manifest.sha256);
    assert.deepEqual(rts[0]!.t === 'rts' && [rts[0]!.auth?.keyId, rts[0]!.auth?.n], [rig.techKey.keyId, 1], 'fwpush signed its request with the new session');
    assert.ok(!received.some((m) => m.t === 'auth'), 'no session-wide auth to a gateway of this version');
    const data = received.filter((m): m is Extract<LaptopMessage, { t: 'data' }> => m.t === 'data');
    assert.equal(data[0]?.off, resumed.offset, 'the first chunk after the reconnect is at the granted offset');
    const sentAfter = data.reduce((n, m) => n + m.data.length, 0);
    assert.equal(sentAfter, size - resumed.offset);
    assert.ok(sentAfter < size, `${sentAfter} bytes sent after the reconnect, of ${size}`);
    assert.ok(received.some((m) => m.t === 'commit'));

    // The stored image is the image, and the rollout finished in this one run.
    assert.ok(rig.gateway.store.has(s.manifest.sha256));
    assert.equal(createHash('sha256').update(await rig.gateway.store.read(s.manifest.sha256)).digest('hex'), s.manifest.sha256);
    const summary = lines.at(-1)!;
    assert.deepEqual([summary.event, summary.ok, summary.updated, summary.targeted], ['summary', true, 2, 2]);
    for (const d of rig.sims.devices) assert.equal(d.running?.sha256, s.manifest.sha256, d.id);
  });

  it('cable pulled while following the campaign: fwpush reconnects like `status` (state and replay) and ends with the summary', async () => {
    const s = await setUp(2, '1.2.0');
    rig = s.rig;
    const run = startFwpush(s.args, 90_000);
    await run.saw(/"event":"order"/);
    await pullCable(rig);
    await run.saw(/"event":"link-lost"/);
    await pause(500);
    const received = await plugCable(rig);

    const r = await run.exited;
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    const lines = jsonLines(r.stdout);
    assert.equal(lines.find((l) => l.event === 'link-lost')?.phase, 'follow');
    assert.equal(lines.find((l) => l.event === 'reconnected')?.phase, 'follow');
    assert.deepEqual(received.map((m) => m.t), ['hello', 'status'], 'no second upload: hello and status only (status needs no auth, §7.2.4)');
    const committed = lines.find((l) => l.event === 'committed');
    const state = lines.find((l) => l.event === 'state');
    assert.equal(state?.campaign, committed?.campaign, 'the state names the campaign fwpush started');
    assert.equal(lines.filter((l) => l.event === 'order').length, 1, 'the replayed order is not repeated');
    const results = lines.filter((l) => l.event === 'result');
    assert.equal(new Set(results.map((l) => l.id)).size, results.length, 'each result once');
    const summary = lines.at(-1)!;
    assert.deepEqual([summary.event, summary.ok, summary.updated, summary.campaign], ['summary', true, 2, committed?.campaign]);
  });

  it('--reconnect-timeout 0 keeps the old behaviour: the pulled cable ends fwpush with the link error (exit 5)', async () => {
    const s = await setUp(1, '1.3.0');
    rig = s.rig;
    const midway = gatewayReceives(rig, (m) => m.t === 'data' && m.off >= s.image.length * 0.3);
    const run = startFwpush([...s.args, '--reconnect-timeout', '0'], 60_000);
    await Promise.race([midway, run.exited.then((r) => assert.fail(`fwpush ended before the cable was pulled (${r.code})\n${r.stdout}\n${r.stderr}`))]);
    await pullCable(rig);

    const r = await run.exited;
    assert.equal(r.code, 5, `${r.stdout}\n${r.stderr}`);
    const lines = jsonLines(r.stdout);
    assert.ok(!lines.some((l) => l.event === 'link-lost' || l.event === 'reconnected'), 'no reconnecting');
    const error = lines.at(-1)!;
    assert.equal(error.event, 'error');
    assert.equal(error.code, 'E_LINK_CLOSED');
    assert.match(String(error.message), new RegExp(`lost the link to the gateway on ${rig.pty.b.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} .*not reconnecting`));
    assert.ok(!rig.gateway.store.has(s.manifest.sha256), 'nothing committed');
  });

  it('when the cable stays out past --reconnect-timeout, fwpush exits with the link error naming the port and how long it tried', async () => {
    const s = await setUp(1, '1.4.0');
    rig = s.rig;
    const midway = gatewayReceives(rig, (m) => m.t === 'data' && m.off >= s.image.length * 0.3);
    const run = startFwpush([...s.args, '--reconnect-timeout', '1'], 60_000);
    await Promise.race([midway, run.exited.then((r) => assert.fail(`fwpush ended before the cable was pulled (${r.code})\n${r.stdout}\n${r.stderr}`))]);
    await pullCable(rig);

    const r = await run.exited;
    assert.equal(r.code, 5, `${r.stdout}\n${r.stderr}`);
    const lines = jsonLines(r.stdout);
    assert.equal(lines.find((l) => l.event === 'link-lost')?.reconnectTimeoutMs, 1000);
    const error = lines.at(-1)!;
    assert.equal(error.code, 'E_LINK_CLOSED');
    assert.match(String(error.message), /^E_LINK_CLOSED: lost the link to the gateway on \S+b\.tty and could not reconnect in \S+ (ms|s) \(\d+ attempts?, --reconnect-timeout 1 s; last: /);
    assert.match(String(error.hint), /run the same fwpush command again/);
  });
});
