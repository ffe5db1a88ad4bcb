import { stat, utimes } from 'node:fs/promises';
import { mkdirSync, rmdirSync, statSync } from 'node:fs';

/**
 * A cross-process lock as a directory, `<path>` created with mkdir(2) (atomic: one creator wins),
 * kept fresh by its holder (mtime refreshed every `update` ms) and taken over by anyone once its
 * mtime is older than `stale` ms (its holder died). The same protocol as proper-lockfile, so
 * processes using either respect each other's locks.
 *
 * Why not proper-lockfile for the store's short locks: it stats the lock after creating it, and
 * its mkdir, stat and rmdir each go through libuv's pool — on a small busy machine 60–240 µs of CPU
 * and a scheduling delay each, where the system call itself takes 10–40 µs — and a rotation takes
 * such a lock five times. Here taking and releasing a lock are one synchronous mkdir(2) and one
 * rmdir(2) (metadata only, nothing waits for the disk); only the refresh, once per `update` ms of a
 * lock held that long, runs asynchronously.
 */
export interface DirLockOptions {
  /** A lock whose mtime is older than this (ms) is taken over. */
  stale: number;
  /** How often (ms) the holder refreshes the mtime; at most stale / 2. */
  update: number;
  /** Tries after the first while the lock is held by someone else (exponential backoff); none by default. */
  retries?: { retries: number; minTimeout: number; maxTimeout: number; factor: number; randomize?: boolean };
  /** Called (once) when the lock was lost while held: removed, taken over, or not refreshed in time. */
  onCompromised?: (error: Error) => void;
}

/** Releases the lock (removes its directory). */
export type ReleaseLock = () => Promise<void>;

/** Locks this process holds, removed if it exits while holding them. */
const held = new Set<string>();
let exitHook = false;

export async function acquireDirLock(path: string, options: DirLockOptions): Promise<ReleaseLock> {
  const retries = options.retries;
  for (let attempt = 0; ; attempt++) {
    if (tryCreate(path, options.stale)) return holding(path, options);
    if (!retries || attempt >= retries.retries) {
      throw Object.assign(new Error(`lock ${path} is already being held`), { code: 'ELOCKED', file: path });
    }
    const delay = Math.min(retries.maxTimeout, retries.minTimeout * retries.factor ** attempt) * (retries.randomize ? 1 + Math.random() : 1);
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
}

function tryCreate(path: string, staleMs: number): boolean {
  if (created(path)) return true;
  const info = statSync(path, { throwIfNoEntry: false });
  // Released between the mkdir and the stat: try once more, without a stale check.
  if (!info) return created(path);
  if (info.mtimeMs >= Date.now() - staleMs) return false;
  // Its holder stopped refreshing it: take it over.
  try {
    rmdirSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  return created(path);
}

function created(path: string): boolean {
  try {
    mkdirSync(path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
}

function holding(path: string, options: DirLockOptions): ReleaseLock {
  held.add(path);
  if (!exitHook) {
    exitHook = true;
    process.once('exit', () => {
      for (const lock of held) {
        try {
          rmdirSync(lock);
        } catch {
          // already gone
        }
      }
    });
  }
  let released = false;
  let compromised = false;
  let lastUpdate = Date.now();
  // The mtime this holder expects to find on each refresh, from the refresh before. None before
  // the first: until `stale` ms have passed since the mkdir nobody may take the lock over, and a
  // holder that let that much time pass is compromised by the check below, not by the mtime.
  let expected: Promise<number | undefined> | undefined;
  const lose = (why: string) => {
    if (compromised || released) return;
    compromised = true;
    held.delete(path);
    options.onCompromised?.(Object.assign(new Error(`lock ${path} was compromised: ${why}`), { code: 'ECOMPROMISED' }));
  };
  let timer: NodeJS.Timeout | undefined;
  const refresh = async () => {
    timer = undefined;
    if (released || compromised) return;
    if (Date.now() - lastUpdate > options.stale) return lose('it was not refreshed within the stale threshold');
    const mine = expected ? await expected : undefined;
    let now: number | undefined;
    try {
      now = (await stat(path)).mtimeMs;
    } catch {
      now = undefined;
    }
    if (released || compromised) return;
    if (now === undefined || (expected && (mine === undefined || now !== mine))) return lose('it was removed or taken over');
    const at = new Date();
    try {
      await utimes(path, at, at);
      lastUpdate = Date.now();
      expected = stat(path).then(
        (info) => info.mtimeMs,
        () => undefined,
      );
    } catch {
      // Retried at the next refresh; `stale` without one compromises the lock.
    }
    schedule();
  };
  const schedule = () => {
    if (released || compromised) return;
    timer = setTimeout(() => void refresh(), options.update);
    timer.unref();
  };
  schedule();
  return async () => {
    if (released) return;
    released = true;
    if (timer) clearTimeout(timer);
    if (compromised) return; // someone else's now
    held.delete(path);
    try {
      rmdirSync(path);
    } catch {
      // already gone (taken over after a stall): nothing of ours to remove
    }
  };
}
