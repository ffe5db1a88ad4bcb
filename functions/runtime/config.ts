import { userInfo } from 'node:os';
import * as z from 'zod/mini';
import { ConfigError } from '#core/errors.ts';

const nonEmpty = () => z.string().check(z.minLength(1));
const integer = (min: number, max: number) => z.coerce.number().check(z.int(), z.minimum(min), z.maximum(max));

/**
 * The only place that reads process.env. Parsed once; an error names the variable and what it
 * should be, never the value it had (a mistyped secret would otherwise land in a log).
 */
const schema = z.object({
  REKEY_STORE: z._default(z.enum(['local', 'aws']), 'local'),
  REKEY_STORE_DIR: z._default(nonEmpty(), './.rekey'),
  REKEY_MASTER_KEY: z.optional(nonEmpty()),
  REKEY_LOG_LEVEL: z._default(z.enum(['debug', 'info', 'warn', 'error', 'silent']), 'warn'),
  REKEY_VERIFY_ATTEMPTS: z._default(integer(1, 20), 3),
  REKEY_EVENT_BUS_NAME: z.optional(nonEmpty()),
  AWS_REGION: z.optional(nonEmpty()),
  REKEY_SWEEP_CONCURRENCY: z._default(integer(1, 64), 4),
  REKEY_STUCK_AFTER: z._default(z.string().check(z.regex(/^(0|\d+(\.\d+)?(ms|s|m|h|d|w))$/)), '2h'),
  /** base64 of 32 bytes; locally derived from the store's master key when unset. */
  REKEY_INDEX_KEY: z.optional(nonEmpty()),
  GITHUB_WEBHOOK_SECRET: z.optional(nonEmpty()),
  GITGUARDIAN_WEBHOOK_SECRET: z.optional(nonEmpty()),
  REKEY_INGEST_TOKEN: z.optional(z.string().check(z.minLength(16))),
  GITHUB_TOKEN: z.optional(nonEmpty()),
  GITHUB_API_URL: z._default(z.url(), 'https://api.github.com'),
  REKEY_TICKETS_REPO: z.optional(z.string().check(z.regex(/^[\w.-]+\/[\w.-]+$/))),
  REKEY_LEAK_QUEUE_URL: z.optional(z.url()),
  REKEY_DELIVERIES_TABLE: z.optional(nonEmpty()),
  /**
   * AWS: the secrets holding the leak path's credentials, read at run time (runtime/leak-credentials.ts):
   * the three webhook secrets (leak-webhook), the GitHub token (leak-worker). The variables above win.
   */
  REKEY_LEAK_WEBHOOK_SECRET_ID: z.optional(nonEmpty()),
  REKEY_GITHUB_TOKEN_SECRET_ID: z.optional(nonEmpty()),
  /** Chat. Webhook URLs are credentials: errors name the variable, never the URL. */
  SLACK_WEBHOOK_URL: z.optional(z.url()),
  TEAMS_WEBHOOK_URL: z.optional(z.url()),
  /** AWS: the Secrets Manager secret holding {"slack": URL, "teams": URL}, read at run time. */
  REKEY_CHAT_SECRET_ID: z.optional(nonEmpty()),
  /** `summary`: one message per sweep or bulk rotation for its successes; `each`: one per success. */
  REKEY_CHAT_SUCCESSES: z._default(z.enum(['summary', 'each']), 'summary'),
  /** Locally: print chat messages on stderr too. */
  REKEY_NOTIFY_CONSOLE: z.pipe(
    z._default(z.enum(['true', 'false', '1', '0']), 'false'),
    z.transform((v) => v === 'true' || v === '1'),
  ),
  /** Who the audit trail names for CLI actions; default `cli:<login name>`. */
  REKEY_ACTOR: z.optional(z.string().check(z.minLength(1), z.maxLength(200))),
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
