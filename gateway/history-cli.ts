import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { describeError, isFwError } from '../protocol/errors.ts';
import type { GatewayConfig } from './config.ts';
import { listCampaigns, showCampaign, type CampaignCounts, type CampaignDetail, type CampaignSummary } from './history.ts';
import { fleetDevices, imagesDirOf, listImages, pruneImages, type ImageInfo, type PruneReport } from './image-housekeeping.ts';
import { acquirePidFile } from './pid-file.ts';

/**
 * Host commands over the data directory (docs/operations.md "Campaign history and housekeeping"):
 * `fwgate campaigns`, `fwgate campaign show <id>`, `fwgate images`, `fwgate images prune`. They
 * start no gateway; all but prune only read, so they work while one runs. Exit 0 when done, 1 when
 * something cannot be read (or prune is refused), 2 on a usage error (an unknown campaign).
 *
 * Returns the `campaign` command so that other subcommands (cancel, retry) can be added to it.
 */
export function addHistoryCommands(program: Command, loadConfig: (cmd: Command) => Promise<GatewayConfig>, setRun: (run: () => Promise<void>) => void): { campaign: Command } {
  program.command('campaigns')
    .description('List every campaign of the data directory (from its journals): image, policy, state, results; starts no gateway, works while one runs')
    .option('--json', 'one JSON array instead of a table')
    .action((o: { json?: boolean }, cmd: Command) => {
      setRun(async () => campaigns((await loadConfig(cmd)).dataDir, o.json === true));
    });
  const campaign = program.command('campaign').description('One campaign of the data directory');
  campaign.command('show <id>')
    .description('Per-device results of a campaign: outcome, code, reason, versions, attempts, duration')
    .option('--json', 'one JSON object instead of a table')
    .action((id: string, o: { json?: boolean }, cmd: Command) => {
      setRun(async () => show((await loadConfig(cmd)).dataDir, id, o.json === true));
    });
  const images = program.command('images')
    .description('List the stored images, the devices that run them and the campaigns that name them; starts no gateway')
    .option('--json', 'one JSON array instead of a table')
    .action((o: { json?: boolean }, cmd: Command) => {
      setRun(async () => listImagesCommand((await loadConfig(cmd)).dataDir, o.json === true));
    });
  images.command('prune')
    .description('Remove the images no device runs, no unfinished campaign needs and no kept journal names (applies storage.keepCampaigns first); refused while a gateway runs on the data directory')
    .option('--dry-run', 'say what would be removed, remove nothing')
    .option('--json', 'one JSON object instead of lines')
    .action((_o: unknown, cmd: Command) => {
      const o = cmd.optsWithGlobals<{ dryRun?: boolean; json?: boolean }>();
      setRun(async () => prune(await loadConfig(cmd), o.dryRun === true, o.json === true));
    });
  return { campaign };
}

function fail(msg: string, code: number): void {
  process.stderr.write(`fwgate: ${msg}\n`);
  process.exitCode = code;
}

function noDataDir(dataDir: string): boolean {
  if (existsSync(dataDir)) return false;
  fail(`the data directory ${dataDir} does not exist (give the gateway's --data or --config)`, 1);
  return true;
}

async function campaigns(dataDir: string, json: boolean): Promise<void> {
  if (noDataDir(dataDir)) return;
  let list: CampaignSummary[];
  try {
    list = listCampaigns(dataDir, (msg) => process.stderr.write(`fwgate: ${msg}; left out\n`));
  } catch (err) {
    return fail(describeError(err), 1);
  }
  if (json) {
    process.stdout.write(`${JSON.stringify(list)}\n`);
    return;
  }
  const now = Date.now();
  const head = ['campaign', 'image', 'policy', 'state', 'created', 'ended', 'results'];
  const rows = list.map((c) => [c.id, `${c.image.name} ${c.image.version}`, c.policy, c.state, localTime(c.created), c.ended === null ? '-' : localTime(c.ended), countsText(c.counts)]);
  const n = list.length;
  process.stdout.write(`${[`${n} campaign${n === 1 ? '' : 's'} in ${dataDir} (times in local time, now ${localTime(now)})`, ...(n === 0 ? [] : ['', ...table(head, rows)])].join('\n')}\n`);
}

async function show(dataDir: string, id: string, json: boolean): Promise<void> {
  let d: CampaignDetail;
  try {
    d = showCampaign(dataDir, id);
  } catch (err) {
    if (isFwError(err, 'E_USAGE')) return fail(err.message, 2);
    return fail(describeError(err), 1);
  }
  if (json) {
    process.stdout.write(`${JSON.stringify(d)}\n`);
    return;
  }
  const lines = [
    `Campaign ${d.id}: ${d.image.name} ${d.image.version} (sha256 ${d.image.sha256})`,
    `policy ${d.policy}${d.force ? ', force' : ''}${d.downgrade ? ', downgrade' : ''}; state ${d.state}${d.stateReason ? ` (${d.stateReason})` : ''}`,
    `created ${localTime(d.created)}, ${d.ended === null ? `not ended${d.expiresAt !== null ? `, expires ${localTime(d.expiresAt)}` : ''}` : `ended ${localTime(d.ended)}`}`,
    `results: ${countsText(d.counts) || 'none'}`,
    ...(d.order ? [`order: ${d.order.ranked} ranked, ${d.order.excluded + d.order.excludedMore} excluded`] : ['order: not announced yet']),
    ...(d.tornBytes > 0 ? [`(${d.tornBytes} bytes at the end of ${d.file} not read: a record being written, or one this version does not know)`] : []),
  ];
  const head = ['rank', 'device', 'result', 'code', 'from', 'to', 'attempts', 'duration', 'reason'];
  const rows = d.devices.map((r) => [
    r.rank === null ? (r.excluded ? 'excl' : '-') : String(r.rank), r.id, r.outcome + (r.activating ? ' (activating)' : ''), r.code ?? '', r.from ?? '', r.to ?? '',
    String(r.attempts), r.durationMs === null ? '' : seconds(r.durationMs), r.reason ?? '',
  ]);
  process.stdout.write(`${[...lines, ...(rows.length === 0 ? [] : ['', ...table(head, rows)])].join('\n')}\n`);
}

async function listImagesCommand(dataDir: string, json: boolean): Promise<void> {
  if (noDataDir(dataDir)) return;
  let list: ImageInfo[];
  try {
    const { devices } = await fleetDevices(dataDir);
    list = listImages(dataDir, devices, (msg) => process.stderr.write(`fwgate: ${msg}\n`));
  } catch (err) {
    return fail(describeError(err), 1);
  }
  if (json) {
    process.stdout.write(`${JSON.stringify(list)}\n`);
    return;
  }
  const head = ['sha256', 'image', 'hw', 'size', 'stored', 'devices', 'campaigns'];
  const rows = list.map((i) => [
    i.sha256.slice(0, 12), `${i.name} ${i.versions.length > 0 ? i.versions.join(', ') : i.version}`, i.hw.join(','), `${i.size}`, localTime(Date.parse(i.storedAt)),
    i.devices.length === 0 ? '-' : `${i.devices.length}: ${i.devices.slice(0, 5).join(', ')}${i.devices.length > 5 ? ', ...' : ''}`,
    i.campaigns.length === 0 ? '-' : i.campaigns.map((c) => `${c.id} (${c.state})`).join(', '),
  ]);
  const n = list.length;
  process.stdout.write(`${[`${n} image${n === 1 ? '' : 's'} in ${imagesDirOf(dataDir)}`, ...(n === 0 ? [] : ['', ...table(head, rows)])].join('\n')}\n`);
}

async function prune(config: GatewayConfig, dryRun: boolean, json: boolean): Promise<void> {
  const { dataDir } = config;
  if (noDataDir(dataDir)) return;
  let report: PruneReport;
  let pid;
  try {
    pid = acquirePidFile(dataDir, 'images prune'); // refused while a gateway runs on it; keeps one from starting meanwhile
  } catch (err) {
    return fail(`images prune refused: ${isFwError(err) ? err.message : describeError(err)}`, 1);
  }
  try {
    report = await pruneImages(dataDir, config.storage.keepCampaigns, { dryRun, warn: (msg) => process.stderr.write(`fwgate: ${msg}\n`) });
  } catch (err) {
    return fail(describeError(err), 1);
  } finally {
    pid.release();
  }
  if (json) {
    process.stdout.write(`${JSON.stringify(report)}\n`);
    return;
  }
  const verb = dryRun ? 'would remove' : 'removed';
  const lines = [
    ...report.journals.map((j) => `${verb} journal ${j.id} (ended ${localTime(j.ended)}; ${j.why === 'count' ? 'beyond storage.keepCampaigns.count' : 'older than storage.keepCampaigns.maxAgeDays'})`),
    ...report.images.map((e) => (e.remove
      ? `${verb} image ${e.name} ${e.version} (${e.sha256.slice(0, 12)}, ${e.size} bytes)`
      : `kept image ${e.name} ${e.version} (${e.sha256.slice(0, 12)}): ${e.keptBecause.join('; ')}`)),
    `${dryRun ? 'dry run: ' : ''}${report.images.filter((e) => e.remove).length} of ${report.images.length} images ${dryRun ? 'would be removed' : 'removed'}, ${report.freedBytes} bytes`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

function countsText(c: CampaignCounts): string {
  const names: [keyof CampaignCounts, string][] = [
    ['updated', 'updated'], ['failed', 'failed'], ['rolledBack', 'rolled back'], ['skipped', 'skipped'], ['pending', 'pending'],
    ['cancelled', 'cancelled'], ['superseded', 'superseded'], ['expired', 'expired'],
  ];
  return names.filter(([k]) => c[k] > 0).map(([k, name]) => `${c[k]} ${name}`).join(', ');
}

function table(head: string[], rows: string[][]): string[] {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(head), ...rows.map(line)];
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

/** `2025-01-31 14:05:09`, in the local time zone. */
function localTime(ms: number): string {
  if (!Number.isFinite(ms)) return '?';
  const d = new Date(ms);
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}
