import type { Notifier } from '#core/ports/notifier.ts';
import { truncate, type ChatMessage, type Severity } from '#core/notifications.ts';
import { ChatDeliveryError, checkWebhookUrl, postJson, type PostOptions } from './http-post.ts';

/** Teams refuses a message over 28 KB; stay well under it. */
export const TEAMS_MAX_BYTES = 24 * 1024;
export const ADAPTIVE_CARD_VERSION = '1.4';
const FACT_VALUE_MAX = 1000;

const COLOR: Record<Severity, string> = { good: 'Good', info: 'Accent', warning: 'Warning', critical: 'Attention' };

export interface TeamsPayload {
  type: 'message';
  attachments: { contentType: 'application/vnd.microsoft.card.adaptive'; contentUrl: null; content: AdaptiveCard }[];
}

export interface AdaptiveCard {
  $schema: string;
  type: 'AdaptiveCard';
  version: string;
  msteams: { width: 'Full' };
  body: ({ type: 'TextBlock'; text: string; wrap: true; weight?: string; size?: string; color?: string; isSubtle?: boolean } | { type: 'FactSet'; facts: { title: string; value: string }[] })[];
  actions?: { type: 'Action.OpenUrl'; title: string; url: string }[];
}

/**
 * The message as an Adaptive Card in the envelope Teams incoming webhooks and Power Automate
 * "post to a channel when a webhook request is received" workflows accept.
 */
export function teamsPayload(message: ChatMessage, factMax = FACT_VALUE_MAX): TeamsPayload {
  const card: AdaptiveCard = {
    $schema: 'http://adaptivecards.io/schemas/adaptive-card.json',
    type: 'AdaptiveCard',
    version: ADAPTIVE_CARD_VERSION,
    msteams: { width: 'Full' },
    body: [
      { type: 'TextBlock', text: message.title, wrap: true, weight: 'Bolder', size: 'Medium', color: COLOR[message.severity] },
      { type: 'TextBlock', text: message.text, wrap: true },
      ...(message.fields.length ? [{ type: 'FactSet' as const, facts: message.fields.map((f) => ({ title: f.label, value: truncate(f.value, factMax) })) }] : []),
      { type: 'TextBlock', text: `rekey · ${message.kind}`, wrap: true, isSubtle: true, size: 'Small' },
    ],
    ...(message.link ? { actions: [{ type: 'Action.OpenUrl' as const, title: message.link.label, url: message.link.url }] } : {}),
  };
  const payload: TeamsPayload = { type: 'message', attachments: [{ contentType: 'application/vnd.microsoft.card.adaptive', contentUrl: null, content: card }] };
  // Long fact lists (a big batch) are cut until the card fits Teams' size limit.
  if (Buffer.byteLength(JSON.stringify(payload)) > TEAMS_MAX_BYTES && factMax > 50) return teamsPayload(message, Math.floor(factMax / 2));
  return payload;
}

/** Microsoft Teams (TEAMS_WEBHOOK_URL): a workflow or incoming webhook URL; one Adaptive Card per message. */
export class TeamsNotifier implements Notifier {
  readonly channel = 'teams';
  readonly #url: string;
  readonly #post: Omit<PostOptions, 'channel'>;

  constructor(options: { webhookUrl: string; post?: Omit<PostOptions, 'channel'> }) {
    this.#url = checkWebhookUrl(options.webhookUrl, 'the Teams webhook URL');
    this.#post = options.post ?? {};
  }

  async send(message: ChatMessage): Promise<void> {
    const result = await postJson(this.#url, teamsPayload(message), { ...this.#post, channel: this.channel });
    // Legacy Office 365 connectors answer 200 with an error text instead of an error status.
    if (result.status === 200 && /error|failed/i.test(result.body)) {
      throw new ChatDeliveryError('CHAT_REJECTED', this.channel, 'the webhook answered 200 with an error text', { status: 200, attempts: result.attempts });
    }
  }

  toJSON(): object {
    return { channel: this.channel };
  }
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return 'TeamsNotifier { channel: teams }';
  }
}
