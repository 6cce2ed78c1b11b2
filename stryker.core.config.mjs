// @ts-check
/**
 * Mutation testing of the core modules (issue 22): the protocol (link, messages, manifest,
 * signature), the rollout (planner, gate, campaign, device session, journal), maintenance windows
 * and the image store. Run with `npm run test:mutation:core` (scripts/mutation.ts core), which runs
 * one group at a time so each module's mutants meet its own unit tests, not the whole suite.
 *
 * STRYKER_GROUP=<name> picks one group; without it, every module against every listed spec.
 * Incremental: a rerun only tests mutants whose code or covering tests changed
 * (reports/mutation/core-<group>.incremental.json).
 */

/** Each group: the files it mutates and the unit tests aimed at them. */
export const groups = {
  link: {
    mutate: ['protocol/link/*.ts', '!protocol/link/index.ts'],
    // The focused tests only, fastest killers first (mocha runs the files in this order). Left out
    // of the mutation run, run by npm test: the whole-line simulations — arq-channel.test.ts,
    // arq-slow-line.test.ts, and in arq.test.ts the 65536-wrap test (~70,000 frames each way,
    // past its own 20 s bound once instrumented) and the delayed-ACK pair over a lossy line. With
    // them every surviving ARQ mutant ran them all: the first full run estimated ~10 h for 1561
    // mutants (93 done in 30 min, 2 cores shared by 4 runs), and ~1.5 h still with only the
    // 200-message scenarios and the 30 MB/s line left out. So the link score is a lower bound:
    // the score of the focused tests alone.
    spec: [
      'test/protocol/link/arq-options.test.ts', 'test/protocol/link/arq-receiver-edges.test.ts', 'test/protocol/link/arq-sender-edges.test.ts',
      'test/protocol/link/arq-clock.test.ts', 'test/protocol/link/arq-loss.test.ts', 'test/protocol/link/arq-reentry.test.ts', 'test/protocol/link/arq-state.test.ts', 'test/protocol/link/arq.test.ts',
      'test/protocol/link/keepalive-edges.test.ts', 'test/protocol/link/keepalive.test.ts',
      'test/protocol/link/frame-edges.test.ts', 'test/protocol/link/frame.test.ts', 'test/protocol/link/cobs.test.ts', 'test/protocol/link/vectors.test.ts',
      'test/protocol/link/slab-edges.test.ts', 'test/protocol/link/slab.test.ts',
    ],
    grep: '^(?!.*(sequence numbers wrap at 65536|two links with a delayed-ACK receiver deliver everything))',
  },
  messages: {
    mutate: ['protocol/ota.ts', 'protocol/uplink.ts'],
    // the quick per-field tests first: a static mutant runs the whole list and stops at its first failure
    spec: [
      'test/protocol/ota-field-edges.test.ts', 'test/protocol/ota-fast-decode-edges.test.ts', 'test/protocol/uplink-request-edges.test.ts',
      'test/protocol/uplink-report-edges.test.ts', 'test/protocol/uplink-clip.test.ts', 'test/protocol/uplink-data-edges.test.ts',
      'test/protocol/message-enums.test.ts',
      'test/protocol/messages.test.ts', 'test/protocol/ota-fast-decode.test.ts', 'test/protocol/doc-vectors.test.ts', 'test/protocol/campaign-policy.test.ts',
      'test/gateway/uplink/data-decode.test.ts', 'test/gateway/rollout/chunk-message.test.ts',
    ],
  },
  manifest: {
    mutate: ['protocol/manifest.ts', 'protocol/signature.ts'],
    spec: ['test/protocol/manifest-checks.test.ts', 'test/protocol/signature.test.ts', 'test/protocol/messages.test.ts', 'test/protocol/doc-vectors.test.ts', 'test/device-sim/signature.test.ts'],
  },
  // the rollout in two groups: the campaign (its gate) and one device's session (with the modules
  // device-session.ts was split into), the planner and the journal
  campaign: {
    mutate: ['gateway/rollout/campaign.ts', 'gateway/rollout/gate.ts'],
    spec: ['test/gateway/rollout/*.test.ts', 'test/gateway/rollback-threshold.test.ts'],
  },
  session: {
    mutate: [
      'gateway/rollout/device-session.ts', 'gateway/rollout/chunk-transfer.ts', 'gateway/rollout/boot-report.ts',
      'gateway/rollout/session-failure.ts', 'gateway/rollout/resume-decision.ts', 'gateway/rollout/planner.ts', 'gateway/rollout/journal.ts',
    ],
    spec: [
      'test/gateway/planner.test.ts', 'test/gateway/planner-edges.test.ts', 'test/gateway/journal.test.ts', 'test/gateway/journal-replay.test.ts', 'test/gateway/journal-faults.test.ts',
      'test/gateway/crash-consistency.test.ts', 'test/gateway/rollout/*.test.ts',
    ],
  },
  windows: {
    mutate: ['gateway/windows.ts'],
    spec: ['test/gateway/windows.test.ts', 'test/gateway/windows-details.test.ts', 'test/gateway/windows-edges.test.ts'],
  },
  store: {
    mutate: ['gateway/store.ts'],
    spec: ['test/gateway/store.test.ts', 'test/gateway/store-details.test.ts', 'test/gateway/store-faults.test.ts', 'test/gateway/store-edges.test.ts', 'test/gateway/crash-consistency.test.ts'],
  },
};

const group = process.env.STRYKER_GROUP;
if (group !== undefined && !(group in groups)) throw new Error(`STRYKER_GROUP=${group}: one of ${Object.keys(groups).join(', ')}`);
const picked = group === undefined ? Object.values(groups) : [groups[/** @type {keyof typeof groups} */ (group)]];
const tag = group ?? 'all';

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  packageManager: 'npm',
  testRunner: 'mocha',
  testRunnerNodeArgs: ['--import', 'tsx'],
  mochaOptions: {
    config: '.mocharc.json',
    spec: [...new Set(picked.flatMap((g) => g.spec))],
    ...(group !== undefined && 'grep' in groups[/** @type {keyof typeof groups} */ (group)] ? { grep: /** @type {{ grep: string }} */ (groups[/** @type {keyof typeof groups} */ (group)]).grep } : {}),
  },
  mutate: [...new Set(picked.flatMap((g) => g.mutate))],
  coverageAnalysis: 'perTest',
  // STRYKER_IGNORE_STATIC=1: skip mutants of module-level code (each needs the whole group's tests; they are then not in the score)
  ignoreStatic: process.env.STRYKER_IGNORE_STATIC === '1',
  concurrency: Number(process.env.STRYKER_CONCURRENCY ?? 2),
  timeoutMS: 10_000,
  timeoutFactor: 2,
  incremental: true,
  incrementalFile: `reports/mutation/core-${tag}.incremental.json`,
  reporters: ['json', 'clear-text', 'progress'],
  jsonReporter: { fileName: `reports/mutation/core-${tag}.json` },
  clearTextReporter: { allowColor: false, logTests: false, reportMutants: false },
  tempDirName: `.stryker-tmp/core-${tag}`,
  ignorePatterns: ['reports', 'bench/out', 'data', 'firmware-samples/out', 'hil-report', '.stryker-tmp', 'dist'],
  thresholds: { high: 90, low: 80, break: null },
};
