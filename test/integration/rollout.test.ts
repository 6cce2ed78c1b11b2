import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { isFwError } from '../../protocol/errors.ts';
import {
  decodeGatewayUplinkMessage, encodeUplinkMessage, type CompleteMessage, type OrderMessage, type ProgressMessage, type ResultMessage,
} from '../../protocol/uplink.ts';
import { MessageLink } from '../../transport/message-link.ts';
import { UplinkClient } from '../../laptop/client.ts';
import { encodeCbor } from '../../protocol/cbor.ts';
import { topics } from '../../protocol/topics.ts';
import { setDevicePassword } from '../../gateway/device-auth.ts';
import { TEST_SCRYPT } from '../helpers/devices.ts';
import { signed } from '../helpers/keys.ts';
import { Rig, sampleImage } from '../helpers/rig.ts';
import { bounded, waitUntil } from '../helpers/wait.ts';

function ofType<T extends { t: string }>(events: { t: string }[], t: T['t']): T[] {
  return events.filter((e) => e.t === t) as T[];
}

describe('integration: rollout over a real pty and real MQTT', function () {
  this.timeout(120_000);
  let rig: Rig | undefined;
  afterEach(async () => {
    await rig?.stop();
    rig = undefined;
  });

  it('updates 12 devices end to end: upload, order, progress, results, completion', async () => {
    rig = await Rig.start({ devices: 12 });
    const { image, manifest } = sampleImage({ version: '1.1.0', size: 200 * 1024 });
    const hello = await rig.client.connect();
    assert.equal(hello.role, 'gateway');
    assert.ok(hello.maxFrame >= 1024, `negotiated frame ${hello.maxFrame}`);
    const { campaign, resumedAt } = await rig.client.push(manifest, image);
    assert.equal(resumedAt, 0);
    const complete = await rig.client.follow(campaign);

    assert.deepEqual({ devices: complete.devices, updated: complete.updated, failed: complete.failed, skipped: complete.skipped },
      { devices: 12, updated: 12, failed: 0, skipped: 0 });
    const order = ofType<OrderMessage>(rig.events, 'order');
    assert.equal(order.length, 1);
    assert.equal(order[0]!.devices.length, 12);
    assert.deepEqual(order[0]!.devices.map((d) => d.rank), Array.from({ length: 12 }, (_, i) => i + 1));
    const results = ofType<ResultMessage>(rig.events, 'result');
    assert.equal(results.length, 12);
    for (const r of results) assert.deepEqual([r.outcome, r.code, r.from, r.to], ['updated', 'ok', '1.0.0', '1.1.0'], r.id);
    // order first, completion last
    const idx = (t: string): number => rig!.events.findIndex((e) => e.t === t);
    assert.ok(idx('order') < idx('result'));
    assert.equal(rig.events.at(-1)!.t, 'complete');
    // progress never goes backwards within a phase and ends in done for everyone
    const last = new Map<string, ProgressMessage>();
    for (const p of ofType<ProgressMessage>(rig.events, 'progress')) {
      const prev = last.get(p.id);
      if (prev && prev.phase === p.phase) assert.ok(p.bytes >= prev.bytes, `${p.id} progress went back`);
      last.set(p.id, p);
    }
    for (const d of rig.sims.devices) assert.equal(last.get(d.id)?.phase, 'done', d.id);
    // the devices really run the new image, from the other slot, confirmed
    for (const d of rig.sims.devices) {
      const run = d.running;
      assert.ok(run, `${d.id} is running`);
      assert.deepEqual([run.version, run.sha256, run.trial], ['1.1.0', manifest.sha256, false], d.id);
    }
    // the gateway stored the image, content-addressed
    assert.ok(rig.gateway.store.has(manifest.sha256));
  });

  it('a device that receives a corrupted chunk still ends updated (only that chunk resent)', async () => {
    rig = await Rig.start({ devices: 3, faults: (i) => (i === 1 ? { corruptChunk: 4 } : undefined) });
    const { image, manifest } = sampleImage({ version: '1.1.0', size: 64 * 1024 });
    await rig.client.connect();
    const { campaign } = await rig.client.push(manifest, image);
    const complete: CompleteMessage = await rig.client.follow(campaign);
    assert.equal(complete.updated, 3);
    const faulty = rig.sims.devices[1]!;
    assert.equal(faulty.stats.badChunks, 1);
    assert.equal(faulty.running?.version, '1.1.0');
    // at most a window's worth of extra chunks: a resend, not a restart
    const chunks = Math.ceil(image.length / manifest.chunk);
    assert.ok(faulty.stats.chunks <= chunks + 8, `device saw ${faulty.stats.chunks} chunk messages for ${chunks} chunks`);
  });

  it('a device that drops off mid-transfer comes back and ends updated, resuming', async () => {
    rig = await Rig.start({ devices: 3, faults: (i) => (i === 2 ? { dropAfterChunks: 6 } : undefined) });
    const { image, manifest } = sampleImage({ version: '1.1.0', size: 96 * 1024 });
    await rig.client.connect();
    const { campaign } = await rig.client.push(manifest, image);
    const complete = await rig.client.follow(campaign);
    assert.equal(complete.updated, 3);
    const dropped = rig.sims.devices[2]!;
    assert.equal(dropped.stats.drops, 1);
    assert.equal(dropped.running?.version, '1.1.0');
    const r = ofType<ResultMessage>(rig.events, 'result').find((x) => x.id === dropped.id)!;
    assert.equal(r.outcome, 'updated');
    assert.ok(r.retries >= 1, 'the drop cost one retry');
  });

  it('refuses an image whose digest does not match its manifest, says why, and stores nothing', async () => {
    rig = await Rig.start({ devices: 2 });
    const { image, manifest } = sampleImage({ version: '1.1.0', size: 32 * 1024 });
    // Signed as it is (a valid signature over a wrong digest): the gateway's check at commit catches it.
    const lying = signed({ ...manifest, sha256: 'ab'.repeat(32) });
    await rig.client.connect();
    await assert.rejects(rig.client.push(lying, image), (err: unknown) => {
      assert.ok(isFwError(err, 'E_IMAGE_SHA256'), String(err));
      assert.match((err as Error).message, /SHA-256/);
      return true;
    });
    assert.equal(rig.gateway.store.list().length, 0);
    const storeDir = join(rig.dir, 'gateway', 'store');
    for (const sub of ['images', 'partial']) {
      const files = await readdir(join(storeDir, sub)).catch(() => []);
      assert.deepEqual(files, [], `${sub}/ is empty`);
    }
    assert.equal(rig.gateway.activeCampaign, undefined);
    for (const d of rig.sims.devices) assert.equal(d.running?.version, '1.0.0');
  });

  it('an image for another hardware model updates nobody; every device is skipped with the reason', async () => {
    rig = await Rig.start({ devices: 4 });
    const { image, manifest } = sampleImage({ version: '2.0.0', hw: 'sensor-v2', size: 16 * 1024 });
    await rig.client.connect();
    const { campaign } = await rig.client.push(manifest, image);
    const complete = await rig.client.follow(campaign);
    assert.deepEqual([complete.devices, complete.updated, complete.skipped], [4, 0, 4]);
    const order = ofType<OrderMessage>(rig.events, 'order')[0]!;
    assert.equal(order.devices.length, 0);
    assert.equal(order.excluded.length, 4);
    for (const r of ofType<ResultMessage>(rig.events, 'result')) {
      assert.equal(r.outcome, 'skipped');
      assert.equal(r.code, 'incompatible-hw');
      assert.match(r.reason ?? '', /sensor-v1.*sensor-v2/);
    }
    for (const d of rig.sims.devices) assert.equal(d.stats.chunks, 0);
  });

  it('counts and drops malformed frames and CBOR on both links while a rollout completes', async () => {
    rig = await Rig.start({ devices: 4 });
    const { image, manifest } = sampleImage({ version: '1.1.0', size: 128 * 1024 });
    await rig.client.connect();
    const gwArq = rig.gateway.uplinkLink!.arq;
    const lapArq = rig.laptopLink.arq;

    // A rogue MQTT client with credentials of its own: garbage on its own up topic (the only topic
    // it may publish on, §6.1.8). Garbage on every device's down topic comes in-process: only the
    // gateway can publish there.
    await setDevicePassword(rig.gateway.config.broker.devicesFile!, 'rogue-1', 'rogue-pw', TEST_SCRYPT);
    const rogue = await mqtt.connectAsync(rig.gateway.broker.url, { protocolVersion: 4, clientId: 'rogue-1', username: 'rogue-1', password: 'rogue-pw', reconnectPeriod: 0 });
    const noise = setInterval(() => {
      // garbage bytes straight onto both serial lines, between frames
      rig!.laptopPort.write(Buffer.from([0x00, 0x13, 0x37, 0xff, 0x42, 0x00]));
      rig!.gatewayPort.write(Buffer.from([0x00, 0x99, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x00]));
      // valid frames carrying invalid CBOR and an unknown message type, both directions
      lapArq.send(Buffer.from([0xff, 0xff]));
      gwArq.send(encodeCbor({ t: 'no-such-message' }));
      void rogue.publishAsync(topics.up('rogue-1'), Buffer.from([0xa1, 0x61]));
      for (const d of rig!.sims.devices) void rig!.gateway.broker.publish(topics.down(d.id), Buffer.from('not cbor at all'), 0).catch(() => undefined);
    }, 40);
    try {
      const { campaign } = await rig.client.push(manifest, image);
      const complete = await rig.client.follow(campaign);
      assert.equal(complete.updated, 4);
    } finally {
      clearInterval(noise);
      await rogue.endAsync();
    }
    assert.ok(gwArq.stats.parser.crc + gwArq.stats.parser.short + gwArq.stats.parser.cobs > 0, `gateway dropped garbage frames: ${JSON.stringify(gwArq.stats.parser)}`);
    assert.ok(lapArq.stats.parser.crc + lapArq.stats.parser.short + lapArq.stats.parser.cobs > 0, 'laptop dropped garbage frames');
    assert.ok(rig.gateway.uplinkLink!.stats.invalid > 0, 'gateway counted invalid CBOR');
    assert.ok(rig.events.some((e) => e.t === 'error' && e.code === 'E_CBOR'), 'gateway told the laptop what it dropped, and the upload carried on');
    assert.ok(rig.laptopLink.stats.unknownType > 0, 'laptop counted an unknown message type');
    assert.ok(rig.gateway.channel.stats.invalid > 0, 'gateway counted invalid device messages');
    for (const d of rig.sims.devices) assert.ok(d.stats.invalid > 0, `${d.id} counted invalid commands`);
  });
});

describe('integration: the laptop leaves mid-upload and comes back', function () {
  this.timeout(120_000);
  let rig: Rig | undefined;
  afterEach(async () => {
    await rig?.stop();
    rig = undefined;
  });

  it('a new fwpush session resumes the upload from what the gateway holds (keyed by digest)', async () => {
    rig = await Rig.start({ devices: 2 });
    const { image, manifest } = sampleImage({ version: '1.1.0', size: 512 * 1024 });
    await rig.client.connect();
    // Cut the first session off after ~40% of the image, as if the cable were pulled.
    const first = rig.client.push(manifest, image);
    first.catch(() => undefined);
    await bounded(new Promise<void>((resolve) => {
      rig!.client.on('upload', (sent) => {
        if (sent > image.length * 0.4) resolve();
      });
    }), 60_000, '40 % of the image uploaded');
    rig.laptopLink.close();
    await assert.rejects(first);

    const link = new MessageLink(rig.laptopPort, { decode: decodeGatewayUplinkMessage, encode: encodeUplinkMessage, arq: { window: 16, maxPayload: 256 } });
    try {
      const client = new UplinkClient(link, rig.clientOptions);
      await client.connect();
      const { campaign, resumedAt } = await client.push(manifest, image);
      assert.ok(resumedAt > 0, 'resumed, not restarted');
      assert.ok(resumedAt < image.length);
      const complete = await client.follow(campaign);
      assert.equal(complete.updated, 2);
      assert.ok(rig.gateway.store.has(manifest.sha256));
    } finally {
      link.close();
    }
  });
});

describe('integration: bad firmware and busy devices', function () {
  this.timeout(120_000);
  let rig: Rig | undefined;
  afterEach(async () => {
    await rig?.stop();
    rig = undefined;
  });

  it('an image that fails its self-test comes back rolled back on the old version; a busy device waits for its check-in and is left out when the rollout halts', async () => {
    rig = await Rig.start({ devices: 3, faults: (i) => (i === 0 ? { busy: true } : undefined) });
    const { image, manifest } = sampleImage({ version: '1.2.0', size: 32 * 1024, selftest: 'fail' });
    await rig.client.connect();
    const { campaign } = await rig.client.push(manifest, image);
    const complete = await rig.client.follow(campaign);
    assert.deepEqual([complete.updated, complete.rolledBack, complete.skipped], [0, 2, 1]);
    const results = new Map(ofType<ResultMessage>(rig.events, 'result').map((r) => [r.id, r]));
    const [busy, a, b] = rig.sims.devices;
    assert.deepEqual([results.get(busy!.id)?.outcome, results.get(busy!.id)?.code], ['skipped', 'campaign-halted'], 'busy: pending, never offered once the two rolled back');
    for (const d of [a!, b!]) {
      assert.deepEqual([results.get(d.id)?.outcome, results.get(d.id)?.code], ['rolled-back', 'self-test-failed'], d.id);
      assert.equal(d.running?.version, '1.0.0', `${d.id} runs its old image`);
      assert.equal(d.running?.trial, false);
    }
  });
});

describe('integration: gateway shutdown during a campaign', function () {
  this.timeout(120_000);

  it('cancels the running campaign: every unfinished device gets a cancelled result and stop() returns', async () => {
    const rig = await Rig.start({ devices: 4, config: { rollout: { concurrency: 2 } } });
    try {
      const { image, manifest } = sampleImage({ version: '1.1.0', size: 1024 * 1024 });
      await rig.client.connect();
      await rig.client.push(manifest, image);
      const campaign = rig.gateway.activeCampaign!;
      const results: ResultMessage[] = [];
      let complete: CompleteMessage | undefined;
      campaign.on('result', (r) => results.push(r));
      campaign.on('complete', (c) => { complete = c; });
      await bounded(new Promise<void>((resolve) => campaign.once('progress', () => resolve())), 30_000, 'the campaign\'s first progress');
      await rig.gateway.stop();
      assert.ok(complete, 'the campaign completed');
      assert.equal(complete.devices, 4);
      const cancelled = results.filter((r) => r.code === 'cancelled');
      assert.ok(cancelled.length >= 2, `unfinished devices were cancelled: ${JSON.stringify(results.map((r) => [r.id, r.code]))}`);
      assert.ok(cancelled.every((r) => r.outcome === 'failed'));
    } finally {
      await rig.stop();
    }
  });
});

describe('integration: uplink requests the gateway refuses', function () {
  this.timeout(60_000);
  let rig: Rig | undefined;
  afterEach(async () => {
    await rig?.stop();
    rig = undefined;
  });

  it('answers a hello of another protocol version, and a request-to-send with a bad manifest, with a deny naming the problem', async () => {
    rig = await Rig.start({ devices: 1 });
    const arq = rig.laptopLink.arq;
    await rig.laptopLink.open();
    const denies: { code: string; reason: string }[] = [];
    rig.laptopLink.on('message', (m) => { if (m.t === 'deny') denies.push(m); });
    arq.send(encodeCbor({ t: 'hello', proto: 9, role: 'laptop', agent: 'future', maxFrame: 1024, window: 4, maxMessage: 65536 }));
    await waitUntil(() => denies.length === 1, 10_000, 'deny for the hello');
    assert.equal(denies[0]!.code, 'protocol');
    assert.match(denies[0]!.reason, /protocol 9.*1/);

    arq.send(encodeCbor({ t: 'hello', proto: 1, role: 'laptop', agent: 'test', maxFrame: 1024, window: 4, maxMessage: 65536 }));
    const { manifest } = sampleImage({ version: '1.1.0', size: 4096 });
    arq.send(encodeCbor({ t: 'rts', manifest: { ...manifest, version: 'banana' } }));
    await waitUntil(() => denies.length === 2, 10_000, 'deny for the request-to-send');
    assert.equal(denies[1]!.code, 'invalid-manifest');
    assert.match(denies[1]!.reason, /manifest\.version/);
    assert.equal(rig.gateway.store.list().length, 0);
  });

  it('tells the laptop the image is stored before any campaign event', async () => {
    rig = await Rig.start({ devices: 2 });
    const { image, manifest } = sampleImage({ version: '1.1.0', size: 16 * 1024 });
    await rig.client.connect();
    const { campaign } = await rig.client.push(manifest, image);
    await rig.client.follow(campaign);
    const types = rig.events.map((e) => e.t);
    const committed = types.indexOf('committed');
    assert.ok(committed >= 0);
    for (const t of ['order', 'progress', 'result', 'complete'] as const) assert.ok(types.indexOf(t) > committed, `${t} after committed`);
  });
});
