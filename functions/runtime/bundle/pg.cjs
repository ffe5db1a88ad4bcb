'use strict';
// Bundled in place of `pg` (serverless.yml, custom.esbuild.alias): see lazy.cjs. The real driver is
// required by path, because the alias also rewrites `pg/…` specifiers.
module.exports = require('./lazy.cjs')(() => require('../../../node_modules/pg/lib/index.js'));
