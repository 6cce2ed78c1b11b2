import assert from 'node:assert/strict';
import { readFile, writeFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { SimEvent } from '../../device-sim/device.ts';
import { controlCall } from '../../gateway/control.ts';
import { parseJournal } from '../../gateway/rollout/journal.ts';
import type { GatewayUplinkMessage } from '../../protocol/uplink.ts';
import { isFwError } from '../../protocol/errors.ts';
import { Rig, sampleImage } from '../helpers/rig.ts';
import { waitUntil } from '../helpers/wait.ts';
import { runEntry } from '../helpers/run-entry.ts';
import { makeTestKey, signed, testKey } from '../helpers/keys.ts';
import { preflightSeqWarning } from '../../laptop/seq-warning.ts';

/**
 * The campaign lifecycle with a real gateway, broker, serial pty and simulated devices
 * (docs/operations.md "Campaigns for a fleet that is not always online", docs/protocol.md §7.3.6,
 * §7.12): waves and their gate, pause and resume, retry, cancel from the host, a rotten stored
 * copy. Outcomes are read from the devices (their events and running slot) and the journal.
 */
const ofType = <T extends GatewayUplinkMessage['t']>(events: GatewayUplinkMessage[], t: T): Extract<GatewayUplinkMessage, { t: T }>[] =>
  events.filter((e): e is Extract<GatewayUplinkMessage, { t: T }> => e.t === t);

function offersOf(r: Rig): Map<string, number> {
  const offers = new Map<string, number>();
  for (const d of r.sims.devices) d.on('event', (e: SimEvent) => {
    if (e.type === 'offer-accepted') offers.set(d.id, (offers.get(d.id) ?? 0) + 1);
  });
  return offers;
}

describe('integration: campaign lifecycle (waves, pause, retry, cancel, a rotten stored copy)', function () {
  this.timeout(90_000);
  let rig: Rig | undefined;
  afterEach(async () => {
    await rig?.stop();
    rig = undefined;
  });

  it('a canary wave that fails stops the campaign at the wave gate: later waves are never offered the image', async () => {
    rig = await Rig.start({ devices: 5, faults: (i) => (i === 0 ? { failSelfTest: true } : undefined) });
    const offers = offersOf(rig);
    const { image, manifest } = sampleImage({ version: '1.1.0', size: 16 * 1024 });
    await rig.client.connect();
    const { campaign } = await rig.client.push(manifest, image, { waves: [{ count: 1 }, { pct: 100 }] });
    const complete = await rig.client.follow(campaign);
    assert.equal(complete.halted?.code, 'wave-gate', JSON.stringify(complete));
    const order = ofType(rig.events, 'order')[0]!;
    // the canary is the first target by id; each wave is ranked fastest first within itself (so the order inside wave 2 is the links')
    assert.deepEqual(order.devices.map((d) => `${d.id} ${d.wave}`).sort(), ['dev-001 1', 'dev-002 2', 'dev-003 2', 'dev-004 2', 'dev-005 2']);
    assert.deepEqual(order.devices.map((d) => d.wave), [1, 2, 2, 2, 2], 'wave 1 ranked before wave 2');
    const results = new Map(ofType(rig.events, 'result').map((r) => [r.id, r]));
    assert.deepEqual([results.get('dev-001')?.outcome, results.get('dev-001')?.code], ['rolled-back', 'self-test-failed']);
    for (const d of rig.sims.devices.slice(1)) {
      assert.deepEqual([results.get(d.id)?.outcome, results.get(d.id)?.code], ['skipped', 'campaign-halted'], d.id);
      assert.equal(offers.get(d.id), undefined, `${d.id} was never offered the image`);
      assert.equal(d.running?.version, '1.0.0');
    }
  });

  it('--wave-pause: after the first wave the campaign waits (no offer to the next wave) until resume', async () => {
    rig = await Rig.start({ devices: 4 });
    const offers = offersOf(rig);
    const { image, manifest } = sampleImage({ version: '1.1.0', size: 16 * 1024 });
    await rig.client.connect();
    const { campaign } = await rig.client.push(manifest, image, { waves: [{ count: 2 }, { pct: 100 }], wavePause: true });
    const paused = await rig.client.followUntilWaiting(campaign);
    assert.equal(paused.t, 'waiting');
    assert.equal(paused.t === 'waiting' && paused.pausedBeforeWave, 2);
    // the event sequence so far: wave 1's two devices updated, nobody of wave 2 offered
    assert.deepEqual(ofType(rig.events, 'result').map((r) => `${r.id} ${r.outcome}`).sort(), ['dev-001 updated', 'dev-002 updated']);
    assert.deepEqual([offers.get('dev-003'), offers.get('dev-004')], [undefined, undefined]);
    const accepted = await rig.client.control({ t: 'resume', campaign });
    assert.deepEqual([accepted.request, accepted.campaign], ['resume', campaign]);
    const complete = await rig.client.follow(campaign);
    assert.equal(complete.updated, 4);
    for (const d of rig.sims.devices) assert.equal(d.running?.version, '1.1.0', d.id);
    // resume of a campaign that is not paused is refused
    await assert.rejects(rig.client.control({ t: 'resume', campaign }), /unknown-campaign/);
  });

  it('a busy device in a now campaign is pending (exit 7 for fwpush), updated once it reports idle; its result counts the busy turn', async () => {
    rig = await Rig.start({ devices: 2, faults: (i) => (i === 0 ? { busy: true } : undefined) });
    const { image, manifest } = sampleImage({ version: '1.1.0', size: 16 * 1024 });
    await rig.client.connect();
    const { campaign } = await rig.client.push(manifest, image, { policy: 'now' });
    const waiting = await rig.client.followUntilWaiting(campaign);
    assert.equal(waiting.t, 'waiting', JSON.stringify(waiting));
    const busy = rig.sims.devices[0]!;
    assert.deepEqual(waiting.t === 'waiting' ? waiting.devices.map((d) => [d.id, d.reason]) : [], [[busy.id, 'device is busy']], 'the device\'s reason, not repeated');
    busy.setFaults({ busy: undefined }); // it reports idle: its check-in releases it
    const complete = await rig.client.follow(campaign);
    assert.equal(complete.updated, 2);
    const r = ofType(rig.events, 'result').find((x) => x.id === busy.id)!;
    assert.equal(r.outcome, 'updated');
    assert.ok(r.retries >= 1, `the busy offer counts as an attempt: ${JSON.stringify(r)}`);
    assert.equal(busy.running?.version, '1.1.0');
  });

  it('two campaigns alive: one waits for an offline device while a newer upload of the same image name runs; the newer one supersedes the pending task, and the device gets the newer image at its check-in', async () => {
    rig = await Rig.start({ devices: 2 });
    const gone = rig.sims.devices[1]!;
    await gone.stop();
    await waitUntil(() => !rig!.gateway.fleet.get(gone.id)?.online, 10_000, 'the gateway to see the device go');
    const v1 = sampleImage({ version: '1.1.0', size: 16 * 1024 });
    await rig.client.connect();
    const a = await rig.client.push(v1.manifest, v1.image, { policy: 'now' });
    const waiting = await rig.client.followUntilWaiting(a.campaign);
    assert.equal(waiting.t, 'waiting');
    // the first campaign only waits for a check-in: it does not hold the next upload back
    const v2 = sampleImage({ version: '1.2.0', size: 16 * 1024, seq: 2 });
    const b = await rig.client.push(v2.manifest, v2.image, { policy: 'now' });
    // (A's completion may come while B's push is answered: read it from the events, not by following A)
    await waitUntil(() => ofType(rig!.events, 'complete').some((c) => c.campaign === a.campaign), 20_000, 'the first campaign to complete');
    const completeA = ofType(rig.events, 'complete').find((c) => c.campaign === a.campaign)!;
    assert.deepEqual([completeA.updated, completeA.superseded], [1, 1], JSON.stringify(completeA));
    const sup = ofType(rig.events, 'result').find((r) => r.campaign === a.campaign && r.id === gone.id)!;
    assert.deepEqual([sup.outcome, sup.code, sup.reason], ['superseded', 'superseded', `superseded by campaign ${b.campaign}`]);
    await gone.start();
    const completeB = await rig.client.follow(b.campaign);
    assert.equal(completeB.updated, 2, JSON.stringify(completeB));
    assert.equal(gone.running?.version, '1.2.0', 'the newer image, never the superseded one');
  });

  it('plan measures and ranks without storing or updating; --only / --group narrow the targets; --require-online and unknown targets are refused before any data', async () => {
    rig = await Rig.start({ devices: 3 });
    const offers = offersOf(rig);
    const { image, manifest } = sampleImage({ version: '1.1.0', size: 16 * 1024 });
    await rig.client.connect();
    const plan = await rig.client.plan(manifest, { only: ['dev-003', 'dev-001'] });
    assert.deepEqual(plan.devices.map((d) => d.id).sort(), ['dev-001', 'dev-003']);
    assert.ok(plan.devices.every((d) => d.rttMs !== undefined && d.etaMs !== undefined), 'measured');
    assert.deepEqual(plan.preflight, { eligibleOnline: 2, eligibleOffline: 0, notNewer: 0, otherHw: 0, belowFloor: 0, busy: 0, notTargeted: 1 });
    assert.equal(offers.size, 0, 'nothing offered');
    assert.equal(rig.gateway.store.has(manifest.sha256), false, 'nothing stored');
    await assert.rejects(rig.client.requestToSend(manifest, { policy: 'now', requireOnline: 4 }), /not-enough-online/);
    await assert.rejects(rig.client.requestToSend(manifest, { only: ['nobody'] }), /no-targets/);
    await assert.rejects(rig.client.requestToSend(manifest, { group: 'north' }), /no-targets/, 'no device in that group');
    // groups come from the device list (fwgate device add --group)
    const file = join(rig.dir, 'devices.json');
    const list = JSON.parse(await readFile(file, 'utf8')) as { id: string; groups?: string[] }[];
    list[1]!.groups = ['north'];
    await writeFile(file, JSON.stringify(list));
    const { campaign } = await rig.client.push(manifest, image, { group: 'north' });
    const complete = await rig.client.follow(campaign);
    assert.deepEqual([complete.devices, complete.updated], [1, 1]);
    assert.deepEqual([...offers.keys()], ['dev-002']);
  });

  it('status --campaign replays a given campaign, from memory or from its journal after a restart; an unknown id is refused', async () => {
    rig = await Rig.start({ devices: 2 });
    const v1 = sampleImage({ version: '1.1.0', size: 16 * 1024 });
    await rig.client.connect();
    const a = await rig.client.push(v1.manifest, v1.image);
    await rig.client.follow(a.campaign);
    const v2 = sampleImage({ version: '1.2.0', size: 16 * 1024, seq: 2 });
    const b = await rig.client.push(v2.manifest, v2.image);
    await rig.client.follow(b.campaign);
    const before = rig.events.length;
    const state = await rig.client.status(a.campaign);
    assert.deepEqual([state.campaign, state.running, state.image?.version], [a.campaign, false, '1.1.0']);
    await waitUntil(() => rig!.events.slice(before).some((e) => e.t === 'complete' && e.campaign === a.campaign), 10_000, 'the replay of the first campaign');
    const replayed = rig.events.slice(before).filter((e) => 'campaign' in e && e.campaign === a.campaign);
    assert.deepEqual(replayed.filter((e) => e.t === 'result').map((e) => e.t === 'result' && e.id).sort(), ['dev-001', 'dev-002']);
    // from the journal: a campaign the gateway no longer holds in memory
    const fromJournal = rig.gateway.campaignState(a.campaign);
    rig.gateway.campaigns.splice(0);
    const again = rig.gateway.campaignState(a.campaign);
    assert.deepEqual(again.map((m) => m.t), ['state', 'fleet', 'order', 'result', 'result', 'complete']);
    assert.deepEqual(again.filter((m) => m.t === 'complete'), fromJournal.filter((m) => m.t === 'complete'), 'the same completion from memory and from the journal');
    await assert.rejects(rig.client.status('c-unknown'), /unknown-campaign/);
  });

  it('a key rotation: the same bytes re-signed with the new key upload nothing, and devices that pin only the new key take them', async () => {
    const newKey = makeTestKey();
    rig = await Rig.start({
      devices: 2, device: { pinnedKeys: [newKey.publicKeyPem] },
      config: { security: { trustedKeys: [{ publicKey: testKey().publicKeyPem }, { publicKey: newKey.publicKeyPem }], allowUnsigned: false } },
    });
    const { image, manifest } = sampleImage({ version: '1.1.0', size: 16 * 1024 }); // signed with the old key
    await rig.client.connect();
    const old = await rig.client.push(manifest, image);
    const first = await rig.client.follow(old.campaign);
    assert.deepEqual([first.updated, first.failed], [0, 2], 'the devices refuse the old key');
    assert.ok(ofType(rig.events, 'result').every((r) => r.code === 'bad-signature'), JSON.stringify(ofType(rig.events, 'result')));
    const rotated = signed({ ...manifest, seq: 2, signature: undefined }, newKey);
    const grant = await rig.client.requestToSend(rotated);
    assert.deepEqual([grant.stored, grant.offset], [true, image.length], 'the bytes are already there');
    await rig.client.upload(image, grant);
    const c = await rig.client.commit();
    const complete = await rig.client.follow(c.campaign);
    assert.deepEqual([complete.updated, complete.failed], [2, 0], JSON.stringify(complete));
    for (const d of rig.sims.devices) assert.equal(d.running?.version, '1.1.0');
    assert.equal(rig.gateway.store.get(manifest.sha256)?.manifest.signature?.keyId, newKey.keyId, 'the new manifest is the stored one');
  });

  it('the pre-flight says the highest seq the targeted devices confirmed, so fwpush warns before any data that a lower seq will be refused', async () => {
    rig = await Rig.start({ devices: 2 });
    const v1 = sampleImage({ version: '1.1.0', size: 16 * 1024, seq: 7 });
    await rig.client.connect();
    const first = await rig.client.push(v1.manifest, v1.image);
    assert.equal((await rig.client.follow(first.campaign)).updated, 2);
    const low = sampleImage({ version: '1.2.0', size: 16 * 1024, seq: 3 });
    const grant = await rig.client.requestToSend(low.manifest);
    assert.equal(grant.preflight?.confirmedSeq, 7);
    assert.match(preflightSeqWarning(low.manifest.seq, grant.preflight?.confirmedSeq) ?? '', /seq 3 is below seq 7, which devices of this site already confirmed/);
    assert.equal(preflightSeqWarning(8, grant.preflight?.confirmedSeq), undefined, 'no warning at or above it');
    const fleetFile = async (): Promise<{ devices: { confirmedSeq?: number }[] }> => JSON.parse(await readFile(join(rig!.dir, 'gateway', 'fleet.json'), 'utf8')) as { devices: { confirmedSeq?: number }[] };
    await waitUntil(async () => (await fleetFile()).devices.every((d) => d.confirmedSeq === 7), 5000, 'fleet.json to keep each device\'s confirmed seq');
  });

  it('retry --rolled-back: a new campaign from the stored manifest for exactly the device that rolled back, with no upload', async () => {
    rig = await Rig.start({ devices: 3, faults: (i) => (i === 1 ? { failSelfTest: true } : undefined) });
    const { image, manifest } = sampleImage({ version: '1.1.0', size: 16 * 1024 });
    await rig.client.connect();
    const { campaign } = await rig.client.push(manifest, image);
    const first = await rig.client.follow(campaign);
    assert.deepEqual([first.updated, first.rolledBack], [2, 1]);
    const bad = rig.sims.devices[1]!;
    bad.setFaults({ failSelfTest: undefined });
    const storedBefore = await readdir(join(rig.dir, 'gateway', 'store', 'images'));
    await assert.rejects(rig.client.control({ t: 'retry', campaign, outcomes: ['failed'] }), /nothing-to-retry/);
    const accepted = await rig.client.control({ t: 'retry', campaign, outcomes: ['rolled-back'] });
    assert.notEqual(accepted.campaign, campaign);
    const complete = await rig.client.follow(accepted.campaign);
    assert.deepEqual([complete.devices, complete.updated], [1, 1], JSON.stringify(complete));
    const order = ofType(rig.events, 'order').find((o) => o.campaign === accepted.campaign)!;
    assert.deepEqual(order.devices.map((d) => d.id), [bad.id]);
    assert.equal(bad.running?.version, '1.1.0');
    assert.deepEqual(await readdir(join(rig.dir, 'gateway', 'store', 'images')), storedBefore, 'nothing new stored');
    const journal = parseJournal(await readFile(join(rig.dir, 'gateway', 'journal', `${accepted.campaign}.jsonl`), 'utf8')).state;
    assert.deepEqual([journal.retryOf, journal.targets], [campaign, [bad.id]]);
  });

  it('fwgate campaign cancel (the control socket) on a queued campaign: every device ends cancelled, none is offered, the history says cancelled', async () => {
    rig = await Rig.start({ devices: 2, config: { windows: { list: [{ cron: '0 3 1 1 *', durationMin: 60, timeZone: 'UTC' }] } } });
    const offers = offersOf(rig);
    const { image, manifest } = sampleImage({ version: '1.1.0', size: 16 * 1024 });
    await rig.client.connect();
    const { campaign, committed } = await rig.client.push(manifest, image, { policy: 'window' });
    assert.ok(committed.queued, 'queued for the window');
    const dataDir = join(rig.dir, 'gateway');
    const unknown = await controlCall(dataDir, { op: 'cancel', campaign: 'c-nope' });
    assert.deepEqual([unknown.ok, !unknown.ok && unknown.code], [false, 'E_UNKNOWN_CAMPAIGN']);
    // the operator's command line, a real process, through the same socket
    const refused = await runEntry('gateway/cli.ts', ['campaign', 'cancel', 'c-nope', '--data', dataDir]);
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(refused.stderr, /E_UNKNOWN_CAMPAIGN: no live campaign c-nope/);
    const none = await runEntry('gateway/cli.ts', ['campaign', 'cancel', campaign, '--data', join(rig.dir, 'elsewhere')]);
    assert.equal(none.code, 3, none.stderr);
    assert.match(none.stderr, /no gateway is running on/);
    const done = await runEntry('gateway/cli.ts', ['campaign', 'cancel', campaign, '--data', dataDir]);
    assert.equal(done.code, 0, done.stderr);
    assert.equal(done.stdout, `cancel: campaign ${campaign}\n`);
    const path = join(dataDir, 'journal', `${campaign}.jsonl`);
    await waitUntil(async () => parseJournal(await readFile(path, 'utf8')).state.complete !== undefined, 20_000, 'the cancelled campaign to complete');
    const j = parseJournal(await readFile(path, 'utf8')).state;
    assert.equal(j.lastState?.state, 'cancelled');
    assert.deepEqual([...j.results.values()].map((r) => [r.id, r.outcome, r.code]).sort(), [['dev-001', 'cancelled', 'cancelled'], ['dev-002', 'cancelled', 'cancelled']]);
    assert.equal(j.complete?.cancelled, 2);
    assert.equal(offers.size, 0, 'no device was offered the image');
    const again = await controlCall(dataDir, { op: 'cancel', campaign });
    assert.equal(again.ok, false, 'a finished campaign cannot be cancelled');
  });

  it('a stored copy that rotted on disk is not served: the next push of the same image re-checks it, quarantines it and uploads afresh', async () => {
    rig = await Rig.start({ devices: 2 });
    const v1 = sampleImage({ version: '1.1.0', size: 16 * 1024 });
    await rig.client.connect();
    const first = await rig.client.push(v1.manifest, v1.image);
    assert.equal((await rig.client.follow(first.campaign)).updated, 2);
    // flip one byte of the stored image
    const bin = join(rig.dir, 'gateway', 'store', 'images', `${v1.manifest.sha256}.bin`);
    const bytes = await readFile(bin);
    bytes[100] = bytes[100]! ^ 0xff;
    await writeFile(bin, bytes);
    // opened for a campaign (here a retry), the copy is read back and verified: refused, quarantined
    const stored = rig.gateway.store.get(v1.manifest.sha256)!;
    await assert.rejects(rig.gateway.startCampaign(stored), (err: unknown) => isFwError(err, 'E_IMAGE_CORRUPT') && /re-push the image/.test((err as Error).message));
    assert.equal(rig.gateway.store.has(v1.manifest.sha256), false);
    // the same bytes under a newer manifest (so the devices take it): the gateway must not trust its copy
    const v2 = { ...v1.manifest, version: '1.2.0', seq: 2 };
    const m2 = signed({ ...v2, signature: undefined });
    const grant = await rig.client.requestToSend(m2);
    assert.equal(grant.offset, 0, 'the rotten copy is not offered as stored: the upload starts at 0');
    assert.equal(grant.stored, undefined);
    assert.ok((await readdir(join(rig.dir, 'gateway', 'store', 'quarantine'))).some((n) => n.endsWith(`${v1.manifest.sha256}.bin`)), 'quarantined');
    await rig.client.upload(v1.image, grant);
    const c = await rig.client.commit();
    const complete = await rig.client.follow(c.campaign);
    assert.deepEqual([complete.updated, complete.failed], [2, 0]);
    for (const d of rig.sims.devices) assert.equal(d.running?.version, '1.2.0');
  });
});
