import type { SecretStore } from './ports/secret-store.ts';
import type { TargetRegistry } from './ports/target.ts';
import type { EventBus } from './ports/event-bus.ts';
import type { SecretLock } from './ports/lock.ts';
import type { Logger } from './ports/logger.ts';

/** What the core needs from the outside world; built in functions/runtime/services.ts. */
export interface CoreDeps {
  store: SecretStore;
  targets: TargetRegistry;
  events: EventBus;
  lock: SecretLock;
  logger: Logger;
  now: () => Date;
  newVersionId: () => string;
  /** testSecret retries a refused login this many times (password changes can propagate late). */
  verifyAttempts: number;
  verifyBaseDelayMs: number;
}
