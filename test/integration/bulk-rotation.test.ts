import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { STAGE } from '#core/ports/secret-store.ts';
import { Sealed } from '#core/sealed.ts';
import { mapLimit } from '#core/concurrency.ts';
import type { AuditRecord } from '#core/audit.ts';
import { LocalChainAuditLog } from '#adapters/audit/local-chain.ts';
import { servers, tryLogin, uniqueName } from '#test/helpers/databases.ts';
import pg from 'pg';
import { storedLogin, testRekey, type TestRekey } from '#test/helpers/rekey.ts';
import { ChatDouble } from '#test/helpers/chat-double.ts';
import { cliRunner } from '#test/helpers/cli.ts';

const users: string[] = [];
afterAll(async () => {
  await asAdmin(async (client) => {
    for (const u of users) await client.query(`DROP ROLE IF EXISTS ${pg.escapeIdentifier(u)}`).catch(() => {});
  });
});

/** 97 users through one admin connection (a connection per user would dominate the test's time). */
async function asAdmin(fn: (client: pg.Client) => Promise<void>): Promise<void> {
  const s = servers().postgres;
  const client = new pg.Client({ host: s.host, port: s.port, user: s.user, password: s.password, database: s.database });
  await client.connect();
  try {
    await fn(client);
  } finally {
    await client.end();
  }
}

const TOTAL = 100;
const BROKEN = 3;

describe('bulk rotation through the CLI', () => {
  let rekey: TestRekey;
  let slack: ChatDouble;
  let teams: ChatDouble;

  beforeEach(async () => {
    rekey = await testRekey();
    slack = await ChatDouble.start('slack');
    teams = await ChatDouble.start('teams');
    rekey.guard.secret(slack.token);
    rekey.guard.secret(teams.token);
  });
  afterEach(async () => {
    for (const double of [slack, teams]) for (const r of double.requests) rekey.guard.output('chat body', r.raw);
    rekey.guard.output('audit trail', await readFile(join(rekey.dir, 'audit.jsonl'), 'utf8').catch(() => ''));
    await slack.close();
    await teams.close();
    await rekey.dispose();
    rekey.guard.assertClean();
  });

  /** 97 PostgreSQL users changing their own password, 3 secrets pointing at a port where nothing listens. */
  async function fleet(): Promise<{ secretId: string; username: string; password: string; broken: boolean }[]> {
    const s = servers().postgres;
    const planned = Array.from({ length: TOTAL }, (_, i) => ({
      i,
      broken: i % 33 === 32, // 3 of 100, spread through the list
      username: uniqueName('bulk'),
      password: `Bulk-${randomBytes(12).toString('base64url')}`,
    }));
    for (const { password } of planned) rekey.guard.secret(password);
    const healthy = planned.filter((p) => !p.broken);
    users.push(...healthy.map((p) => p.username));
    await asAdmin(async (client) => {
      // One at a time: concurrent GRANTs on one schema collide ("tuple concurrently updated").
      for (const { username, password } of healthy) {
        await client.query(`CREATE ROLE ${pg.escapeIdentifier(username)} WITH LOGIN PASSWORD ${pg.escapeLiteral(password)}`);
      }
    });
    return mapLimit(planned, 8, async ({ i, broken, username, password }) => {
      const secretId = `payments/db-${String(i).padStart(3, '0')}`;
      const value = { engine: 'postgres', host: s.host, port: broken ? 1 : s.port, username, password, dbname: s.database };
      await rekey.deps.store.createSecret(secretId, new Sealed(JSON.stringify(value)), {
        tags: { 'rekey:managed': 'true', 'rekey:strategy': 'single', team: 'payments', ...(i === 7 ? { 'rekey:environment': 'prod' } : {}) },
      });
      return { secretId, username, password, broken };
    });
  }

  it('rotates 100 secrets with 3 unreachable: 97 succeed, 3 are reported, exit 1, and audit and chat account for all 100', async () => {
    const secrets = await fleet();
    // A managed secret without the tag is not selected.
    await rekey.deps.store.createSecret('other/db', new Sealed(JSON.stringify({ engine: 'postgres', host: '127.0.0.1', port: 1, username: 'x', password: 'Other-Not-Selected-1' })), {
      tags: { 'rekey:managed': 'true', team: 'search' },
    });
    rekey.guard.secret('Other-Not-Selected-1');
    const cli = cliRunner(rekey, { SLACK_WEBHOOK_URL: slack.url, TEAMS_WEBHOOK_URL: teams.url, REKEY_ACTOR: 'cli:oncall-test' });
    const audit = new LocalChainAuditLog({ dir: rekey.dir });

    // A production secret among them: refused before anything runs, naming it.
    const refused = await cli('rotate', '--all', '--tag', 'team=payments');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toBe(
      'rekey: a reason is required to rotate production secrets (rekey:environment=prod) by hand; give one with --reason: payments/db-007\n',
    );
    expect(await audit.read()).toEqual([]);

    // --dry-run shows all 100 and changes nothing.
    const before = await rekey.deps.store.describeSecret('payments/db-000');
    const dry = await cli('rotate', '--all', '--tag', 'team=payments', '--dry-run', '--reason', 'quarterly bulk');
    expect(dry.code).toBe(0);
    expect(dry.stdout).toContain('dry run: 100 secret(s) would be rotated; nothing was changed');
    expect(dry.stdout).not.toContain('other/db');
    expect(await rekey.deps.store.describeSecret('payments/db-000')).toEqual(before);
    expect(await audit.read()).toEqual([]);
    expect(slack.requests).toHaveLength(0);
    const result = await cli('rotate', '--all', '--tag', 'team=payments', '--reason', 'quarterly bulk', '--concurrency', '4');
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(''); // no progress bar without a terminal
    const broken = secrets.filter((s) => s.broken);
    const healthy = secrets.filter((s) => !s.broken);
    expect(broken).toHaveLength(BROKEN);

    // The summary table: failures first, each with its code; then the totals line.
    const rows = result.stdout.split('\n').filter((line) => line.includes('payments/db-'));
    expect(rows).toHaveLength(TOTAL);
    for (const [i, s] of broken.entries()) {
      expect(rows[i]).toContain(s.secretId);
      expect(rows[i]).toMatch(/failed .*TARGET_UNREACHABLE/);
    }
    expect(rows.slice(BROKEN).every((row) => /succeeded/.test(row))).toBe(true);
    expect(result.stdout).toMatch(/\n97 succeeded, 3 failed of 100 in .+ \(batch [0-9a-f-]{36}\)\n$/);

    // 97 rotated for real: the new AWSCURRENT logs in and the old password is refused.
    await mapLimit(healthy, 8, async (s) => {
      const current = await storedLogin(rekey, s.secretId, { stage: STAGE.current });
      expect(current.password).not.toBe(s.password);
      expect(await tryLogin('postgres', s.username, current.password), s.secretId).toBe(true);
      expect(await tryLogin('postgres', s.username, s.password), s.secretId).toBe(false);
    });
    // The 3 failures kept their AWSCURRENT (and a pending version the next run resumes).
    for (const s of broken) {
      expect((await storedLogin(rekey, s.secretId, { stage: STAGE.current })).password).toBe(s.password);
      await storedLogin(rekey, s.secretId, { stage: STAGE.pending }); // registers the pending value with the guard
    }

    // The audit trail: intact, every record by the CLI user in one batch with the reason; all 100 started, 97 succeeded, 3 failed, one batch end.
    expect(await audit.verify()).toMatchObject({ ok: true, records: TOTAL + (TOTAL - BROKEN) + BROKEN + 1 });
    const records = await audit.read();
    const batchIds = new Set(records.map((r) => r.batchId));
    expect(batchIds.size).toBe(1);
    expect(records.every((r) => r.actor === 'cli:oncall-test' && r.reason === 'quarterly bulk' && r.trigger === 'manual')).toBe(true);
    const by = (action: string) => records.filter((r) => r.action === action);
    const ids = (list: AuditRecord[]) => new Set(list.map((r) => r.secretId));
    expect(ids(by('Rotation Started'))).toEqual(new Set(secrets.map((s) => s.secretId)));
    expect(ids(by('Rotation Succeeded'))).toEqual(new Set(healthy.map((s) => s.secretId)));
    expect(by('Rotation Failed').map((r) => [r.secretId, r.step, r.outcome, r.error?.code])).toEqual(
      expect.arrayContaining(broken.map((s) => [s.secretId, 'finishSecret', 'failed', 'TARGET_UNREACHABLE'])),
    );
    expect(by('Rotation Failed')).toHaveLength(BROKEN);
    expect(by('Batch Completed')).toEqual([expect.objectContaining({ secretId: '*', outcome: 'failed', counts: { succeeded: 97, revoked: 0, stuck: 0, failed: 3, skipped: 0 } })]);
    expect(records.at(-1)?.action).toBe('Batch Completed');

    // `rekey audit` shows one secret's trail.
    const trail = await cli('audit', '--secret', broken[0]!.secretId);
    expect(trail.code).toBe(0);
    expect(trail.stdout).toMatch(/Rotation Started/);
    expect(trail.stdout).toMatch(/Rotation Failed .*finishSecret .*failed/);

    // Chat, on both channels: one message per failure and one summary naming the counts; no per-success messages.
    for (const double of [slack, teams]) {
      expect(double.requests.map((r) => r.problems)).toEqual([[], [], [], []]);
      expect(double.delivered).toHaveLength(BROKEN + 1);
      const bodies = double.requests.map((r) => r.raw);
      for (const s of broken) expect(bodies.filter((b) => b.includes(`Rotation failed: ${s.secretId}`))).toHaveLength(1);
      const summary = bodies.find((b) => b.includes('Bulk rotation: 97 succeeded, 3 failed'));
      expect(summary).toBeDefined();
      for (const s of broken) expect(summary).toContain(`${s.secretId} (TARGET_UNREACHABLE)`);
      expect(summary).toContain('and 82 more');
      expect(summary).toContain('quarterly bulk');
    }
  }, 300_000);
});
