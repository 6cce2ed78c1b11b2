import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from '../../protocol/crc.ts';
import type { SimDevice, SimEvent } from '../../device-sim/device.ts';
import type { PowerCutPhase } from '../../device-sim/faults.ts';
import { EventLog, Rig, waitFor } from './helpers.ts';
import {
  componentImage, deliverComponent, digestsFromFiles, judgeSet, runningSetFromFiles, updateSet, type ComponentImage,
} from './component-helpers.ts';

const ID = 'dev-001';

/** Send every chunk of `c` under `sid` without waiting for acks (the device is cut during them). */
async function offerAndSendAll(rig: Rig, sid: number, c: ComponentImage): Promise<void> {
  await rig.gw.send(ID, rig.gw.offerFor(sid, c.manifest, { component: c.component }));
  const accept = await rig.gw.expect(ID, 'accept', (a) => a.sid === sid);
  for (let off = 0; off < c.image.length; off += accept.chunk) {
    const data = c.image.subarray(off, off + accept.chunk);
    await rig.gw.send(ID, { t: 'chunk', sid, off, data, crc: crc32(data) });
  }
}

/** The power cut of `phase` happened, and the device booted again after it: that boot's event. */
async function bootAfterCut(log: EventLog, device: SimDevice, phase: PowerCutPhase): Promise<Extract<SimEvent, { type: 'booted' }>> {
  const cut = await log.next('power-cut', (e) => e.phase === phase, 10_000);
  const at = log.events.indexOf(cut);
  const booted = await waitFor(() => log.events.slice(at + 1).find((e): e is Extract<SimEvent, { type: 'booted' }> => e.type === 'booted'), 10_000, 'the boot after the cut');
  await waitFor(() => device.connected, 10_000, 'reconnected');
  return booted;
}

/** The raw slot records of state.json, read here (not through the bootloader). */
async function slotStates(dir: string): Promise<Record<string, [string, string]>> {
  const rec = JSON.parse(await readFile(join(dir, ID, 'state.json'), 'utf8')) as {
    slots: Record<'a' | 'b', { state: string }>; components?: Record<string, { slots: Record<'a' | 'b', { state: string }> }>;
  };
  const out: Record<string, [string, string]> = { app: [rec.slots.a.state, rec.slots.b.state] };
  for (const [n, c] of Object.entries(rec.components ?? {})) out[n] = [c.slots.a.state, c.slots.b.state];
  return out;
}

/**
 * The all-or-nothing update of several components (docs/protocol.md §6.15, docs/device-sim.md
 * "Components"): after a power cut at each device-side step, the device boots again and the set
 * that runs — judged from its own files — is all-old or all-new, never new app with old net.
 */
describe('device-sim: components — power cuts, trial failure, the agent step', function () {
  const rig = new Rig();
  beforeEach(async () => rig.setUp());
  afterEach(async () => rig.tearDown());

  const set = (): ComponentImage[] => [componentImage('app', '1.1.0'), componentImage('net', '1.1.0')];

  const steps: { step: string; phase: PowerCutPhase; component?: string; drive: (rig: Rig, s: ComponentImage[]) => Promise<void> }[] = [
    { step: 'transfer of app', phase: 'chunk-write', component: 'app', drive: (r, s) => offerAndSendAll(r, 1, s[0]!) },
    { step: 'transfer of net (app already verified)', phase: 'chunk-write', component: 'net', drive: async (r, s) => {
      await deliverComponent(r, ID, 1, s[0]!);
      await offerAndSendAll(r, 2, s[1]!);
    } },
    { step: 'end of the transfer of net', phase: 'after-transfer', component: 'net', drive: async (r, s) => {
      await deliverComponent(r, ID, 1, s[0]!);
      await offerAndSendAll(r, 2, s[1]!);
    } },
    { step: 'verification of app', phase: 'verification', component: 'app', drive: async (r, s) => {
      await r.gw.send(ID, r.gw.offerFor(1, s[0]!.manifest, { component: 'app' }));
      await r.gw.transfer(ID, 1, s[0]!.image, await r.gw.expect(ID, 'accept', (a) => a.sid === 1));
      await r.gw.send(ID, { t: 'verify', sid: 1 });
    } },
    { step: 'verification of net', phase: 'verification', component: 'net', drive: async (r, s) => {
      await deliverComponent(r, ID, 1, s[0]!);
      await r.gw.send(ID, r.gw.offerFor(2, s[1]!.manifest, { component: 'net' }));
      await r.gw.transfer(ID, 2, s[1]!.image, await r.gw.expect(ID, 'accept', (a) => a.sid === 2));
      await r.gw.send(ID, { t: 'verify', sid: 2 });
    } },
    { step: 'the combined activation (state write)', phase: 'activation', drive: async (r, s) => {
      await deliverComponent(r, ID, 1, s[0]!);
      await deliverComponent(r, ID, 2, s[1]!);
      await r.gw.send(ID, { t: 'activate', sid: 1, with: [2] });
    } },
    { step: 'the first boot of the set', phase: 'first-boot', drive: async (r, s) => {
      await deliverComponent(r, ID, 1, s[0]!);
      await deliverComponent(r, ID, 2, s[1]!);
      await r.gw.send(ID, { t: 'activate', sid: 1, with: [2] });
    } },
    { step: 'before the confirm', phase: 'before-confirm', drive: async (r, s) => {
      await deliverComponent(r, ID, 1, s[0]!);
      await deliverComponent(r, ID, 2, s[1]!);
      await r.gw.send(ID, { t: 'activate', sid: 1, with: [2] });
      await r.gw.expect(ID, 'boot', (b) => b.components?.every((c) => c.trial) === true);
      await r.gw.send(ID, { t: 'confirm', sha256: s[0]!.manifest.sha256, with: [s[1]!.manifest.sha256] });
    } },
  ];

  for (const c of steps) {
    it(`a power cut at ${c.step}: the old set runs after the boot; the update then completes to the new set`, async () => {
      const { device, log } = await rig.online(ID, { components: ['app', 'net'] });
      const old = await digestsFromFiles(rig.dir.path, ID);
      const s = set();
      device.setFaults({ powerCutAt: c.phase, ...(c.component !== undefined ? { powerCutComponent: c.component } : {}) });
      await c.drive(rig, s);
      const booted = await bootAfterCut(log, device, c.phase);
      assert.equal(judgeSet(await runningSetFromFiles(rig.dir.path, ID), old, s), 'old');
      assert.deepEqual(booted.components?.map((x) => [x.name, x.sha256, x.trial]), [['app', old.get('app'), false], ['net', old.get('net'), false]]);
      const reachedTrial = c.phase === 'first-boot' || c.phase === 'before-confirm';
      assert.equal(booted.reverted, reachedTrial, 'a set that reached its trial is reverted whole');
      if (reachedTrial) assert.deepEqual(await slotStates(rig.dir.path), { app: ['confirmed', 'bad'], net: ['confirmed', 'bad'] }, 'every trial slot of the set is marked bad');
      assert.equal(rig.gw.all(ID, 'confirmed').length, 0);

      rig.gw.drain(ID);
      await updateSet(rig, ID, s, 100);
      const after = await runningSetFromFiles(rig.dir.path, ID);
      assert.equal(judgeSet(after, old, s), 'new');
      assert.deepEqual([...after.values()].map((r) => r.state), ['confirmed', 'confirmed']);
      assert.equal(device.stats.powerCuts, 1);
    });
  }

  it('a cut armed for net passes the steps that do not include it (the app transfer), and fires in net\'s', async () => {
    const { device, log } = await rig.online(ID, { components: ['app', 'net'] });
    const s = set();
    device.setFaults({ powerCutAt: 'chunk-write', powerCutComponent: 'net' });
    await deliverComponent(rig, ID, 1, s[0]!);
    assert.equal(device.stats.powerCuts, 0);
    await offerAndSendAll(rig, 2, s[1]!);
    await bootAfterCut(log, device, 'chunk-write');
    assert.equal(device.stats.powerCuts, 1);
  });

  for (const how of ['fault', 'image header'] as const) {
    it(`trial failure of one component (net's self-test, by ${how}) reverts all: both run their old images, both new slots bad`, async () => {
      const faults = how === 'fault' ? { failSelfTestComponent: 'net' } : {};
      const { log } = await rig.online(ID, { components: ['app', 'net'], faults });
      const old = await digestsFromFiles(rig.dir.path, ID);
      const s = [componentImage('app', '1.1.0'), componentImage('net', '1.1.0', { selftest: how === 'fault' ? 'pass' : 'fail' })];
      await deliverComponent(rig, ID, 1, s[0]!);
      await deliverComponent(rig, ID, 2, s[1]!);
      await rig.gw.send(ID, { t: 'activate', sid: 1, with: [2] });
      const boot = await rig.gw.expect(ID, 'boot', (b) => b.reverted);
      assert.equal(boot.reason, 'self-test of net failed');
      assert.deepEqual(boot.components?.map((c) => [c.name, c.slot, c.trial]), [['app', 'a', false], ['net', 'a', false]]);
      assert.equal((await log.next('reverted')).reason, 'self-test of net failed');
      assert.equal(judgeSet(await runningSetFromFiles(rig.dir.path, ID), old, s), 'old');
      assert.deepEqual(await slotStates(rig.dir.path), { app: ['confirmed', 'bad'], net: ['confirmed', 'bad'] });
    });
  }

  it('trial not confirmed before a reset (one component confirmed alone is not enough): all trial components revert', async () => {
    const { device, log } = await rig.online(ID, { components: ['app', 'net'] });
    const old = await digestsFromFiles(rig.dir.path, ID);
    const s = set();
    await deliverComponent(rig, ID, 1, s[0]!);
    await deliverComponent(rig, ID, 2, s[1]!);
    await rig.gw.send(ID, { t: 'activate', sid: 1, with: [2] });
    await rig.gw.expect(ID, 'boot', (b) => b.components?.every((c) => c.trial) === true);
    await rig.gw.send(ID, { t: 'confirm', sha256: s[0]!.manifest.sha256 });
    await rig.gw.send(ID, { t: 'query' });
    await rig.gw.expect(ID, 'status', (st) => st.trial);
    device.powerCut();
    await log.next('power-cut');
    const boot = await rig.gw.expect(ID, 'boot', (b) => b.reverted);
    assert.equal(boot.reason, 'trial image not confirmed before reset');
    assert.equal(judgeSet(await runningSetFromFiles(rig.dir.path, ID), old, s), 'old');
  });

  it('a component alone in trial (app confirmed) runs the trial clock too: unconfirmed, it reverts at the timeout', async () => {
    const { log } = await rig.online(ID, { components: ['app', 'net', 'agent'], trialTimeoutMs: 300 });
    const old = await digestsFromFiles(rig.dir.path, ID);
    await deliverComponent(rig, ID, 1, componentImage('agent', '1.1.0'));
    await rig.gw.send(ID, { t: 'activate', sid: 1 });
    const trial = await rig.gw.expect(ID, 'boot', (b) => b.components?.[2]?.trial === true);
    assert.equal(trial.trial, false, 'the top-level trial describes app');
    await log.next('trial-timeout', undefined, 3_000);
    const boot = await rig.gw.expect(ID, 'boot', (b) => b.reverted, 3_000);
    assert.match(boot.reason ?? '', /trial not confirmed within 300 ms/);
    assert.deepEqual(await digestsFromFiles(rig.dir.path, ID), old);
  });

  describe('the agent first, then the rest', function () {
    const cuts: { at: string; phase: PowerCutPhase; component: string; agentStep: (rig: Rig, agent: ComponentImage) => Promise<void> }[] = [
      { at: 'the agent\'s transfer', phase: 'chunk-write', component: 'agent', agentStep: (r, a) => offerAndSendAll(r, 1, a) },
      { at: 'the agent\'s activation', phase: 'activation', component: 'agent', agentStep: async (r, a) => {
        await deliverComponent(r, ID, 1, a);
        await r.gw.send(ID, { t: 'activate', sid: 1 });
      } },
      { at: 'the agent\'s first boot', phase: 'first-boot', component: 'agent', agentStep: async (r, a) => {
        await deliverComponent(r, ID, 1, a);
        await r.gw.send(ID, { t: 'activate', sid: 1 });
      } },
    ];
    for (const c of cuts) {
      it(`a power cut at ${c.at}: old agent and old components stay; agent then app+net complete`, async () => {
        const { device, log } = await rig.online(ID, { components: ['app', 'net', 'agent'] });
        const old = await digestsFromFiles(rig.dir.path, ID);
        const agent = componentImage('agent', '1.1.0');
        const rest = set();
        device.setFaults({ powerCutAt: c.phase, powerCutComponent: c.component });
        await c.agentStep(rig, agent);
        await bootAfterCut(log, device, c.phase);
        assert.deepEqual(await digestsFromFiles(rig.dir.path, ID), old, 'every component runs its old image');

        rig.gw.drain(ID);
        const agentBoot = await updateSet(rig, ID, [agent], 100);
        assert.deepEqual(agentBoot.components?.map((x) => [x.name, x.trial]), [['app', false], ['net', false], ['agent', true]], 'the agent boots alone in trial');
        const mid = await runningSetFromFiles(rig.dir.path, ID);
        assert.equal(mid.get('agent')?.sha256, agent.manifest.sha256);
        assert.equal(judgeSet(mid, old, rest), 'old');
        await updateSet(rig, ID, rest, 200);
        const end = await runningSetFromFiles(rig.dir.path, ID);
        assert.equal(judgeSet(end, old, [...rest, agent]), 'new');
        assert.ok([...end.values()].every((r) => r.state === 'confirmed'));
      });
    }

    it('a cut armed for net\'s first boot passes the agent step and reverts the app+net set; the new agent stays', async () => {
      const { device, log } = await rig.online(ID, { components: ['app', 'net', 'agent'] });
      const old = await digestsFromFiles(rig.dir.path, ID);
      const agent = componentImage('agent', '1.1.0');
      const rest = set();
      device.setFaults({ powerCutAt: 'first-boot', powerCutComponent: 'net' });
      await updateSet(rig, ID, [agent], 1);
      assert.equal(device.stats.powerCuts, 0);
      await deliverComponent(rig, ID, 10, rest[0]!);
      await deliverComponent(rig, ID, 11, rest[1]!);
      await rig.gw.send(ID, { t: 'activate', sid: 10, with: [11] });
      const booted = await bootAfterCut(log, device, 'first-boot');
      assert.equal(booted.reverted, true);
      const running = await runningSetFromFiles(rig.dir.path, ID);
      assert.equal(judgeSet(running, old, rest), 'old');
      assert.equal(running.get('agent')?.sha256, agent.manifest.sha256);
      assert.equal(running.get('agent')?.state, 'confirmed');
    });
  });
});
