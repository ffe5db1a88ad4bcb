import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DETAIL_TYPE, rekeyEvent, type DetailType } from '#core/events.ts';
import { messageFor, type ChatMessage } from '#core/notifications.ts';
import { ChatDispatcher } from '#core/chat-dispatcher.ts';
import { batchSummary } from '#core/batch.ts';
import type { Logger } from '#core/ports/logger.ts';
import { InProcessEventBus } from '#adapters/buses/in-process.ts';
import { SlackNotifier, SLACK_LIMITS, slackPayload } from '#adapters/notifiers/slack.ts';
import { TeamsNotifier, teamsPayload } from '#adapters/notifiers/teams.ts';
import { ConsoleNotifier } from '#adapters/notifiers/console.ts';
import { ChatDeliveryError, checkWebhookUrl, parseRetryAfter, postJson } from '#adapters/notifiers/http-post.ts';
import { ChatDouble, slackProblems, teamsProblems } from '#test/helpers/chat-double.ts';
import { LeakGuard } from '#test/helpers/leak-guard.ts';
import { sampleEvents } from '#test/helpers/sample-events.ts';

const every = (): ChatMessage[] => Object.values(sampleEvents()).flatMap((e) => messageFor(e, 'each') ?? []);

/** A message at every documented limit and past it: long title, text, fields, many fields, markup. */
function oversized(): ChatMessage {
  return {
    kind: 'Rotation Failed',
    title: `Rotation failed: ${'very/long/secret/id/'.repeat(20)}`,
    severity: 'critical',
    text: `<!channel> & <https://evil.example|click> ${'x'.repeat(5000)}`,
    fields: Array.from({ length: 13 }, (_, i) => ({ label: `Field ${i}`, value: 'v'.repeat(2500) })),
    link: { label: 'Open the ticket '.repeat(10), url: 'https://github.com/acme/security/issues/42' },
  };
}

async function until(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function capturingLogger(lines: string[]): Logger {
  const log = (level: string) => (msg: string, fields: Record<string, unknown> = {}) => void lines.push(JSON.stringify({ level, msg, ...fields }));
  return { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') };
}

describe('chat notifiers', () => {
  let slack: ChatDouble;
  let teams: ChatDouble;
  let guard: LeakGuard;
  let logs: string[];
  const fast = { baseDelayMs: 1, maxDelayMs: 2_000, timeoutMs: 2_000 };

  beforeEach(async () => {
    slack = await ChatDouble.start('slack');
    teams = await ChatDouble.start('teams');
    guard = new LeakGuard();
    // Webhook URLs are credentials: their tokens must appear in no log, error or body.
    guard.secret(slack.token);
    guard.secret(teams.token);
    logs = [];
  });
  afterEach(async () => {
    guard.output('logs', logs.join('\n'));
    guard.assertClean();
    await slack.close();
    await teams.close();
  });

  describe('slackPayload', () => {
    it('renders every event type as Block Kit that Slack documents: header, mrkdwn section, fields, ticket button, context', () => {
      for (const message of every()) {
        const payload = slackPayload(message);
        expect(slackProblems(payload), message.kind).toEqual([]);
        expect(payload.blocks.map((b) => b.type).filter((t) => t !== 'actions')).toEqual(['header', 'section', 'section', 'context']);
        expect(payload.text).toContain(message.title);
      }
      const withTicket = slackPayload(messageFor(sampleEvents()[DETAIL_TYPE.leakRemediated])!);
      expect(withTicket.blocks.find((b) => b.type === 'actions')).toEqual({
        type: 'actions',
        elements: [{ type: 'button', text: { type: 'plain_text', text: 'Open the ticket' }, url: 'https://github.com/acme/security/issues/42', action_id: 'rekey-open-ticket' }],
      });
    });

    it('keeps every text within its documented limit, splits more than 10 fields, and escapes mrkdwn control characters', () => {
      const payload = slackPayload(oversized());
      expect(slackProblems(payload)).toEqual([]);
      const header = payload.blocks[0] as { text: { text: string } };
      expect([...header.text.text]).toHaveLength(SLACK_LIMITS.headerText);
      const section = payload.blocks[1] as { text: { text: string } };
      expect(section.text.text.startsWith('&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;')).toBe(true);
      expect(payload.blocks.filter((b) => b.type === 'section' && 'fields' in b).map((b) => (b as { fields: unknown[] }).fields.length)).toEqual([10, 3]);
    });
  });

  describe('teamsPayload', () => {
    it('renders every event type as an Adaptive Card in the message envelope Teams accepts', () => {
      for (const message of every()) {
        const payload = teamsPayload(message);
        expect(teamsProblems(payload, Buffer.byteLength(JSON.stringify(payload))), message.kind).toEqual([]);
        expect(payload).toMatchObject({ type: 'message', attachments: [{ contentType: 'application/vnd.microsoft.card.adaptive', content: { type: 'AdaptiveCard', version: '1.4' } }] });
        const facts = payload.attachments[0]!.content.body.find((e) => e.type === 'FactSet') as { facts: { title: string; value: string }[] };
        expect(facts.facts).toEqual(message.fields.map((f) => ({ title: f.label, value: f.value })));
      }
      const card = teamsPayload(messageFor(sampleEvents()[DETAIL_TYPE.ticketOpened])!).attachments[0]!.content;
      expect(card.actions).toEqual([{ type: 'Action.OpenUrl', title: 'Open the ticket', url: 'https://github.com/acme/security/issues/42' }]);
    });

    it('cuts long facts until the card fits under Teams\' 28 KB limit', () => {
      const message = { ...oversized(), fields: Array.from({ length: 40 }, (_, i) => ({ label: `f${i}`, value: 'w'.repeat(2000) })) };
      const payload = teamsPayload(message);
      const bytes = Buffer.byteLength(JSON.stringify(payload));
      expect(bytes).toBeLessThanOrEqual(24 * 1024);
      expect(teamsProblems(payload, bytes)).toEqual([]);
    });
  });

  describe('SlackNotifier and TeamsNotifier', () => {
    it('deliver every message to the services, which accept each payload as valid', async () => {
      const notifiers = [new SlackNotifier({ webhookUrl: slack.url, post: fast }), new TeamsNotifier({ webhookUrl: teams.url, post: fast })];
      for (const message of every()) for (const n of notifiers) await n.send(message);
      for (const double of [slack, teams]) {
        expect(double.requests.map((r) => r.problems)).toEqual(every().map(() => []));
        expect(double.requests.map((r) => r.status)).toEqual(every().map(() => (double === slack ? 200 : 202)));
        expect(double.requests[0]!.headers['content-type']).toBe('application/json; charset=utf-8');
        for (const r of double.requests) guard.output('chat body', r.raw);
      }
    });

    it('retries a 429 after the Retry-After seconds, then succeeds', async () => {
      const waits: number[] = [];
      slack.script({ status: 429, headers: { 'retry-after': '2' }, body: 'rate_limited' }, { status: 429, headers: { 'retry-after': '1' } });
      const notifier = new SlackNotifier({ webhookUrl: slack.url, post: { ...fast, maxDelayMs: 5_000, sleep: async (ms) => void waits.push(ms) } });
      await notifier.send(every()[0]!);
      expect(slack.requests.map((r) => r.status)).toEqual([429, 429, 200]);
      expect(waits).toEqual([2_000, 1_000]);
    });

    it('honours a Retry-After given as an HTTP-date', async () => {
      const waits: number[] = [];
      const now = Date.parse('2026-11-02T10:00:00Z');
      teams.script({ status: 429, headers: { 'retry-after': 'Mon, 02 Nov 2026 10:00:03 GMT' } });
      const notifier = new TeamsNotifier({ webhookUrl: teams.url, post: { ...fast, maxDelayMs: 5_000, now: () => now, sleep: async (ms) => void waits.push(ms) } });
      await notifier.send(every()[0]!);
      expect(waits).toEqual([3_000]);
      expect(teams.requests.map((r) => r.status)).toEqual([429, 202]);
    });

    it('retries 5xx with capped exponential backoff and gives up after the last attempt, naming the channel and status', async () => {
      const waits: number[] = [];
      slack.fail({ status: 503, body: 'service_unavailable' });
      const notifier = new SlackNotifier({ webhookUrl: slack.url, post: { attempts: 4, baseDelayMs: 100, maxDelayMs: 250, random: () => 1, sleep: async (ms) => void waits.push(ms) } });
      const error = await notifier.send(every()[0]!).then(() => undefined, (e: unknown) => e);
      expect(error).toBeInstanceOf(ChatDeliveryError);
      expect(error).toMatchObject({ code: 'CHAT_UNAVAILABLE', channel: 'slack', status: 503, attempts: 4, message: 'slack: the webhook answered HTTP 503 (service_unavailable)' });
      expect(waits).toEqual([100, 200, 250]);
      expect(slack.requests).toHaveLength(4);
      guard.error('error', error);
    });

    it('does not retry a refusal (400) and keeps Slack\'s one-word reason', async () => {
      slack.script({ status: 400, body: 'invalid_blocks' });
      const error = await new SlackNotifier({ webhookUrl: slack.url, post: fast }).send(every()[0]!).then(() => undefined, (e: unknown) => e);
      expect(error).toMatchObject({ code: 'CHAT_REJECTED', status: 400, attempts: 1, message: 'slack: the webhook answered HTTP 400 (invalid_blocks)' });
      expect(slack.requests).toHaveLength(1);
      guard.error('error', error);
    });

    it('fails at once when Retry-After asks for longer than it waits', async () => {
      teams.script({ status: 429, headers: { 'retry-after': '3600' } });
      const error = await new TeamsNotifier({ webhookUrl: teams.url, post: fast }).send(every()[0]!).then(() => undefined, (e: unknown) => e);
      expect(error).toMatchObject({ code: 'CHAT_RATE_LIMITED', status: 429, attempts: 1 });
      expect((error as Error).message).toBe('teams: the webhook asked to wait 3600 s (Retry-After), longer than rekey waits');
      expect(teams.requests).toHaveLength(1);
    });

    it('gives up on a webhook that never answers after its timeout, without the URL in the error', async () => {
      slack.fail({ status: 0, hang: true });
      const error = await new SlackNotifier({ webhookUrl: slack.url, post: { attempts: 2, baseDelayMs: 1, timeoutMs: 200 } }).send(every()[0]!).then(() => undefined, (e: unknown) => e);
      expect(error).toMatchObject({ code: 'CHAT_UNREACHABLE', attempts: 2, message: 'slack: no answer within 200 ms' });
      guard.error('error', error);
    });

    it('reports an unreachable webhook by errno, not by URL', async () => {
      const url = slack.url;
      await slack.close();
      const error = await postJson(url, {}, { channel: 'slack', attempts: 1 }).then(() => undefined, (e: unknown) => e);
      expect(error).toMatchObject({ code: 'CHAT_UNREACHABLE', message: 'slack: could not reach the webhook (ECONNREFUSED)' });
      guard.error('error', error);
      slack = await ChatDouble.start('slack'); // afterEach closes one
    });

    it('treats a legacy Teams connector\'s "200 with an error text" as a failure', async () => {
      teams.script({ status: 200, body: 'Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 413' });
      await expect(new TeamsNotifier({ webhookUrl: teams.url, post: fast }).send(every()[0]!)).rejects.toMatchObject({ code: 'CHAT_REJECTED', channel: 'teams' });
    });

    it('refuse a plain-http webhook URL other than loopback, without echoing it', () => {
      expect(() => new SlackNotifier({ webhookUrl: 'http://hooks.example.com/services/T/B/secret-token-123' })).toThrow(/^the Slack webhook URL must be an https URL$/);
      expect(() => checkWebhookUrl('not a url secret-token-123', 'TEAMS_WEBHOOK_URL')).toThrow(/^TEAMS_WEBHOOK_URL is not a URL$/);
    });

    it('never print their URL through JSON or inspect', async () => {
      const { inspect } = await import('node:util');
      const notifier = new SlackNotifier({ webhookUrl: slack.url });
      guard.output('json', JSON.stringify({ notifier }));
      guard.output('inspect', inspect(notifier, { showHidden: true, depth: 5 }));
    });
  });

  describe('parseRetryAfter', () => {
    it('reads delta-seconds and HTTP-dates, clamps past dates to 0, and ignores garbage', () => {
      const now = Date.parse('2026-11-02T10:00:00Z');
      expect(parseRetryAfter('7', now)).toBe(7_000);
      expect(parseRetryAfter('Mon, 02 Nov 2026 10:00:10 GMT', now)).toBe(10_000);
      expect(parseRetryAfter('Mon, 02 Nov 2026 09:00:00 GMT', now)).toBe(0);
      expect(parseRetryAfter('soon', now)).toBeUndefined();
      expect(parseRetryAfter(null, now)).toBeUndefined();
    });
  });

  describe('ChatDispatcher', () => {
    it('keeps delivering to Teams while Slack hangs, and never holds up the bus that published the event', async () => {
      slack.fail({ status: 0, hang: true });
      const dispatcher = new ChatDispatcher(
        [new SlackNotifier({ webhookUrl: slack.url, post: { attempts: 1, timeoutMs: 10_000 } }), new TeamsNotifier({ webhookUrl: teams.url, post: fast })],
        { policy: 'summary', logger: capturingLogger(logs) },
      );
      const bus = new InProcessEventBus();
      bus.subscribe((event) => void dispatcher.handle(event));
      await bus.publish([sampleEvents()[DETAIL_TYPE.rotationFailed]]);
      await slack.waitForRequests(1);
      await until(() => dispatcher.stats.teams!.sent === 1);
      // Published and delivered to Teams while Slack has not answered at all.
      expect(teams.delivered).toHaveLength(1);
      expect(dispatcher.stats).toEqual({ slack: { sent: 0, failed: 0, dropped: 0 }, teams: { sent: 1, failed: 0, dropped: 0 } });
      slack.release({ status: 500, body: 'internal_error' });
      await dispatcher.flush();
      expect(dispatcher.stats).toEqual({ slack: { sent: 0, failed: 1, dropped: 0 }, teams: { sent: 1, failed: 0, dropped: 0 } });
      const failure = logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === 'chat delivery failed');
      expect(failure).toMatchObject({ level: 'warn', channel: 'slack', kind: 'Rotation Failed', secretId: 'prod/billing-db', code: 'CHAT_UNAVAILABLE', status: 500 });
    });

    it('sends a channel\'s messages in order, one at a time, pausing only that channel for a 429', async () => {
      slack.script({ status: 429, headers: { 'retry-after': '1' } });
      const waits: number[] = [];
      const dispatcher = new ChatDispatcher(
        [new SlackNotifier({ webhookUrl: slack.url, post: { ...fast, sleep: async (ms) => void waits.push(ms) } }), new TeamsNotifier({ webhookUrl: teams.url, post: fast })],
        { policy: 'each', logger: capturingLogger(logs) },
      );
      const events = sampleEvents();
      const types: DetailType[] = [DETAIL_TYPE.leakDetected, DETAIL_TYPE.rotationSucceeded, DETAIL_TYPE.credentialRevoked, DETAIL_TYPE.ticketOpened, DETAIL_TYPE.leakRemediated];
      for (const type of types) dispatcher.handle(events[type]);
      await dispatcher.flush();
      const titles = (double: ChatDouble) => double.delivered.map((b) => JSON.stringify(b).match(/(Leak detected|Rotation succeeded|Credential revoked|Ticket opened|Leak remediated)/)![1]);
      expect(titles(slack)).toEqual(['Leak detected', 'Rotation succeeded', 'Credential revoked', 'Ticket opened', 'Leak remediated']);
      expect(titles(teams)).toEqual(titles(slack));
      expect(waits).toEqual([1_000]);
      for (const r of [...slack.requests, ...teams.requests]) guard.output('chat body', r.raw);
    });

    it('drops (and counts) messages past a full queue instead of growing without bound', async () => {
      slack.fail({ status: 0, hang: true });
      const dispatcher = new ChatDispatcher([new SlackNotifier({ webhookUrl: slack.url, post: { attempts: 1, timeoutMs: 300 } })], { policy: 'each', logger: capturingLogger(logs), maxQueue: 2 });
      for (let i = 0; i < 5; i++) dispatcher.handle(sampleEvents({ secretId: `app/${i}` })[DETAIL_TYPE.rotationFailed]);
      await dispatcher.flush();
      expect(dispatcher.stats.slack).toEqual({ sent: 0, failed: 2, dropped: 3 });
    });

    it('sends one summary for a bulk rotation and one message per failure, none per success', async () => {
      const dispatcher = new ChatDispatcher([new SlackNotifier({ webhookUrl: slack.url, post: fast })], { policy: 'summary', logger: capturingLogger(logs) });
      const items = [
        ...Array.from({ length: 5 }, (_, i) => ({ secretId: `ok/${i}`, outcome: 'succeeded' as const })),
        { secretId: 'bad/1', outcome: 'failed' as const, error: { code: 'TARGET_UNREACHABLE' } },
      ];
      for (const item of items) {
        const type = item.outcome === 'succeeded' ? DETAIL_TYPE.rotationSucceeded : DETAIL_TYPE.rotationFailed;
        dispatcher.handle(sampleEvents({ secretId: item.secretId, batchId: 'b-9' })[type]);
      }
      dispatcher.handle(rekeyEvent(DETAIL_TYPE.batchCompleted, { ...batchSummary('bulk', items), trigger: 'manual', actor: 'cli:alice', batchId: 'b-9' }));
      await dispatcher.flush();
      const headers = slack.delivered.map((b) => ((b as { blocks: { text: { text: string } }[] }).blocks[0]!.text.text));
      expect(headers).toEqual([':rotating_light: Rotation failed: bad/1', ':warning: Bulk rotation: 5 succeeded, 1 failed']);
    });
  });

  describe('ConsoleNotifier', () => {
    it('prints one line per message with its fields', async () => {
      const lines: string[] = [];
      await new ConsoleNotifier((l) => void lines.push(l)).send(messageFor(sampleEvents()[DETAIL_TYPE.rotationFailed])!);
      expect(lines).toEqual([
        '[chat ALERT] Rotation failed: prod/billing-db (trigger=manual actor=cli:alice version=8a1c2f3e-0000-4000-8000-000000000001 error=TARGET_UNREACHABLE step=setSecret)\n',
      ]);
    });
  });
});
