import { describeError } from '../../protocol/errors.ts';
import { checkRollout, checkVersions, resultsOf, type Scenario } from '../scenario.ts';

/**
 * A device is off when the campaign starts (a window campaign: the technician has gone), the rest
 * are updated, and the device is updated when it checks in after power comes back.
 */
export const deviceOffline: Scenario = {
  name: 'device-offline',
  title: 'Device offline during the campaign, caught up at its check-in',
  expects: [
    'the gateway needs a maintenance window open now (the simulated rig has one): the push is a window campaign (--in-window)',
    'the other devices are updated while the device is off; the device has no result yet',
    'after power-on the device checks in and is updated; fwpush exits 0; every device reports the new version',
  ],
  async run(ctx) {
    const victim = ctx.rig.devices.at(-1)!;
    const others = ctx.rig.devices.filter((d) => d !== victim).map((d) => d.id);
    await ctx.rig.power(victim, 'off');
    await ctx.rig.waitOnline([victim.id], ctx.rig.timeouts.bootMs, false);
    const image = await ctx.rig.image('good');
    const push = ctx.rig.push(image, ['--in-window']);
    const othersDone = await push.waitFor((e) => e.event === 'queued' || (e.event === 'result' && others.every((id) => resultsOf(push.events).has(id))), ctx.rig.timeouts.scenarioMs);
    if (othersDone?.event === 'queued') {
      ctx.check('the campaign runs now', false, 'the gateway queued it for its next maintenance window: give the rig\'s gateway a window open during the run (docs/hil.md)');
      await ctx.rig.power(victim, 'on');
      await push.exited;
      return;
    }
    const early = resultsOf(push.events);
    ctx.check('the other devices finish while the device is off', others.every((id) => early.get(id)?.last.outcome === 'updated'),
      others.map((id) => `${id}: ${String(early.get(id)?.last.outcome ?? 'no result')}`).join(', '));
    ctx.check(`${victim.id}: no result while it is off`, !early.has(victim.id), early.has(victim.id) ? `${String(early.get(victim.id)!.last.outcome)} (${String(early.get(victim.id)!.last.code)})` : 'waiting for its check-in');
    await ctx.rig.power(victim, 'on').catch((err: unknown) => ctx.check(`${victim.id}: power on`, false, describeError(err)));
    const run = await push.exited;
    checkRollout(ctx, run, { exit: 0, results: () => ({ outcome: 'updated' }) });
    await checkVersions(ctx, () => image.version);
  },
};
