import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isFwError } from '../../protocol/errors.ts';
import { formatLink, parseCli } from '../../device-sim/cli.ts';
import { Fleet, fleetDeviceId, type FleetLink } from '../../device-sim/fleet.ts';
import type { LinkProfile } from '../../device-sim/link.ts';
import {
  BUILTIN_PROFILES, BUILTIN_PROFILE_NAMES, describeProfile, mixedProfile, profilesFromFile, resolveNamedProfiles,
  resolveProfiles, resolveProfilesSync,
} from '../../device-sim/profiles.ts';
import { EventLog, FAST, startBroker, tempDir, waitFor, runCli } from './helpers.ts';

const ids = (n: number, prefix = 'dev'): string[] => Array.from({ length: n }, (_, i) => fleetDeviceId(prefix, i));

/** Rough time to move `bytes` down a profile's link: cap, one round trip, expected loss stalls. */
function estimateMs(p: LinkProfile, bytes: number): number {
  const wire = p.downBps === 0 ? 0 : (bytes / p.downBps) * 1000;
  const stalls = (bytes / 2048) * (p.lossPct / 100) * (200 + 2 * p.latencyMs);
  return wire + 2 * p.latencyMs + stalls;
}


describe('device-sim: link profiles', function () {
  this.timeout(15_000);
  let dir: { path: string; remove(): Promise<void> };
  beforeEach(async () => {
    dir = await tempDir();
  });
  afterEach(async () => {
    await dir.remove();
  });

  it('built-ins exist and are ordered by speed; a 256 KiB image takes visibly different times', () => {
    assert.deepEqual(Object.keys(BUILTIN_PROFILES), [...BUILTIN_PROFILE_NAMES]);
    const list = BUILTIN_PROFILE_NAMES.map((n) => BUILTIN_PROFILES[n]);
    const cap = (b: number): number => (b === 0 ? Infinity : b);
    for (let i = 1; i < list.length; i++) {
      const [a, b] = [list[i - 1]!, list[i]!];
      assert.ok(b.latencyMs > a.latencyMs, `${b.name} latency`);
      assert.ok(cap(b.downBps) < cap(a.downBps), `${b.name} down`);
      assert.ok(cap(b.upBps) < cap(a.upBps), `${b.name} up`);
      assert.ok(b.lossPct >= a.lossPct || b.outage, `${b.name} loss`);
    }
    const times = list.map((p) => estimateMs(p, 256 * 1024));
    assert.ok(times[0]! * 5 < times[1]!, `lan ${times[0]} vs wifi-good ${times[1]}`);
    assert.ok(times[1]! * 3 < times[2]! && times[2]! * 1.5 < times[3]!, times.join(', '));
    assert.ok(times[3]! < 4_000, `cellular ${times[3]} ms`);
    assert.equal(BUILTIN_PROFILES.cellular.outage?.forMs, 300);
    assert.ok(Object.isFrozen(BUILTIN_PROFILES.lan));
    assert.equal(describeProfile(BUILTIN_PROFILES['wifi-poor']), 'wifi-poor: 40±15 ms, down 250 kB/s, up 100 kB/s, loss 1%');
  });

  it('mixed: the same assignment every time, all four in every block of four', () => {
    const a = resolveNamedProfiles('mixed', ids(20));
    const b = resolveProfilesSync('mixed', ids(20));
    const names = [...a.values()].map((p) => p.name);
    assert.deepEqual([...b.values()].map((p) => p.name), names);
    for (let k = 0; k < 20; k += 4) assert.equal(new Set(names.slice(k, k + 4)).size, 4, `devices ${k}..${k + 3}`);
    for (const n of BUILTIN_PROFILE_NAMES) assert.equal(names.filter((x) => x === n).length, 5, n);
    assert.equal(mixedProfile(0).name, names[0]);
    assert.equal(new Set([...resolveNamedProfiles('wifi-good', ids(3)).values()]).size, 1);
  });

  it('a JSON file maps ids and 0-based indices, with a default, base profiles and overrides; an array repeats', async () => {
    const file = join(dir.path, 'links.json');
    await writeFile(file, JSON.stringify({
      default: 'lan',
      devices: {
        'dev-002': 'cellular',
        '2': { base: 'wifi-poor', name: 'bad-wifi', lossPct: 5 },
        'dev-004': { name: 'slow', latencyMs: 100, upBps: 10_000 },
      },
    }));
    const m = await resolveProfiles(file, ids(5));
    assert.deepEqual([...m.entries()].map(([id, p]) => `${id}=${p.name}`), ['dev-001=lan', 'dev-002=cellular', 'dev-003=bad-wifi', 'dev-004=slow', 'dev-005=lan']);
    assert.equal(m.get('dev-003')!.lossPct, 5);
    assert.equal(m.get('dev-003')!.downBps, BUILTIN_PROFILES['wifi-poor'].downBps);
    assert.deepEqual(m.get('dev-004'), { name: 'slow', latencyMs: 100, jitterMs: 0, downBps: 0, upBps: 10_000, lossPct: 0 });
    assert.deepEqual(resolveProfilesSync(file, ids(5)), m);

    const noDefault = profilesFromFile({ devices: { 'dev-001': 'wifi-good' } }, ids(3));
    assert.deepEqual([...noDefault.keys()], ['dev-001'], 'devices without a profile connect directly');
    const arr = profilesFromFile(['cellular', 'lan'], ids(5));
    assert.deepEqual([...arr.values()].map((p) => p.name), ['cellular', 'lan', 'cellular', 'lan', 'cellular']);
    assert.equal(profilesFromFile({ default: 'mixed' }, ids(4)).size, 4);
  });

  it('bad profile files give errors that name the field', async () => {
    const bad: [unknown, RegExp][] = [
      [{ default: 'nosuch' }, /default: unknown profile "nosuch"/],
      [{ devices: { 'dev-001': 'fast' } }, /devices\.dev-001: unknown profile "fast"/],
      [{ default: { latencyMs: -3 } }, /default\.latencyMs: Too small/],
      [{ devices: { 1: { base: 'lan', lossPct: 200 } } }, /devices\.1\.lossPct/],
      [{ default: { base: 'wifi-great' } }, /default\.base/],
      [{ default: { latency: 5 } }, /default: Unrecognized key: "latency"/],
      [{ default: 5 }, /default: must be a profile name or a profile object/],
      [{ default: { outage: { everyMs: 100, forMs: 500 } } }, /default\.outage\.forMs: must be shorter than everyMs/],
      [{ defaults: 'lan' }, /Unrecognized key: "defaults"/],
      [{ devices: { 'dev-009': 'lan' } }, /devices\.dev-009: no such device in this fleet/],
      [{ devices: { 3: 'lan' } }, /devices\.3: no such device/],
      [[], /\(root\)/],
      ['lan', /must be an object/],
    ];
    for (const [json, re] of bad) {
      assert.throws(() => profilesFromFile(json, ids(3)), (err: unknown) => isFwError(err, 'E_CONFIG') && re.test(err.message), JSON.stringify(json));
    }
    const file = join(dir.path, 'broken.json');
    await writeFile(file, '{ "default": ');
    await assert.rejects(resolveProfiles(file, ids(2)), (err: unknown) => isFwError(err, 'E_CONFIG') && err.message.includes(`profile file ${file}: not JSON`));
    await assert.rejects(resolveProfiles(join(dir.path, 'missing.json'), ids(2)), /profile file .*missing\.json: .*ENOENT/);
    assert.throws(() => resolveProfilesSync('nosuch', ids(2)), /unknown profile "nosuch" \(expected lan, wifi-good, wifi-poor, cellular, mixed, or a JSON profile file\)/);
  });

  it('fleet: one proxy per device with a profile, devices reach the broker through it; stop closes the proxies', async () => {
    const broker = await startBroker();
    const profiles = resolveNamedProfiles('mixed', ids(4));
    profiles.delete('dev-004'); // a device without a profile connects directly
    const fleet = new Fleet({ broker: broker.url, count: 4, dataDir: dir.path, device: FAST, profiles });
    const log = new EventLog(fleet);
    const links: FleetLink[] = [];
    fleet.on('link', (l) => links.push(l));
    try {
      assert.equal(fleet.devices.length, 0, 'devices are made once their links listen');
      await fleet.start();
      assert.deepEqual(links.map((l) => `${l.id}=${l.profile.name}`), ['dev-001=wifi-good', 'dev-002=cellular', 'dev-003=lan']);
      await waitFor(() => log.count('connected') === 4, 5_000, '4 connects');
      for (const l of links) {
        const px = fleet.link(l.id)!;
        assert.equal(fleet.get(l.id)!.options.broker, px.url);
        assert.equal(px.stats.connections, 1);
        assert.ok(px.stats.bytesUp > 0 && px.stats.bytesDown > 0);
      }
      assert.equal(fleet.link('dev-004'), undefined);
      assert.equal(fleet.get('dev-004')!.options.broker, broker.url);
      assert.equal(fleet.profileOf('dev-002')!.name, 'cellular');
      assert.match(formatLink(links[1]!, false), /dev-002 link cellular: 70±20 ms, .* via 127\.0\.0\.1:\d+$/);
      assert.deepEqual(Object.keys(JSON.parse(formatLink(links[1]!, true)) as object), ['ts', 'type', 'id', 'profile', 'url']);
    } finally {
      await fleet.stop();
      await broker.close();
    }
    assert.equal(fleet.link('dev-001'), undefined);
    assert.equal(log.count('stopped'), 4);
  });

  it('parseCli: --profile takes a name or a file; an unknown one is a usage error naming it', async () => {
    const cfg = parseCli(['--count', '8', '--profile', 'mixed', '--data', dir.path]);
    assert.equal(cfg.profile, 'mixed');
    const m = cfg.fleet.profiles as ReadonlyMap<string, LinkProfile>;
    assert.equal(m.size, 8);
    assert.equal(new Set([...m.values()].map((p) => p.name)).size, 4);
    assert.equal(parseCli(['--data', dir.path]).fleet.profiles, undefined, 'no --profile: direct connections');
    const file = join(dir.path, 'p.json');
    await writeFile(file, JSON.stringify({ devices: { 'dev-001': { latencyMs: -1 } } }));
    assert.throws(() => parseCli(['--profile', file]), (err: unknown) => isFwError(err, 'E_USAGE') && /--profile: profile file .*devices\.dev-001\.latencyMs/.test(err.message));
    assert.throws(() => parseCli(['--profile', 'nosuch']), (err: unknown) => isFwError(err, 'E_USAGE') && /--profile: unknown profile "nosuch"/.test(err.message));
  });

  it('fwsim process: --profile nosuch exits 2 naming it', async () => {
    const r = await runCli(['--profile', 'nosuch']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--profile: unknown profile "nosuch"/);
  });

  it('fwsim process: --profile mixed prints a link line per device before it boots', async () => {
    const broker = await startBroker();
    try {
      const ok = await runCli(['--broker', broker.url, '--count', '4', '--data', dir.path, '--json', '--boot-delay', '0', '--profile', 'mixed'], {
        untilStdout: (out) => out.split('\n').filter((l) => l.includes('"type":"connected"')).length === 4,
      });
      assert.equal(ok.code, 0, ok.stderr);
      const events = ok.stdout.trim().split('\n').map((l) => JSON.parse(l) as { id: string; type: string; profile?: string });
      const linkLines = events.filter((e) => e.type === 'link');
      assert.deepEqual(linkLines.map((e) => `${e.id}=${e.profile}`), ['dev-001=wifi-good', 'dev-002=cellular', 'dev-003=lan', 'dev-004=wifi-poor']);
      assert.ok(events.findIndex((e) => e.type === 'link') < events.findIndex((e) => e.type === 'booted'), 'link lines come first');
      assert.match(ok.stderr, /link profile mixed/);
      await waitFor(() => broker.broker.connectedClients === 0, 2_000, 'clients gone');
    } finally {
      await broker.close();
    }
  });
});
