// Preloaded (NODE_OPTIONS=--require) for Stryker runs only: @stryker-mutator/mocha-runner requires
// mocha's lib/cli/run-helpers etc. without an extension, and mocha 12 ships them as .cjs. Letting
// CommonJS resolution try .cjs (as it tries .js) finds them; nothing else in the project needs this.
require.extensions['.cjs'] = require.extensions['.js'];
