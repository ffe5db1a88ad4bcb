'use strict';
/**
 * A module whose real exports are loaded on first use. The bundle aliases in serverless.yml
 * (custom.esbuild.alias) put these stand-ins in place of the database drivers: esbuild still
 * bundles each driver, but as a CommonJS wrapper evaluated only when `load` first runs — the first
 * property read, i.e. the first query — instead of at import. A cold start then skips evaluating
 * mysql2 (and pg, which on Node 20 also loads the fetch implementation to detect Cloudflare), and
 * a function that never touches a database (leak-webhook, on-rekey-event) never evaluates either.
 * Source and tests import the real packages: this only changes when the bundle evaluates them.
 */
module.exports = function lazyModule(load) {
  let real;
  const exports = () => (real ??= load());
  return new Proxy(Object.create(null), {
    // esbuild's interop (__toESM) asks whether this is a transpiled ES module and lists its own
    // keys when the bundle starts: neither may load the module. It is used as `pg.Client`,
    // `mysql.format(…)`: property reads, which load it.
    get: (_, key) => (key === '__esModule' ? undefined : exports()[key]),
    has: (_, key) => key in exports(),
  });
};
