#!/usr/bin/env node
// Runs the compiled release signer (npm run build puts it in dist/); in a checkout, `npm run sign` runs the sources through tsx.
import { loadCompiled } from './load.js';

const { main } = await loadCompiled('fwsign', '../dist/laptop/fwsign.js');
process.exitCode = await main(process.argv.slice(2));
