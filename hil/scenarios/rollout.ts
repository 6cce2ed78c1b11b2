import { checkOrderFirst, checkRollout, checkVersions, versionsNow, type Scenario } from '../scenario.ts';

/** Every device updated, in the announced order, with progress that never goes backwards. */
export const happyPath: Scenario = {
  name: 'happy-path',
  title: 'Happy path: one image to every device',
  expects: [
    'fwpush exits 0',
    'the order reaches the laptop before the first chunk goes to any device',
    'each device: one result, updated; its transfer progress never goes backwards',
    'each device reports the new version to the gateway afterwards',
  ],
  async run(ctx) {
    const image = await ctx.rig.image('good');
    const run = await ctx.rig.push(image, ['--now']).exited;
    checkRollout(ctx, run, { exit: 0, results: () => ({ outcome: 'updated' }) });
    checkOrderFirst(ctx, run.events);
    for (const d of ctx.rig.devices) {
      const bytes = run.events.filter((e) => e.event === 'progress' && e.id === d.id && e.phase === 'transferring').map((e) => Number(e.bytes));
      const back = bytes.findIndex((b, i) => i > 0 && b < bytes[i - 1]!);
      ctx.check(`${d.id}: transfer progress never goes backwards`, back < 0, back < 0 ? `${bytes.length} reports` : `${bytes[back - 1]} then ${bytes[back]}`);
    }
    await checkVersions(ctx, () => image.version);
  },
};

/** An image that verifies but fails its self-test at the trial boot: every device stays where it was. */
export const badImage: Scenario = {
  name: 'bad-image',
  title: 'Bad image: fails its self-test at the first boot and is rolled back',
  expects: [
    'fwpush exits 1 (devices failed) or 6 (campaign halted by the rollback threshold)',
    'each device: one result, rolled-back or skipped (campaign-halted); at least one rolled back; none updated',
    'each device reports the version it ran before',
  ],
  async run(ctx) {
    const before = await versionsNow(ctx);
    const image = await ctx.rig.image('selftest-fail');
    const run = await ctx.rig.push(image, ['--now']).exited;
    checkRollout(ctx, run, { exit: [1, 6], results: () => ({ outcome: 'not-updated' }) });
    const outcomes = run.events.filter((e) => e.event === 'result').map((e) => `${String(e.outcome)}/${String(e.code)}`);
    ctx.check('at least one device rolled back', outcomes.some((o) => o.startsWith('rolled-back/')), outcomes.join(', '));
    ctx.check('the rest skipped by the halt or rolled back', outcomes.every((o) => o.startsWith('rolled-back/') || o === 'skipped/campaign-halted'), outcomes.join(', '));
    await checkVersions(ctx, (id) => before.get(id) ?? '?');
  },
};
