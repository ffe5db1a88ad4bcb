import type { LeakQueue } from '#core/ports/leak-queue.ts';
import type { BurstOptions, LeakTask, RemediationResult } from '#core/remediation.ts';

export interface InProcessLeakQueueOptions {
  /** Works a burst; `burst.more` hands over what arrived meanwhile, `burst.onResult` reports each leak as it is done. */
  work: (tasks: LeakTask[], burst: Pick<BurstOptions, 'more' | 'onResult'>) => Promise<RemediationResult[]>;
  onResult?: (result: RemediationResult) => void;
  onError?: (error: unknown) => void;
  /** Delays before working a task again whose remediation failed with a retryable error (SQS's redelivery, locally). */
  retryDelaysMs?: number[];
}

const key = (deliveryId: string, sourceId: string) => `${deliveryId}\u0000${sourceId}`;

/**
 * The laptop's queue: tasks wait in memory and a single worker drains them. A task that arrives
 * while the worker is busy joins the running burst and is ranked with what is left, so the next
 * leak worked is always the riskiest one known. A retryable failure is worked again after a delay.
 */
export class InProcessLeakQueue implements LeakQueue {
  #pending: LeakTask[] = [];
  #draining: Promise<void> | undefined;
  readonly #inFlight = new Map<string, LeakTask>();
  readonly #attempts = new WeakMap<LeakTask, number>();
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #options: Required<Omit<InProcessLeakQueueOptions, 'onResult' | 'onError'>> & Pick<InProcessLeakQueueOptions, 'onResult' | 'onError'>;
  readonly results: RemediationResult[] = [];

  constructor(options: InProcessLeakQueueOptions) {
    this.#options = { retryDelaysMs: [1_000, 5_000, 30_000], ...options };
  }

  async enqueue(tasks: LeakTask[]): Promise<void> {
    this.#pending.push(...tasks);
    this.#draining ??= this.#drain();
  }

  /** Resolves when every queued task has been worked, retries included. */
  async idle(): Promise<void> {
    while (this.#draining || this.#timers.size) {
      if (this.#draining) await this.#draining;
      else await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  /** Drops scheduled retries (shutdown). */
  stop(): void {
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
  }

  #take(): LeakTask[] {
    const taken = this.#pending;
    this.#pending = [];
    for (const task of taken) this.#inFlight.set(key(task.deliveryId, task.report.sourceId), task);
    return taken;
  }

  #done(result: RemediationResult): void {
    this.results.push(result);
    try {
      this.#options.onResult?.(result);
    } catch (error) {
      this.#options.onError?.(error);
    }
    for (const ref of result.tasks) {
      const task = this.#inFlight.get(key(ref.deliveryId, ref.sourceId));
      this.#inFlight.delete(key(ref.deliveryId, ref.sourceId));
      if (!task || !result.error?.retryable) continue;
      const attempt = (this.#attempts.get(task) ?? 0) + 1;
      const delay = this.#options.retryDelaysMs[attempt - 1];
      if (delay === undefined) continue;
      this.#attempts.set(task, attempt);
      const timer = setTimeout(() => {
        this.#timers.delete(timer);
        void this.enqueue([task]);
      }, delay);
      timer.unref();
      this.#timers.add(timer);
    }
  }

  async #drain(): Promise<void> {
    // Let the deliveries that are arriving together land before the first burst is ranked.
    await new Promise((resolve) => setImmediate(resolve));
    try {
      while (this.#pending.length) {
        try {
          await this.#options.work(this.#take(), { more: () => this.#take(), onResult: (result) => this.#done(result) });
        } catch (error) {
          this.#options.onError?.(error);
        }
      }
    } finally {
      this.#draining = undefined;
    }
  }
}
