import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { readFleetFile } from '../../gateway/fleet-store.ts';
import { waitUntil } from '../helpers/wait.ts';
import { bootedSlot, imagePush, makeSite, simEvents, startDevices, startFwpush, startGateway, type Site } from './site.ts';

/**
 * Issue 17.3: fwgate killed (SIGKILL) and started again under a running fwpush, on the same
 * serial line (the socat cable outlives both, as a USB cable does). The restarted gateway
 * announces itself with a link RESET (docs/protocol.md §4.11.2); fwpush says the link was lost,
 * reconnects (hello, technician auth) and resumes the upload from what the gateway holds, or
 * follows the resumed campaign again from its replay, and exits 0 with every device updated —
 * judged from the devices' own files.
 */
describe('end to end: fwgate restarted under fwpush (issue 17.3)', function () {
  this.timeout(180_000);
  let site: Site | undefined;
  const DEVICES = 2;
  const TO = '1.1.0';

  afterEach(async () => {
    await site?.close();
    site = undefined;
  });

  async function restartUnder(when: 'upload' | 'follow'): Promise<void> {
    site = await makeSite('fwgate-restart-', { rollout: { concurrency: 2 } });
    const s = site;
    const first = startGateway(['--serial', s.pty.a, ...s.gwArgs]);
    s.procs.push({ stop: () => first.proc.stop(3000) });
    await first.proc.waitForLine(/^fwgate ready/, 30_000);
    const sim = await startDevices(s, DEVICES, ['--reconnect-delay', '1500', '--reconnect-max', '3000']);
    // the gateway knew them (its fleet file lists them connected): the restarted one waits for them
    // (rollout.reconnectGraceMs) before it selects a campaign's devices, however slowly they come back
    await waitUntil(async () => (await readFleetFile(join(s.dir, 'gw', 'fleet.json')).catch(() => undefined))?.devices.filter((d) => d.online).length === DEVICES, 20_000, 'the devices connected in fleet.json');
    // an image large enough that the upload over the pty is still running when the partial holds 1 MiB
    const { sha256, args } = await imagePush(s, TO, 6 * 1024 * 1024);
    const push = startFwpush(args);
    s.procs.push({ stop: async () => { push.child.kill('SIGKILL'); await push.exited; } });
    if (when === 'upload') {
      const partial = join(s.dir, 'gw', 'store', 'partial', `${sha256}.part`);
      const deadline = Date.now() + 60_000;
      for (;;) {
        const size = await stat(partial).then((st) => st.size, () => 0);
        if (size >= 1024 * 1024) break;
        if (Date.now() > deadline || push.child.exitCode !== null) assert.fail(`the upload never reached 1 MiB:\n${push.stdout()}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    } else {
      await sim.waitForLine((l) => l.includes('"type":"offer-accepted"'), 90_000);
    }
    first.proc.child.kill('SIGKILL');
    await first.proc.exited;
    assert.equal(push.child.exitCode, null, 'fwpush still running after the kill');

    const second = startGateway(['--serial', s.pty.a, ...s.gwArgs]);
    s.procs.push({ stop: () => second.proc.stop(3000) });
    const lost = await push.saw((e) => e.event === 'link-lost', 60_000);
    assert.equal(lost.phase, when);
    assert.equal(lost.code, 'E_LINK_RESET', `the restarted gateway's RESET is what fwpush noticed: ${JSON.stringify(lost)}`);
    await push.saw((e) => e.event === 'reconnected', 60_000);
    const code = await push.exited;
    const events = push.events;
    assert.equal(code, 0, push.stdout().slice(-3000));
    if (when === 'upload') {
      const resumed = events.find((e) => e.event === 'upload-resumed') as { offset: number; size: number } | undefined;
      assert.ok(resumed && resumed.offset > 0 && resumed.offset < resumed.size, `the upload resumed where the gateway was: ${JSON.stringify(resumed)}`);
    }
    const complete = events.find((e) => e.event === 'complete');
    assert.equal(complete?.updated, DEVICES, `fwpush reports the campaign's completion: ${JSON.stringify(complete)}`);
    await sim.stop(3000);
    for (let i = 0; i < DEVICES; i++) {
      assert.deepEqual(await bootedSlot(s, i), { version: TO, state: 'confirmed' }, `device ${i} boots ${TO}, confirmed, from its own files`);
    }
    const activations = simEvents(sim).filter((e) => e.type === 'activated');
    assert.equal(activations.length, DEVICES, 'each device activated once');
  }

  it('killed mid-upload: fwpush sees the RESET, reconnects, resumes the upload from the gateway\'s offset, and the campaign completes', async () => {
    await restartUnder('upload');
  });

  it('killed while fwpush follows the campaign: fwpush reconnects, follows the resumed campaign from its replay and exits 0 with the summary', async () => {
    await restartUnder('follow');
  });
});
