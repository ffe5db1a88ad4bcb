import type { SecretStore } from './ports/secret-store.ts';
import type { CredentialKindRegistry } from './ports/credential-kind.ts';
import type { ConsumerRegistry } from './ports/consumer.ts';
import type { EventBus } from './ports/event-bus.ts';
import type { SecretLock } from './ports/lock.ts';
import type { Logger } from './ports/logger.ts';

/** What the core needs from the outside world; built in functions/runtime/services.ts. */
export interface CoreDeps {
  store: SecretStore;
  /** The credential kinds (databases, IAM access keys, HTTP API keys), by a value's `engine`. */
  kinds: CredentialKindRegistry;
  /** Where a new value is pushed after a rotation (GitHub Actions, an event on the bus). */
  consumers: ConsumerRegistry;
  events: EventBus;
  lock: SecretLock;
  logger: Logger;
  now: () => Date;
  newVersionId: () => string;
  /**
   * testSecret retries a refused login this many times, and a revoke retries its proof as often
   * (password changes and IAM keys propagate late).
   */
  verifyAttempts: number;
  verifyBaseDelayMs: number;
}
