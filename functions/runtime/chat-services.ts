import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { ChatDispatcher } from '#core/chat-dispatcher.ts';
import type { Logger } from '#core/ports/logger.ts';
import type { Notifier } from '#core/ports/notifier.ts';
import { readChatWebhooks } from '#adapters/notifiers/chat-secret.ts';
import { chatNotifiers } from '#adapters/notifiers/registry.ts';
import { config as readConfig, type Config } from './config.ts';
import { jsonLogger } from './logger.ts';

/** What on-rekey-event needs: chat channels and a logger — no store, no database, no index key. */
export interface ChatServices {
  logger: Logger;
  chat: ChatDispatcher;
}

/**
 * Channels from SLACK_WEBHOOK_URL / TEAMS_WEBHOOK_URL, completed by the chat webhooks secret
 * (REKEY_CHAT_SECRET_ID) on AWS: a URL set in the environment wins over the secret's.
 */
export async function buildChatServices(
  config: Config,
  overrides: { notifiers?: Notifier[]; logger?: Logger; secretsManager?: SecretsManagerClient } = {},
): Promise<ChatServices> {
  const logger = overrides.logger ?? jsonLogger(config.REKEY_LOG_LEVEL);
  let notifiers = overrides.notifiers;
  if (!notifiers) {
    let slack = config.SLACK_WEBHOOK_URL;
    let teams = config.TEAMS_WEBHOOK_URL;
    if (config.REKEY_CHAT_SECRET_ID && (!slack || !teams)) {
      const client = overrides.secretsManager ?? new SecretsManagerClient(config.AWS_REGION ? { region: config.AWS_REGION } : {});
      const stored = await readChatWebhooks(client, config.REKEY_CHAT_SECRET_ID);
      slack ??= stored.slack;
      teams ??= stored.teams;
    }
    notifiers = chatNotifiers({
      ...(slack ? { slackWebhookUrl: slack } : {}),
      ...(teams ? { teamsWebhookUrl: teams } : {}),
      console: config.REKEY_NOTIFY_CONSOLE,
    });
    if (notifiers.length === 0) logger.warn('no chat channel configured: events are audited but not sent anywhere');
  }
  return { logger, chat: new ChatDispatcher(notifiers, { policy: config.REKEY_CHAT_SUCCESSES, logger }) };
}

/** Re-read the webhook secret this often, so a replaced URL takes effect without a deploy. */
const REFRESH_MS = 5 * 60_000;
let shared: { at: number; services: Promise<ChatServices> } | undefined;

/** Chat services for on-rekey-event, built on the first invocation and refreshed every few minutes. */
export function lambdaChatServices(): Promise<ChatServices> {
  if (!shared || Date.now() - shared.at > REFRESH_MS) {
    const services = buildChatServices(readConfig()).catch((error: unknown) => {
      shared = undefined; // a missing secret or bad config is retried on the next invocation
      throw error;
    });
    shared = { at: Date.now(), services };
  }
  return shared.services;
}
