import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseJournal } from '../../gateway/rollout/journal.ts';
import { fleetDeviceId } from '../../device-sim/fleet.ts';
import { bootedSlot, imagePush, makeSite, simEvents, startDevices, startFwpush, startGateway, type Site } from './site.ts';

/**
 * Issue 17.5: fwgate down for longer than the devices' trial timeout, right after they booted
 * the new image in trial. Real processes; outcomes from the devices' events and files and the
 * gateway's journal. Short timeouts keep it quick: trial T = 5 s of connected time (the gateway's
 * confirm tries 3 x 300 ms < T <= rollout.trialTimeoutMs, §6.9.3), the outage 2 T.
 */
describe('end to end: the gateway is down longer than the trial timeout (issue 17.5)', function () {
  this.timeout(180_000);
  const DEVICES = 2;
  const TO = '1.1.0';
  const T = 5000;
  let site: Site | undefined;

  afterEach(async () => {
    await site?.close();
    site = undefined;
  });

  async function outage(trialMaxMs: number): Promise<{ s: Site; sim: Awaited<ReturnType<typeof startDevices>>; results: Map<string, { outcome: string; retries: number; reason?: string }> }> {
    site = await makeSite('fwgate-trial-', { rollout: { concurrency: DEVICES, trialTimeoutMs: T, confirmTimeoutMs: 300, confirmTries: 3 } });
    const s = site;
    // 250 ms each way between the devices and the broker: the boot report of a device in trial
    // takes that long to reach the gateway, so the kill lands before its confirmation
    const profile = join(s.dir, 'slow.json');
    await writeFile(profile, JSON.stringify({ default: { name: 'slow', latencyMs: 250, jitterMs: 0, downBps: 0, upBps: 0, lossPct: 0 } }));
    const first = startGateway(['--serial', s.pty.a, ...s.gwArgs]);
    s.procs.push({ stop: () => first.proc.stop(3000) });
    await first.proc.waitForLine(/^fwgate ready/, 30_000);
    const sim = await startDevices(s, DEVICES, [
      '--profile', profile, '--trial-timeout', String(T), '--trial-max', String(trialMaxMs), '--reconnect-delay', '100', '--reconnect-max', '500',
    ]);
    const { args } = await imagePush(s, TO, 64 * 1024);
    const push = startFwpush(args);
    s.procs.push({ stop: async () => { push.child.kill('SIGKILL'); await push.exited; } });

    // the first device back online in trial (connected, its boot report on the way): kill
    await sim.waitForLine((l) => l.includes('"type":"booted"') && l.includes('"trial":true'), 90_000);
    const trialAt = sim.lines.findIndex((l) => l.includes('"type":"booted"') && l.includes('"trial":true'));
    await sim.waitForLine(() => simEvents(sim, trialAt).some((e) => e.type === 'connected'), 30_000);
    first.proc.child.kill('SIGKILL');
    await first.proc.exited;
    push.child.kill('SIGKILL');
    await push.exited;
    // the outage: two trial timeouts (the device counts only connected time; its bound is trialMaxMs)
    await new Promise((r) => setTimeout(r, 2 * T));
    const second = startGateway(s.gwArgs);
    s.procs.push({ stop: () => second.proc.stop(3000) });
    const complete = await second.waitForLog('campaign complete', 120_000);
    if (process.env.DEBUG_TRIAL) console.log(simEvents(sim).filter((e) => !['chunk', 'ack'].includes(e.type)).map((e) => `${String(e.ts).slice(11)} ${e.id} ${e.type} ${JSON.stringify({ ...e, ts: undefined, id: undefined, type: undefined })}`).join('\n'));
    assert.equal(complete.updated, DEVICES, JSON.stringify(complete));
    await sim.stop(3000);
    const journals = (await readdir(join(s.dir, 'gw', 'journal'))).filter((n) => n.endsWith('.jsonl'));
    assert.equal(journals.length, 1);
    const journal = parseJournal(await readFile(join(s.dir, 'gw', 'journal', journals[0]!), 'utf8'));
    for (let i = 0; i < DEVICES; i++) assert.deepEqual(await bootedSlot(s, i), { version: TO, state: 'confirmed' }, `device ${i} from its files`);
    return { s, sim, results: journal.state.results };
  }

  it('the devices\' trials wait for the gateway (§6.9.3): no revert, one activation each, confirmed after the restart', async () => {
    const { sim, results } = await outage(120_000);
    const ev = simEvents(sim);
    if (process.env.DEBUG_TRIAL) console.log(ev.map((e) => `${String(e.ts).slice(11)} ${e.id} ${e.type}${e.trial !== undefined ? ` trial=${String(e.trial)}` : ''}`).join('\n'));
    assert.deepEqual(ev.filter((e) => e.type === 'trial-timeout' || e.type === 'reverted'), [], 'no trial ended while the gateway was down');
    for (let i = 0; i < DEVICES; i++) {
      const id = fleetDeviceId('dev', i);
      assert.equal(ev.filter((e) => e.id === id && e.type === 'activated').length, 1, `${id} activated once`);
      assert.deepEqual([results.get(id)?.outcome, results.get(id)?.retries], ['updated', 0]);
    }
  });

  it('past the device\'s own bound the trial is reverted; the second activation that follows is in the result (retries, reason), not reported as clean', async () => {
    const { sim, results } = await outage(T + 1000);
    const ev = simEvents(sim);
    const twice = [...Array(DEVICES).keys()].map((i) => fleetDeviceId('dev', i)).filter((id) => ev.filter((e) => e.id === id && e.type === 'activated').length === 2);
    assert.ok(twice.length >= 1, `a device whose trial outlived its bound was activated again: ${JSON.stringify(ev.filter((e) => e.type === 'activated' || e.type === 'reverted'))}`);
    for (const id of twice) {
      assert.ok(ev.some((e) => e.id === id && e.type === 'reverted'), `${id} reverted`);
      const r = results.get(id);
      assert.equal(r?.outcome, 'updated');
      assert.ok((r?.retries ?? 0) >= 1, `${id}: retries ${r?.retries}`);
      assert.match(r?.reason ?? '', /first activation was reverted .*activated a second time/);
    }
  });
});
