import type { ChatMessage } from '../notifications.ts';

/**
 * One chat channel (Slack, Teams, the console). `send` renders the neutral message in the
 * channel's own format and delivers it, retrying rate limits (429, honouring Retry-After) and
 * server errors with capped backoff; it resolves once the channel accepted the message and
 * otherwise throws a RekeyError whose message names the channel (`slack`), never its URL — a
 * webhook URL is a credential and appears in no log, error or event. A message holds identifiers
 * and measurements only, never a secret value.
 */
export interface Notifier {
  /** `slack`, `teams`, `console`: how logs and counters name this channel. */
  readonly channel: string;
  send(message: ChatMessage): Promise<void>;
}
