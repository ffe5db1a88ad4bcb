import { userInfo } from 'node:os';
import * as z from 'zod';
import { ConfigError } from '#core/errors.ts';

/**
 * The only place that reads process.env. Parsed once; an error names the variable and what it
 * should be, never the value it had (a mistyped secret would otherwise land in a log).
 */
const schema = z.object({
  REKEY_STORE: z.enum(['local', 'aws']).default('local'),
  REKEY_STORE_DIR: z.string().min(1).default('./.rekey'),
  REKEY_MASTER_KEY: z.string().min(1).optional(),
  REKEY_LOG_LEVEL: z.enum(['debug', 'info', 'warn', 'error', 'silent']).default('warn'),
  REKEY_VERIFY_ATTEMPTS: z.coerce.number().int().min(1).max(20).default(3),
  REKEY_EVENT_BUS_NAME: z.string().min(1).optional(),
  AWS_REGION: z.string().min(1).optional(),
  REKEY_SWEEP_CONCURRENCY: z.coerce.number().int().min(1).max(64).default(4),
  REKEY_STUCK_AFTER: z.string().regex(/^(0|\d+(\.\d+)?(ms|s|m|h|d|w))$/).default('2h'),
  /** base64 of 32 bytes; locally derived from the store's master key when unset. */
  REKEY_INDEX_KEY: z.string().min(1).optional(),
  GITHUB_WEBHOOK_SECRET: z.string().min(1).optional(),
  GITGUARDIAN_WEBHOOK_SECRET: z.string().min(1).optional(),
  REKEY_INGEST_TOKEN: z.string().min(16).optional(),
  GITHUB_TOKEN: z.string().min(1).optional(),
  GITHUB_API_URL: z.url().default('https://api.github.com'),
  REKEY_TICKETS_REPO: z.string().regex(/^[\w.-]+\/[\w.-]+$/).optional(),
  REKEY_LEAK_QUEUE_URL: z.url().optional(),
  REKEY_DELIVERIES_TABLE: z.string().min(1).optional(),
  /**
   * AWS: the secrets holding the leak path's credentials, read at run time (runtime/leak-credentials.ts):
   * the three webhook secrets (leak-webhook), the GitHub token (leak-worker). The variables above win.
   */
  REKEY_LEAK_WEBHOOK_SECRET_ID: z.string().min(1).optional(),
  REKEY_GITHUB_TOKEN_SECRET_ID: z.string().min(1).optional(),
  /** Chat. Webhook URLs are credentials: errors name the variable, never the URL. */
  SLACK_WEBHOOK_URL: z.url().optional(),
  TEAMS_WEBHOOK_URL: z.url().optional(),
  /** AWS: the Secrets Manager secret holding {"slack": URL, "teams": URL}, read at run time. */
  REKEY_CHAT_SECRET_ID: z.string().min(1).optional(),
  /** `summary`: one message per sweep or bulk rotation for its successes; `each`: one per success. */
  REKEY_CHAT_SUCCESSES: z.enum(['summary', 'each']).default('summary'),
  /** Locally: print chat messages on stderr too. */
  REKEY_NOTIFY_CONSOLE: z.enum(['true', 'false', '1', '0']).default('false').transform((v) => v === 'true' || v === '1'),
  /** Who the audit trail names for CLI actions; default `cli:<login name>`. */
  REKEY_ACTOR: z.string().min(1).max(200).optional(),
});

export type Config = z.infer<typeof schema>;

const EXPECTED: Partial<Record<keyof Config, string>> = {
  REKEY_STORE: 'local or aws',
  REKEY_LOG_LEVEL: 'debug, info, warn, error or silent',
  REKEY_VERIFY_ATTEMPTS: 'an integer from 1 to 20',
  REKEY_SWEEP_CONCURRENCY: 'an integer from 1 to 64',
  REKEY_STUCK_AFTER: 'a duration such as 2h or 90m',
  REKEY_INGEST_TOKEN: 'at least 16 characters',
  GITHUB_API_URL: 'a URL such as https://api.github.com',
  REKEY_TICKETS_REPO: 'owner/name',
  REKEY_LEAK_QUEUE_URL: 'an SQS queue URL',
  SLACK_WEBHOOK_URL: 'a URL (https://hooks.slack.com/services/…)',
  TEAMS_WEBHOOK_URL: 'a URL (a Teams workflow or incoming webhook)',
  REKEY_CHAT_SUCCESSES: 'summary or each',
  REKEY_NOTIFY_CONSOLE: 'true or false',
  REKEY_ACTOR: 'at most 200 characters',
};

export function parseConfig(env: Record<string, string | undefined>): Config {
  // An empty variable is an unset one: a deploy parameter left empty (serverless.yml `ticketsRepo`)
  // arrives as "", which would otherwise fail its format and stop every invocation.
  const parsed = schema.safeParse(Object.fromEntries(Object.entries(env).filter(([, value]) => value !== '')));
  if (parsed.success) return parsed.data;
  const names = [...new Set(parsed.error.issues.map((issue) => String(issue.path[0])))];
  throw new ConfigError(
    `invalid environment: ${names.map((name) => (EXPECTED[name as keyof Config] ? `${name} must be ${EXPECTED[name as keyof Config]}` : `${name} is invalid`)).join('; ')}`,
  );
}

let cached: Config | undefined;

export function config(): Config {
  cached ??= parseConfig(process.env);
  return cached;
}

/** Who a CLI action is by: REKEY_ACTOR, else `cli:` and the login name (the audit trail's "who"). */
export function cliActor(settings: Pick<Config, 'REKEY_ACTOR'>): string {
  if (settings.REKEY_ACTOR) return settings.REKEY_ACTOR;
  try {
    return `cli:${userInfo().username}`;
  } catch {
    return 'cli:unknown'; // a container user without a passwd entry
  }
}
