import type { LeakTask } from '../remediation.ts';

/**
 * Between the webhook (which must answer fast) and the worker. SQS on AWS, in-process locally.
 * Tasks hold fingerprints, never a leaked value.
 */
export interface LeakQueue {
  enqueue(tasks: LeakTask[]): Promise<void>;
}

/**
 * Remembers delivery ids so a replayed delivery is refused (409). Contract: `claim` returns true
 * the first time an id is seen within `ttlMs`, false after; after `release` it is new again.
 */
export interface DeliveryLog {
  claim(source: string, deliveryId: string, ttlMs: number): Promise<boolean>;
  /** Forgets a claim whose delivery could not be queued, so the scanner's retry is not a 409. */
  release(source: string, deliveryId: string): Promise<void>;
}
