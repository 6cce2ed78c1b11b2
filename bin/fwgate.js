#!/usr/bin/env node
// Runs the compiled gateway (npm run build puts it in dist/); in a checkout, `npm run gateway` runs the sources through tsx.
import { loadCompiled } from './load.js';

await loadCompiled('fwgate', '../dist/gateway/cli.js');
