import type { Notifier } from '#core/ports/notifier.ts';
import { ConsoleNotifier } from './console.ts';
import type { PostOptions } from './http-post.ts';
import { SlackNotifier } from './slack.ts';
import { TeamsNotifier } from './teams.ts';

export interface ChatSettings {
  slackWebhookUrl?: string;
  teamsWebhookUrl?: string;
  console?: boolean;
  /** Retry and timeout settings for the webhook channels (tests shorten them). */
  post?: Omit<PostOptions, 'channel'>;
  write?: (line: string) => void;
}

/** The configured channels: a webhook channel exists only when its URL is set. */
export function chatNotifiers(settings: ChatSettings): Notifier[] {
  const post = settings.post ? { post: settings.post } : {};
  return [
    ...(settings.slackWebhookUrl ? [new SlackNotifier({ webhookUrl: settings.slackWebhookUrl, ...post })] : []),
    ...(settings.teamsWebhookUrl ? [new TeamsNotifier({ webhookUrl: settings.teamsWebhookUrl, ...post })] : []),
    ...(settings.console ? [new ConsoleNotifier(settings.write)] : []),
  ];
}
