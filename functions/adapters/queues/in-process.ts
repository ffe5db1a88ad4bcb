import type { LeakQueue } from '#core/ports/leak-queue.ts';
import type { LeakTask, RemediationResult } from '#core/remediation.ts';

/**
 * The laptop's queue: tasks wait in memory and a single worker drains them. Everything that
 * arrived while the worker was busy is worked as one burst, highest risk first.
 */
export class InProcessLeakQueue implements LeakQueue {
  #pending: LeakTask[] = [];
  #draining: Promise<void> | undefined;
  readonly results: RemediationResult[] = [];

  constructor(
    private readonly work: (tasks: LeakTask[]) => Promise<RemediationResult[]>,
    private readonly onResult: (result: RemediationResult) => void = () => {},
    private readonly onError: (error: unknown) => void = () => {},
  ) {}

  async enqueue(tasks: LeakTask[]): Promise<void> {
    this.#pending.push(...tasks);
    this.#draining ??= this.drain();
  }

  /** Resolves when every queued task has been worked. */
  async idle(): Promise<void> {
    while (this.#draining) await this.#draining;
  }

  private async drain(): Promise<void> {
    // Let the deliveries that are arriving together land before the first burst is sorted.
    await new Promise((resolve) => setImmediate(resolve));
    try {
      while (this.#pending.length) {
        const burst = this.#pending;
        this.#pending = [];
        try {
          for (const result of await this.work(burst)) {
            this.results.push(result);
            this.onResult(result);
          }
        } catch (error) {
          this.onError(error);
        }
      }
    } finally {
      this.#draining = undefined;
    }
  }
}
