import assert from 'node:assert/strict';
import { ImageSource } from '../../../gateway/rollout/image-source.ts';
import { manifestForImage } from '../../../protocol/manifest.ts';
import type { GatewayMessage } from '../../../protocol/ota.ts';
import { FakeTimers } from './fake.ts';
import { CHUNK, commands, harness, image, manifest, scriptedDevice, trialBoot } from './session-harness.ts';

/**
 * A device session's steps before activation (device-session.ts, docs/protocol.md §6.5–§6.7): the
 * offer and what it carries, the accept's chunk size and resume point, events of another session
 * skipped, the device dropping off, and each way a verify can fail.
 */

type Offer = Extract<GatewayMessage, { t: 'offer' }>;
const chunkOffs = (sent: GatewayMessage[]): number[] => sent.flatMap((m) => (m.t === 'chunk' ? [m.off / CHUNK] : []));

describe('device session: the offer (§6.5)', () => {
  it('carries the manifest\'s fields, and downgrade / force only when the campaign says so', async () => {
    const plain = harness(scriptedDevice());
    await plain.run();
    const o = plain.ch.sent[0] as Offer;
    assert.deepEqual({ ...o, sid: 0 }, {
      t: 'offer', sid: 0, name: 'fw', version: '1.1.0', hw: ['hw'], size: image.length, crc32: manifest.crc32, sha256: manifest.sha256, chunk: CHUNK,
    });
    assert.ok(o.sid >= 1 && o.sid < 0xffff_ffff);

    const both = harness(scriptedDevice(), {}, { downgrade: true, force: true });
    await both.run();
    const o2 = both.ch.sent[0] as Offer;
    assert.deepEqual([o2.downgrade, o2.force], [true, true]);
  });

  it('a signed manifest\'s seq, keyId and sig go with it (§6.5.3 step 0)', async () => {
    const signed = { ...manifest, seq: 12, signature: { keyId: '0123456789abcdef', sig: 'c2ln' } };
    const h = harness(scriptedDevice(), {}, { image: new ImageSource(signed, image) });
    await h.run();
    const o = h.ch.sent[0] as Offer;
    assert.deepEqual([o.seq, o.keyId, o.sig], [12, '0123456789abcdef', 'c2ln']);
  });

  it('reports the offering phase, then transferring from what the device holds', async () => {
    const h = harness(scriptedDevice());
    await h.run();
    assert.deepEqual(h.phases.slice(0, 3), [['offering', 0], ['transferring', 0], ['transferring', CHUNK]]);
  });

  it('skips an accept or reject of another session and other events until its own answer', async () => {
    const h = harness(scriptedDevice({
      offer: (m) => [
        { t: 'reject', sid: m.sid + 1, code: 'busy' },
        { t: 'accept', sid: m.sid + 1, next: 0, chunk: 64, window: 1 },
        { t: 'confirmed', sha256: manifest.sha256, version: '1.1.0' },
        { t: 'verified', sid: m.sid, ok: true },
        { t: 'accept', sid: m.sid, next: 0, chunk: CHUNK, window: 8 },
      ],
    }));
    const r = await h.run();
    assert.deepEqual([r.outcome, r.code], ['updated', 'ok']);
    assert.equal(chunkOffs(h.ch.sent).length, 8, 'chunks of the accepted size, 1024');
  });

  it('a device that never answers the offer: the wait ends after offerTimeoutMs with what it waited for', async () => {
    const h = harness(scriptedDevice({ offer: () => [] }), { maxAttempts: 1, offerTimeoutMs: 3000 });
    const r = await h.run();
    assert.deepEqual([r.outcome, r.code], ['failed', 'retries-exhausted']);
    assert.equal(r.reason, 'timed out after 3000 ms waiting for accept or reject from dev-1 (after 1 attempts)');
    assert.equal(h.timers.now(), 3000);
  });
});

describe('device session: the accept (§6.5.4)', () => {
  const accept = (chunk: number, next = 0) => scriptedDevice({ offer: (m) => [{ t: 'accept', sid: m.sid, next, chunk, window: 8 }] });

  it('a chunk size above the offer\'s or below 64 bytes is refused: failed / unsupported, not retried', async () => {
    for (const chunk of [CHUNK + 1, 63]) {
      const h = harness(accept(chunk));
      const r = await h.run();
      assert.deepEqual([r.outcome, r.code, r.retries], ['failed', 'unsupported', 0]);
      assert.equal(r.reason, `device asked for chunk size ${chunk}, offered ${CHUNK}`);
      assert.deepEqual(commands(h.ch), ['offer']);
    }
  });

  it('the bounds themselves are accepted: 64 bytes, and the offer\'s own chunk size', async () => {
    const tiny = Buffer.alloc(4 * 64, 1);
    const m = manifestForImage(tiny, { name: 'fw', version: '1.1.0', hw: ['hw'], chunk: CHUNK });
    const small = harness(scriptedDevice({
      offer: (o) => [{ t: 'accept', sid: o.sid, next: 0, chunk: 64, window: 8 }],
      chunk: (c) => [{ t: 'ack', sid: c.sid, next: c.off + 64, missing: [] }],
      activate: (a) => [{ t: 'activated', sid: a.sid, slot: 'b' }, { ...trialBoot, sha256: m.sha256 }],
    }), {}, { image: new ImageSource(m, tiny) });
    const r = await small.run();
    assert.equal(r.outcome, 'updated', r.reason);
    assert.deepEqual(chunkOffs(small.ch.sent).map((k) => k * CHUNK), [0, 64, 128, 192]);
    assert.equal((await harness(accept(CHUNK)).run()).outcome, 'updated');
  });

  it('resumes from accept.next on a chunk boundary within the image', async () => {
    const h = harness(accept(CHUNK, 5 * CHUNK));
    const r = await h.run();
    assert.equal(r.outcome, 'updated');
    assert.deepEqual(chunkOffs(h.ch.sent), [5, 6, 7]);
    assert.deepEqual(h.phases[1], ['transferring', 5 * CHUNK]);
  });

  it('accept.next at the end of the image: nothing left to send', async () => {
    const h = harness(accept(CHUNK, image.length));
    const r = await h.run();
    assert.equal(r.outcome, 'updated');
    assert.deepEqual(chunkOffs(h.ch.sent), []);
  });

  it('the end of an image whose last chunk is short is a valid resume point too', async () => {
    const odd = Buffer.alloc(3 * CHUNK + 100, 9);
    const m = manifestForImage(odd, { name: 'fw', version: '1.1.0', hw: ['hw'], chunk: CHUNK });
    const h = harness(scriptedDevice({
      offer: (o) => [{ t: 'accept', sid: o.sid, next: odd.length, chunk: CHUNK, window: 8 }],
      activate: (a) => [{ t: 'activated', sid: a.sid, slot: 'b' }, { ...trialBoot, sha256: m.sha256 }],
    }), {}, { image: new ImageSource(m, odd) });
    const r = await h.run();
    assert.equal(r.outcome, 'updated', r.reason);
    assert.deepEqual(chunkOffs(h.ch.sent), []);
  });

  it('a resume point off a chunk boundary, or past the image, starts over from 0', async () => {
    for (const next of [5 * CHUNK + 1, image.length + CHUNK]) {
      const h = harness(accept(CHUNK, next));
      const r = await h.run();
      assert.equal(r.outcome, 'updated');
      assert.deepEqual(h.phases[1], ['transferring', 0], `accept.next ${next}`);
      assert.equal(chunkOffs(h.ch.sent)[0], 0);
    }
  });
});

describe('device session: the transfer', () => {
  it('an ack of another session is not this transfer\'s', async () => {
    const h = harness(scriptedDevice({
      offer: (m) => [{ t: 'accept', sid: m.sid, next: 0, chunk: CHUNK, window: 8 }, { t: 'ack', sid: m.sid + 1, next: image.length, missing: [] }],
    }));
    const r = await h.run();
    assert.equal(r.outcome, 'updated');
    assert.equal(chunkOffs(h.ch.sent).length, 8, 'every chunk sent');
  });

  it('a duplicate accept (the offer delivered twice, QoS 1, §6.5.2) is not an ack', async () => {
    const h = harness(scriptedDevice({
      offer: (m) => [{ t: 'accept', sid: m.sid, next: 0, chunk: CHUNK, window: 8 }, { t: 'accept', sid: m.sid, next: 0, chunk: CHUNK, window: 8 }],
    }));
    const r = await h.run();
    assert.deepEqual([r.outcome, r.retries], ['updated', 0]);
    assert.equal(chunkOffs(h.ch.sent).length, 8);
  });

  it('the device dropping off mid-transfer ends the attempt at once (connection-lost, retried after the backoff)', async () => {
    const h = harness(scriptedDevice({ chunk: (m, n) => (n === 2 ? [{ t: 'offline' }] : [{ t: 'ack', sid: m.sid, next: Math.min(m.off + CHUNK, image.length), missing: [] }]) }),
      { maxAttempts: 1 });
    const r = await h.run();
    assert.deepEqual([r.outcome, r.code], ['failed', 'connection-lost']);
    assert.equal(r.reason, 'dev-1 went offline while waiting for chunk ack (after 1 attempts)');
    assert.equal(h.timers.now(), 0, 'no ack timeout waited for');
  });

  it('reports the transfer\'s throughput in the result when it was measured', async () => {
    // the device acks each chunk 10 ms after it was sent: 8 KiB in 20 ms (window 4: two rounds)
    const timers = new FakeTimers();
    const h = harness(scriptedDevice({
      chunk: (m) => {
        timers.setTimeout(() => h.ch.emit({ t: 'ack', sid: m.sid, next: m.off + CHUNK, missing: [] }), 10);
        return [];
      },
    }), {}, { window: 4 }, timers);
    const r = await h.run();
    assert.equal(r.outcome, 'updated', r.reason);
    assert.equal(r.transferBps, (image.length * 1000) / 20);
  });

  it('keeps the throughput of an earlier attempt\'s transfer when a later one has none to measure', async () => {
    // attempt 1: acks 10 ms after each chunk, the image then fails to verify; attempt 2: the device holds it all
    const timers = new FakeTimers();
    const h = harness(scriptedDevice({
      offer: (m, n) => [{ t: 'accept', sid: m.sid, next: n === 1 ? 0 : image.length, chunk: CHUNK, window: 8 }],
      chunk: (m) => {
        timers.setTimeout(() => h.ch.emit({ t: 'ack', sid: m.sid, next: m.off + CHUNK, missing: [] }), 10);
        return [];
      },
      verify: (m, n) => [{ t: 'verified', sid: m.sid, ...(n === 1 ? { ok: false, code: 'sha256' } : { ok: true }) } as never],
    }), {}, { window: 4 }, timers);
    const r = await h.run();
    assert.deepEqual([r.outcome, r.retries], ['updated', 1]);
    assert.equal(r.transferBps, (image.length * 1000) / 20);
  });

  it('has no throughput to report when the transfer took no time', async () => {
    const r = await harness(scriptedDevice()).run();
    assert.equal('transferBps' in r, false);
  });
});

describe('device session: verify (§6.7)', () => {
  const verified = (v: { ok: boolean; code?: string; reason?: string }) => scriptedDevice({ verify: (m) => [{ t: 'verified', sid: m.sid, ...v } as never] });

  it('reports the verifying phase with the image\'s bytes, and skips a result of another session', async () => {
    const h = harness(scriptedDevice({ verify: (m) => [{ t: 'verified', sid: m.sid + 1, ok: false, code: 'sha256' }, { t: 'verified', sid: m.sid, ok: true }] }));
    const r = await h.run();
    assert.deepEqual([r.outcome, r.retries], ['updated', 0]);
    assert.ok(h.phases.some(([p, b]) => p === 'verifying' && b === image.length));
  });

  it('no verify result within verifyTimeoutMs: the wait ends with what it waited for', async () => {
    const h = harness(scriptedDevice({ verify: () => [] }), { maxAttempts: 1, verifyTimeoutMs: 4000 });
    const r = await h.run();
    assert.deepEqual([r.outcome, r.code], ['failed', 'retries-exhausted']);
    assert.equal(r.reason, 'timed out after 4000 ms waiting for verify result from dev-1 (after 1 attempts)');
  });

  it('a signature the device refuses: failed / bad-signature with its reason, not retried', async () => {
    const h = harness(verified({ ok: false, code: 'signature', reason: 'unknown-key: key 0123456789abcdef' }));
    const r = await h.run();
    assert.deepEqual([r.outcome, r.code, r.retries], ['failed', 'bad-signature', 0]);
    assert.equal(r.reason, 'device refuses the image\'s signature: unknown-key: key 0123456789abcdef');
    assert.equal(h.ch.count('offer'), 1);
    const bare = await harness(verified({ ok: false, code: 'signature' })).run();
    assert.equal(bare.reason, 'device refuses the image\'s signature');
  });

  it('an image that does not verify: failed / integrity-failure, retried; the reason names the code and the device\'s words', async () => {
    const h = harness(verified({ ok: false, code: 'sha256', reason: 'digest mismatch' }));
    const r = await h.run();
    assert.deepEqual([r.outcome, r.code, r.retries], ['failed', 'integrity-failure', 1]);
    assert.equal(r.reason, 'device reports the image does not verify (sha256: digest mismatch) (after 2 attempts)');
    assert.equal(h.ch.count('offer'), 2);
    assert.equal(h.ch.count('activate'), 0);
    const bare = await harness(verified({ ok: false }), { maxAttempts: 1 }).run();
    assert.equal(bare.reason, 'device reports the image does not verify (no code) (after 1 attempts)');
  });

  it('what the device still holds after a failed verify: nothing, unless it said the image is incomplete', async () => {
    // the device drops off after the failed verify; the next attempt waits for it (queued) with what it holds
    for (const [code, held] of [['sha256', 0], ['incomplete', image.length]] as const) {
      const h = harness(verified({ ok: false, code }), { maxAttempts: 2, offlineWaitMs: 1000 });
      h.ch.send = ((send) => async (id: string, m: GatewayMessage) => {
        await send(id, m);
        if (m.t === 'verify') h.ch.online = false;
      })(h.ch.send.bind(h.ch));
      const r = await h.run();
      assert.deepEqual([r.outcome, r.code], ['failed', 'offline']);
      assert.deepEqual(h.phases.at(-1), ['queued', held], `verify code ${code}`);
    }
  });
});
