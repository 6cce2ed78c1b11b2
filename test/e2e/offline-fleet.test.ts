import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DeviceFiles } from '../../device-sim/bootloader.ts';
import { fleetDeviceId } from '../../device-sim/fleet.ts';
import { makeSampleImage } from '../../firmware-samples/image-format.ts';
import { readFleetFile } from '../../gateway/fleet-store.ts';
import { parseJournal, type JournalState } from '../../gateway/rollout/journal.ts';
import { generateSigningKey } from '../../protocol/signature.ts';
import { freePort, ROOT, startTs, type Proc } from '../../scripts/lib/processes.ts';
import { createPtyPair, type PtyPair } from '../../scripts/lib/pty-pair.ts';
import { testKeyFiles } from '../helpers/keys.ts';
import { waitUntil } from '../helpers/wait.ts';
import { runEntry } from '../helpers/run-entry.ts';

const HW = 'sensor-v1';
const FROM = '1.0.0';

/**
 * Campaigns for a fleet that is not always online (issue: durable targets, catch-up at check-in,
 * cancel), with real processes: fwgate on a socat pty pair, two fwsim processes, fwpush. Outcomes
 * are read from the devices' own slot files and the campaign journals on disk.
 */
describe('end to end: a fleet that is not always online', function () {
  this.timeout(240_000);
  let dir: string;
  let pty: PtyPair | undefined;
  const procs: Proc[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fwgate-offline-'));
  });
  afterEach(async () => {
    for (const p of procs.splice(0).reverse()) await p.stop(3000).catch(() => undefined);
    await pty?.close().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });

  /** The gateway's config (a technician key) and its flags; a gateway started with them. */
  async function setup(): Promise<{ gwArgs: string[]; techKey: string; port: number; startGateway: (serial: boolean) => Promise<Proc> }> {
    pty = await createPtyPair(dir);
    const port = await freePort();
    const tech = generateSigningKey();
    const techKey = join(dir, 'technician.key');
    await writeFile(techKey, tech.privateKeyPem, { mode: 0o600 });
    await writeFile(join(dir, 'gateway.json'), JSON.stringify({ uplink: { technicianKeys: [{ publicKey: tech.publicKeyPem }] }, rollout: { campaignExpiryMs: 3_600_000 } }));
    const gwArgs = ['--config', join(dir, 'gateway.json'), '--data', join(dir, 'gw'), '--host', '127.0.0.1', '--port', String(port), '--log-format', 'json',
      '--trusted-key', testKeyFiles().pub];
    const startGateway = async (serial: boolean): Promise<Proc> => {
      const gw = startTs('fwgate', 'gateway/cli.ts', [...(serial ? ['--serial', pty!.a] : []), ...gwArgs], { stderr: 'ignore' });
      procs.push(gw);
      await gw.waitForLine(/^fwgate ready/, 30_000);
      return gw;
    };
    return { gwArgs, techKey, port, startGateway };
  }

  function startSim(port: number, prefix: string, count: number, extra: string[] = []): Proc {
    const sim = startTs(`fwsim-${prefix}`, 'device-sim/cli.ts', [
      '--broker', `mqtt://127.0.0.1:${port}`, '--count', String(count), '--prefix', prefix, '--data', join(dir, `devices-${prefix}`),
      '--hw', HW, '--version', FROM, '--pinned-key', testKeyFiles().pub, '--json', '--reconnect-delay', '100', '--reconnect-max', '500', ...extra,
    ], { stderr: 'ignore' });
    procs.push(sim);
    return sim;
  }

  const connected = (sim: Proc): number => sim.lines.filter((l) => l.includes('"type":"connected"')).length;

  /** fwpush as a real process to its end: exit code and its JSON lines. */
  function fwpush(args: string[], timeoutMs = 120_000): Promise<{ code: number | null; events: Record<string, unknown>[] }> {
    const child = spawn(process.execPath, ['--import', 'tsx', 'laptop/cli.ts', '--port', pty!.b, '--json', '--reconnect-timeout', '0', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`fwpush ${args.join(' ')} did not finish within ${timeoutMs} ms:\n${out}`));
      }, timeoutMs);
      child.once('exit', (code) => {
        clearTimeout(timer);
        const events = out.split('\n').flatMap((l) => {
          try {
            return [JSON.parse(l) as Record<string, unknown>];
          } catch {
            return [];
          }
        });
        resolve({ code, events });
      });
    });
  }

  async function journalOf(campaign: string): Promise<JournalState> {
    const path = join(dir, 'gw', 'journal', `${campaign}.jsonl`);
    return parseJournal(await readFile(path, 'utf8'), path).state;
  }

  /** A device's running slot, from its own state file. */
  async function running(prefix: string, id: string): Promise<{ version?: string; state?: string }> {
    const rec = await new DeviceFiles(join(dir, `devices-${prefix}`, id), 16 * 1024 * 1024).loadState();
    assert.ok(rec, `${id} has a state file`);
    return rec.slots[rec.active] ?? {};
  }

  it('restart with two devices offline: a now push updates the 4, reports 2 pending (exit 7), they are updated at their check-in; the same bytes with a new signed manifest upload nothing and update all 6', async () => {
    const { techKey, port, startGateway } = await setup();
    const image = makeSampleImage({ name: 'sensor-fw', version: '1.1.0', hw: HW, size: 96 * 1024 });
    const imagePath = join(dir, 'fw.bin');
    await writeFile(imagePath, image);

    let gw = await startGateway(true);
    const simA = startSim(port, 'dev', 4);
    let simB = startSim(port, 'mob', 2);
    await simA.waitForLine(() => connected(simA) >= 4, 60_000);
    await simB.waitForLine(() => connected(simB) >= 2, 60_000);
    // the gateway has written all six to its fleet file
    await waitUntil(async () => (await readFleetFile(join(dir, 'gw', 'fleet.json')).catch(() => undefined))?.devices.length === 6, 20_000, 'six devices in fleet.json');

    // the two-device process goes away; the gateway restarts: it knows them only from its fleet file
    await simB.stop();
    await gw.stop();
    gw = await startGateway(true);
    await simA.waitForLine(() => connected(simA) >= 8, 60_000);

    // a dry run first: the order it would get, nothing stored
    const plan = await fwpush(['--tech-key', techKey, 'plan', imagePath, '--name', 'sensor-fw', '--version', '1.1.0', '--hw', HW, '--sign-key', testKeyFiles().key, '--seq', '1']);
    assert.equal(plan.code, 0, JSON.stringify(plan.events.slice(-3)));
    const planned = plan.events.find((e) => e.event === 'planned') as { devices: { id: string; etaMs?: number }[]; preflight: Record<string, number> } | undefined;
    assert.ok(planned, JSON.stringify(plan.events));
    assert.deepEqual([planned.devices.filter((d) => d.etaMs !== undefined).length, planned.devices.length, planned.preflight.eligibleOffline], [4, 6, 2], 'four measured, two pending');
    assert.equal(existsSync(join(dir, 'gw', 'store', 'images')) ? (await readdir(join(dir, 'gw', 'store', 'images'))).length : 0, 0, 'nothing stored by the plan');

    const first = await fwpush(['--tech-key', techKey, imagePath, '--name', 'sensor-fw', '--version', '1.1.0', '--hw', HW, '--sign-key', testKeyFiles().key, '--seq', '1', '--now']);
    const summary = first.events.at(-1)!;
    assert.equal(summary.event, 'summary', JSON.stringify(first.events.slice(-3)));
    assert.equal(first.code, 7, `exit 7: done with the online devices, the rest pending (${JSON.stringify(summary)})`);
    assert.deepEqual([summary.updated, summary.pending, summary.failed], [4, 2, 0]);
    const grant = first.events.find((e) => e.event === 'grant');
    assert.deepEqual(grant?.preflight, { eligibleOnline: 4, eligibleOffline: 2, notNewer: 0, otherHw: 0, belowFloor: 0, busy: 0, notTargeted: 0 }, 'pre-flight counts before any data');
    const campaign = String(summary.campaign);
    for (let i = 0; i < 4; i++) assert.equal((await running('dev', fleetDeviceId('dev', i))).version, '1.1.0');
    for (let i = 0; i < 2; i++) assert.equal((await running('mob', fleetDeviceId('mob', i))).version, FROM, 'not online: not updated yet');
    assert.equal((await journalOf(campaign)).complete, undefined, 'the campaign waits for the two');

    // the two come back and check in: the campaign finishes with six updated
    simB = startSim(port, 'mob', 2);
    await waitUntil(async () => (await journalOf(campaign)).complete !== undefined, 60_000, `campaign ${campaign} complete`);
    const j = await journalOf(campaign);
    assert.equal(j.complete?.updated, 6, JSON.stringify(j.complete));
    assert.equal(j.lastState?.state, 'completed');
    // the operator's history, while the gateway runs
    const list = await runEntry('gateway/cli.ts', ['campaigns', '--data', join(dir, 'gw'), '--json']);
    assert.equal(list.code, 0, list.stderr);
    const entry = (JSON.parse(list.stdout) as { id: string; state: string; counts: Record<string, number> }[]).find((c) => c.id === campaign);
    assert.deepEqual([entry?.state, entry?.counts.updated, entry?.counts.pending], ['completed', 6, 0], list.stdout);
    for (let i = 0; i < 2; i++) {
      const slot = await running('mob', fleetDeviceId('mob', i));
      assert.deepEqual([slot.state, slot.version], ['confirmed', '1.1.0'], 'updated at its check-in');
    }

    // the same bytes, a new signed manifest (version 1.2.0, seq 2): no image bytes uploaded, every device updated to 1.2.0
    const second = await fwpush(['--tech-key', techKey, imagePath, '--name', 'sensor-fw', '--version', '1.2.0', '--hw', HW, '--sign-key', testKeyFiles().key, '--seq', '2', '--now']);
    assert.equal(second.code, 0, JSON.stringify(second.events.slice(-3)));
    const grant2 = second.events.find((e) => e.event === 'grant');
    assert.equal(grant2?.stored, true, 'the gateway holds the bytes');
    assert.equal(grant2?.offset, image.length);
    const uploads = second.events.filter((e) => e.event === 'upload');
    assert.ok(uploads.every((u) => u.resumedAt === image.length), `no data sent: ${JSON.stringify(uploads)}`);
    assert.equal(second.events.at(-1)?.updated, 6);
    for (let i = 0; i < 4; i++) assert.equal((await running('dev', fleetDeviceId('dev', i))).version, '1.2.0');
    for (let i = 0; i < 2; i++) assert.equal((await running('mob', fleetDeviceId('mob', i))).version, '1.2.0');
    const stored = JSON.parse(await readFile(join(dir, 'gw', 'store', 'images', `${String(grant2?.sha256)}.json`), 'utf8')) as { version: string; seq: number };
    assert.deepEqual([stored.version, stored.seq], ['1.2.0', 2], 'the new manifest is the stored one');
  });

  it('kill -9 while a campaign has only its first journal record (queued for a window), restart: it runs on the fleet the gateway knows, not on an empty one', async () => {
    const { techKey, port, gwArgs } = await setup();
    const image = makeSampleImage({ name: 'sensor-fw', version: '1.1.0', hw: HW, size: 32 * 1024 });
    const imagePath = join(dir, 'fw.bin');
    await writeFile(imagePath, image);
    // first run: a maintenance window once a year, so the campaign is queued (its journal holds only the campaign record)
    const cfg = JSON.parse(await readFile(join(dir, 'gateway.json'), 'utf8')) as Record<string, unknown>;
    await writeFile(join(dir, 'gateway.json'), JSON.stringify({ ...cfg, windows: { list: [{ cron: '0 3 1 1 *', durationMin: 60, timeZone: 'UTC' }] } }));
    const first = startTs('fwgate', 'gateway/cli.ts', ['--serial', pty!.a, ...gwArgs], { stderr: 'ignore' });
    procs.push(first);
    await first.waitForLine(/^fwgate ready/, 30_000);
    const sim = startSim(port, 'dev', 4);
    await sim.waitForLine(() => connected(sim) >= 4, 60_000);
    await waitUntil(async () => (await readFleetFile(join(dir, 'gw', 'fleet.json')).catch(() => undefined))?.devices.length === 4, 20_000, 'four devices in fleet.json');
    const queued = await fwpush(['--tech-key', techKey, imagePath, '--name', 'sensor-fw', '--version', '1.1.0', '--hw', HW, '--sign-key', testKeyFiles().key, '--seq', '1', '--in-window']);
    assert.equal(queued.code, 0, JSON.stringify(queued.events.slice(-2)));
    const campaign = String(queued.events.at(-1)?.campaign);
    assert.equal((await journalOf(campaign)).records, 1, 'only the campaign record');
    first.child.kill('SIGKILL');
    await first.exited;

    // second run: no windows (a window campaign runs at once), the devices not reconnected yet when it resumes
    await writeFile(join(dir, 'gateway.json'), JSON.stringify(cfg));
    const second = startTs('fwgate', 'gateway/cli.ts', gwArgs, { stderr: 'ignore' });
    procs.push(second);
    await second.waitForLine(/^fwgate ready/, 30_000);
    await waitUntil(async () => (await journalOf(campaign)).complete !== undefined, 90_000, `campaign ${campaign} complete`);
    const j = await journalOf(campaign);
    assert.equal(j.complete?.updated, 4, JSON.stringify(j.complete));
    for (let i = 0; i < 4; i++) {
      const slot = await running('dev', fleetDeviceId('dev', i));
      assert.deepEqual([slot.state, slot.version], ['confirmed', '1.1.0'], fleetDeviceId('dev', i));
    }
  });

  it('fwpush cancel during the transfers: every device keeps a bootable old image, the journal says cancelled', async () => {
    const { techKey, port, startGateway } = await setup();
    const image = makeSampleImage({ name: 'sensor-fw', version: '1.1.0', hw: HW, size: 1024 * 1024 });
    const imagePath = join(dir, 'fw.bin');
    await writeFile(imagePath, image);
    await startGateway(true);
    // slow links: a 1 MiB image takes several seconds per device
    const sim = startSim(port, 'dev', 4, ['--profile', 'wifi-poor']);
    await sim.waitForLine(() => connected(sim) >= 4, 60_000);

    const push = spawn(process.execPath, ['--import', 'tsx', 'laptop/cli.ts', '--port', pty!.b, '--tech-key', techKey, imagePath, '--name', 'sensor-fw', '--version', '1.1.0', '--hw', HW,
      '--sign-key', testKeyFiles().key, '--seq', '1', '--now', '--json', '--reconnect-timeout', '0'], { cwd: ROOT, stdio: 'ignore' });
    const pushed = new Promise<void>((r) => push.once('exit', () => r()));
    await sim.waitForLine((l) => l.includes('"type":"offer-accepted"'), 90_000);
    push.kill('SIGTERM'); // the technician leaves; the gateway carries on
    await pushed;

    const cancel = await fwpush(['--tech-key', techKey, 'cancel']);
    assert.equal(cancel.code, 0, JSON.stringify(cancel.events));
    const accepted = cancel.events.find((e) => e.event === 'accepted');
    assert.ok(accepted, JSON.stringify(cancel.events));
    const campaign = String(accepted.campaign);
    await waitUntil(async () => (await journalOf(campaign)).complete !== undefined, 60_000, `campaign ${campaign} complete`);
    const j = await journalOf(campaign);
    assert.equal(j.lastState?.state, 'cancelled');
    const show = await runEntry('gateway/cli.ts', ['campaign', 'show', campaign, '--data', join(dir, 'gw'), '--json']);
    assert.equal(show.code, 0, show.stderr);
    const detail = JSON.parse(show.stdout) as { state: string; devices: { id: string; outcome: string }[] };
    assert.equal(detail.state, 'cancelled');
    assert.deepEqual(detail.devices.map((d) => [d.id, d.outcome]).sort(), [...j.results.values()].map((r) => [r.id, r.outcome]).sort(), 'campaign show says what the journal says');
    const results = [...j.results.values()];
    assert.equal(results.length, 4);
    assert.ok(results.some((r) => r.outcome === 'cancelled'), JSON.stringify(results));
    for (const r of results) {
      const slot = await running('dev', r.id);
      // bootable, and on the version its result says
      assert.equal(slot.state, 'confirmed', `${r.id} boots a confirmed image`);
      assert.equal(slot.version, r.outcome === 'updated' ? '1.1.0' : FROM, `${r.id}: ${r.outcome}`);
      assert.ok(r.outcome === 'updated' || r.outcome === 'cancelled', `${r.id}: ${r.outcome} ${r.code}`);
    }
    assert.ok(existsSync(join(dir, 'gw', 'journal', `${campaign}.jsonl`)));
    // each cancelled device that had accepted the offer was told to abort it (its transfer state dropped)
    for (const r of results.filter((x) => x.outcome === 'cancelled')) {
      const mine = (): string[] => sim.lines.filter((l) => l.includes(`"id":"${r.id}"`));
      if (!mine().some((l) => l.includes('"type":"offer-accepted"'))) continue;
      await waitUntil(() => mine().some((l) => l.includes('"type":"aborted"')), 20_000, `${r.id} to report its transfer aborted`);
    }
  });
});
