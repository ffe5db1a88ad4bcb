import type { RekeyEvent } from './events.ts';
import { publicError } from './errors.ts';
import { messageFor, type ChatMessage, type SuccessPolicy } from './notifications.ts';
import type { Logger } from './ports/logger.ts';
import type { Notifier } from './ports/notifier.ts';

export interface ChannelStats {
  sent: number;
  failed: number;
  /** Not even tried: the channel's queue was full (it has been failing for a while). */
  dropped: number;
}

/**
 * Turns rekey's events into chat messages and delivers them to every channel. Each channel has its
 * own queue, so a slow or failing Slack never delays Teams (and a 429's Retry-After pauses only its
 * own channel, keeping messages in order); `handle` only enqueues, so neither delays the pipeline
 * that emitted the event. Failures are logged (channel and code, never the URL) and counted.
 */
export class ChatDispatcher {
  readonly #notifiers: Notifier[];
  readonly #policy: SuccessPolicy;
  readonly #logger: Logger;
  readonly #maxQueue: number;
  readonly #tails = new Map<string, Promise<void>>();
  readonly #pending = new Map<string, number>();
  readonly #stats = new Map<string, ChannelStats>();

  constructor(notifiers: Notifier[], options: { policy: SuccessPolicy; logger: Logger; maxQueue?: number }) {
    this.#notifiers = notifiers;
    this.#policy = options.policy;
    this.#logger = options.logger;
    this.#maxQueue = options.maxQueue ?? 100;
    for (const n of notifiers) this.#stats.set(n.channel, { sent: 0, failed: 0, dropped: 0 });
  }

  get channels(): string[] {
    return this.#notifiers.map((n) => n.channel);
  }

  /** Per channel: messages sent, failed after retries, and dropped. */
  get stats(): Record<string, ChannelStats> {
    return Object.fromEntries([...this.#stats].map(([channel, s]) => [channel, { ...s }]));
  }

  /** Queues the event's message (if it deserves one) on every channel; returns at once. */
  handle(event: RekeyEvent): ChatMessage | undefined {
    const message = messageFor(event, this.#policy);
    if (!message) return undefined;
    for (const notifier of this.#notifiers) this.#enqueue(notifier, message);
    return message;
  }

  /** Resolves once every queued message was delivered or given up on (never rejects). */
  async flush(): Promise<void> {
    // A delivery may finish while we wait; loop until nothing is left.
    while ([...this.#pending.values()].some((n) => n > 0)) await Promise.all([...this.#tails.values()]);
  }

  #enqueue(notifier: Notifier, message: ChatMessage): void {
    const { channel } = notifier;
    const stats = this.#stats.get(channel)!;
    const pending = this.#pending.get(channel) ?? 0;
    if (pending >= this.#maxQueue) {
      stats.dropped++;
      this.#logger.error('chat message dropped: channel queue full', { channel, kind: message.kind, secretId: message.secretId, queued: pending });
      return;
    }
    this.#pending.set(channel, pending + 1);
    const tail = (this.#tails.get(channel) ?? Promise.resolve()).then(async () => {
      try {
        await notifier.send(message);
        stats.sent++;
      } catch (error) {
        stats.failed++;
        const safe = publicError(error);
        const status = (error as { status?: unknown }).status;
        this.#logger.warn('chat delivery failed', {
          channel,
          kind: message.kind,
          secretId: message.secretId,
          code: safe.code,
          error: safe.message,
          ...(typeof status === 'number' ? { status } : {}),
        });
      } finally {
        this.#pending.set(channel, (this.#pending.get(channel) ?? 1) - 1);
      }
    });
    this.#tails.set(channel, tail);
  }
}
