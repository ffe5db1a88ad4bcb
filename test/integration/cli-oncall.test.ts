import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { userInfo } from 'node:os';
import { PassThrough } from 'node:stream';
import { STAGE } from '#core/ports/secret-store.ts';
import type { AuditRecord } from '#core/audit.ts';
import type { SecretStatus } from '#core/inspect.ts';
import { assertCanLogIn, uniqueName } from '#test/helpers/databases.ts';
import { dropUser } from '#test/helpers/users.ts';
import { managedUser, storedLogin, testRekey, type TestRekey } from '#test/helpers/rekey.ts';
import { cliRunner } from '#test/helpers/cli.ts';
import { run } from '../../scripts/rekey.ts';

const users: string[] = [];
afterAll(async () => {
  for (const u of users) await dropUser('postgres', u).catch(() => {});
});
const HOUR = 3_600_000;

describe('rekey CLI for on-call', () => {
  let rekey: TestRekey;
  let clock = 0;
  let cli: ReturnType<typeof cliRunner>;

  const user = (tags: Record<string, string> = {}) => {
    const username = uniqueName('oncall');
    users.push(username);
    return managedUser(rekey, 'postgres', { username, strategy: 'single', withAdmin: false, tags });
  };
  const statuses = async () => {
    const result = await cli('status', '--json');
    expect(result.code).toBe(0);
    return Object.fromEntries((JSON.parse(result.stdout) as SecretStatus[]).map((s) => [s.secretId, s.compliance]));
  };

  beforeEach(async () => {
    clock = 0;
    rekey = await testRekey({ now: () => new Date(Date.now() + clock) });
    cli = cliRunner(rekey, { REKEY_ACTOR: 'cli:tester' });
  });
  afterEach(async () => {
    rekey.guard.output('audit trail', await readFile(join(rekey.dir, 'audit.jsonl'), 'utf8').catch(() => ''));
    await rekey.dispose();
    rekey.guard.assertClean();
  });

  describe('status', () => {
    it('shows compliance against max age: OK, DUE, OVERDUE, never-rotated, - without a policy, unmanaged', async () => {
      const unmanaged = await user({ 'rekey:max-age': '1h', 'rekey:managed': 'false' });
      const due = await user({ 'rekey:max-age': '1d' });
      const fresh = await user({ 'rekey:max-age': '30d' });
      const overdue = await user({ 'rekey:max-age': '1h' });
      const noPolicy = await user();
      expect(await cli('rotate', noPolicy.secretId)).toMatchObject({ code: 0 });
      clock = 36 * HOUR;
      expect(await statuses()).toMatchObject({ [due.secretId]: 'DUE', [fresh.secretId]: 'never-rotated', [overdue.secretId]: 'OVERDUE', [noPolicy.secretId]: '-', [unmanaged.secretId]: 'unmanaged' });
      const table = await cli('status');
      expect(table.stdout).toMatch(/compliance/);
      expect(table.stdout).toMatch(new RegExp(`${overdue.secretId.replace(/\//g, '\\/')}.*OVERDUE`));
      const one = await cli('status', due.secretId);
      expect(one.stdout).toMatch(/compliance DUE/);
    });
  });

  describe('rotate --due', () => {
    it('rotates every managed secret past its max age and nothing else', async () => {
      const due = await user({ 'rekey:max-age': '1d' });
      const fresh = await user({ 'rekey:max-age': '30d' });
      const overdue = await user({ 'rekey:max-age': '1h' });
      clock = 36 * HOUR;
      const dry = await cli('rotate', '--due', '--dry-run');
      expect(dry.code).toBe(0);
      expect(dry.stdout).toContain(due.secretId);
      expect(dry.stdout).toContain(overdue.secretId);
      expect(dry.stdout).not.toContain(fresh.secretId);
      expect(dry.stdout).toContain('dry run: 2 secret(s) would be rotated; nothing was changed');

      const result = await cli('rotate', '--due', '--json');
      expect(result.code).toBe(0);
      const report = JSON.parse(result.stdout) as { items: { secretId: string; outcome: string }[]; counts: { succeeded: number; failed: number } };
      expect(report.items.map((i) => [i.secretId, i.outcome]).sort()).toEqual([[due.secretId, 'succeeded'], [overdue.secretId, 'succeeded']].sort());
      expect(report.counts).toEqual({ succeeded: 2, failed: 0 });
      for (const s of [due, overdue]) {
        const current = await storedLogin(rekey, s.secretId, { stage: STAGE.current });
        await assertCanLogIn('postgres', current.username, current.password);
      }
      expect((await rekey.deps.store.describeSecret(fresh.secretId)).versions).toHaveLength(1);
      clock = 0;
      expect(await statuses()).toMatchObject({ [due.secretId]: 'OK', [overdue.secretId]: 'OK', [fresh.secretId]: 'never-rotated' });
      expect(await cli('rotate', '--due')).toMatchObject({ code: 0, stdout: 'nothing to rotate: no managed secret is past its max age\n' });
    });
  });

  describe('rotate', () => {
    it('refuses a production secret without --reason before touching it, and rotates it with one', async () => {
      const prod = await user({ 'rekey:environment': 'prod' });
      const refused = await cli('rotate', prod.secretId);
      expect(refused).toMatchObject({ code: 1, stdout: '' });
      expect(refused.stderr).toBe(`rekey: a reason is required to rotate production secrets (rekey:environment=prod) by hand; give one with --reason: ${prod.secretId}\n`);
      expect((await rekey.deps.store.describeSecret(prod.secretId)).versions).toHaveLength(1);
      const dry = await cli('rotate', prod.secretId, '--dry-run', '--reason', 'incident 42');
      expect(dry.code).toBe(0);
      expect(dry.stdout).toMatch(new RegExp(`${prod.secretId.replace(/\//g, '\\/')} .*single .*prod .*rotate; previous stays valid 1\\.0h`));
      expect(dry.stdout).toContain('dry run: 1 secret(s) would be rotated; nothing was changed');
      expect(await cli('rotate', prod.secretId, '--reason', 'incident 42')).toMatchObject({ code: 0 });
      const records = JSON.parse((await cli('audit', '--secret', prod.secretId, '--json')).stdout) as AuditRecord[];
      expect(records.map((r) => [r.action, r.actor, r.reason, r.trigger])).toEqual([
        ['Rotation Started', 'cli:tester', 'incident 42', 'manual'],
        ['Rotation Succeeded', 'cli:tester', 'incident 42', 'manual'],
      ]);
    });

    it('explains a wrong combination of selectors in one line', async () => {
      const cases: [string[], string][] = [
        [[], 'rekey: rotate takes one secret id, or --due, or --all --tag key=value\n'],
        [['a', '--all'], 'rekey: rotate takes one secret id, or --due, or --all --tag key=value\n'],
        [['--all'], 'rekey: --all needs at least one --tag key=value (--tag rekey:managed=true means every managed secret)\n'],
        [['a', '--tag', 'x=y'], 'rekey: --tag selects secrets for --all or --due\n'],
        [['--due', '--concurrency', '0'], 'rekey: --concurrency must be an integer from 1 to 32\n'],
      ];
      for (const [argv, message] of cases) expect(await cli('rotate', ...argv), argv.join(' ')).toEqual({ code: 1, stdout: '', stderr: message });
    });

    it('names the CLI user as the actor when REKEY_ACTOR is not set', async () => {
      const app = await user();
      const plain = cliRunner(rekey);
      expect(await plain('rotate', app.secretId)).toMatchObject({ code: 0 });
      const records = JSON.parse((await plain('audit', '--json')).stdout) as AuditRecord[];
      expect(records.map((r) => r.actor)).toEqual([`cli:${userInfo().username}`, `cli:${userInfo().username}`]);
    });
  });

  describe('rotate progress', () => {
    it('draws a progress bar only on the terminal stream it is given, never in the command output', async () => {
      const a = await user({ 'rekey:max-age': '1h' });
      const b = await user({ 'rekey:max-age': '1h' });
      clock = 2 * HOUR;
      const drawn: string[] = [];
      const terminal = new PassThrough() as PassThrough & { isTTY: boolean; columns: number };
      terminal.isTTY = true;
      terminal.columns = 120;
      terminal.on('data', (chunk: Buffer) => void drawn.push(chunk.toString()));
      const out: string[] = [];
      const { events: _own, ...shared } = rekey.overrides;
      const code = await run(['rotate', '--due'], { stdout: (t) => void out.push(t), stderr: () => {}, readStdin: async () => '', env: rekey.env, overrides: shared, progress: terminal });
      expect(code).toBe(0);
      expect(drawn.join('')).toMatch(/rotating .* 2\/2 \| 2 ok, 0 failed/);
      expect(out.join('')).not.toMatch(/rotating/);
      expect(out.join('')).toMatch(/2 succeeded, 0 failed of 2/);
      rekey.guard.output('progress', drawn.join(''));
      for (const s of [a, b]) await storedLogin(rekey, s.secretId, { stage: STAGE.current });
    });
  });

  describe('audit', () => {
    it('prints the trail as a table or JSON, filters by secret and time, and verifies the chain', async () => {
      const a = await user();
      const b = await user({ 'rekey:grace': '0' });
      expect(await cli('rotate', a.secretId, '--reason', 'first')).toMatchObject({ code: 0 });
      clock = 2 * HOUR;
      expect(await cli('rotate', b.secretId)).toMatchObject({ code: 0 }); // grace 0: also revokes

      const all = JSON.parse((await cli('audit', '--json')).stdout) as AuditRecord[];
      expect(all.map((r) => `${r.action}:${r.secretId}`)).toEqual([
        `Rotation Started:${a.secretId}`,
        `Rotation Succeeded:${a.secretId}`,
        `Rotation Started:${b.secretId}`,
        `Rotation Succeeded:${b.secretId}`,
        `Credential Revoked:${b.secretId}`,
      ]);
      expect(all.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5]);
      const recent = JSON.parse((await cli('audit', '--since', '1h', '--json')).stdout) as AuditRecord[];
      expect(recent.map((r) => r.secretId)).toEqual([b.secretId, b.secretId, b.secretId]);
      const table = await cli('audit', '--secret', a.secretId);
      expect(table.stdout.split('\n').filter((l) => l.includes(a.secretId))).toHaveLength(2);
      expect(table.stdout).toMatch(/Rotation Succeeded .*finishSecret .*succeeded .*first/);

      expect(await cli('audit', '--verify')).toEqual({ code: 0, stderr: '', stdout: `audit trail intact: 5 records, chain head ${all[4]!.hash}\n` });
      const file = join(rekey.dir, 'audit.jsonl');
      const lines = (await readFile(file, 'utf8')).split('\n');
      lines[1] = lines[1]!.replace('"outcome":"succeeded"', '"outcome":"failed"');
      await writeFile(file, lines.join('\n'));
      const broken = await cli('audit', '--verify');
      expect(broken).toEqual({ code: 1, stderr: '', stdout: 'audit trail BROKEN at line 2: hash does not match the record (it was edited) (1 records before it check out)\n' });
    });
  });
});
