#!/usr/bin/env node
// The `rekey` command: loads the TypeScript CLI through tsx, resolved beside this file, so it
// works from any working directory once the package is installed.
import { register } from 'tsx/esm/api';

// The AWS SDK warns on every run under Node 20 that its 2027 releases will need Node 22: noise on
// an on-call terminal, and Node 20 is supported here. Set before any SDK module loads.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

register();
const { run } = await import('./rekey.ts');
process.exitCode = await run(process.argv.slice(2));
