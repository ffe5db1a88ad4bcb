import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { GitHubScanner } from '#adapters/scanners/github.ts';
import { GitGuardianScanner } from '#adapters/scanners/gitguardian.ts';
import { TruffleHogScanner } from '#adapters/scanners/trufflehog.ts';
import { GitleaksScanner } from '#adapters/scanners/gitleaks.ts';
import { scannerContract } from './scanner.contract.ts';

const fixture = (path: string): Buffer => readFileSync(new URL(`../../events/${path}`, import.meta.url));
const hmac = (key: string, body: Buffer): string => createHmac('sha256', key).update(body).digest('hex');
const LEAKED = ['Fake-Leaked-Pass-123', 'postgres://app:Fake-Leaked-Pass-123@db.internal:5432/app', 'postgresql://app:Fake-Leaked-Pass-123@db.internal:5432'];

scannerContract('github', {
  make: (secret) => new GitHubScanner({ webhookSecret: secret }),
  sign: (body, _now, secret) => ({
    'content-type': 'application/json',
    'x-github-event': 'secret_scanning_alert',
    'x-github-delivery': '72d3162e-cc78-11e3-81ab-4c9367dc0958',
    'x-hub-signature-256': `sha256=${hmac(secret, body)}`,
  }),
  validBody: fixture('github/secret-scanning-alert-created.json'),
  expectedReports: 1,
  secret: 'gh-webhook-secret-for-tests',
  auth: 'hmac',
  authHeaders: ['x-hub-signature-256'],
  leakedValues: LEAKED,
});

scannerContract('gitguardian', {
  make: (secret) => new GitGuardianScanner({ webhookSecret: secret }),
  sign: (body, now, secret) => {
    // GitGuardian's scheme: the HMAC key is the Timestamp header followed by the token.
    const timestamp = String(Math.floor(now.getTime() / 1000));
    return { 'content-type': 'application/json', timestamp, 'gitguardian-signature': `sha256=${hmac(timestamp + secret, body)}` };
  },
  validBody: fixture('gitguardian/incident-triggered.json'),
  expectedReports: 1,
  secret: 'gg-signature-token-for-tests',
  auth: 'hmac',
  authHeaders: ['gitguardian-signature', 'timestamp'],
  leakedValues: LEAKED,
});

scannerContract('trufflehog', {
  make: (token) => new TruffleHogScanner({ ingestToken: token }),
  sign: (_body, _now, token) => ({ 'content-type': 'application/x-ndjson', authorization: `Bearer ${token}` }),
  validBody: fixture('trufflehog/findings.jsonl'),
  expectedReports: 2,
  secret: 'rk-ingest-token-for-tests-0123456789',
  auth: 'bearer',
  authHeaders: ['authorization'],
  leakedValues: LEAKED,
});

scannerContract('gitleaks', {
  make: (token) => new GitleaksScanner({ ingestToken: token }),
  sign: (_body, _now, token) => ({ 'content-type': 'application/json', authorization: `Bearer ${token}` }),
  validBody: fixture('gitleaks/report.json'),
  expectedReports: 1,
  secret: 'rk-ingest-token-for-tests-0123456789',
  auth: 'bearer',
  authHeaders: ['authorization'],
  leakedValues: LEAKED,
});
