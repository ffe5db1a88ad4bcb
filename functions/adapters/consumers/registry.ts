import { ValidationError } from '#core/errors.ts';
import type { ConsumerAdapter, ConsumerRegistry } from '#core/ports/consumer.ts';
import type { EventBus } from '#core/ports/event-bus.ts';
import { EventRequestConsumer } from './event-request.ts';
import { GitHubActionsConsumer, type GitHubClientSource } from './github-actions.ts';

/**
 * Every consumer type rekey knows. GitHub pushes need an Octokit, or a source giving one on the
 * first push (runtime/github-client.ts); events need the bus.
 */
export class ConsumerAdapters implements ConsumerRegistry {
  readonly #byType: Map<string, ConsumerAdapter>;

  constructor(options: { events: EventBus; octokit?: GitHubClientSource; tokenSetting?: string; now?: () => Date }) {
    const adapters: ConsumerAdapter[] = [
      new GitHubActionsConsumer({ ...(options.octokit ? { octokit: options.octokit } : {}), ...(options.tokenSetting ? { tokenSetting: options.tokenSetting } : {}) }),
      new EventRequestConsumer({ events: options.events, ...(options.now ? { now: options.now } : {}) }),
    ];
    this.#byType = new Map(adapters.map((a) => [a.type, a]));
  }

  get types(): string[] {
    return [...this.#byType.keys()];
  }

  forType(type: string): ConsumerAdapter {
    const adapter = this.#byType.get(type);
    if (!adapter) throw new ValidationError(`unknown consumer type "${String(type).slice(0, 40)}" (known: ${this.types.join(', ')})`, 'CONSUMER_INVALID');
    return adapter;
  }
}
