import type { Notifier } from '#core/ports/notifier.ts';
import { truncate, type ChatMessage, type Severity } from '#core/notifications.ts';
import { checkWebhookUrl, postJson, type PostOptions } from './http-post.ts';

/** Slack's documented Block Kit limits (docs.slack.dev/reference/block-kit). */
export const SLACK_LIMITS = {
  headerText: 150,
  sectionText: 3000,
  sectionFields: 10,
  fieldText: 2000,
  buttonText: 75,
  buttonUrl: 3000,
  contextText: 3000,
  blocks: 50,
  /** The top-level `text`: the notification and fallback; kept to a section's size. */
  text: 3000,
} as const;

const ICON: Record<Severity, string> = { good: ':white_check_mark:', info: ':information_source:', warning: ':warning:', critical: ':rotating_light:' };

type TextObject = { type: 'plain_text'; text: string; emoji?: boolean } | { type: 'mrkdwn'; text: string };
export type SlackBlock =
  | { type: 'header'; text: TextObject & { type: 'plain_text' } }
  | { type: 'section'; text?: TextObject; fields?: TextObject[] }
  | { type: 'actions'; elements: { type: 'button'; text: TextObject & { type: 'plain_text' }; url: string; action_id: string }[] }
  | { type: 'context'; elements: TextObject[] };

export interface SlackPayload {
  text: string;
  blocks: SlackBlock[];
}

/** Slack mrkdwn needs &, < and > escaped; unescaped, `<!channel>` in a secret id would ping everyone. */
export function escapeMrkdwn(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** The message as a Block Kit payload for an incoming webhook: header, text, fields, ticket button, context. */
export function slackPayload(message: ChatMessage): SlackPayload {
  const blocks: SlackBlock[] = [
    { type: 'header', text: { type: 'plain_text', text: truncate(`${ICON[message.severity]} ${message.title}`, SLACK_LIMITS.headerText), emoji: true } },
    { type: 'section', text: { type: 'mrkdwn', text: truncate(escapeMrkdwn(message.text), SLACK_LIMITS.sectionText) } },
  ];
  for (let at = 0; at < message.fields.length; at += SLACK_LIMITS.sectionFields) {
    blocks.push({
      type: 'section',
      fields: message.fields.slice(at, at + SLACK_LIMITS.sectionFields).map((f) => ({
        type: 'mrkdwn' as const,
        text: truncate(`*${escapeMrkdwn(f.label)}*\n${escapeMrkdwn(f.value)}`, SLACK_LIMITS.fieldText),
      })),
    });
  }
  if (message.link && message.link.url.length <= SLACK_LIMITS.buttonUrl) {
    blocks.push({
      type: 'actions',
      elements: [{ type: 'button', text: { type: 'plain_text', text: truncate(message.link.label, SLACK_LIMITS.buttonText) }, url: message.link.url, action_id: 'rekey-open-ticket' }],
    });
  }
  blocks.push({ type: 'context', elements: [{ type: 'mrkdwn', text: truncate(escapeMrkdwn(`rekey · ${message.kind}`), SLACK_LIMITS.contextText) }] });
  return {
    text: truncate(escapeMrkdwn(`${message.title}: ${message.text}`), SLACK_LIMITS.text),
    blocks: blocks.slice(0, SLACK_LIMITS.blocks),
  };
}

/** Slack incoming webhook (SLACK_WEBHOOK_URL): one Block Kit message per chat message. */
export class SlackNotifier implements Notifier {
  readonly channel = 'slack';
  readonly #url: string;
  readonly #post: Omit<PostOptions, 'channel'>;

  constructor(options: { webhookUrl: string; post?: Omit<PostOptions, 'channel'> }) {
    this.#url = checkWebhookUrl(options.webhookUrl, 'the Slack webhook URL');
    this.#post = options.post ?? {};
  }

  async send(message: ChatMessage): Promise<void> {
    await postJson(this.#url, slackPayload(message), { ...this.#post, channel: this.channel });
  }

  // The URL is a credential: never let it print through inspect or JSON.
  toJSON(): object {
    return { channel: this.channel };
  }
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return 'SlackNotifier { channel: slack }';
  }
}
