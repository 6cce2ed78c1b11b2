import assert from 'node:assert/strict';
import type { SimEvent } from '../../device-sim/device.ts';
import { signRelease, parseReleaseManifest, type ReleaseManifest } from '../../protocol/release.ts';
import type { GatewayUplinkMessage } from '../../protocol/uplink.ts';
import { componentImage, runningSetFromFiles, type ComponentImage } from '../device-sim/component-helpers.ts';
import { testKey } from '../helpers/keys.ts';
import { Rig } from '../helpers/rig.ts';
import { waitUntil } from '../helpers/wait.ts';
import { join } from 'node:path';

/**
 * Release campaigns end to end with a real gateway, broker, serial pty and simulated
 * multi-component devices (docs/protocol.md §5.5, §6.15, §7.5.9): the update agent first, a
 * `requires` met from another held release, a device the release cannot serve, a single-image
 * device. Outcomes are judged on the devices' own files (state.json and slot files' SHA-256).
 */
const ofType = <T extends GatewayUplinkMessage['t']>(events: GatewayUplinkMessage[], t: T): Extract<GatewayUplinkMessage, { t: T }>[] =>
  events.filter((e): e is Extract<GatewayUplinkMessage, { t: T }> => e.t === t);

function release(name: string, version: string, seq: number, parts: (ComponentImage & { requires?: Record<string, string>; agent?: true })[]): ReleaseManifest {
  return signRelease(parseReleaseManifest({
    release: name, version, hw: ['sensor-v1'], chunk: 4096, seq,
    components: parts.map((p) => ({
      component: p.component, name: p.manifest.name, version: p.manifest.version, size: p.manifest.size, crc32: p.manifest.crc32, sha256: p.manifest.sha256,
      ...(p.requires ? { requires: p.requires } : {}), ...(p.agent ? { agent: p.agent } : {}),
    })),
  }), testKey().privateKey);
}

async function upload(rig: Rig, r: ReleaseManifest, images: ComponentImage[], deferred: boolean): Promise<string | undefined> {
  const grant = await rig.client.requestRelease({ t: 'release-rts', release: r, ...(deferred ? { deferred: true } : {}) });
  await rig.client.uploadRelease(new Map(images.map((i) => [i.component, i.image])), grant);
  const c = await rig.client.commitRelease();
  return c.campaign;
}

describe('integration: release campaigns (agent first, requires met from a held release, unmet, single image)', function () {
  this.timeout(120_000);
  let rig: Rig | undefined;
  afterEach(async () => {
    await rig?.stop();
    rig = undefined;
  });

  it('each device gets what it lacks: the agent alone first, net added from the held net-fix release, a device without net refused unmet-dependency', async () => {
    // dev-001, dev-002: app, net, agent; dev-003: app, net; dev-004: a single-image device (app only)
    rig = await Rig.start({
      devices: 4,
      device: { components: ['app', 'net', 'agent'] },
      perDevice: (i) => (i === 2 ? { components: ['app', 'net'] } : i === 3 ? { components: ['app'] } : undefined),
    });
    const events = new Map<string, string[]>();
    for (const d of rig.sims.devices) {
      d.on('event', (e: SimEvent) => {
        const list = events.get(d.id) ?? [];
        if (e.type === 'offer-accepted') list.push(`offer ${e.version}`);
        if (e.type === 'activated') list.push('activate');
        if (e.type === 'confirmed' && !e.repeat) list.push('confirm');
        events.set(d.id, list);
      });
    }
    const net = componentImage('net', '1.6.0');
    const app = componentImage('app', '2.0.0');
    const agent = componentImage('agent', '2.1.0');
    const netFix = release('net-fix', '1.6.0', 5, [net]);
    const main = release('sensor-release', '2.0.0', 6, [{ ...app, requires: { net: '>=1.6.0' } }, { ...agent, agent: true }]);
    await rig.client.connect();
    assert.equal(await upload(rig, netFix, [net], true), undefined, 'a deferred release starts no campaign');
    const campaign = await upload(rig, main, [app, agent], false);
    assert.ok(campaign);
    const complete = await rig.client.follow(campaign);
    assert.deepEqual([complete.updated, complete.skipped, complete.failed], [3, 1, 0], JSON.stringify([complete, ofType(rig.events, 'result'), ofType(rig.events, 'order')]));
    assert.equal(complete.componentsSent, 3 + 3 + 2);

    const order = ofType(rig.events, 'order').find((o) => o.campaign === campaign)!;
    const gets = new Map(order.devices.map((d) => [d.id, d.components?.map((c) => `${c.name}${c.via ? `<${c.via}` : ''}`).join(',')]));
    assert.equal(gets.get('dev-001'), 'agent,app,net<net-fix@1.6.0');
    assert.equal(gets.get('dev-003'), 'app,net<net-fix@1.6.0');
    const refused = order.excluded.find((x) => x.id === 'dev-004');
    assert.equal(refused?.code, 'unmet-dependency');
    assert.match(refused!.reason, /app requires net >=1\.6\.0 \(the device has no net component\)/);

    // the agent alone first (its own activation and confirmation), then app and net together
    assert.deepEqual(events.get('dev-001'), ['offer 2.1.0', 'activate', 'confirm', 'offer 2.0.0', 'offer 1.6.0', 'activate', 'confirm']);
    assert.deepEqual(events.get('dev-003'), ['offer 2.0.0', 'offer 1.6.0', 'activate', 'confirm']);
    assert.deepEqual(events.get('dev-004') ?? [], [], 'the refused device was never offered anything');

    // judged on the devices' files
    await rig.sims.stop();
    const dir = join(rig.dir, 'devices');
    for (const id of ['dev-001', 'dev-002']) {
      const set = await runningSetFromFiles(dir, id);
      assert.deepEqual([...set].map(([c, r]) => [c, r.sha256, r.state]).sort(), [
        ['agent', agent.manifest.sha256, 'confirmed'], ['app', app.manifest.sha256, 'confirmed'], ['net', net.manifest.sha256, 'confirmed'],
      ], id);
    }
    const d3 = await runningSetFromFiles(dir, 'dev-003');
    assert.deepEqual([...d3].map(([c, r]) => [c, r.sha256]).sort(), [['app', app.manifest.sha256], ['net', net.manifest.sha256]]);
    const d4 = await runningSetFromFiles(dir, 'dev-004');
    assert.equal(d4.get('app')?.version, '1.0.0');
  });

  it('a trial failure of one component reverts the set on the device (old app and old net both running); fixed, a retry of the release updates it', async () => {
    rig = await Rig.start({ devices: 1, device: { components: ['app', 'net'] }, faults: () => ({ failSelfTestComponent: 'net' }) });
    const net = componentImage('net', '1.6.0');
    const app = componentImage('app', '2.0.0');
    const r = release('sensor-release', '2.0.0', 6, [app, net]);
    await rig.client.connect();
    const before = await runningSetFromFiles(join(rig.dir, 'devices'), 'dev-001');
    const campaign = await upload(rig, r, [app, net], false);
    const complete = await rig.client.follow(campaign!);
    assert.equal(complete.rolledBack, 1, JSON.stringify(complete));
    const result = ofType(rig.events, 'result').find((x) => x.campaign === campaign)!;
    assert.equal(result.code, 'self-test-failed');
    assert.deepEqual(result.components, ['app', 'net']);
    await rig.sims.stop();
    const after = await runningSetFromFiles(join(rig.dir, 'devices'), 'dev-001');
    assert.deepEqual([...after].map(([c, x]) => [c, x.sha256]), [...before].map(([c, x]) => [c, x.sha256]), 'the old set runs');

    // fixed, the device is retried as a release (no upload): it gets both components
    rig.sims.devices[0]!.setFaults({ failSelfTestComponent: undefined });
    await rig.sims.start();
    await waitUntil(() => rig!.gateway.fleet.online().length === 1, 20_000, 'the device back online');
    const retry = await rig.client.control({ t: 'retry', campaign: campaign!, outcomes: ['rolled-back'] });
    const again = await rig.client.follow(retry.campaign);
    assert.deepEqual([again.updated, again.componentsSent], [1, 2], JSON.stringify(again));
    await rig.sims.stop();
    const fixed = await runningSetFromFiles(join(rig.dir, 'devices'), 'dev-001');
    assert.deepEqual([...fixed].map(([c, x]) => [c, x.sha256, x.state]), [['app', app.manifest.sha256, 'confirmed'], ['net', net.manifest.sha256, 'confirmed']]);
  });
});
