import { checkRollout, checkVersions, type Scenario } from '../scenario.ts';

/**
 * The gateway dies mid-campaign (a local fwgate is SIGKILLed: a power cut of the gateway) and
 * comes back: it resumes the campaign from its journal; the laptop follows with `fwpush status`.
 */
export const gatewayRestart: Scenario = {
  name: 'gateway-restart',
  title: 'Gateway restarted mid-campaign',
  expects: [
    'the restart lands while a device is transferring',
    'the restarted gateway resumes the campaign; `fwpush status` follows it to the end and exits 0',
    'each device: one result, updated; each reports the new version',
  ],
  unsupported: (rig) => (rig.canRestartGateway ? undefined : 'the rig file has no gateway.remote.restart command'),
  async run(ctx) {
    const image = await ctx.rig.image('good');
    const push = ctx.rig.push(image, ['--now']);
    const mid = await push.waitFor((e) => e.event === 'progress' && e.phase === 'transferring' && Number(e.bytes) > 0 && Number(e.bytes) < Number(e.total), ctx.rig.timeouts.scenarioMs);
    if (!ctx.check('restart while a device is transferring', mid !== undefined, mid ? `${String(mid.id)} at ${String(mid.bytes)} of ${String(mid.total)} bytes` : 'no transfer seen part-way')) {
      await push.kill();
      return;
    }
    await ctx.rig.restartGateway();
    // The laptop's session was with the gateway that died: the technician runs status to follow.
    await push.kill();
    const status = await ctx.rig.fwpush(['status']).exited;
    checkRollout(ctx, status, { exit: 0, results: () => ({ outcome: 'updated' }) });
    await checkVersions(ctx, () => image.version);
  },
};
