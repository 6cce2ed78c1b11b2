import { checkRollout, checkVersions, type Scenario } from '../scenario.ts';

/** The cable is pulled mid-upload and plugged back: fwpush reconnects and resumes at the gateway's offset. */
export const laptopUnplug: Scenario = {
  name: 'laptop-unplug',
  title: 'Laptop unplugged mid-upload and plugged back',
  expects: [
    'the cable comes out while fwpush is uploading, past half of the image',
    'fwpush reports the link lost, reconnects, and resumes the upload part-way (offset > 0), not from the start',
    'fwpush exits 0; each device: one result, updated; each reports the new version',
  ],
  unsupported: (rig) => (rig.canUnplug ? undefined : 'the rig file has no laptop.unplug / laptop.plug commands'),
  async run(ctx) {
    // big enough that the gateway has synced part of it when the cable comes out half-way
    const image = await ctx.rig.image('good', { minSize: 1024 * 1024 });
    let pulled: Promise<void> | undefined;
    const push = ctx.rig.push(image, ['--now'], (e) => {
      if (pulled || e.event !== 'upload' || !(Number(e.sent) >= Number(e.total) / 2 && Number(e.sent) < Number(e.total))) return;
      pulled = (async () => {
        await ctx.rig.unplug();
        await new Promise((r) => setTimeout(r, ctx.rig.timeouts.unplugMs));
        await ctx.rig.plug();
      })().catch((err: unknown) => {
        ctx.check('unplug and plug', false, (err as Error).message);
      });
    });
    const run = await push.exited;
    await pulled;
    ctx.check('cable pulled mid-upload', pulled !== undefined, pulled ? '' : 'no upload progress seen before the upload ended');
    const lost = run.events.find((e) => e.event === 'link-lost');
    ctx.check('fwpush saw the link lost', lost !== undefined, lost ? `in phase ${String(lost.phase)} (${String(lost.code)})` : 'no link-lost event');
    ctx.check('fwpush reconnected', run.events.some((e) => e.event === 'reconnected'), '');
    const resumed = run.events.find((e) => e.event === 'upload-resumed');
    ctx.check('upload resumed part-way', resumed !== undefined && Number(resumed.offset) > 0 && Number(resumed.offset) < Number(resumed.size),
      resumed ? `at ${String(resumed.offset)} of ${String(resumed.size)}` : 'no upload-resumed event (the cut may have come after the upload)');
    checkRollout(ctx, run, { exit: 0, results: () => ({ outcome: 'updated' }) });
    await checkVersions(ctx, () => image.version);
  },
};
