// @stryker-mutator/mocha-runner 9.x with mocha 12: the runner requires mocha's lib/cli helpers by
// their old names (run-helpers, options, collect-files), which mocha 12 ships as .cjs files. Let
// require() resolve .cjs like .js in the runner's process, then hand over to the real plugin.
// Stryker loads this file as a plugin (stryker.*.config.mjs: plugins).
import Module, { createRequire } from 'node:module';

const extensions = /** @type {Record<string, unknown>} */ (/** @type {any} */ (Module)._extensions);
extensions['.cjs'] ??= extensions['.js'];

const require = createRequire(import.meta.url);
require.resolve('mocha/lib/cli/run-helpers'); // fails here, plainly, if the shim no longer suffices

const runner = await import('@stryker-mutator/mocha-runner');
export const strykerPlugins = runner.strykerPlugins;
export const strykerValidationSchema = runner.strykerValidationSchema;
