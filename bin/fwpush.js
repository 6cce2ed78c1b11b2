#!/usr/bin/env node
// Runs the compiled laptop tool (npm run build puts it in dist/); in a checkout, `npm run push` runs the sources through tsx.
import { loadCompiled } from './load.js';

await loadCompiled('fwpush', '../dist/laptop/cli.js');
