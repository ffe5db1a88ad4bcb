import type { RekeyEvent } from '#core/events.ts';
import type { EventBus } from '#core/ports/event-bus.ts';

export type EventHandler = (event: RekeyEvent) => Promise<void> | void;

/**
 * The laptop's bus: delivers each event to every subscriber, in order, before `publish` resolves.
 * A failing subscriber is reported through `onError` and never blocks the others or the publisher
 * (a chat outage must not fail a rotation).
 */
export class InProcessEventBus implements EventBus {
  readonly #handlers: EventHandler[] = [];

  constructor(private readonly onError: (error: unknown, event: RekeyEvent) => void = () => {}) {}

  /** Returns a function that removes the subscription. */
  subscribe(handler: EventHandler): () => void {
    this.#handlers.push(handler);
    return () => {
      const at = this.#handlers.indexOf(handler);
      if (at >= 0) this.#handlers.splice(at, 1);
    };
  }

  async publish(events: RekeyEvent[]): Promise<void> {
    for (const event of events) {
      for (const handler of [...this.#handlers]) {
        try {
          await handler(event);
        } catch (error) {
          this.onError(error, event);
        }
      }
    }
  }
}
