import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseJournal } from '../../gateway/rollout/journal.ts';
import { DeviceFiles } from '../../device-sim/bootloader.ts';
import { imagePush, makeSite, simEvents, startDevices, startFwpush, startGateway, type Site } from './site.ts';

/**
 * Issue 17.5: fwgate down for longer than the devices' trial timeout, right after they booted
 * the new image in trial. Real processes; outcomes from the devices' events and files and the
 * gateway's journal. Short timeouts keep it quick: trial T = 5 s of connected time (the gateway's
 * confirm tries 3 x 300 ms < T <= rollout.trialTimeoutMs, §6.9.3), the outage 2 T.
 */
describe('end to end: the gateway is down longer than the trial timeout (issue 17.5)', function () {
  this.timeout(180_000);
  const DEVICES = 2;
  const WAITS = 'dev-waits';
  const BOUNDED = 'dev-bounded';
  const TO = '1.1.0';
  const T = 5000;
  let site: Site | undefined;

  afterEach(async () => {
    await site?.close();
    site = undefined;
  });

  it('one outage of 2 T right after the activations: a device whose trial may wait waits and is confirmed (one activation); one whose own bound is shorter reverts, and its second activation is in its result', async () => {
    site = await makeSite('fwgate-trial-', { rollout: { concurrency: DEVICES, trialTimeoutMs: T, confirmTimeoutMs: 300, confirmTries: 3 } });
    const s = site;
    // 250 ms each way between the devices and the broker: the boot report of a device in trial
    // takes that long to reach the gateway, so the kill lands before its confirmation
    const profile = join(s.dir, 'slow.json');
    await writeFile(profile, JSON.stringify({ default: { name: 'slow', latencyMs: 250, jitterMs: 0, downBps: 0, upBps: 0, lossPct: 0 } }));
    const first = startGateway(['--serial', s.pty.a, ...s.gwArgs]);
    s.procs.push({ stop: () => first.proc.stop(3000) });
    await first.proc.waitForLine(/^fwgate ready/, 30_000);
    // dev-001 bounds its trial at 120 s (the outage is within it); dev-002 at T + 1 s (the outage is not)
    const common = ['--profile', profile, '--trial-timeout', String(T), '--reconnect-delay', '100', '--reconnect-max', '500'];
    const waits = await startDevices(s, 1, [...common, '--trial-max', '120000', '--id', WAITS]);
    const bounded = await startDevices(s, 1, [...common, '--trial-max', String(T + 1000), '--id', BOUNDED]);
    const { args } = await imagePush(s, TO, 64 * 1024);
    const push = startFwpush(args);
    s.procs.push({ stop: async () => { push.child.kill('SIGKILL'); await push.exited; } });

    // both back online in trial (connected, boot reports on the way): kill
    const backInTrial = async (sim: typeof waits): Promise<void> => {
      await sim.waitForLine((l) => l.includes('"type":"booted"') && l.includes('"trial":true'), 90_000);
      const at = sim.lines.findIndex((l) => l.includes('"type":"booted"') && l.includes('"trial":true'));
      await sim.waitForLine(() => simEvents(sim, at).some((e) => e.type === 'connected'), 30_000);
    };
    await Promise.all([backInTrial(waits), backInTrial(bounded)]);
    first.proc.child.kill('SIGKILL');
    await first.proc.exited;
    push.child.kill('SIGKILL');
    await push.exited;
    // the outage: two trial timeouts (a device counts only connected time; its bound is its own)
    await new Promise((r) => setTimeout(r, 2 * T));
    const second = startGateway(s.gwArgs);
    s.procs.push({ stop: () => second.proc.stop(3000) });
    const complete = await second.waitForLog('campaign complete', 120_000);
    assert.equal(complete.updated, DEVICES, JSON.stringify(complete));
    await waits.stop(3000);
    await bounded.stop(3000);
    const journals = (await readdir(join(s.dir, 'gw', 'journal'))).filter((n) => n.endsWith('.jsonl'));
    const results = parseJournal(await readFile(join(s.dir, 'gw', 'journal', journals[0]!), 'utf8')).state.results;
    const devicesDir = join(s.dir, 'devices');
    for (const id of [WAITS, BOUNDED]) {
      const st = await new DeviceFiles(join(devicesDir, id), 64 * 1024 * 1024).loadState();
      assert.deepEqual([st?.slots[st.active].version, st?.slots[st.active].state], [TO, 'confirmed'], `${id} from its own files`);
    }

    // §6.9.3: the trial waited for the gateway
    const w = simEvents(waits);
    assert.deepEqual(w.filter((e) => e.type === 'trial-timeout' || e.type === 'reverted'), [], 'no trial ended while the gateway was down');
    assert.equal(w.filter((e) => e.type === 'activated').length, 1, `${WAITS} activated once`);
    assert.deepEqual([results.get(WAITS)?.outcome, results.get(WAITS)?.retries], ['updated', 0]);

    // past its own bound: reverted, activated again, and the result says so
    const b = simEvents(bounded);
    assert.ok(b.some((e) => e.type === 'reverted'), `${BOUNDED} reverted at its bound`);
    assert.equal(b.filter((e) => e.type === 'activated').length, 2, `${BOUNDED} activated a second time`);
    const r = results.get(BOUNDED);
    assert.equal(r?.outcome, 'updated');
    assert.ok((r?.retries ?? 0) >= 1, `retries ${r?.retries}`);
    assert.match(r?.reason ?? '', /first activation was reverted .*activated a second time/);
  });
});
