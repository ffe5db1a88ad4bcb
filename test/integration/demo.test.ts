import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LeakGuard } from '#test/helpers/leak-guard.ts';

const ROOT = join(import.meta.dirname, '../..');

/** `npm run demo` as a user runs it (its own private servers, its own store), output checked line by line. */
describe('npm run demo', () => {
  it('registers, rotates, audits, remediates a posted leak and prints the timeline, without printing a value', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'rekey-demo-test-'));
    const valuesFile = join(dir, 'values.json');
    try {
      const { code, stdout, stderr } = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
        const env = { ...process.env, REKEY_DEMO_VALUES_FILE: valuesFile };
        const child = spawn('npm', ['run', '-s', 'demo'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        let err = '';
        child.stdout.on('data', (c: Buffer) => (out += c.toString()));
        child.stderr.on('data', (c: Buffer) => (err += c.toString()));
        child.on('close', (c) => resolve({ code: c ?? 1, stdout: out, stderr: err }));
      });
      expect(stderr, stdout).toBe('');
      expect(code, stdout).toBe(0);

      // Every credential proven by a real login.
      for (const line of [
        'ok: old PostgreSQL password refused',
        'ok: old MariaDB password refused',
        'ok: the leaked password is refused',
        'ok: the leaked PostgreSQL password is still refused',
        'ok: the first PostgreSQL password is still refused',
        'ok: the first MariaDB password is still refused',
      ]) {
        expect(stdout).toContain(line);
      }
      expect(stdout).toMatch(/ok: AWSCURRENT logs in to PostgreSQL \(as demo_app_clone\)/);
      expect(stdout).toMatch(/ok: the new AWSCURRENT logs in to PostgreSQL \(as demo_app\)/);
      expect(stdout).not.toContain('FAILED');

      // The refused production rotation, the bulk rotation and the audit trail.
      expect(stdout).toContain('rekey: a reason is required to rotate production secrets (rekey:environment=prod) by hand; give one with --reason: demo/postgres');
      expect(stdout).toMatch(/2 succeeded, 0 failed of 2 in/);
      expect(stdout).toMatch(/audit trail intact: 7 records, chain head [0-9a-f]{64}/);
      expect(stdout).toMatch(/audit trail intact: 13 records, chain head [0-9a-f]{64}/);

      // The leak arrives as a signed GitGuardian incident: no value in it, only the password's hmsl_hash.
      expect(stdout).toContain('(GITGUARDIAN_WEBHOOK_SECRET set; chat goes to the console)');
      expect(stdout).toMatch(/rekey serve: listening on http:\/\/127\.0\.0\.1:\d+\/webhooks\/\{[^}]*gitguardian[^}]*\}/);
      expect(stdout).toContain('ok: the delivery carries no value (only the hmsl_hash of the password)');
      expect(stdout).toMatch(/POST http:\/\/127\.0\.0\.1:\d+\/webhooks\/gitguardian \(incident \d+, Timestamp \d+, GitGuardian-Signature sha256=…\) → HTTP 202/);
      expect(stdout).not.toMatch(/trufflehog/i);

      // The timeline, in order, each line with its offset.
      const timeline = stdout.slice(stdout.indexOf('== timeline'), stdout.indexOf('== chat messages'));
      const steps = [
        /\+0 ms {2}GitGuardian incident posted to rekey serve \(signed\)/,
        /\+\d+ ms {2}webhook answered HTTP 202 \(signature verified, queued\)/,
        /\+\d+ ms {2}leak detected: demo\/postgres \(P[0-3], risk \d+\/100\) by scanner:gitguardian/,
        /\+\d+ ms {2}rotation started: new version [0-9a-f]{8} stored as AWSPENDING/,
        /\+\d+ ms {2}rotation succeeded: version [0-9a-f]{8} is AWSCURRENT/,
        /\+\d+ ms {2}leaked credential revoked \(version [0-9a-f]{8}\), proven by a refused login/,
        /\+\d+ ms {2}ticket opened \(local-1\)/,
        /\+\d+ ms {2}leak remediated: succeeded in \d+ ms/,
        /\+\d+ ms {2}leaked password refused \(checked by logging in\)/,
      ];
      for (const step of steps) expect(timeline).toMatch(step);
      const order = (re: RegExp) => timeline.search(re);
      expect(order(steps[2]!)).toBeLessThan(order(steps[3]!));
      expect(order(steps[3]!)).toBeLessThan(order(steps[5]!));

      // Chat went to the console channel; the ticket is listed; nothing went to the server's error log.
      expect(stdout).toContain('[chat ALERT] Leak detected (P');
      expect(stdout).toContain('[chat ok] Leak remediated: demo/postgres');
      expect(stdout).toMatch(/\[P[0-3]\] Leaked credential: demo\/postgres/);
      expect(stdout).not.toContain('== rekey serve log');
      expect(stdout).toMatch(/demo finished: every old password refused, every current one works; the leaked password stopped working \d+ ms after the report/);

      // No value the demo created or read (database admin passwords, every password, the GitGuardian
      // signature token, the leaked password's hmsl_hash) appears.
      const values = JSON.parse(await readFile(valuesFile, 'utf8')) as string[];
      expect(values.length).toBeGreaterThanOrEqual(7);
      const guard = new LeakGuard();
      for (const value of values) guard.secret(value);
      guard.output('demo stdout', stdout);
      guard.output('demo stderr', stderr);
      guard.assertClean();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 400_000);
});
