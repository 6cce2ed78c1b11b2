import type { Command } from 'commander';
import { describeError } from '../protocol/errors.ts';
import { controlCall, type ControlRequest } from './control.ts';
import { retryOutcomesOf } from '../protocol/uplink.ts';

/**
 * `fwgate campaign cancel|retry|resume <id>` on the gateway host: sent to the running gateway
 * through its control socket (gateway/control.ts). Exit 0 done, 1 refused by the gateway (the
 * reason printed), 2 usage, 3 no gateway running on that data directory.
 */
export function addCampaignControlCommands(campaign: Command, dataDir: (cmd: Command) => Promise<string>, setRun: (run: () => Promise<void>) => void): void {
  const call = (req: ControlRequest, cmd: Command): void => setRun(async () => {
    try {
      const a = await controlCall(await dataDir(cmd), req);
      if (a.ok) {
        process.stdout.write(`${req.op === 'retry' ? `retry of ${req.campaign}: campaign ${a.campaign}` : `${req.op}: campaign ${a.campaign}`}\n`);
      } else {
        process.stderr.write(`fwgate: ${a.code}: ${a.message}\n`);
        process.exitCode = a.code === 'E_USAGE' ? 2 : 1;
      }
    } catch (err) {
      process.stderr.write(`fwgate: ${describeError(err)}\n`);
      process.exitCode = 3;
    }
  });
  campaign.command('cancel <id>')
    .description('Cancel a live campaign: devices not offered yet and those in transfer end cancelled on their old image; devices past activate finish')
    .action((id: string, _o: unknown, cmd: Command) => call({ op: 'cancel', campaign: id }, cmd));
  campaign.command('resume <id>')
    .description('Start the next wave of a campaign paused between waves (--wave-pause)')
    .action((id: string, _o: unknown, cmd: Command) => call({ op: 'resume', campaign: id }, cmd));
  campaign.command('retry <id>')
    .description('A new campaign from the stored manifest and image for the devices with these results (default --failed --rolled-back); no upload')
    .option('--failed').option('--rolled-back').option('--expired').option('--cancelled').option('--skipped')
    .option('--now', 'start at once, also outside a maintenance window').option('--force', 'update busy devices too')
    .action((id: string, o: Record<string, boolean | undefined>, cmd: Command) => {
      call({ op: 'retry', campaign: id, outcomes: retryOutcomesOf(o), ...(o.now ? { policy: 'now' as const } : {}), ...(o.force ? { force: true } : {}) }, cmd);
    });
}
