import type { RekeyEvent } from '../events.ts';

/**
 * Where rekey's own events go (EventBridge on AWS, in-process locally).
 * Contract: `publish` resolves only once every event is accepted, in order per call; it retries
 * failed entries and then throws, naming how many failed. Events never carry a secret value.
 */
export interface EventBus {
  publish(events: RekeyEvent[]): Promise<void>;
}
