import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import type { CoreDeps } from '#core/deps.ts';
import type { EventBus } from '#core/ports/event-bus.ts';
import type { Logger } from '#core/ports/logger.ts';
import type { SecretStore } from '#core/ports/secret-store.ts';
import type { TargetRegistry } from '#core/ports/target.ts';
import type { RotationTrigger } from '#core/ports/rotation-trigger.ts';
import { noLock, type SecretLock } from '#core/ports/lock.ts';
import { RotationEngine } from '#core/rotation.ts';
import { ConfigError, publicError } from '#core/errors.ts';
import { LocalEncryptedStore } from '#adapters/stores/local-encrypted.ts';
import { AwsSecretsManagerStore } from '#adapters/stores/aws-secrets-manager.ts';
import { FileSecretLock } from '#adapters/locks/file-lock.ts';
import { InProcessEventBus } from '#adapters/buses/in-process.ts';
import { EventBridgeBus } from '#adapters/buses/eventbridge.ts';
import { DatabaseTargets } from '#adapters/targets/registry.ts';
import { CredentialKinds } from '#adapters/targets/kinds.ts';
import { ConsumerAdapters } from '#adapters/consumers/registry.ts';
import type { CredentialKindRegistry } from '#core/ports/credential-kind.ts';
import type { ConsumerRegistry } from '#core/ports/consumer.ts';
import { InProcessRotationTrigger } from '#adapters/triggers/in-process.ts';
import { FingerprintingStore } from '#adapters/stores/fingerprinting.ts';
import { LocalFileFingerprintIndex } from '#adapters/fingerprints/local-files.ts';
import { SecretTagsFingerprintIndex } from '#adapters/fingerprints/secret-tags.ts';
import { deriveIndexKey } from '#core/fingerprint.ts';
import type { FingerprintIndex } from '#core/ports/fingerprint-index.ts';
import { SecretsManagerRotationTrigger } from '#adapters/triggers/secrets-manager.ts';
import type { AuditLog } from '#core/ports/audit-log.ts';
import type { Notifier } from '#core/ports/notifier.ts';
import { auditEntryOf } from '#core/audit.ts';
import { ChatDispatcher } from '#core/chat-dispatcher.ts';
import { LocalChainAuditLog } from '#adapters/audit/local-chain.ts';
import { chatNotifiers } from '#adapters/notifiers/registry.ts';
import { config as readConfig, type Config } from './config.ts';
import { jsonLogger } from './logger.ts';
import { consumerGitHub } from './github-client.ts';

export interface Services {
  deps: CoreDeps;
  rotation: RotationEngine;
  /** How the schedule starts a rotation: RotateSecret on AWS, the engine in-process locally. */
  trigger: RotationTrigger;
  bus: EventBus;
  /** Leak matching: fingerprints of every stored value, under `indexKey`. */
  index: FingerprintIndex;
  indexKey: Buffer;
  /** Where local state lives (undefined on AWS). */
  storeDir?: string;
  logger: Logger;
  /** Locally: the hash-chained trail every event is appended to (on AWS: the bus archive and on-rekey-event's log). */
  audit?: AuditLog;
  /** Locally, when a chat channel is configured: the dispatcher subscribed to the in-process bus. */
  chat?: ChatDispatcher;
  /** Waits for queued chat messages, detaches the subscribers, closes database pools. */
  close(): Promise<void>;
}

export interface ServiceOverrides {
  store?: SecretStore;
  /** The database targets inside the database kind (tests wrap them to record calls). */
  targets?: TargetRegistry;
  /** Every credential kind (tests: kinds with fakes); default databases, IAM keys and HTTP API keys. */
  kinds?: CredentialKindRegistry;
  /**
   * Where new values are pushed (tests: a GitHub double); default GitHub Actions — with GITHUB_TOKEN,
   * or on AWS the token secret (REKEY_GITHUB_TOKEN_SECRET_ID) read on the first push to one — and bus events.
   */
  consumers?: (events: EventBus) => ConsumerRegistry;
  events?: EventBus;
  lock?: SecretLock;
  logger?: Logger;
  trigger?: (engine: RotationEngine) => RotationTrigger;
  now?: () => Date;
  verifyBaseDelayMs?: number;
  /** Chat channels instead of the ones configured (SLACK_WEBHOOK_URL, TEAMS_WEBHOOK_URL, REKEY_NOTIFY_CONSOLE). */
  notifiers?: Notifier[];
  audit?: AuditLog;
}

/** The one place where configuration, adapters and the core meet. */
export async function buildServices(config: Config, overrides: ServiceOverrides = {}): Promise<Services> {
  const logger = overrides.logger ?? jsonLogger(config.REKEY_LOG_LEVEL);
  const aws = config.REKEY_STORE === 'aws';
  // SDK clients are built here, once per process (a Lambda cold start), and injected.
  const secretsManager = aws ? new SecretsManagerClient(config.AWS_REGION ? { region: config.AWS_REGION } : {}) : undefined;
  const kinds =
    overrides.kinds ?? new CredentialKinds({ targets: overrides.targets ?? new DatabaseTargets(), ...(config.AWS_REGION ? { region: config.AWS_REGION } : {}) });
  let lock = overrides.lock;
  let store = overrides.store;
  let index: FingerprintIndex;
  let indexKey: Buffer;
  let storeDir: string | undefined;
  if (secretsManager) {
    if (!config.REKEY_INDEX_KEY) throw new ConfigError('REKEY_INDEX_KEY must be set when REKEY_STORE=aws (base64 of 32 bytes)');
    indexKey = decodeKey(config.REKEY_INDEX_KEY, 'REKEY_INDEX_KEY');
    index = new SecretTagsFingerprintIndex(secretsManager);
    store ??= new FingerprintingStore(new AwsSecretsManagerStore({ client: secretsManager }), index, indexKey, kinds);
  } else {
    storeDir = resolve(config.REKEY_STORE_DIR);
    const key = await LocalEncryptedStore.loadOrCreateKey({ dir: storeDir, ...(config.REKEY_MASTER_KEY ? { masterKeyBase64: config.REKEY_MASTER_KEY } : {}) });
    indexKey = config.REKEY_INDEX_KEY ? decodeKey(config.REKEY_INDEX_KEY, 'REKEY_INDEX_KEY') : deriveIndexKey(key);
    index = new LocalFileFingerprintIndex({ dir: storeDir });
    store ??= new FingerprintingStore(new LocalEncryptedStore({ dir: storeDir, key }), index, indexKey, kinds);
    lock ??= new FileSecretLock({ dir: storeDir });
  }
  let events = overrides.events;
  if (!events && aws) {
    if (!config.REKEY_EVENT_BUS_NAME) throw new ConfigError('REKEY_EVENT_BUS_NAME must be set when REKEY_STORE=aws');
    events = new EventBridgeBus({ client: new EventBridgeClient(config.AWS_REGION ? { region: config.AWS_REGION } : {}), eventBusName: config.REKEY_EVENT_BUS_NAME });
  }
  // Subscribers (audit, chat) attach only to a bus built here: a bus passed in belongs to the
  // caller, who attaches what it wants — so services sharing one bus never record an event twice.
  let ownBus: InProcessEventBus | undefined;
  if (!events) {
    ownBus = new InProcessEventBus((error, event) =>
      logger.error('event subscriber failed', { detailType: event.detailType, secretId: event.detail.secretId, error: publicError(error) }),
    );
    events = ownBus;
  }
  const unsubscribe: (() => void)[] = [];
  let audit = overrides.audit;
  if (!audit && storeDir) audit = new LocalChainAuditLog({ dir: storeDir });
  let chat: ChatDispatcher | undefined;
  if (ownBus) {
    const auditLog = audit;
    // Awaited: the record is on disk before `publish` resolves, so every action leaves its trace.
    if (auditLog) unsubscribe.push(ownBus.subscribe((event) => auditLog.append(auditEntryOf(event)).then(() => undefined)));
    const notifiers =
      overrides.notifiers ??
      chatNotifiers({
        ...(config.SLACK_WEBHOOK_URL ? { slackWebhookUrl: config.SLACK_WEBHOOK_URL } : {}),
        ...(config.TEAMS_WEBHOOK_URL ? { teamsWebhookUrl: config.TEAMS_WEBHOOK_URL } : {}),
        console: config.REKEY_NOTIFY_CONSOLE,
      });
    if (notifiers.length) {
      const dispatcher = new ChatDispatcher(notifiers, { policy: config.REKEY_CHAT_SUCCESSES, logger });
      // Not awaited: chat is queued per channel and never delays the pipeline.
      unsubscribe.push(ownBus.subscribe((event) => void dispatcher.handle(event)));
      chat = dispatcher;
    }
  }
  const now = overrides.now ?? (() => new Date());
  const consumers = overrides.consumers?.(events) ?? new ConsumerAdapters({ events, now, ...consumerGitHub(config, logger, secretsManager) });
  const deps: CoreDeps = {
    store,
    kinds,
    consumers,
    events,
    // Secrets Manager serialises rotations itself; locally a file lock does.
    lock: lock ?? noLock,
    logger,
    now,
    newVersionId: randomUUID,
    verifyAttempts: config.REKEY_VERIFY_ATTEMPTS,
    verifyBaseDelayMs: overrides.verifyBaseDelayMs ?? 200,
  };
  const rotation = new RotationEngine(deps);
  const trigger = overrides.trigger?.(rotation) ?? (secretsManager ? new SecretsManagerRotationTrigger(secretsManager) : new InProcessRotationTrigger(rotation));
  return {
    deps,
    rotation,
    trigger,
    bus: events,
    index,
    indexKey,
    logger,
    ...(storeDir ? { storeDir } : {}),
    ...(audit ? { audit } : {}),
    ...(chat ? { chat } : {}),
    async close() {
      await chat?.flush();
      for (const detach of unsubscribe) detach();
      await kinds.close();
    },
  };
}

function decodeKey(base64: string, name: string): Buffer {
  const key = Buffer.from(base64, 'base64');
  if (key.length !== 32) throw new ConfigError(`${name} must be base64 of exactly 32 bytes`);
  return key;
}

let shared: Promise<Services> | undefined;

/** Services for Lambda handlers: built on the first invocation, reused while the container lives. */
export function lambdaServices(): Promise<Services> {
  shared ??= buildServices(readConfig()).catch((error: unknown) => {
    shared = undefined; // a bad config should not poison the container forever
    throw error;
  });
  return shared;
}
