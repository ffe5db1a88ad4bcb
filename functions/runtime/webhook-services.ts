import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SQSClient } from '@aws-sdk/client-sqs';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { IntakeDeps } from '#core/intake.ts';
import { ConfigError } from '#core/errors.ts';
import type { DeliveryLog, LeakQueue } from '#core/ports/leak-queue.ts';
import type { Logger } from '#core/ports/logger.ts';
import { KNOWN_SCANNERS, scannerRegistry } from '#adapters/scanners/registry.ts';
import { SqsLeakQueue } from '#adapters/queues/sqs.ts';
import { DynamoDeliveryLog } from '#adapters/deliveries/dynamodb.ts';
import { identifyLeak } from '#adapters/targets/leak-identifiers.ts';
import { config as readConfig, type Config } from './config.ts';
import { jsonLogger } from './logger.ts';
import { CREDENTIALS_REFRESH_MS, refreshing, webhookCredentials } from './leak-credentials.ts';

/**
 * What the leak-webhook Lambda needs, and nothing more: the scanners (verified with the webhook
 * credentials), the index key, the SQS queue and the DynamoDB delivery log. No store, no database
 * driver, no GitHub client: it touches no secret but its own credentials (README, "Cold start").
 * `rekey serve` builds its intake with the core services instead (leak-services.ts).
 */
export interface WebhookOverrides {
  logger?: Logger;
  queue?: LeakQueue;
  deliveries?: DeliveryLog;
  secretsManager?: SecretsManagerClient;
  now?: () => Date;
  /** When the credentials were last read, in ms (tests move it to see a refresh). */
  clock?: () => number;
  /**
   * Non-secret handles a credential kind traces in a leaked text (IntakeDeps.identify); default
   * `identifyLeak`, the kinds' own rules without the kinds (no IAM client in this bundle).
   */
  identify?: (text: string) => string[];
}

/**
 * The intake, built on the first call; the credentials are re-read every 5 minutes, so a replaced
 * webhook secret takes effect without a deploy. Failures (bad configuration, an unreadable secret)
 * reject the call — the handler answers 500 or 503, never 2xx — and the next call tries again.
 */
export function webhookIntake(config: Config, overrides: WebhookOverrides = {}): () => Promise<IntakeDeps> {
  const logger = overrides.logger ?? jsonLogger(config.REKEY_LOG_LEVEL);
  const region = config.AWS_REGION ? { region: config.AWS_REGION } : {};
  let secretsManager = overrides.secretsManager;
  const scanners = refreshing(
    async () => scannerRegistry(await webhookCredentials(config, () => (secretsManager ??= new SecretsManagerClient(region)))),
    { everyMs: CREDENTIALS_REFRESH_MS, ...(overrides.clock ? { now: overrides.clock } : {}) },
  );
  let base: Omit<IntakeDeps, 'scanners'> | undefined;
  return async () => {
    base ??= {
      knownScanners: KNOWN_SCANNERS,
      queue: overrides.queue ?? sqsQueue(config, region),
      deliveries: overrides.deliveries ?? dynamoDeliveries(config, region),
      indexKey: indexKeyOf(config),
      logger,
      now: overrides.now ?? (() => new Date()),
      // As `rekey serve` does with the kinds themselves: a leaked AWS access key id no version
      // holds is queued with its task, so the worker can trace its owner.
      identify: overrides.identify ?? identifyLeak,
    };
    return { ...base, scanners: await scanners() };
  };
}

const LOCALLY = 'leak-webhook is the AWS intake; locally `rekey serve` receives deliveries';

function sqsQueue(config: Config, region: { region?: string }): LeakQueue {
  if (!config.REKEY_LEAK_QUEUE_URL) throw new ConfigError(`REKEY_LEAK_QUEUE_URL must be set (${LOCALLY})`);
  return new SqsLeakQueue({ client: new SQSClient(region), queueUrl: config.REKEY_LEAK_QUEUE_URL });
}

function dynamoDeliveries(config: Config, region: { region?: string }): DeliveryLog {
  if (!config.REKEY_DELIVERIES_TABLE) throw new ConfigError(`REKEY_DELIVERIES_TABLE must be set (${LOCALLY})`);
  return new DynamoDeliveryLog({ client: new DynamoDBClient(region), tableName: config.REKEY_DELIVERIES_TABLE });
}

function indexKeyOf(config: Config): Buffer {
  if (!config.REKEY_INDEX_KEY) throw new ConfigError(`REKEY_INDEX_KEY must be set (base64 of 32 bytes; ${LOCALLY})`);
  const key = Buffer.from(config.REKEY_INDEX_KEY, 'base64');
  if (key.length !== 32) throw new ConfigError('REKEY_INDEX_KEY must be base64 of exactly 32 bytes');
  return key;
}

let logger: Logger | undefined;
let intake: (() => Promise<IntakeDeps>) | undefined;

/**
 * The handler's services: a logger, and nothing that can fail — a configuration error must reach
 * the handler's own try (and be answered 500, its code logged), rather than the middleware's
 * catch-all 503.
 */
export async function lambdaWebhookServices(): Promise<{ logger: Logger }> {
  if (!logger) {
    let level: Config['REKEY_LOG_LEVEL'] = 'info';
    try {
      level = readConfig().REKEY_LOG_LEVEL;
    } catch {
      // reported by the intake, on the first delivery
    }
    logger = jsonLogger(level);
  }
  return { logger };
}

/** The intake for the Lambda, built once per container from the environment. */
export async function lambdaIntake(): Promise<IntakeDeps> {
  intake ??= webhookIntake(readConfig(), { logger: (await lambdaWebhookServices()).logger });
  return intake();
}
