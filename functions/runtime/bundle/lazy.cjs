'use strict';
/**
 * A module whose real exports are loaded on first use. The esbuild plugin of deferred-modules.cjs
 * (serverless.yml, custom.esbuild.plugins) puts one of these in place of each heavy dependency the
 * functions rarely or never need at import — the database drivers, Octokit, libsodium — whose code
 * it ships as a separate file of the zip: a cold start then neither parses nor runs it, and a
 * function that never touches a database or GitHub never loads it at all.
 * Source and tests import the real packages: this only changes when the bundle loads them.
 *
 * `names`: the module's named exports, for `import { Octokit } from …`. esbuild's interop
 * (__toESM) copies the names a CommonJS module lists when the bundle starts; listing them here
 * lets it do so without loading the module (each copy is a getter that loads it when read).
 * `callable`: the module is a function (`writeFileAtomic(…)`): calling the stand-in loads it.
 */
module.exports = function lazyModule(load, names = [], callable = false) {
  let real;
  const exports = () => (real ??= load());
  const named = (key) => typeof key === 'string' && names.includes(key);
  // An arrow function has no non-configurable own property (no `prototype`), so it can stand in
  // for a module object too without breaking the Proxy invariants of ownKeys.
  return new Proxy(callable ? () => {} : Object.create(null), {
    apply: (_, self, args) => Reflect.apply(exports(), self, args),
    construct: (_, args) => Reflect.construct(exports(), args),
    // esbuild's interop asks whether this is a transpiled ES module and lists its own keys when
    // the bundle starts: neither may load the module. It is used as `pg.Client`, `mysql.format(…)`,
    // `new Octokit(…)`, `sodium.ready`: property reads, which load it.
    get: (_, key) => (key === '__esModule' ? undefined : exports()[key]),
    has: (_, key) => named(key) || key in exports(),
    ownKeys: () => [...names],
    getOwnPropertyDescriptor: (_, key) => (named(key) ? { configurable: true, enumerable: true, get: () => exports()[key] } : undefined),
  });
};
