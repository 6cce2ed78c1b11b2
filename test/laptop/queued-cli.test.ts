import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SerialPort } from 'serialport';
import {
  decodeLaptopMessage, encodeUplinkMessage, type GatewayUplinkMessage, type LaptopMessage, type RtsMessage,
} from '../../protocol/uplink.ts';
import { createPtyPair, type PtyPair } from '../../scripts/lib/pty-pair.ts';
import { MessageLink } from '../../transport/message-link.ts';
import { closeSerialPort, openSerialPort } from '../../transport/serial-port.ts';
import { jsonLines, startFwpush } from './run-fwpush.ts';

/**
 * fwpush as a real process on a real pty pair against a fake gateway that queues every campaign
 * for a maintenance window opening in 2 h (docs/protocol.md §7.4.5): the request to send carries
 * the options given and no others, fwpush says when the window opens, does not follow the
 * campaign and exits 0; `status` lists the queued campaigns.
 */
class QueuingGateway {
  readonly rts: RtsMessage[] = [];
  readonly received: LaptopMessage['t'][] = [];
  readonly link: MessageLink<LaptopMessage, GatewayUplinkMessage>;
  private campaigns = 0;

  constructor(port: SerialPort, private readonly opensAt: () => number) {
    this.link = new MessageLink<LaptopMessage, GatewayUplinkMessage>(port, {
      decode: decodeLaptopMessage, encode: encodeUplinkMessage, arq: { window: 16, maxPayload: 256 },
    });
    this.link.on('reset', () => this.link.configure({ maxPayload: 256 }));
    this.link.on('message', (m) => this.handle(m));
  }

  private reply(m: GatewayUplinkMessage): void {
    void this.link.send(m).catch(() => undefined); // a laptop that has gone: nothing to do
  }

  private handle(m: LaptopMessage): void {
    this.received.push(m.t);
    switch (m.t) {
      case 'hello': {
        const maxFrame = Math.min(4096, m.maxFrame);
        this.reply({ t: 'hello', proto: 1, role: 'gateway', agent: 'queuing-gateway/0', maxFrame, window: Math.min(16, m.window), maxMessage: m.maxMessage });
        this.link.configure({ maxPayload: maxFrame, window: Math.min(16, m.window) });
        return;
      }
      case 'rts':
        this.rts.push(m);
        return this.reply({ t: 'grant', sha256: m.manifest.sha256, offset: 0, chunk: 4096 - 32 });
      case 'auth': return; // this fake gateway sends no challenge, so fwpush sends no auth
      case 'data': return;
      case 'commit': {
        const sha256 = this.rts.at(-1)!.manifest.sha256;
        const campaign = `c-${String(++this.campaigns).padStart(8, '0')}`;
        return this.reply({
          t: 'committed', ok: true, sha256, campaign,
          queued: { reason: 'waits for the next maintenance window', nextWindowAt: this.opensAt(), expiresAt: this.opensAt() + 7 * 86_400_000 },
          ...(this.campaigns > 1 ? { supersedes: `c-${String(this.campaigns - 1).padStart(8, '0')}` } : {}),
        });
      }
      case 'status': {
        const m0 = this.rts.at(-1)?.manifest;
        this.reply({
          t: 'state', running: false,
          ...(m0 ? { queued: [{ campaign: `c-${String(this.campaigns).padStart(8, '0')}`, image: { name: m0.name, version: m0.version, sha256: m0.sha256 }, hw: m0.hw, nextWindowAt: this.opensAt() }] } : {}),
        });
        return this.reply({ t: 'fleet', now: Date.now(), devices: [] }); // §7.11.4: the fleet report follows the state
      }
      case 'cancel':
      case 'retry':
      case 'resume':
      case 'plan':
      case 'release-rts':
      case 'release-live':
        return this.reply({ t: 'deny', code: 'state', reason: 'not in these tests' });
      default: {
        const never: never = m;
        return never;
      }
    }
  }
}

describe('fwpush --in-window against a gateway that queues (real pty pair, fake gateway)', function () {
  this.timeout(60_000);
  let dir: string;
  let pty: PtyPair;
  let port: SerialPort;
  let gateway: QueuingGateway;
  let image: string;
  const opensAt = (): number => Math.ceil((Date.now() + 2 * 3_600_000) / 60_000) * 60_000;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fwpush-queued-'));
    pty = await createPtyPair(dir);
    port = await openSerialPort(pty.a, 921_600);
    gateway = new QueuingGateway(port, opensAt);
    image = join(dir, 'sensor-fw.bin');
    await writeFile(image, randomBytes(10_000));
  });
  after(async () => {
    gateway?.link.close();
    if (port) await closeSerialPort(port).catch(() => undefined);
    await pty?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const push = (...flags: string[]): string[] => ['--port', pty.b, image, '--version', '1.2.0', '--hw', 'sensor-v1', ...flags];

  it('--in-window --allow-downgrade --force: the rts carries all three, the queued line, exit 0 without following', async () => {
    const r = await startFwpush(push('--in-window', '--allow-downgrade', '--force')).exited;
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    const rts = gateway.rts.at(-1)!;
    assert.deepEqual([rts.policy, rts.downgrade, rts.force], ['window', true, true]);
    assert.match(r.stdout, /^queued: campaign c-00000001 waits for the next maintenance window, opening \w{3} \d{1,2} \w{3} \d{2}:\d{2} [+-]\d{2}:\d{2} \(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:00Z, in (1 h 59 min|2 h 00 min)\)$/m);
    assert.match(r.stdout, /^Queued: sensor-fw 1\.2\.0 is stored on the gateway; campaign c-00000001 is queued for the maintenance window opening /m);
    assert.match(r.stdout, new RegExp(`^Follow it once it starts: fwpush --port ${pty.b.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} status$`, 'm'));
    assert.doesNotMatch(r.stdout, /Results for|Done:/);
    assert.equal(gateway.received.at(-1), 'commit', 'nothing sent after the commit: the campaign is not followed');
  });

  it('no policy flag, --json: the rts carries no option; committed, queued (with ISO times) and a summary with queued: true', async () => {
    const r = await startFwpush(push('--json')).exited;
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.deepEqual(Object.keys(gateway.rts.at(-1)!).sort(), ['manifest', 't']);
    const lines = jsonLines(r.stdout);
    const queued = lines.find((l) => l.event === 'queued');
    assert.ok(queued, r.stdout);
    assert.equal(queued.campaign, 'c-00000002');
    assert.equal(queued.supersedes, 'c-00000001');
    assert.equal(queued.nextWindow, new Date(queued.nextWindowAt as number).toISOString().replace('.000Z', 'Z'));
    assert.ok(lines.findIndex((l) => l.event === 'committed') < lines.indexOf(queued));
    const summary = lines.at(-1)!;
    assert.deepEqual([summary.event, summary.ok, summary.queued, summary.campaign], ['summary', true, true, 'c-00000002']);
  });

  it('--now with --in-window never reaches the gateway: usage error naming both, exit 2', async () => {
    const before = gateway.received.length;
    const r = await startFwpush(push('--now', '--in-window')).exited;
    assert.equal(r.code, 2);
    assert.match(r.stderr, /option '--now' cannot be used with option '--in-window'/);
    assert.equal(gateway.received.length, before);
  });

  it('status: the queued campaigns as a table, exit 0', async () => {
    const r = await startFwpush(['--port', pty.b, 'status']).exited;
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /^gateway idle: no campaign has run since it started$/m);
    assert.match(r.stdout, /^Queued for a maintenance window \(1\):$/m);
    assert.match(r.stdout, /^ {2}campaign {4}image {12}hw {9}next window$/m);
    assert.match(r.stdout, /^ {2}c-00000002 {2}sensor-fw 1\.2\.0 {2}sensor-v1 {2}\w{3} \d{1,2} \w{3} \d{2}:\d{2} [+-]\d{2}:\d{2} \(.+Z, in \d h \d{2} min\)$/m);
  });
});
