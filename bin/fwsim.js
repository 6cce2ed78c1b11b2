#!/usr/bin/env node
// Runs the TypeScript entry point through tsx, so a global install needs no build step.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../device-sim/cli.ts');
process.exit(await main(process.argv.slice(2)));
