import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { sweep } from '#core/sweep.ts';
import { parseConfig } from '#runtime/config.ts';
import { buildServices, type Services } from '#runtime/services.ts';
import { SlackNotifier } from '#adapters/notifiers/slack.ts';
import { uniqueName } from '#test/helpers/databases.ts';
import { dropUser } from '#test/helpers/users.ts';
import { managedUser, storedLogin, testRekey, type TestRekey } from '#test/helpers/rekey.ts';
import { ChatDouble } from '#test/helpers/chat-double.ts';
import { STAGE } from '#core/ports/secret-store.ts';

const users: string[] = [];
afterAll(async () => {
  for (const u of users) await dropUser('postgres', u).catch(() => {});
});
const DAY = 86_400_000;

/** The local pipeline's own subscribers: a schedule sweep lands in the audit trail and in chat as one summary. */
describe('schedule sweep, audit and chat (in-process bus)', () => {
  let rekey: TestRekey;
  let services: Services;
  let slack: ChatDouble;
  let clock = 0;

  beforeEach(async () => {
    clock = 0;
    rekey = await testRekey({ now: () => new Date(Date.now() + clock) });
    slack = await ChatDouble.start('slack');
    rekey.guard.secret(slack.token);
    const { events: _shared, ...overrides } = rekey.overrides;
    // Services as `rekey serve` builds them: their own bus, with the audit trail and chat subscribed.
    services = await buildServices(parseConfig(rekey.env), { ...overrides, notifiers: [new SlackNotifier({ webhookUrl: slack.url })] });
  });
  afterEach(async () => {
    for (const r of slack.requests) rekey.guard.output('chat body', r.raw);
    rekey.guard.output('audit trail', await readFile(join(rekey.dir, 'audit.jsonl'), 'utf8').catch(() => ''));
    await slack.close();
    await rekey.dispose();
    rekey.guard.assertClean();
  });

  it('sends one summary for the sweep\'s successes and one message per failure, and audits every step as "schedule"', async () => {
    const user = () => {
      const username = uniqueName('swc');
      users.push(username);
      return username;
    };
    const a = await managedUser(rekey, 'postgres', { username: user(), strategy: 'single', tags: { 'rekey:max-age': '1d' } });
    const b = await managedUser(rekey, 'postgres', { username: user(), strategy: 'single', tags: { 'rekey:max-age': '1d' } });
    const broken = await managedUser(rekey, 'postgres', { username: user(), strategy: 'single', port: 1, tags: { 'rekey:max-age': '1d' } });
    clock = 2 * DAY;

    const report = await sweep(services.deps, services.trigger, { concurrency: 2, stuckAfterMs: 2 * 3_600_000 });
    await services.close(); // waits for the chat queue
    expect(report.counts).toMatchObject({ rotated: 2, failed: 1 });
    for (const s of [a, b]) await storedLogin(rekey, s.secretId, { stage: STAGE.current });
    await storedLogin(rekey, broken.secretId, { stage: STAGE.pending });

    const headers = slack.delivered.map((body) => (body as { blocks: { text: { text: string } }[] }).blocks[0]!.text.text);
    expect(headers).toEqual([`:rotating_light: Rotation failed: ${broken.secretId}`, ':warning: Scheduled sweep: 2 rotated, 1 failed']);
    expect(slack.requests.every((r) => r.problems.length === 0)).toBe(true);

    const records = await services.audit!.read();
    expect(new Set(records.map((r) => r.actor))).toEqual(new Set(['schedule']));
    expect(new Set(records.map((r) => r.batchId))).toEqual(new Set([report.batchId]));
    expect(records.at(-1)).toMatchObject({ action: 'Batch Completed', secretId: '*', outcome: 'failed', counts: { succeeded: 2, failed: 1, skipped: 0 } });
    expect(records.filter((r) => r.action === 'Rotation Succeeded').map((r) => r.secretId).sort()).toEqual([a.secretId, b.secretId].sort());
    expect(await services.audit!.verify()).toMatchObject({ ok: true });
  });
});
