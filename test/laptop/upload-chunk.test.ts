import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { UplinkClient, type Grant, type LaptopLink } from '../../laptop/client.ts';
import { laptopSettings } from '../../laptop/settings.ts';
import { uploadChunk } from '../../laptop/upload-chunk.ts';
import type { LaptopMessage } from '../../protocol/uplink.ts';
import { DATA_MESSAGE_OVERHEAD } from '../../protocol/uplink.ts';

const s = { uploadFrame: 4096, fastFrameMs: 2 };
const SMALL = 4096 - DATA_MESSAGE_OVERHEAD;
const GRANTED = 16_384 - DATA_MESSAGE_OVERHEAD;
/** ms per wire byte of a UART at `baud` (8N1) and of a line moving `mibs` MiB/s. */
const uart = (baud: number): number => 1000 / (baud / 10);
const line = (mibs: number): number => 1000 / (mibs * 1024 * 1024);

describe('laptop/upload-chunk: data message size from the line rate', () => {
  it('sends uploadFrame-sized messages until the line has been measured', () => {
    assert.equal(uploadChunk(GRANTED, undefined, s), SMALL);
  });

  it('keeps them on every UART up to 3 Mbaud, and grows them on a fast line up to the whole grant', () => {
    for (const baud of [115_200, 921_600, 3_000_000]) assert.equal(uploadChunk(GRANTED, uart(baud), s), SMALL, `${baud} baud`);
    assert.equal(uploadChunk(GRANTED, line(12), s), GRANTED); // a pty here: 16 KiB in 1.3 ms
  });

  it('takes the largest doubling of uploadFrame whose line time is within fastFrameMs', () => {
    // 8 KiB takes 1.6 ms and 16 KiB 3.3 ms at 0.0002 ms per byte
    assert.equal(uploadChunk(GRANTED, 0.0002, s), 8192 - DATA_MESSAGE_OVERHEAD);
    // a grant that is no power of two is taken whole when it fits, else the doubling below it
    assert.equal(uploadChunk(12_000, line(12), s), 12_000);
    assert.equal(uploadChunk(12_000, 0.0002, s), 8192 - DATA_MESSAGE_OVERHEAD);
    // just over the limit at 8 KiB: stays small
    assert.equal(uploadChunk(GRANTED, 2 / 8191, s), SMALL);
  });

  it('never exceeds a grant smaller than uploadFrame, whatever the line', () => {
    for (const rate of [undefined, uart(921_600), line(100)]) assert.equal(uploadChunk(992, rate, s), 992);
    assert.equal(uploadChunk(1, line(100), s), 1);
  });

  it('treats an estimate that is no positive finite number as unmeasured', () => {
    for (const rate of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) assert.equal(uploadChunk(GRANTED, rate, s), SMALL, String(rate));
  });

  it('uses the laptop settings by default', () => {
    assert.equal(uploadChunk(GRANTED, undefined), laptopSettings.uploadFrame - DATA_MESSAGE_OVERHEAD);
    assert.equal(uploadChunk(GRANTED, laptopSettings.fastFrameMs / (16_384 * 4)), GRANTED);
  });
});

/** What UplinkClient.upload uses of its link: send, down, and the ARQ's line rate estimate. */
class RecordingLink extends EventEmitter {
  readonly down = false;
  readonly sent: { off: number; length: number; rate: number | undefined }[] = [];
  readonly arq: { lineMsPerByte: number | undefined } = { lineMsPerByte: undefined };
  constructor(private readonly rateAfter: (sentMessages: number) => number | undefined) {
    super();
  }
  send(msg: LaptopMessage): Promise<void> {
    if (msg.t !== 'data') throw new Error(`unexpected ${msg.t}`);
    this.sent.push({ off: msg.off, length: msg.data.length, rate: this.arq.lineMsPerByte });
    this.arq.lineMsPerByte = this.rateAfter(this.sent.length);
    return Promise.resolve();
  }
}

describe('laptop/client: upload sizes its data messages to the line', () => {
  const image = new Uint8Array(300_000).map((_, i) => i & 0xff);
  const grant = (offset: number): Grant => ({ t: 'grant', sha256: '0'.repeat(64), offset, chunk: GRANTED });

  it('starts small, grows once a fast line is measured, and covers the image in order without a gap', async () => {
    const link = new RecordingLink((n) => (n >= 3 ? line(12) : undefined));
    const client = new UplinkClient(link as unknown as LaptopLink);
    const progress: number[] = [];
    client.on('upload', (sent) => progress.push(sent));
    await client.upload(image, grant(0));
    assert.deepEqual(link.sent.slice(0, 3).map((m) => m.length), [SMALL, SMALL, SMALL]);
    assert.ok(link.sent.slice(3, -1).every((m) => m.length === GRANTED), 'full grants once measured fast');
    let off = 0;
    for (const m of link.sent) {
      assert.equal(m.off, off);
      off += m.length;
    }
    assert.equal(off, image.length);
    assert.deepEqual(progress, link.sent.map((m) => m.off + m.length));
  });

  it('stays small on a UART and resumes from the granted offset', async () => {
    const link = new RecordingLink(() => uart(921_600));
    await new UplinkClient(link as unknown as LaptopLink).upload(image, grant(100_000));
    assert.equal(link.sent[0]!.off, 100_000);
    assert.ok(link.sent.slice(0, -1).every((m) => m.length === SMALL));
    const last = link.sent.at(-1)!;
    assert.equal(last.off + last.length, image.length);
  });
});
