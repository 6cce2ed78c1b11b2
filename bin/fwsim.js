#!/usr/bin/env node
// Runs the compiled device simulator (npm run build puts it in dist/); in a checkout, `npm run sim` runs the sources through tsx.
import { loadCompiled } from './load.js';

const { main } = await loadCompiled('fwsim', '../dist/device-sim/cli.js');
process.exit(await main(process.argv.slice(2)));
