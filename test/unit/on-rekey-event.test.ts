import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mockClient } from 'aws-sdk-client-mock';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { DETAIL_TYPE, type RekeyEvent } from '#core/events.ts';
import type { Logger } from '#core/ports/logger.ts';
import { parseConfig } from '#runtime/config.ts';
import { buildChatServices } from '#runtime/chat-services.ts';
import { SlackNotifier } from '#adapters/notifiers/slack.ts';
import { TeamsNotifier } from '#adapters/notifiers/teams.ts';
import { createHandler, type OnRekeyEventResult } from '../../functions/on-rekey-event.ts';
import { ChatDouble } from '#test/helpers/chat-double.ts';
import { LeakGuard } from '#test/helpers/leak-guard.ts';
import { lambdaContext } from '#test/helpers/lambda.ts';
import { sampleEvents } from '#test/helpers/sample-events.ts';

/** An event as EventBridge hands it to the rule's target. */
function envelope(event: RekeyEvent) {
  return {
    version: '0',
    id: 'c5f3a0de-0000-4000-8000-00000000000e',
    'detail-type': event.detailType,
    source: 'rekey',
    account: '123456789012',
    time: event.time.toISOString().replace(/\.\d{3}Z$/, 'Z'),
    region: 'us-east-1',
    resources: [],
    detail: JSON.parse(JSON.stringify(event.detail)) as unknown,
  };
}

/** errors: 'throw' never answers { ok: false }; narrow the handler's union type. */
function resultOf(result: OnRekeyEventResult | { ok: false }): OnRekeyEventResult {
  if ('ok' in result) throw new Error('on-rekey-event answered { ok: false }');
  return result;
}

function capturingLogger(lines: Record<string, unknown>[]): Logger {
  const log = (level: string) => (msg: string, fields: Record<string, unknown> = {}) => void lines.push({ level, msg, ...fields });
  return { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') };
}

describe('on-rekey-event handler', () => {
  let slack: ChatDouble;
  let teams: ChatDouble;
  let guard: LeakGuard;
  let logs: Record<string, unknown>[];

  beforeEach(async () => {
    slack = await ChatDouble.start('slack');
    teams = await ChatDouble.start('teams');
    guard = new LeakGuard();
    guard.secret(slack.token);
    guard.secret(teams.token);
    logs = [];
  });
  afterEach(async () => {
    guard.output('logs', logs);
    for (const r of [...slack.requests, ...teams.requests]) guard.output('chat body', r.raw);
    guard.assertClean();
    await slack.close();
    await teams.close();
  });

  const handlerWith = async (env: Record<string, string>, secretsManager?: SecretsManagerClient) => {
    const services = await buildChatServices(parseConfig(env), { logger: capturingLogger(logs), ...(secretsManager ? { secretsManager } : {}) });
    return createHandler({ services: async () => services });
  };

  it('writes one audit line per event and sends its message to Slack and Teams', async () => {
    const handler = await handlerWith({ SLACK_WEBHOOK_URL: slack.url, TEAMS_WEBHOOK_URL: teams.url });
    const event = sampleEvents()[DETAIL_TYPE.leakDetected];
    const result = await handler(envelope(event), lambdaContext());
    expect(result).toEqual({
      detailType: 'Leak Detected',
      message: 'Leak detected (P0): prod/billing-db',
      delivered: { slack: { sent: 1, failed: 0, dropped: 0 }, teams: { sent: 1, failed: 0, dropped: 0 } },
    });
    const audit = logs.filter((l) => l.msg === 'rekey audit');
    expect(audit).toEqual([
      expect.objectContaining({
        level: 'info',
        eventId: 'c5f3a0de-0000-4000-8000-00000000000e',
        audit: expect.objectContaining({ action: 'Leak Detected', actor: 'scanner:gitleaks', secretId: 'prod/billing-db', outcome: 'detected', risk: { score: 92, priority: 'P0' } }),
      }),
    ]);
    expect(slack.requests.map((r) => r.problems)).toEqual([[]]);
    expect(teams.requests.map((r) => r.problems)).toEqual([[]]);
  });

  it('builds a channel for each webhook URL in the environment, and none without', async () => {
    expect((await buildChatServices(parseConfig({ SLACK_WEBHOOK_URL: slack.url, TEAMS_WEBHOOK_URL: teams.url }), { logger: capturingLogger(logs) })).chat.channels).toEqual(['slack', 'teams']);
    expect((await buildChatServices(parseConfig({}), { logger: capturingLogger(logs) })).chat.channels).toEqual([]);
    expect(logs.at(-1)).toMatchObject({ level: 'warn', msg: 'no chat channel configured: events are audited but not sent anywhere' });
  });

  it('audits every event type, and sends nothing for Rotation Started or a scheduled success', async () => {
    const handler = await handlerWith({ SLACK_WEBHOOK_URL: slack.url });
    for (const event of Object.values(sampleEvents({ trigger: 'schedule', actor: 'schedule' }))) await handler(envelope(event), lambdaContext());
    expect(logs.filter((l) => l.msg === 'rekey audit')).toHaveLength(Object.keys(sampleEvents()).length);
    const titles = slack.requests.map((r) => (JSON.parse(r.raw) as { blocks: { text: { text: string } }[] }).blocks[0]!.text.text);
    expect(titles.some((t) => /Rotation succeeded|Credential revoked|Rotation Started/i.test(t))).toBe(false);
    expect(titles).toContain(':rotating_light: Rotation failed: prod/billing-db');
  });

  it('returns normally when a channel fails, counting the failure as a CloudWatch metric', async () => {
    slack.fail({ status: 500, body: 'internal_error' });
    // Fewer, faster retries than production so the test stays short; the code path is the same.
    const quick = await buildChatServices(parseConfig({}), {
      logger: capturingLogger(logs),
      notifiers: [new SlackNotifier({ webhookUrl: slack.url, post: { attempts: 2, baseDelayMs: 1 } }), new TeamsNotifier({ webhookUrl: teams.url })],
    });
    const handler = createHandler({ services: async () => quick });
    const result = resultOf(await handler(envelope(sampleEvents()[DETAIL_TYPE.rotationFailed]), lambdaContext()));
    expect(result.delivered).toEqual({ slack: { sent: 0, failed: 1, dropped: 0 }, teams: { sent: 1, failed: 0, dropped: 0 } });
    expect(slack.requests).toHaveLength(2);
    const metric = logs.find((l) => l.msg === 'chat delivery failures');
    expect(metric).toMatchObject({
      ChatDeliveryFailures: 1,
      channels: ['slack'],
      _aws: { CloudWatchMetrics: [{ Namespace: 'rekey', Metrics: [{ Name: 'ChatDeliveryFailures', Unit: 'Count' }] }] },
    });
    expect(logs.find((l) => l.msg === 'chat delivery failed')).toMatchObject({ channel: 'slack', code: 'CHAT_UNAVAILABLE', status: 500 });
  });

  it('refuses what is not a rekey event, with a message that echoes nothing of it', async () => {
    const handler = await handlerWith({});
    const bad = { ...envelope(sampleEvents()[DETAIL_TYPE.rotationFailed]), source: 'aws.secretsmanager', detail: { secretId: 'x', password: 'Not-Echoed-1234' } };
    guard.secret('Not-Echoed-1234');
    const error = await handler(bad, lambdaContext()).then(() => undefined, (e: unknown) => e);
    expect((error as Error).message).toBe('INVALID_INPUT: not a rekey event (source rekey, a known detail-type, detail.secretId)');
    guard.error('handler error', error);
  });

  describe('chat webhooks from Secrets Manager', () => {
    it('reads the URLs from the chat secret (REKEY_CHAT_SECRET_ID) and never logs them', async () => {
      const sm = mockClient(SecretsManagerClient);
      sm.on(GetSecretValueCommand, { SecretId: 'arn:aws:secretsmanager:us-east-1:123456789012:secret:rekey/ci/chat-webhooks' }).resolves({
        SecretString: JSON.stringify({ slack: slack.url, teams: '' }),
      });
      const handler = await handlerWith({ REKEY_CHAT_SECRET_ID: 'arn:aws:secretsmanager:us-east-1:123456789012:secret:rekey/ci/chat-webhooks' }, new SecretsManagerClient({ region: 'us-east-1' }));
      const result = resultOf(await handler(envelope(sampleEvents()[DETAIL_TYPE.ticketOpened]), lambdaContext()));
      expect(result.delivered).toEqual({ slack: { sent: 1, failed: 0, dropped: 0 } });
      sm.restore();
    });

    it('names the SDK error, not the secret, when the chat secret cannot be read', async () => {
      const sm = mockClient(SecretsManagerClient);
      sm.on(GetSecretValueCommand).rejects(Object.assign(new Error('User is not authorized'), { name: 'AccessDeniedException' }));
      await expect(buildChatServices(parseConfig({ REKEY_CHAT_SECRET_ID: 'rekey/ci/chat-webhooks' }), { logger: capturingLogger(logs), secretsManager: new SecretsManagerClient({ region: 'us-east-1' }) })).rejects.toMatchObject({
        code: 'CHAT_SECRET_UNREADABLE',
        message: 'could not read the chat webhooks secret (AccessDeniedException)',
      });
      sm.on(GetSecretValueCommand).resolves({ SecretString: `not json ${slack.url}` });
      const error = await buildChatServices(parseConfig({ REKEY_CHAT_SECRET_ID: 'x' }), { logger: capturingLogger(logs), secretsManager: new SecretsManagerClient({ region: 'us-east-1' }) }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toMatchObject({ code: 'CHAT_SECRET_INVALID' });
      guard.error('chat secret error', error);
      sm.restore();
    });
  });
});
