import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { uniqueName } from '#test/helpers/databases.ts';
import { dropUser } from '#test/helpers/users.ts';
import { managedUser } from '#test/helpers/rekey.ts';
import { cliRunner } from '#test/helpers/cli.ts';
import { LeakGuard } from '#test/helpers/leak-guard.ts';
import { TICKETS_REPO, startLeakPipeline, trufflehogDelivery, type LeakPipeline } from '#test/helpers/leak-pipeline.ts';

/**
 * `rekey serve` as an operator runs it (a child process of the real `rekey` binary), and
 * `rekey tickets`, over the local ticket file and over GitHub issues.
 */

const created: string[] = [];
afterAll(async () => {
  for (const username of created) await dropUser('postgres', username).catch(() => {});
});

describe('rekey tickets', () => {
  let p: LeakPipeline;
  afterEach(async () => {
    await p.dispose();
    p.rekey.guard.assertClean();
  });

  /** One matched AWSCURRENT leak (high risk) and one unmatched value (triage), by TruffleHog. */
  const twoLeaks = async () => {
    const username = uniqueName('tk');
    created.push(username);
    const app = await managedUser(p.rekey, 'postgres', { username, strategy: 'single', withAdmin: true, tags: { 'rekey:environment': 'prod' } });
    const stray = `Stray-${randomBytes(12).toString('base64url')}`;
    p.rekey.guard.secret(stray);
    const reply = await p.post('trufflehog', trufflehogDelivery(p.secrets.ingest, [{ value: stray, public: false }, { value: app.password, public: true }]));
    expect(reply.status).toBe(202);
    await p.settle();
    return app;
  };

  describe('without GitHub configured', () => {
    beforeEach(async () => {
      p = await startLeakPipeline({ withGitHub: false });
    });

    it('lists the tickets of the local file, highest risk first, as JSON and as a table', async () => {
      const app = await twoLeaks();
      const cli = cliRunner(p.rekey);
      const json = await cli('tickets', '--json');
      expect(json.code).toBe(0);
      const tickets = JSON.parse(json.stdout) as { title: string; priority: string; score: number; id: string }[];
      expect(tickets.map((t) => t.title)).toEqual([expect.stringContaining(`Leaked credential: ${app.secretId}`), expect.stringContaining('Leaked credential: unmatched Postgres')]);
      expect(tickets[0]!.score).toBeGreaterThan(tickets[1]!.score);
      expect(tickets[0]!.id).toMatch(/^local-\d+$/);
      const file = JSON.parse(await readFile(join(p.rekey.dir, 'tickets.json'), 'utf8')) as { tickets: { labels: string[] }[] };
      expect(file.tickets.map((t) => t.labels)).toEqual(expect.arrayContaining([expect.arrayContaining(['source:trufflehog', 'triage'])]));
      const table = await cli('tickets');
      expect(table.code).toBe(0);
      expect(table.stdout).toContain(app.secretId);
      expect(table.stdout.indexOf(app.secretId)).toBeLessThan(table.stdout.indexOf('unmatched'));
    });
  });

  describe('with GitHub issues', () => {
    beforeEach(async () => {
      p = await startLeakPipeline();
    });

    it('lists the open rekey issues of REKEY_TICKETS_REPO, highest risk first', async () => {
      const app = await twoLeaks();
      const cli = cliRunner(p.rekey, { GITHUB_TOKEN: p.secrets.githubToken, GITHUB_API_URL: p.github.url, REKEY_TICKETS_REPO: TICKETS_REPO });
      const json = await cli('tickets', '--json');
      expect(json.code, json.stderr).toBe(0);
      const tickets = JSON.parse(json.stdout) as { title: string; url: string }[];
      expect(tickets).toHaveLength(2);
      expect(tickets[0]!.title).toContain(app.secretId);
      expect(tickets[0]!.url).toContain(`/${TICKETS_REPO}/issues/`);
    });
  });
});

describe('rekey serve (child process)', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rekey-serve-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('serves the webhooks, works the queue, and drains it on SIGTERM', { timeout: 60_000 }, async () => {
    const guard = new LeakGuard();
    const token = `ingest-${randomBytes(12).toString('hex')}`;
    const stray = `Stray-${randomBytes(12).toString('base64url')}`;
    guard.secret(token);
    guard.secret(stray);
    const child = spawn(process.execPath, [join(import.meta.dirname, '../../scripts/rekey-bin.mjs'), 'serve', '--port', '0', '--sweep-every', '0'], {
      env: { PATH: process.env.PATH, REKEY_STORE_DIR: dir, REKEY_MASTER_KEY: randomBytes(32).toString('base64'), REKEY_INGEST_TOKEN: token, REKEY_LOG_LEVEL: 'debug' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const url = await new Promise<string>((resolve, reject) => {
      child.stdout.on('data', (chunk: Buffer) => {
        stdout += chunk.toString();
        const match = /listening on (http:\/\/[\d.]+:\d+)/.exec(stdout);
        if (match) resolve(match[1]!);
      });
      void exited.then((code) => reject(new Error(`rekey serve exited (${code}) before listening: ${stderr.slice(0, 500)}`)));
    });
    expect(stdout).toContain('/webhooks/{trufflehog,gitleaks}');
    const health = await fetch(`${url}/healthz`);
    expect(health.status).toBe(200);
    await health.text();
    const delivery = trufflehogDelivery(token, [{ value: stray }]);
    const response = await fetch(`${url}/webhooks/trufflehog`, { method: 'POST', body: delivery.body, headers: delivery.headers });
    const reply = await response.text();
    expect(response.status, reply).toBe(202);
    const refused = await fetch(`${url}/webhooks/gitleaks`, { method: 'POST', body: '[]', headers: { 'content-type': 'application/json', authorization: 'Bearer nope' } });
    expect(refused.status).toBe(401);
    await refused.text();

    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    const tickets = JSON.parse(await readFile(join(dir, 'tickets.json'), 'utf8')) as { tickets: { title: string; labels: string[] }[] };
    expect(tickets.tickets).toHaveLength(1);
    expect(tickets.tickets[0]!.labels).toEqual(expect.arrayContaining(['triage', 'source:trufflehog']));
    guard.output('rekey serve stdout', stdout);
    guard.output('rekey serve stderr', stderr);
    guard.output('reply', reply);
    guard.output('tickets.json', JSON.stringify(tickets));
    guard.assertClean();
  });
});
