import { GetSecretValueCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { RekeyError } from '#core/errors.ts';
import type { Config } from './config.ts';

/**
 * The leak path's credentials on AWS. They never sit in the template, a deploy log or a function's
 * environment: each function reads its own Secrets Manager secret at run time, by ARN.
 *
 * - `rekey/<stage>/leak-webhook-credentials` `{"githubWebhookSecret", "gitguardianWebhookSecret",
 *   "ingestToken"}`: read by leak-webhook only, to verify deliveries.
 * - `rekey/<stage>/github-token` `{"githubToken"}`: read by leak-worker, to read GitHub alerts,
 *   resolve them and open issues, and by every function that pushes a new value to GitHub Actions
 *   consumers (rotate-secret, scheduled-rotation, ops, leak-worker), only when a value lists one.
 *
 * Two secrets rather than one because IAM grants a secret, not a field: with one, the webhook — the
 * function exposed to the internet, which parses untrusted bodies — could read a token that writes
 * to GitHub. A field that belongs to the other secret is refused (so the token cannot be pasted into
 * the webhook's by mistake). An empty or missing field is off: that scanner answers 503, or the
 * worker has no GitHub client. Errors name the secret's role, a field name or the SDK error's name,
 * never a value.
 */
export const WEBHOOK_CREDENTIALS = ['githubWebhookSecret', 'gitguardianWebhookSecret', 'ingestToken'] as const;
export const WORKER_CREDENTIALS = ['githubToken'] as const;

export type LeakCredentialName = (typeof WEBHOOK_CREDENTIALS)[number] | (typeof WORKER_CREDENTIALS)[number];
export type LeakCredentials<K extends LeakCredentialName = LeakCredentialName> = Partial<Record<K, string>>;

const ALL: readonly string[] = [...WEBHOOK_CREDENTIALS, ...WORKER_CREDENTIALS];
/** As REKEY_INGEST_TOKEN (config.ts): a short bearer token is guessable. */
const MIN_LENGTH: Partial<Record<LeakCredentialName, number>> = { ingestToken: 16 };

/** Reads `secretId` and returns the non-empty fields among `fields`. */
export async function readLeakCredentials<K extends LeakCredentialName>(
  client: SecretsManagerClient,
  secretId: string,
  fields: readonly K[],
  role: string,
): Promise<LeakCredentials<K>> {
  let text: string | undefined;
  try {
    text = (await client.send(new GetSecretValueCommand({ SecretId: secretId }))).SecretString;
  } catch (error) {
    const name = (error as { name?: string }).name ?? 'error';
    // Retryable: the next delivery (or SQS's redelivery) may find the secret readable again; the
    // webhook answers 503 meanwhile, so a scanner that retries keeps the delivery.
    throw new RekeyError('LEAK_CREDENTIALS_UNREADABLE', `could not read the ${role} credentials secret (${name})`, { retryable: true });
  }
  const invalid = (detail: string) => new RekeyError('LEAK_CREDENTIALS_INVALID', `the ${role} credentials secret ${detail}`);
  const shape = `JSON like {${fields.map((f) => `"${f}": "…"`).join(', ')}}`;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text ?? '');
  } catch {
    // Never the parser's message: it quotes the text.
    throw invalid(`is not ${shape}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw invalid(`must be ${shape}`);
  const found: LeakCredentials<K> = {};
  for (const [key, value] of Object.entries(parsed)) {
    if (!(fields as readonly string[]).includes(key)) {
      // A key may itself be a pasted value: only a known field is named.
      throw invalid(ALL.includes(key) ? `holds "${key}", which belongs in another secret (${shape})` : `holds a field that is not one of ${fields.map((f) => `"${f}"`).join(', ')}`);
    }
    if (value === undefined || value === null || value === '') continue;
    if (typeof value !== 'string') throw invalid(`field "${key}" must be a string`);
    const min = MIN_LENGTH[key as K];
    if (min && value.length < min) throw invalid(`field "${key}" must be at least ${min} characters`);
    found[key as K] = value;
  }
  return found;
}

/**
 * The webhook credentials: the environment's (`rekey serve`, or an override on Lambda), completed by
 * the secret REKEY_LEAK_WEBHOOK_SECRET_ID names — read only when a variable is missing.
 */
export async function webhookCredentials(
  config: Pick<Config, 'GITHUB_WEBHOOK_SECRET' | 'GITGUARDIAN_WEBHOOK_SECRET' | 'REKEY_INGEST_TOKEN' | 'REKEY_LEAK_WEBHOOK_SECRET_ID'>,
  secretsManager: () => SecretsManagerClient,
): Promise<LeakCredentials<(typeof WEBHOOK_CREDENTIALS)[number]>> {
  const env = defined({
    githubWebhookSecret: config.GITHUB_WEBHOOK_SECRET,
    gitguardianWebhookSecret: config.GITGUARDIAN_WEBHOOK_SECRET,
    ingestToken: config.REKEY_INGEST_TOKEN,
  });
  if (!config.REKEY_LEAK_WEBHOOK_SECRET_ID || WEBHOOK_CREDENTIALS.every((name) => env[name])) return env;
  return { ...(await readLeakCredentials(secretsManager(), config.REKEY_LEAK_WEBHOOK_SECRET_ID, WEBHOOK_CREDENTIALS, 'leak webhook')), ...env };
}

/** The GitHub token: GITHUB_TOKEN, else the secret REKEY_GITHUB_TOKEN_SECRET_ID names (undefined when neither has one). */
export async function githubToken(
  config: Pick<Config, 'GITHUB_TOKEN' | 'REKEY_GITHUB_TOKEN_SECRET_ID'>,
  secretsManager: () => SecretsManagerClient,
): Promise<string | undefined> {
  if (config.GITHUB_TOKEN || !config.REKEY_GITHUB_TOKEN_SECRET_ID) return config.GITHUB_TOKEN;
  return (await readLeakCredentials(secretsManager(), config.REKEY_GITHUB_TOKEN_SECRET_ID, WORKER_CREDENTIALS, 'GitHub token')).githubToken;
}

/**
 * The GitHub token for the Actions-secret consumers, read on demand (runtime/github-client.ts):
 * GITHUB_TOKEN when set; else the secret REKEY_GITHUB_TOKEN_SECRET_ID names, read on the first call
 * — the first push to a `github-actions` consumer, so a function that pushes none never reads it —
 * and again once 5 minutes have passed. Neither a failed read nor an empty field is kept: the next
 * push reads again, so filling the secret takes effect on the sweep's next retry.
 */
export function githubTokenSource(
  config: Pick<Config, 'GITHUB_TOKEN' | 'REKEY_GITHUB_TOKEN_SECRET_ID'>,
  secretsManager: () => SecretsManagerClient,
  options: { clock?: () => number } = {},
): () => Promise<string | undefined> {
  if (config.GITHUB_TOKEN || !config.REKEY_GITHUB_TOKEN_SECRET_ID) {
    const fixed = config.GITHUB_TOKEN;
    return async () => fixed;
  }
  const empty = new Error('no GitHub token in the secret');
  const read = refreshing(
    async () => {
      const token = await githubToken(config, secretsManager);
      if (!token) throw empty; // not cached, as a failure
      return token;
    },
    { everyMs: CREDENTIALS_REFRESH_MS, ...(options.clock ? { now: options.clock } : {}) },
  );
  return () =>
    read().catch((error: unknown) => {
      if (error === empty) return undefined;
      throw error;
    });
}

function defined<T extends Record<string, string | undefined>>(values: T): { [K in keyof T]?: string } {
  return Object.fromEntries(Object.entries(values).filter(([, value]) => value)) as { [K in keyof T]?: string };
}

/**
 * `load` once, shared by concurrent callers, and again once `everyMs` have passed since the last
 * load began, so a replaced credential takes effect without a deploy. A failed load is not kept:
 * the next call tries again (a Lambda container never stays broken because of one bad read).
 */
export function refreshing<T>(load: () => Promise<T>, options: { everyMs: number; now?: () => number }): () => Promise<T> {
  const now = options.now ?? Date.now;
  let cached: { at: number; value: Promise<T> } | undefined;
  return () => {
    if (!cached || now() - cached.at >= options.everyMs) {
      const entry = {
        at: now(),
        value: load().catch((error: unknown) => {
          if (cached === entry) cached = undefined;
          throw error;
        }),
      };
      cached = entry;
    }
    return cached.value;
  };
}

/** How often the functions re-read their credentials secret (as on-rekey-event its chat secret). */
export const CREDENTIALS_REFRESH_MS = 5 * 60_000;
