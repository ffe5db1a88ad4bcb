import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdir, mkdtemp, readdir, rm, rmdir, stat, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { acquireDirLock } from '#adapters/locks/dir-lock.ts';

describe('acquireDirLock', () => {
  let dir: string;
  let lockPath: string;
  const options = { stale: 5_000, update: 1_000 };
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rekey-dir-lock-'));
    lockPath = join(dir, 'file.lock');
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('creates the lock directory, refuses a second holder with ELOCKED, and removes it on release', async () => {
    const release = await acquireDirLock(lockPath, options);
    expect(await readdir(dir)).toEqual(['file.lock']);
    await expect(acquireDirLock(lockPath, options)).rejects.toMatchObject({ code: 'ELOCKED' });
    await release();
    const again = await acquireDirLock(lockPath, options); // at once: the release removed the directory
    await again();
    await acquireDirLock(lockPath, options).then((r) => r());
  });

  it('waits for a holder with retries, and gets the lock once it is released', async () => {
    const release = await acquireDirLock(lockPath, options);
    let acquired = false;
    const waiting = acquireDirLock(lockPath, { ...options, retries: { retries: 1_000, minTimeout: 1, maxTimeout: 5, factor: 1.2 } }).then((r) => {
      acquired = true;
      return r;
    });
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(acquired).toBe(false);
    await release();
    await (await waiting)();
    expect(acquired).toBe(true);
  });

  it('takes over a lock whose mtime is older than the stale threshold (a dead holder), and not a fresh one', async () => {
    await mkdir(lockPath);
    await expect(acquireDirLock(lockPath, options)).rejects.toMatchObject({ code: 'ELOCKED' });
    const old = new Date(Date.now() - 60_000);
    await utimes(lockPath, old, old);
    const release = await acquireDirLock(lockPath, options);
    await expect(acquireDirLock(lockPath, options)).rejects.toMatchObject({ code: 'ELOCKED' });
    await release();
  });

  it('reports the lock compromised when its directory disappears while held', async () => {
    let compromised: (error: Error) => void = () => {};
    const lost = new Promise<Error>((resolve) => (compromised = resolve));
    const release = await acquireDirLock(lockPath, { stale: 2_000, update: 20, onCompromised: (error) => compromised(error) });
    await rmdir(lockPath);
    expect(await lost).toMatchObject({ code: 'ECOMPROMISED' });
    await release(); // harmless: the lock is no longer this holder's
    const next = await acquireDirLock(lockPath, options);
    await next();
  });

  it('keeps a held lock fresh: its mtime moves forward while held', async () => {
    const old = new Date(Date.now() - 60_000);
    const release = await acquireDirLock(lockPath, { stale: 2_000, update: 20 });
    await utimes(lockPath, old, old).catch(() => {});
    // The first refresh does not compare (nobody could have taken a lock younger than `stale`);
    // it writes a fresh mtime, which the next refreshes then expect.
    for (let i = 0; i < 200 && (await stat(lockPath)).mtimeMs < Date.now() - 30_000; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    expect((await stat(lockPath)).mtimeMs).toBeGreaterThan(old.getTime());
    await release();
  });
});
