#!/usr/bin/env node
// The `rekey` command: loads the TypeScript CLI through tsx, resolved beside this file, so it
// works from any working directory once the package is installed.
import { register } from 'tsx/esm/api';

register();
const { run } = await import('./rekey.ts');
process.exitCode = await run(process.argv.slice(2));
