#!/usr/bin/env node
// Runs the TypeScript entry point through tsx, so a global install needs no build step.
import { register } from 'tsx/esm/api';

register();
await import('../laptop/cli.ts');
