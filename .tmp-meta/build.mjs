import { build } from 'esbuild';
import { writeFileSync } from 'node:fs';
const name = process.argv[2];
const r = await build({
  entryPoints: [`functions/${name}.ts`], bundle: true, minify: true, format: 'esm', platform: 'node', target: 'node22',
  mainFields: ['module', 'main'], outfile: `.tmp-meta/${name}.mjs`, metafile: true,
  banner: { js: "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);" },
});
writeFileSync(`.tmp-meta/${name}.json`, JSON.stringify(r.metafile));
const inputs = Object.entries(r.metafile.outputs[`../...tmp-meta/${name}.mjs`]?.inputs ?? Object.values(r.metafile.outputs)[0].inputs);
const byPkg = {};
for (const [path, info] of inputs) {
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(path);
  const key = m ? m[1] : path.split('/').slice(0, 2).join('/');
  byPkg[key] = (byPkg[key] ?? 0) + info.bytesInOutput;
}
const total = Object.values(byPkg).reduce((a, b) => a + b, 0);
console.log(name, 'total', total);
for (const [k, v] of Object.entries(byPkg).sort((a, b) => b[1] - a[1]).slice(0, 25)) console.log(String(v).padStart(9), k);
