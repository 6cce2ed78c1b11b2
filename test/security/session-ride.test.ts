import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { SerialPort } from 'serialport';
import { makeSampleImage } from '../../firmware-samples/image-format.ts';
import { EXIT } from '../../laptop/render.ts';
import { FrameKind, FrameParser, ackFields, ackFrame, dataFrame, encodeFrame, isMore, type Frame } from '../../protocol/link/index.ts';
import { generateSigningKey } from '../../protocol/signature.ts';
import {
  decodeGatewayUplinkMessage, encodeUplinkMessage, type GatewayUplinkMessage, type LaptopMessage,
} from '../../protocol/uplink.ts';
import { closeSerialPort, openSerialPort } from '../../transport/serial-port.ts';
import { Rig, sampleImage } from '../helpers/rig.ts';
import { waitUntil } from '../helpers/wait.ts';
import { startFwpush } from '../laptop/run-fwpush.ts';

/**
 * Issue 18 item 1, the attack itself: a process with no technician key opens the laptop end of
 * the serial line after the technician's session, learns the gateway's expected sequence number
 * from the ACK to one DATA frame with a far sequence number, and sends a request to send (force,
 * downgrade, policy now) inside the technician's ARQ session — no RESET, no hello. Real gateway,
 * real pty, real broker and device; a real fwpush process where the technician's exit matters.
 */

/** What the attacker speaks: raw frames on the line, no link state of its own. */
class LineRider {
  private readonly parser = new FrameParser();
  private readonly frames: Frame[] = [];
  private readonly seen = new Set<number>();
  private readonly messages: GatewayUplinkMessage[] = [];
  private partial: Uint8Array[] = [];

  private constructor(private readonly port: SerialPort) {
    port.on('data', (b: Buffer) => {
      for (const f of this.parser.push(b)) this.onFrame(f);
    });
  }

  static async open(path: string): Promise<LineRider> {
    return new LineRider(await openSerialPort(path, 921_600));
  }

  private onFrame(f: Frame): void {
    this.frames.push(f);
    if (f.kind !== FrameKind.DATA) return;
    this.write(ackFrame((f.seq + 1) & 0xffff, 0)); // keep the gateway from retransmitting
    if (this.seen.has(f.seq)) return;
    this.seen.add(f.seq);
    this.partial.push(f.payload);
    if (isMore(f)) return;
    const whole = Buffer.concat(this.partial);
    this.partial = [];
    this.messages.push(decodeGatewayUplinkMessage(whole));
  }

  private write(f: Frame): void {
    this.port.write(encodeFrame(f));
  }

  /** One DATA frame far outside the window: the gateway answers with an ACK naming the seq it expects. */
  async expectedSeq(): Promise<number> {
    const from = this.frames.length;
    this.write(dataFrame(40_000, Uint8Array.of(0xa0), false));
    await waitUntil(() => this.frames.slice(from).some((f) => f.kind === FrameKind.ACK), 10_000, 'an ACK to the far DATA frame');
    return ackFields(this.frames.slice(from).find((f) => f.kind === FrameKind.ACK)!).cum;
  }

  /** A message in 200-byte fragments from `seq` on (fits the link's smallest frame size); its reply. */
  async request(msg: LaptopMessage, seq: number, reply: (m: GatewayUplinkMessage) => boolean): Promise<GatewayUplinkMessage> {
    const bytes = encodeUplinkMessage(msg);
    for (let off = 0, s = seq; off < bytes.length; off += 200, s++) {
      this.write(dataFrame(s, bytes.subarray(off, off + 200), off + 200 < bytes.length));
    }
    await waitUntil(() => this.messages.some(reply), 10_000, `the gateway's answer to ${msg.t}`);
    return this.messages.find(reply)!;
  }

  async close(): Promise<void> {
    await closeSerialPort(this.port).catch(() => undefined);
  }
}

const isAnswer = (m: GatewayUplinkMessage): boolean => m.t === 'grant' || m.t === 'deny';

describe('security: riding the technician\'s serial session (issue 18 item 1)', function () {
  this.timeout(180_000);
  let rig: Rig;
  const hostile = sampleImage({ version: '0.9.0', seq: 1, size: 8 * 1024 });
  const ride: LaptopMessage = { t: 'rts', manifest: hostile.manifest, policy: 'now', downgrade: true, force: true };

  afterEach(async () => {
    await rig?.stop();
  });

  it('after the technician\'s laptop vanished without a reset (killed, cable pulled): an rts inside its session is denied unauthorised, nothing stored', async () => {
    rig = await Rig.start({ devices: 1 });
    await rig.client.connect();
    const { image, manifest } = sampleImage({ version: '1.1.0', size: 8 * 1024 });
    const { campaign } = await rig.client.push(manifest, image);
    await rig.client.follow(campaign);
    // the laptop goes away without a word: no RESET, the gateway's session and its state stay
    rig.laptopLink.close();
    await closeSerialPort(rig.laptopPort);
    const rider = await LineRider.open(rig.pty.b);
    try {
      const seq = await rider.expectedSeq();
      const answer = await rider.request(ride, seq, isAnswer);
      assert.ok(answer.t === 'deny' && answer.code === 'unauthorised', JSON.stringify(answer));
      assert.match(answer.reason, /the rts carries no auth/);
      assert.equal(rig.gateway.store.list().length, 1, 'only the technician\'s image is stored');
      assert.equal(rig.gateway.campaigns.length, 1, 'no campaign was created for the rider');
    } finally {
      await rider.close();
    }
  });

  for (const [how, args, code] of [
    ['exits after its rollout', (r: Rig) => ['--tech-key', r.techKeyPath], EXIT.ok],
    ['exits on an error (its rts refused)', (r: Rig, stranger: string) => ['--tech-key', stranger], EXIT.refused],
  ] as const) {
    it(`fwpush ${how}: it reset the link, the session is over, and the rider gets nothing authorised`, async () => {
      rig = await Rig.start({ devices: 1 });
      rig.laptopLink.close(); // fwpush opens the laptop end itself
      await closeSerialPort(rig.laptopPort);
      const path = join(rig.dir, 'sensor-fw-1.1.0.bin');
      await writeFile(path, makeSampleImage({ name: 'sensor-fw', version: '1.1.0', hw: 'sensor-v1', size: 8 * 1024 }));
      const stranger = join(rig.dir, 'stranger.key');
      await writeFile(stranger, generateSigningKey().privateKeyPem, { mode: 0o600 });
      const r = await startFwpush(['--port', rig.pty.b, path, '--name', 'sensor-fw', '--version', '1.1.0', '--hw', 'sensor-v1', ...args(rig, stranger)]).exited;
      assert.equal(r.code, code, `${r.stdout}\n${r.stderr}`);
      const stored = rig.gateway.store.list().length;
      const rider = await LineRider.open(rig.pty.b);
      try {
        const seq = await rider.expectedSeq();
        const answer = await rider.request(ride, seq, isAnswer);
        // fwpush's RESET on exit ended the session: nothing is authorised until a new hello
        assert.ok(answer.t === 'deny' && answer.code === 'state', `the session ended at fwpush's exit: ${JSON.stringify(answer)}`);
        assert.equal(rig.gateway.store.list().length, stored);
      } finally {
        await rider.close();
      }
    });
  }
});
