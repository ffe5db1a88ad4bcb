import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
const pieces = {
  empty: `export const x = 1;`,
  zodNamed: `import { z } from 'zod'; export const s = z.object({ a: z.string() });`,
  zodStar: `import * as z from 'zod'; export const s = z.object({ a: z.string() });`,
  mysql2: `import mysql from 'mysql2/promise'; export const m = mysql;`,
  pg: `import pg from 'pg'; export const p = pg;`,
  sm: `import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager'; export const c = new SecretsManagerClient({region:'us-east-1'});`,
  eb: `import { EventBridgeClient } from '@aws-sdk/client-eventbridge'; export const c = new EventBridgeClient({region:'us-east-1'});`,
  middy: `import middy from '@middy/core'; export const m = middy;`,
};
for (const [name, code] of Object.entries(pieces)) {
  const r = await build({ stdin: { contents: code, resolveDir: '/work/main', loader: 'js' }, bundle: true, minify: true, format: 'esm', platform: 'node', target: 'node22', mainFields: ['module','main'], outfile: `/work/main/.tmp-meta/p-${name}.mjs`, write: true, banner: { js: "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);" } });
  const times = [];
  for (let i = 0; i < 9; i++) {
    const probe = `const t0 = performance.now(); await import('/work/main/.tmp-meta/p-${name}.mjs'); console.log(performance.now() - t0);`;
    const out = spawnSync(process.execPath, ['--input-type=module', '-e', probe], { encoding: 'utf8', env: { PATH: process.env.PATH, AWS_REGION: 'us-east-1' } });
    times.push(Number(out.stdout));
  }
  times.sort((a, b) => a - b);
  const { statSync } = await import('node:fs');
  console.log(name.padEnd(10), String(statSync(`/work/main/.tmp-meta/p-${name}.mjs`).size).padStart(8), 'bytes', times[4].toFixed(1), 'ms');
}
