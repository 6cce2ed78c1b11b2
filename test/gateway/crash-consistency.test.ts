import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FLEET_FILE, FleetStore, readFleetFile } from '../../gateway/fleet-store.ts';
import { silentLogger } from '../../gateway/log.ts';
import { CampaignJournal, parseJournal, type JournalRecord } from '../../gateway/rollout/journal.ts';
import { ImageStore } from '../../gateway/store.ts';
import { crc32 } from '../../protocol/crc.ts';
import type { Manifest } from '../../protocol/manifest.ts';
import type { ResultMessage } from '../../protocol/uplink.ts';
import { CrashRecorder, type CrashState } from '../helpers/crash-fs.ts';
import { FakeTimers } from './rollout/fake.ts';

/**
 * Crash consistency of the gateway's own files against a lost page cache (issue 22, item 3), in
 * the style of ALICE / CrashMonkey: the image store's upload and commit, the fleet file's save and
 * the campaign journal's appends run over test/helpers/crash-fs.ts, which records every write,
 * fsync/fdatasync, rename, unlink and directory fsync. For every crash point, every state the
 * pessimistic model allows (unsynced data lost or torn, directory changes without a directory
 * fsync lost, as any prefix) is written to a scratch directory and judged from the outside:
 * - store: it opens; every image it holds is whole (SHA-256 of images/<sha>.bin, size of its
 *   manifest); once `commit` resolved, the image is there; an upload resumes from bytes that are the
 *   image's, and no further back than the documented sync interval allows;
 * - fleet: the file is the previous save or a newer one, whole; once a save resolved, at least it;
 * - journal: it replays to a prefix of the records appended; once an append returned (or a record's
 *   promise resolved), that record is in the replay — so an `activating` acknowledged before
 *   `activate` went out is never lost, and no campaign activates a device twice after a crash.
 * Removing any fsync, fdatasync or directory fsync that these guarantees rest on fails this test
 * (the list tried is in docs/reliability.md, "Crash consistency").
 */

const SCRATCH_BASE = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();

/** Judge every distinct crash state of every crash point from `from` on; the first violation fails with its state. */
async function everyCrash(rec: CrashRecorder, scratch: string, judge: (dir: string, k: number) => Promise<void>): Promise<number> {
  const seen = new Set<string>();
  let judged = 0;
  for (let k = 0; k <= rec.ops.length; k++) {
    for (const state of rec.crashStates(k)) {
      const key = `${k}|${fingerprint(state)}`;
      if (seen.has(key)) continue;
      seen.add(key);
      CrashRecorder.materialize(state, scratch);
      try {
        await judge(scratch, k);
      } catch (err) {
        throw new Error(`${state.describe}: ${(err as Error).message}`, { cause: err });
      }
      judged++;
    }
  }
  return judged;
}

function fingerprint(state: CrashState): string {
  const h = createHash('sha256');
  for (const [p, c] of [...state.files].sort(([a], [b]) => a.localeCompare(b))) h.update(`${p}\0${c.length}\0`).update(c);
  return h.digest('hex');
}

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

describe('crash consistency of the gateway\'s files (lost page cache, every crash point)', function () {
  this.timeout(120_000);
  let root: string;
  let scratch: string;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'fwgate-crash-'));
    scratch = mkdtempSync(join(SCRATCH_BASE, 'fwgate-crash-state-'));
  });
  afterEach(() => {
    rmSync(root, { recursive: true, force: true });
    rmSync(scratch, { recursive: true, force: true });
  });

  it('image store: an upload and its commit leave a whole, verified image or none; a committed one survives; a resume starts on image bytes', async () => {
    const SYNC_EVERY = 4096;
    const CHUNK = 1000;
    const image = Buffer.alloc(11_500);
    for (let i = 0; i < image.length; i++) image[i] = (i * 7 + 3) & 0xff;
    const manifest: Manifest = { name: 'fw', version: '1.1.0', hw: ['sensor-v1'], size: image.length, crc32: crc32(image), sha256: sha256(image), chunk: 4096 };
    const opts = { maxImageSize: 1 << 20, syncEveryBytes: SYNC_EVERY, logger: (): void => undefined };
    const store = await ImageStore.open({ dir: join(root, 'store'), ...opts });
    const rec = new CrashRecorder(root);
    await rec.start();
    const written: number[] = []; // written[i]: bytes accepted by write() when mark i was placed
    try {
      const up = await store.beginUpload(manifest);
      for (let off = 0; off < image.length; off += CHUNK) {
        const end = Math.min(image.length, off + CHUNK);
        await up.write(off, image.subarray(off, end));
        rec.mark(`written ${end}`);
        written.push(end);
      }
      await up.commit();
      rec.mark('committed');
    } finally {
      rec.stop();
    }
    const c = rec.counts();
    assert.ok(c.syncs >= 3 && c.dirsyncs >= 3 && c.renames >= 2, `the recorder saw the commit's syncs and renames: ${JSON.stringify(c)}`);
    const committedAt = rec.markAt('committed');
    const acceptedBefore = (k: number): number => Math.max(0, ...written.filter((w) => rec.markAt(`written ${w}`) <= k));

    const judged = await everyCrash(rec, scratch, async (dir, k) => {
      const s = await ImageStore.open({ dir: join(dir, 'store'), ...opts });
      // judged from the files, not the store's word: every image file in images/ is whole
      const images = join(dir, 'store', 'images');
      for (const name of readdirSync(images).filter((n) => n.endsWith('.bin'))) {
        const bytes = readFileSync(join(images, name));
        const sha = name.slice(0, -4);
        assert.equal(sha256(bytes), sha, `images/${name} holds other bytes than its name says`);
        const m = JSON.parse(readFileSync(join(images, `${sha}.json`), 'utf8')) as Manifest;
        assert.equal(m.size, bytes.length, `images/${sha}.json gives another size`);
      }
      for (const img of s.list()) assert.equal(sha256(await s.read(img.manifest.sha256)), img.manifest.sha256, 'a listed image reads back whole');
      if (k >= committedAt) {
        assert.ok(s.has(manifest.sha256), 'an image whose commit resolved is in the store after the crash');
        return;
      }
      if (s.has(manifest.sha256)) return;
      const up = await s.beginUpload(manifest);
      const part = readFileSync(join(dir, 'store', 'partial', `${manifest.sha256}.part`));
      assert.ok(part.subarray(0, up.offset).equals(image.subarray(0, up.offset)), `the resume offset ${up.offset} covers only bytes of the image`);
      const accepted = acceptedBefore(k);
      assert.ok(up.offset >= accepted - SYNC_EVERY - CHUNK, `a crash after ${accepted} accepted bytes resumes at ${up.offset}: more than the sync interval (${SYNC_EVERY}) and one message lost`);
      await up.abandon();
    });
    assert.ok(judged > 50, `judged ${judged} distinct crash states`);
  });

  it('fleet file: each save leaves the previous file or the new one, whole; a resolved save survives', async () => {
    const dataDir = join(root, 'gw');
    mkdirSync(dataDir);
    const timers = new FakeTimers();
    const device = (id: string) => ({ id, hw: 'sensor-v1', version: '1.0.0' });
    const first = await FleetStore.open({ dataDir, log: silentLogger(), timers, now: () => 1_000_000, minWriteIntervalMs: 0 });
    first.checkIn(device('dev-z'));
    await first.close();
    const rec = new CrashRecorder(root);
    const store = await FleetStore.open({ dataDir, log: silentLogger(), timers, now: () => 2_000_000, minWriteIntervalMs: 0 });
    await rec.start();
    const saves = [['dev-z']];
    try {
      for (const id of ['dev-a', 'dev-b']) {
        store.checkIn(device(id));
        await store.flush();
        saves.push([...saves.at(-1)!, id].sort());
        rec.mark(`saved ${saves.length - 1}`);
      }
    } finally {
      rec.stop();
    }
    assert.ok(rec.counts().dirsyncs >= 2, 'the recorder saw the saves');
    const judged = await everyCrash(rec, scratch, async (dir, k) => {
      const file = await readFleetFile(join(dir, 'gw', FLEET_FILE));
      assert.ok(file, 'the fleet file exists');
      const ids = file.devices.map((d) => d.id).sort();
      const which = saves.findIndex((s) => s.join() === ids.join());
      assert.ok(which >= 0, `the fleet file holds ${ids.join(', ')}: not one of the saves`);
      const resolved = saves.map((_, i) => i).filter((i) => i > 0 && rec.markAt(`saved ${i}`) <= k);
      assert.ok(which >= Math.max(0, ...resolved), `save ${Math.max(0, ...resolved)} resolved before the crash, the file holds save ${which}`);
    });
    assert.ok(judged > 10, `judged ${judged} distinct crash states`);
  });

  it('campaign journal: replays to a prefix of what was appended, and every acknowledged record survives', async () => {
    const dir = join(root, 'journal');
    mkdirSync(dir);
    writeFileSync(join(dir, 'older.jsonl.corrupt'), 'x'); // a directory that is not empty
    const SHA = 'cd'.repeat(32);
    const result = (id: string): ResultMessage => ({ t: 'result', campaign: 'c-1', id, outcome: 'updated', code: 'ok', from: '1.0.0', to: '1.1.0', durationMs: 10, retries: 0 });
    const rec = new CrashRecorder(root);
    await rec.start();
    const appended: JournalRecord[] = [];
    const acked: number[] = []; // acked[i]: records acknowledged durable at mark `ack i`
    const ack = (): void => {
      acked.push(appended.length);
      rec.mark(`ack ${acked.length - 1}`);
    };
    try {
      const j = CampaignJournal.create(dir, 'c-1', SHA, 1000);
      appended.push({ r: 'campaign', id: 'c-1', sha256: SHA, at: 1000 });
      ack();
      const append = (r: JournalRecord, durable: boolean): void => {
        appended.push(r);
        j.append(r, durable);
      };
      const record = (r: JournalRecord, durable: boolean): Promise<void> => {
        appended.push(r);
        return j.record(r, durable);
      };
      append({ r: 'order', order: { t: 'order', campaign: 'c-1', image: { name: 'fw', version: '1.1.0', sha256: SHA }, devices: [{ id: 'd1', rank: 1, from: '1.0.0' }, { id: 'd2', rank: 2, from: '1.0.0' }], excluded: [] } }, true);
      ack();
      await record({ r: 'held', id: 'd1', bytes: 4096 }, false);
      await record({ r: 'activating', id: 'd1' }, true);
      ack();
      const a = record({ r: 'activating', id: 'd2' }, true);
      const b = record({ r: 'result', result: result('d1') }, true);
      await Promise.all([a, b]);
      ack();
      append({ r: 'held', id: 'd2', bytes: 100 }, false);
      append({ r: 'result', result: result('d2') }, true);
      ack();
      j.close();
    } finally {
      rec.stop();
    }
    assert.ok(rec.counts().syncs >= 4 && rec.counts().dirsyncs >= 1, `the recorder saw the appends' syncs: ${JSON.stringify(rec.counts())}`);
    const judged = await everyCrash(rec, scratch, async (d, k) => {
      const done = acked.filter((_, i) => rec.markAt(`ack ${i}`) <= k);
      const mustHave = Math.max(0, ...done);
      const path = join(d, 'journal', 'c-1.jsonl');
      if (!existsSync(path)) {
        assert.equal(mustHave, 0, `the journal is gone, yet ${mustHave} records were acknowledged`);
        return;
      }
      const text = readFileSync(path, 'utf8');
      let records: JournalRecord[];
      try {
        records = text.split('\n').slice(0, parseJournal(text, path).state.records).map((l) => JSON.parse(l.slice(9)) as JournalRecord);
      } catch (err) {
        assert.equal(mustHave, 0, `the journal is unreadable (${(err as Error).message}), yet ${mustHave} records were acknowledged`);
        return;
      }
      assert.deepEqual(records, appended.slice(0, records.length), 'the replay is a prefix of what was appended');
      assert.ok(records.length >= mustHave, `${mustHave} records were acknowledged, the replay has ${records.length}`);
      const { state } = parseJournal(text, path);
      for (const r of appended.slice(0, mustHave)) {
        if (r.r === 'activating') assert.ok(state.activating.has(r.id), `an acknowledged activating of ${r.id} survives: it is never activated twice`);
      }
    });
    assert.ok(judged > 20, `judged ${judged} distinct crash states`);
  });
});
