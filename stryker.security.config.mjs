// Mutation testing of the security modules (issue 18): `npm run test:mutation:security`
// (scripts/mutation.ts prints the summary; `-- --json` adds a last JSON line). Not part of npm test.
// Incremental: results of unchanged code and tests are reused from reports/stryker-incremental-security.json.
/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: 'mocha',
  plugins: ['./scripts/stryker-mocha12.mjs'],
  // the tests are TypeScript run through tsx, as .mocharc.json does for npm test
  testRunnerNodeArgs: ['--import', 'tsx'],
  mochaOptions: {
    config: '.mocharc.json',
    // only the tests of these modules, so that each mutant runs in seconds
    spec: [
      'test/protocol/uplink-auth.test.ts',
      'test/protocol/signature.test.ts',
      'test/protocol/messages.test.ts',
      'test/protocol/signature-keys.test.ts',
      'test/gateway/uplink/auth.test.ts',
      'test/gateway/broker-access.test.ts',
      'test/gateway/broker-exposure.test.ts',
      'test/gateway/device-channel.test.ts',
      'test/gateway/device-auth.test.ts',
      'test/gateway/auth-guard.test.ts',
      'test/gateway/rate-limit.test.ts',
      'test/security/flood.test.ts',
    ],
  },
  mutate: [
    'protocol/uplink-auth.ts',
    'protocol/signature.ts',
    'protocol/manifest.ts',
    'gateway/uplink/auth.ts',
    'gateway/device-auth.ts',
    // the device channel's security check (whose message a publish on an up topic is); the rest of
    // gateway/device-channel.ts is request/reply plumbing, tested by the rollout tests
    'gateway/up-topic.ts',
    'gateway/broker-access.ts',
    'gateway/broker-exposure.ts',
    'gateway/auth-guard.ts',
    'gateway/rate-limit.ts',
  ],
  // Message and log texts (string literals) and log fields (object literals) are not mutated: they
  // guide people, they do not decide anything; the texts that do (signature domains) are pinned by
  // the vectors of docs/protocol.md, checked in test/protocol/doc-vectors.test.ts (docs/security.md).
  mutator: { excludedMutations: ['StringLiteral', 'ObjectLiteral'] },
  coverageAnalysis: 'perTest',
  incremental: true,
  incrementalFile: 'reports/stryker-incremental-security.json',
  concurrency: 2,
  timeoutMS: 20000,
  reporters: ['json', 'progress'],
  jsonReporter: { fileName: 'reports/mutation/security.json' },
  tempDirName: '.stryker-tmp',
  cleanTempDir: true,
  ignorePatterns: ['reports', 'bench/out', 'firmware-samples/out', 'data', 'hil-report'],
};
