'use strict';
// Bundled in place of `mysql2/promise` (serverless.yml, custom.esbuild.alias): see lazy.cjs.
module.exports = require('./lazy.cjs')(() => require('../../../node_modules/mysql2/promise.js'));
