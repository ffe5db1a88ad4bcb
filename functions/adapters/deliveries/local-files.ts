import { createHash } from 'node:crypto';
import { mkdir, open, rm, stat, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import type { DeliveryLog } from '#core/ports/leak-queue.ts';

/** Seen delivery ids as empty files created exclusively: safe across processes, no lock needed. */
export class LocalDeliveryLog implements DeliveryLog {
  private readonly root: string;

  constructor(options: { dir: string }) {
    this.root = join(options.dir, 'deliveries');
  }

  async release(source: string, deliveryId: string): Promise<void> {
    await rm(this.#path(source, deliveryId), { force: true });
  }

  #path(source: string, deliveryId: string): string {
    return join(this.root, createHash('sha256').update(`${source}\u0000${deliveryId}`).digest('hex'));
  }

  async claim(source: string, deliveryId: string, ttlMs: number): Promise<boolean> {
    await mkdir(this.root, { recursive: true, mode: 0o700 });
    const path = this.#path(source, deliveryId);
    try {
      await (await open(path, 'wx', 0o600)).close();
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const seen = await stat(path);
      if (Date.now() - seen.mtimeMs < ttlMs) return false;
      const now = new Date();
      await utimes(path, now, now); // an id older than the window counts as new
      return true;
    }
  }
}
