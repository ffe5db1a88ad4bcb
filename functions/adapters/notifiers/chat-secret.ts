import { GetSecretValueCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { RekeyError } from '#core/errors.ts';

/**
 * On AWS the chat webhook URLs live in one Secrets Manager secret, `{"slack": "https://…",
 * "teams": "https://…"}` (either may be empty), read at run time by on-rekey-event alone: the URLs
 * never sit in a template, a deploy log or the function's configuration. Errors name the secret's
 * role and the SDK error name, never a URL.
 */
export async function readChatWebhooks(client: SecretsManagerClient, secretId: string): Promise<{ slack?: string; teams?: string }> {
  let text: string | undefined;
  try {
    text = (await client.send(new GetSecretValueCommand({ SecretId: secretId }))).SecretString;
  } catch (error) {
    const name = (error as { name?: string }).name ?? 'error';
    throw new RekeyError('CHAT_SECRET_UNREADABLE', `could not read the chat webhooks secret (${name})`, { retryable: name === 'ThrottlingException' || name === 'InternalServiceError' });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text ?? '');
  } catch {
    throw new RekeyError('CHAT_SECRET_INVALID', 'the chat webhooks secret is not JSON like {"slack": "https://…", "teams": "https://…"}');
  }
  if (typeof parsed !== 'object' || parsed === null) throw new RekeyError('CHAT_SECRET_INVALID', 'the chat webhooks secret must be a JSON object');
  const pick = (key: string) => {
    const value = (parsed as Record<string, unknown>)[key];
    if (value === undefined || value === null || value === '') return {};
    if (typeof value !== 'string') throw new RekeyError('CHAT_SECRET_INVALID', `the chat webhooks secret's "${key}" must be a URL string`);
    return { [key]: value };
  };
  return { ...pick('slack'), ...pick('teams') };
}
