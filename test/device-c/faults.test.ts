import assert from 'node:assert/strict';
import { join } from 'node:path';
import { writeFile } from 'node:fs/promises';
import type { ConfigInput } from '../../gateway/config.ts';
import type { ProgressMessage, ResultMessage } from '../../protocol/uplink.ts';
import { testKeyFiles } from '../helpers/keys.ts';
import { Rig, sampleImage } from '../helpers/rig.ts';
import { waitUntil } from '../helpers/wait.ts';
import { buildDeviceC } from '../../scripts/lib/device-c.ts';
import { CDevice } from './c-device.ts';

/**
 * The C device's fault paths against a real fwgate, mixed with fwsim devices, every device its own
 * process or connection: a corrupt chunk is resent; a SIGKILL mid-transfer (a power cut) resumes
 * from the durable record; an image that fails its self-test is reverted; a busy device is
 * deferred by a window campaign and updated once it is idle.
 */
describe('device-c: fault paths of C devices in a mixed fleet (real processes)', function () {
  this.timeout(240_000);
  let rig: Rig | undefined;
  const devices: CDevice[] = [];
  let bin: string;

  before(async () => { bin = (await buildDeviceC()).fwdevice; });
  afterEach(async () => {
    for (const d of devices.splice(0)) await d.stop();
    await rig?.stop();
    rig = undefined;
  });

  async function start(fwsim: number, c: Record<string, string[]>, config?: ConfigInput, wallClock?: { now(): number; setTimeout(fn: () => void, ms: number): unknown; clearTimeout(h: unknown): void }): Promise<Rig> {
    const ids = Object.keys(c);
    const r = await Rig.start({ devices: fwsim, extraDeviceIds: ids, ...(config ? { config } : {}), ...(wallClock ? { wallClock } : {}) });
    rig = r;
    const creds = join(r.dir, 'c-credentials.json');
    await writeFile(creds, JSON.stringify(Object.fromEntries(r.passwords)));
    for (const id of ids) {
      const d = new CDevice(bin, id, join(r.dir, 'c-devices', id), [
        '--broker', r.gateway.broker.url, '--credentials', creds, '--pinned-key', testKeyFiles().pub,
        '--version', '1.0.0', '--factory-size', '4096', '--boot-delay', '50', ...c[id]!,
      ]);
      devices.push(d);
      d.start();
    }
    await waitUntil(() => r.gateway.fleet.online().length === fwsim + ids.length, 20_000, 'every device registered');
    return r;
  }
  const byId = (id: string): CDevice => devices.find((d) => d.id === id)!;

  it('corrupt chunk -> resent; SIGKILL mid-transfer -> resumed; self-test failure -> reverted; the fwsim devices updated alongside', async () => {
    const r = await start(2, {
      'c-corrupt': ['--corrupt-chunk', '3'],
      'c-cut': ['--max-chunk', '1024'],
      'c-selftest': ['--fail-self-test'],
    });
    const size = 1024 * 1024;
    const { image, manifest } = sampleImage({ version: '1.1.0', size });
    await r.client.connect();
    const { campaign } = await r.client.push(manifest, image);

    // the power cut: once the gateway reports a quarter of the image on c-cut, SIGKILL it, power on again
    const cut = byId('c-cut');
    await waitUntil(() => r.events.some((e) => e.t === 'progress' && (e as ProgressMessage).id === 'c-cut' && (e as ProgressMessage).bytes >= size / 4), 60_000, 'c-cut a quarter through');
    await cut.kill();
    const before = await cut.state();
    assert.equal(before.slots.b.state, 'receiving', 'killed while receiving');
    cut.start();

    const complete = await r.client.follow(campaign);
    const results = new Map(r.events.filter((e): e is ResultMessage => e.t === 'result').map((x) => [x.id, [x.outcome, x.code]]));
    assert.deepEqual(Object.fromEntries(results), {
      'dev-001': ['updated', 'ok'], 'dev-002': ['updated', 'ok'],
      'c-corrupt': ['updated', 'ok'], 'c-cut': ['updated', 'ok'], 'c-selftest': ['rolled-back', 'self-test-failed'],
    });
    assert.equal(complete.updated, 4);

    // the corrupt chunk: refused by its CRC, listed in an ack, resent, the image verified
    const corrupt = byId('c-corrupt');
    assert.deepEqual(corrupt.events.filter((e) => e.type === 'chunk-bad').map((e) => e.why), ['crc32 mismatch']);
    assert.equal((await corrupt.state()).slots.b.state, 'confirmed');

    // the power cut: the offer after it resumed where the durable record said, not at 0
    const accepts = cut.events.filter((e) => e.type === 'offer-accepted');
    assert.ok(accepts.length >= 2, JSON.stringify(accepts));
    const resumed = accepts.at(-1)!;
    assert.equal(resumed.resumed, true);
    assert.ok(Number(resumed.next) > 0 && Number(resumed.next) < size, `resumed at ${String(resumed.next)}`);
    const s = await cut.state();
    assert.deepEqual([s.active, s.slots.b.state, s.slots.b.sha256], ['b', 'confirmed', manifest.sha256]);

    // the self-test failure: the trial boot fell back to slot a; slot b is bad
    const st = byId('c-selftest');
    const reverted = st.events.find((e) => e.type === 'booted' && e.reverted === true);
    assert.equal(reverted?.reason, 'self-test failed');
    const sst = await st.state();
    assert.deepEqual([sst.active, sst.slots.a.state, sst.slots.a.version, sst.slots.b.state, sst.trial], ['a', 'confirmed', '1.0.0', 'bad', false]);
  });

  it('busy -> deferred by a window campaign, rechecked, and updated once idle (SIGUSR1 clears the switch)', async () => {
    const t0 = Date.parse('2026-11-22T02:05:00Z');
    const clock = { now: () => t0 + (Date.now() - started), setTimeout: (fn: () => void, ms: number) => setTimeout(fn, ms), clearTimeout: (h: unknown) => clearTimeout(h as NodeJS.Timeout) };
    const started = Date.now();
    const r = await start(1, { 'c-busy': ['--busy'] }, {
      windows: { list: [{ cron: '0 2 * * *', durationMin: 60, timeZone: 'UTC' }] }, rollout: { busyRecheckMs: 500 },
    }, clock);
    const busy = byId('c-busy');
    const { image, manifest } = sampleImage({ version: '1.1.0', size: 32 * 1024 });
    await r.client.connect();
    const { campaign } = await r.client.push(manifest, image);
    await busy.waitFor((e) => e.type === 'offer-rejected' && e.code === 'busy', 30_000, 'the busy refusal');
    await waitUntil(() => r.events.some((e) => e.t === 'result' && (e as ResultMessage).id === 'dev-001'), 30_000, 'the idle device');
    assert.equal(r.events.filter((e) => e.t === 'result' && (e as ResultMessage).id === 'c-busy').length, 0, 'the busy device waits: no result yet');
    process.kill(busy.pid!, 'SIGUSR1');
    const complete = await r.client.follow(campaign);
    assert.deepEqual([complete.devices, complete.updated], [2, 2], JSON.stringify(complete));
    assert.ok(busy.count('offer-rejected') >= 1 && busy.count('offer-accepted') >= 1);
    assert.equal((await busy.state()).slots.b.version, '1.1.0');
  });
});
