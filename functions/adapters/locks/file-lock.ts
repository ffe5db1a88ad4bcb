import { createHash } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import lockfile from 'proper-lockfile';
import type { SecretLock } from '#core/ports/lock.ts';

/**
 * A rotation holds its lock for seconds (database round trips, login retries with backoff); the
 * holder refreshes the lock's mtime every `updateMs`. A lock not refreshed for `staleMs` belongs to
 * a killed process and is taken over. 20 s / 5 s: a crashed rotation blocks the next one for at
 * most 20 s (schedule ticks are minutes apart), while a live holder would have to miss three
 * refreshes in a row — a 15 s stalled event loop — before anyone could take its lock.
 */
export const ROTATION_LOCK_STALE_MS = 20_000;
export const ROTATION_LOCK_UPDATE_MS = 5_000;

export interface FileSecretLockOptions {
  /** The store directory; locks live in `<dir>/locks/<sha256(secretId)>.lock`. */
  dir: string;
  /** proper-lockfile enforces at least 2000 ms. */
  staleMs?: number;
  /** At most staleMs / 2 and at least 1000 ms (proper-lockfile clamps it). */
  updateMs?: number;
}

/**
 * One secret's rotation lock across processes: a directory created with mkdir(2) (atomic),
 * refreshed while held, removed when `fn` settles. Non-blocking: a held lock answers
 * `{ acquired: false }` at once. Within one process, a second `tryWithLock` on the same secret is
 * refused the same way.
 *
 * If the holder stalls past `staleMs`, another process may take the lock over while `fn` still
 * runs; `fn` cannot be stopped from outside, so its result stands. Rotation steps are idempotent
 * by version id and every store write takes the store's own lock, so the overlap is safe.
 */
export class FileSecretLock implements SecretLock {
  readonly #root: string;
  readonly #staleMs: number;
  readonly #updateMs: number;
  #ready?: Promise<unknown>;

  constructor(options: FileSecretLockOptions) {
    this.#root = join(resolve(options.dir), 'locks');
    this.#staleMs = options.staleMs ?? ROTATION_LOCK_STALE_MS;
    this.#updateMs = options.updateMs ?? Math.min(ROTATION_LOCK_UPDATE_MS, this.#staleMs / 2);
  }

  async tryWithLock<T>(secretId: string, fn: () => Promise<T>): Promise<{ acquired: true; value: T } | { acquired: false }> {
    this.#ready ??= mkdir(this.#root, { recursive: true, mode: 0o700 }).catch((error: unknown) => {
      this.#ready = undefined;
      throw error;
    });
    await this.#ready;
    const name = createHash('sha256').update(secretId, 'utf8').digest('hex');
    let release: () => Promise<void>;
    try {
      release = await lockfile.lock(join(this.#root, name), {
        lockfilePath: join(this.#root, `${name}.lock`),
        realpath: false,
        retries: 0,
        stale: this.#staleMs,
        update: this.#updateMs,
        // The default throws from a timer and kills the process; the overlap is tolerable (see above).
        onCompromised: () => {},
      });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ELOCKED') return { acquired: false };
      throw error;
    }
    try {
      return { acquired: true, value: await fn() };
    } finally {
      await release().catch(() => {}); // a lock taken over has nothing left to release
    }
  }
}
