import { join } from 'node:path';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SQSClient } from '@aws-sdk/client-sqs';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { LeakDeps, LeakTask, RemediationResult } from '#core/remediation.ts';
import { identifiersOf, remediateBurst } from '#core/remediation.ts';
import type { IntakeDeps } from '#core/intake.ts';
import type { LeakQueue, DeliveryLog } from '#core/ports/leak-queue.ts';
import type { TicketSystem } from '#core/ports/tickets.ts';
import type { AlertApi } from '#core/ports/alert-api.ts';
import { ConfigError, publicError } from '#core/errors.ts';
import { scannerRegistry, KNOWN_SCANNERS } from '#adapters/scanners/registry.ts';
import { GitHubIssuesTickets } from '#adapters/ticketing/github-issues.ts';
import { LocalFileTickets } from '#adapters/ticketing/local.ts';
import { GitHubAlertApi } from '#adapters/alerts/github.ts';
import { SqsLeakQueue } from '#adapters/queues/sqs.ts';
import { InProcessLeakQueue } from '#adapters/queues/in-process.ts';
import { LocalDeliveryLog } from '#adapters/deliveries/local-files.ts';
import { DynamoDeliveryLog } from '#adapters/deliveries/dynamodb.ts';
import type { Config } from './config.ts';
import type { Services } from './services.ts';
import { CREDENTIALS_REFRESH_MS, githubToken, refreshing } from './leak-credentials.ts';
import { githubOctokit } from './github-client.ts';

export interface LeakServices {
  leak: LeakDeps;
  intake: IntakeDeps;
  /** Present locally: the in-process queue whose worker remediates as deliveries arrive. */
  localQueue?: InProcessLeakQueue;
}

export interface LeakOverrides {
  tickets?: TicketSystem;
  alerts?: AlertApi;
  queue?: LeakQueue;
  deliveries?: DeliveryLog;
  onResult?: (result: RemediationResult) => void;
  /** The in-process queue's retry delays for retryable failures (tests shorten them). */
  retryDelaysMs?: number[];
}

/** What the worker needs on top of the core services: tickets and the scanner API (the GitHub token's). */
export function buildLeakDeps(services: Services, config: Config, overrides: Pick<LeakOverrides, 'tickets' | 'alerts'> = {}): LeakDeps {
  const octokit = config.GITHUB_TOKEN ? githubOctokit(config.GITHUB_TOKEN, config, services.deps.logger) : undefined;
  let tickets = overrides.tickets;
  if (!tickets && octokit && config.REKEY_TICKETS_REPO) tickets = new GitHubIssuesTickets({ octokit, repo: config.REKEY_TICKETS_REPO });
  if (!tickets && services.storeDir) tickets = new LocalFileTickets({ file: join(services.storeDir, 'tickets.json') });
  if (!tickets) throw new ConfigError('REKEY_TICKETS_REPO and GITHUB_TOKEN must be set on AWS: leak tickets need somewhere to go');
  const alerts = overrides.alerts ?? (octokit ? new GitHubAlertApi({ octokit }) : undefined);
  return {
    ...services.deps,
    rotation: services.rotation,
    index: services.index,
    indexKey: services.indexKey,
    tickets,
    ...(alerts ? { alerts } : {}),
  };
}

/** Adds the leak path to the core services: scanners, tickets, the scanner API, queue and replay log. */
export function buildLeakServices(services: Services, config: Config, overrides: LeakOverrides = {}): LeakServices {
  const leak = buildLeakDeps(services, config, overrides);
  let queue = overrides.queue;
  let localQueue: InProcessLeakQueue | undefined;
  if (!queue && config.REKEY_LEAK_QUEUE_URL) {
    queue = new SqsLeakQueue({ client: new SQSClient(config.AWS_REGION ? { region: config.AWS_REGION } : {}), queueUrl: config.REKEY_LEAK_QUEUE_URL });
  }
  if (!queue) {
    if (!services.storeDir) throw new ConfigError('REKEY_LEAK_QUEUE_URL must be set on AWS');
    localQueue = new InProcessLeakQueue({
      work: (tasks: LeakTask[], burst) => remediateBurst(leak, tasks, burst),
      ...(overrides.onResult ? { onResult: overrides.onResult } : {}),
      onError: (error) => services.deps.logger.error('leak worker failed', { error: publicError(error) }),
      ...(overrides.retryDelaysMs ? { retryDelaysMs: overrides.retryDelaysMs } : {}),
    });
    queue = localQueue;
  }
  let deliveries = overrides.deliveries;
  if (!deliveries && config.REKEY_DELIVERIES_TABLE) {
    deliveries = new DynamoDeliveryLog({ client: new DynamoDBClient(config.AWS_REGION ? { region: config.AWS_REGION } : {}), tableName: config.REKEY_DELIVERIES_TABLE });
  }
  if (!deliveries) {
    if (!services.storeDir) throw new ConfigError('REKEY_DELIVERIES_TABLE must be set on AWS');
    deliveries = new LocalDeliveryLog({ dir: services.storeDir });
  }
  const intake: IntakeDeps = {
    scanners: scannerRegistry({
      ...(config.GITHUB_WEBHOOK_SECRET ? { githubWebhookSecret: config.GITHUB_WEBHOOK_SECRET } : {}),
      ...(config.GITGUARDIAN_WEBHOOK_SECRET ? { gitguardianWebhookSecret: config.GITGUARDIAN_WEBHOOK_SECRET } : {}),
      ...(config.REKEY_INGEST_TOKEN ? { ingestToken: config.REKEY_INGEST_TOKEN } : {}),
    }),
    knownScanners: KNOWN_SCANNERS,
    queue,
    deliveries,
    indexKey: services.indexKey,
    logger: services.deps.logger,
    now: services.deps.now,
    identify: (text) => identifiersOf(services.deps.kinds, text),
  };
  return { leak, intake, ...(localQueue ? { localQueue } : {}) };
}

/**
 * Leak deps for the leak-worker Lambda, on top of the core services. The GitHub token (GITHUB_TOKEN,
 * else the secret REKEY_GITHUB_TOKEN_SECRET_ID names) is re-read every 5 minutes; the deps are
 * rebuilt only when it changed.
 */
export function workerLeakDeps(
  getServices: () => Promise<Services>,
  config: Config,
  overrides: { secretsManager?: SecretsManagerClient; clock?: () => number } = {},
): () => Promise<LeakDeps> {
  let secretsManager = overrides.secretsManager;
  const token = refreshing(() => githubToken(config, () => (secretsManager ??= new SecretsManagerClient(config.AWS_REGION ? { region: config.AWS_REGION } : {}))), {
    everyMs: CREDENTIALS_REFRESH_MS,
    ...(overrides.clock ? { now: overrides.clock } : {}),
  });
  let built: { token: string | undefined; deps: LeakDeps } | undefined;
  return async () => {
    const [services, current] = await Promise.all([getServices(), token()]);
    if (!built || built.token !== current) built = { token: current, deps: buildLeakDeps(services, { ...config, GITHUB_TOKEN: current }) };
    return built.deps;
  };
}

let shared: (() => Promise<LeakDeps>) | undefined;

/** Leak deps for leak-worker, built once per container from the environment. */
export function lambdaLeakDeps(getServices: () => Promise<Services>, getConfig: () => Config): Promise<LeakDeps> {
  try {
    shared ??= workerLeakDeps(getServices, getConfig());
  } catch (error) {
    return Promise.reject(error);
  }
  return shared();
}
