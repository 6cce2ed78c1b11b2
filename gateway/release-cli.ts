import { join } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { describeError } from '../protocol/errors.ts';
import { KeyRing, parsePublicKey } from '../protocol/signature.ts';
import { parseWaves } from '../protocol/wave-list.ts';
import type { GatewayConfig } from './config.ts';
import { controlCall, type ControlRequest } from './control.ts';
import { ReleaseRegistry, type StoredRelease } from './releases.ts';

/**
 * `fwgate releases [--json]` and `fwgate release live <name> <version>` on the gateway host
 * (docs/operations.md "Releases"). `releases` reads the registry in the data directory (verifying
 * every record; rotten ones are named on stderr, exit 1) and works whether or not a gateway runs;
 * `release live` goes to the running gateway through its control socket, like
 * `fwgate campaign cancel`. Exit codes: 0 done, 1 refused (the reason printed), 2 usage, 3 no
 * gateway running on that data directory.
 */
export function addReleaseCommands(program: Command, loadConfig: (cmd: Command) => Promise<GatewayConfig>, setRun: (run: () => Promise<void>) => void): void {
  program.command('releases')
    .description('List the stored releases: state (deferred, live, superseded), components (name, version, size) and campaign; from <data>/releases, whether or not a gateway runs')
    .option('--json', 'one JSON object instead of a table')
    .action((o: { json?: boolean }, cmd: Command) => setRun(async () => {
      const config = await loadConfig(cmd);
      const registry = await ReleaseRegistry.open({
        dir: join(config.dataDir, 'releases'),
        keyRing: new KeyRing(config.security.trustedKeys.map((k) => parsePublicKey(k.publicKey))),
        allowUnsigned: config.security.allowUnsigned,
      });
      const list = await registry.list();
      for (const p of registry.problems) process.stderr.write(`fwgate: release record ${p.file} does not verify, skipped: ${p.reason}\n`);
      process.stdout.write(o.json ? `${JSON.stringify({ releases: list.map(releaseJson), problems: registry.problems })}\n` : releasesTable(list));
      if (registry.problems.length > 0) process.exitCode = 1;
    }));

  const release = program.command('release').description('Act on a stored release (fwgate release live --help)');
  release.command('live <name> <version>')
    .description('Start a stored release\'s campaign on the running gateway (a deferred one, or again); live releases of the same name with a lower version become superseded')
    .addOption(new Option('--now', 'start at once, also outside a maintenance window').conflicts('inWindow'))
    .addOption(new Option('--in-window', 'wait for the next maintenance window').conflicts('now'))
    .option('--force', 'update busy devices too')
    .option('--allow-downgrade', 'install on devices that run a newer version')
    .option('--only <ids>', 'only these devices (comma-separated)', (v: string) => v.split(',').map((x) => x.trim()).filter(Boolean))
    .option('--group <name>', 'only the devices of this group')
    .option('--waves <list>', 'staged waves, e.g. 1,10%,100%', (v: string) => {
      const w = parseWaves(v);
      if (!w) throw new InvalidArgumentError(`--waves takes counts and percentages, e.g. 1,10%,100%; got "${v}"`);
      return w;
    })
    .option('--wave-gate <pct>', 'failure share (percent) of a wave at which later waves are not started', (v: string) => {
      const n = Number(v);
      if (!/^\d+$/.test(v) || n < 1 || n > 100) throw new InvalidArgumentError(`--wave-gate must be 1..100, got "${v}"`);
      return n;
    })
    .option('--wave-pause', 'stop after each wave until `fwgate campaign resume`')
    .action((name: string, version: string, o: LiveFlags, cmd: Command) => setRun(async () => {
      const req: ControlRequest = {
        op: 'release-live', release: name, version,
        ...(o.now ? { policy: 'now' as const } : o.inWindow ? { policy: 'window' as const } : {}),
        ...(o.force ? { force: true } : {}), ...(o.allowDowngrade ? { downgrade: true } : {}),
        ...(o.only ? { only: o.only } : {}), ...(o.group !== undefined ? { group: o.group } : {}), ...(o.waves ? { waves: o.waves } : {}),
        ...(o.waveGate !== undefined ? { waveGate: o.waveGate } : {}), ...(o.wavePause ? { wavePause: true } : {}),
      };
      try {
        const a = await controlCall((await loadConfig(cmd)).dataDir, req);
        if (a.ok) {
          process.stdout.write(`release ${name} ${version} live: campaign ${a.campaign}\n`);
        } else {
          process.stderr.write(`fwgate: ${a.code}: ${a.message}\n`);
          process.exitCode = a.code === 'E_USAGE' ? 2 : 1;
        }
      } catch (err) {
        process.stderr.write(`fwgate: ${describeError(err)}\n`);
        process.exitCode = 3;
      }
    }));
}

interface LiveFlags {
  now?: boolean; inWindow?: boolean; force?: boolean; allowDowngrade?: boolean; only?: string[]; group?: string;
  waves?: ReturnType<typeof parseWaves>; waveGate?: number; wavePause?: boolean;
}

/** A stored release as `fwgate releases --json` lists it. */
export function releaseJson(r: StoredRelease): Record<string, unknown> {
  return {
    release: r.manifest.release, version: r.manifest.version, digest: r.digest, state: r.state, hw: r.manifest.hw, seq: r.manifest.seq ?? 0,
    signedBy: r.manifest.signature?.keyId ?? null,
    components: r.manifest.components.map((c) => ({ component: c.component, name: c.name, version: c.version, size: c.size, sha256: c.sha256, ...(c.requires ? { requires: c.requires } : {}), ...(c.agent ? { agent: true } : {}) })),
    storedAt: new Date(r.storedAt).toISOString(),
    ...(r.liveAt !== undefined ? { liveAt: new Date(r.liveAt).toISOString() } : {}),
    campaign: r.campaign ?? null,
  };
}

function releasesTable(list: readonly StoredRelease[]): string {
  if (list.length === 0) return 'no releases stored\n';
  const rows = list.map((r) => [
    r.manifest.release, r.manifest.version, r.state,
    r.manifest.components.map((c) => `${c.component} ${c.version} (${c.size} B)`).join(', '),
    r.campaign ?? '-', new Date(r.storedAt).toISOString().slice(0, 19).replace('T', ' '),
  ]);
  const head = ['RELEASE', 'VERSION', 'STATE', 'COMPONENTS', 'CAMPAIGN', 'STORED (UTC)'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [head, ...rows].map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n') + '\n';
}
