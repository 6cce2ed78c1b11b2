#!/usr/bin/env node
// fwsign's entry point (npm run sign); bin/fwsign.js runs the compiled laptop/fwsign.js the same way.
import { main } from './fwsign.ts';

process.exitCode = await main(process.argv.slice(2));
