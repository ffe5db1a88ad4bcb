import * as fsCallbacks from 'node:fs';
import { statSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { acquireDirLock } from '#adapters/locks/dir-lock.ts';
import { RekeyError } from '#core/errors.ts';
import { chain, parseRecord, verifyChain, type AuditEntry, type AuditRecord, type ChainCheck } from '#core/audit.ts';
import type { AuditLog } from '#core/ports/audit-log.ts';

/** How much of the file's end is read to find the last record (records are a few hundred bytes). */
const TAIL_BYTES = 64 * 1024;

/** A descriptor unused this long is closed (the next append opens the trail again). */
const IDLE_CLOSE_MS = 2_000;

/** Records written under one lock and one fsync at most (a burst of events from concurrent rotations). */
const MAX_GROUP = 256;

interface Waiting {
  entry: AuditEntry;
  resolve: (record: AuditRecord) => void;
  reject: (error: unknown) => void;
}

/**
 * The laptop's audit trail: `<dir>/audit.jsonl`, one JSON record per line, each chained to the one
 * before by hash. Appends take a cross-process lock (locks/dir-lock.ts) so the CLI, `rekey serve` and
 * a second terminal can write at once and still leave one chain; within a process they queue, and
 * the records that queued while the previous write was on disk go together: one lock, one write,
 * one fdatasync for the group (group commit), each append resolving once its record is durable.
 * The file is only ever appended to (mode 0600).
 */
export class LocalChainAuditLog implements AuditLog {
  readonly kind = 'local-chain';
  readonly file: string;
  readonly #dir: string;
  #waiting: Waiting[] = [];
  #writing: Promise<void> | undefined;
  #ready?: Promise<void>;
  /**
   * The end of the file as this process last left it: its inode, size and last record. When the
   * file still has that inode and size under the lock, nobody appended since (the file only grows),
   * so the last record is known without reading the file's tail.
   */
  #tail?: { ino: number; size: number; record: AuditRecord };
  /** The trail's descriptor (O_APPEND), kept between appends: an open and a close fewer each time. */
  #open?: { fd: number; ino: number };
  #idle?: NodeJS.Timeout;

  constructor(options: { dir: string }) {
    this.#dir = options.dir;
    this.file = join(options.dir, 'audit.jsonl');
  }

  append(entry: AuditEntry): Promise<AuditRecord> {
    return new Promise<AuditRecord>((resolve, reject) => {
      this.#waiting.push({ entry, resolve, reject });
      this.#writing ??= this.#drain();
    });
  }

  async read(filter: { secretId?: string; since?: Date } = {}): Promise<AuditRecord[]> {
    const since = filter.since?.getTime();
    const records: AuditRecord[] = [];
    for (const line of await this.#lines()) {
      const record = parseRecord(line);
      if (typeof record === 'string') continue; // `verify` reports broken lines; reading shows what can be read
      if (filter.secretId !== undefined && record.secretId !== filter.secretId) continue;
      if (since !== undefined && Date.parse(record.time) < since) continue;
      records.push(record);
    }
    return records;
  }

  async verify(): Promise<ChainCheck> {
    return verifyChain(await this.#lines());
  }

  async #lines(): Promise<string[]> {
    try {
      const text = await readFile(this.file, 'utf8');
      return text === '' ? [] : text.split('\n');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw failure('read', error);
    }
  }

  async #drain(): Promise<void> {
    try {
      while (this.#waiting.length) {
        const group = this.#waiting.splice(0, MAX_GROUP);
        try {
          const records = await this.#appendGroup(group.map((w) => w.entry));
          group.forEach((w, i) => w.resolve(records[i]!));
        } catch (error) {
          for (const w of group) w.reject(error);
        }
      }
    } finally {
      this.#writing = undefined;
    }
  }

  async #appendGroup(entries: AuditEntry[]): Promise<AuditRecord[]> {
    let release: (() => Promise<void>) | undefined;
    if (this.#idle) clearTimeout(this.#idle);
    try {
      this.#ready ??= mkdir(this.#dir, { recursive: true, mode: 0o700 }).then(
        () => undefined,
        (error: unknown) => {
          this.#ready = undefined;
          throw error;
        },
      );
      await this.#ready;
      // The directory `<file>.lock` (as proper-lockfile named it, so older processes respect it).
      release = await acquireDirLock(`${this.file}.lock`, {
        stale: 10_000,
        update: 5_000,
        retries: { retries: 200, factor: 1.2, minTimeout: 5, maxTimeout: 100, randomize: true },
      });
      // Under the lock nobody appends: the path's size now is where this group's records start.
      const info = statSync(this.file, { throwIfNoEntry: false });
      if (!this.#open || !info || info.ino !== this.#open.ino) {
        // First append, or the trail was moved aside or replaced: (re)open the file at that path.
        this.#close();
        // Read and append through one descriptor: created 0600 when missing, never truncated.
        const fd = fsCallbacks.openSync(this.file, 'a+', 0o600);
        this.#open = { fd, ino: fsCallbacks.fstatSync(fd).ino };
      }
      const fd = this.#open.fd;
      const size = info && info.ino === this.#open.ino ? info.size : fsCallbacks.fstatSync(fd).size;
      const known = this.#tail && this.#tail.ino === this.#open.ino && this.#tail.size === size ? this.#tail.record : undefined;
      let previous = known ?? (await this.#lastRecord(fd, size));
      const records = entries.map((entry) => (previous = chain(entry, previous)));
      const bytes = Buffer.from(records.map((record) => `${JSON.stringify(record)}\n`).join(''), 'utf8');
      this.#tail = undefined; // until the write is known to be complete
      // Into the page cache at once (O_APPEND, microseconds); only the fdatasync waits for the disk.
      let written = 0;
      while (written < bytes.length) written += fsCallbacks.writeSync(fd, bytes, written, bytes.length - written);
      await fdatasyncAsync(fd);
      this.#tail = { ino: this.#open.ino, size: size + bytes.length, record: records.at(-1)! };
      return records;
    } catch (error) {
      this.#close(); // start from the path again next time
      if (error instanceof RekeyError) throw error;
      throw failure('append to', error);
    } finally {
      await release?.().catch(() => {});
      // The descriptor is kept while appends keep coming, and closed once they stop.
      this.#idle = setTimeout(() => this.#close(), IDLE_CLOSE_MS);
      this.#idle.unref();
    }
  }

  #close(): void {
    if (this.#idle) clearTimeout(this.#idle);
    this.#idle = undefined;
    if (!this.#open) return;
    fsCallbacks.close(this.#open.fd, () => {});
    this.#open = undefined;
  }

  /** The last record, read from the end of the file (the trail only grows). */
  async #lastRecord(fd: number, size: number): Promise<AuditRecord | undefined> {
    if (size === 0) return undefined;
    const length = Math.min(size, TAIL_BYTES);
    const buffer = Buffer.alloc(length);
    await readAsync(fd, buffer, 0, length, size - length);
    const tail = buffer.toString('utf8');
    if (!tail.endsWith('\n')) throw new RekeyError('AUDIT_BROKEN', `the audit trail ${this.file} ends with a partial record: run \`rekey audit --verify\``);
    const lines = tail.slice(0, -1).split('\n');
    const last = lines.at(-1)!;
    if (lines.length === 1 && length < size) {
      // One record longer than the tail window: read the whole file rather than guess.
      const all = (await readFile(this.file, 'utf8')).trimEnd().split('\n');
      return asRecord(all.at(-1)!, this.file);
    }
    return asRecord(last, this.file);
  }
}

const readAsync = promisify(fsCallbacks.read);
const fdatasyncAsync = promisify(fsCallbacks.fdatasync);

function asRecord(line: string, file: string): AuditRecord {
  const record = parseRecord(line);
  if (typeof record === 'string') throw new RekeyError('AUDIT_BROKEN', `the last line of the audit trail ${file} is ${record}: run \`rekey audit --verify\``);
  return record;
}

/** Names the operation and the errno code; the path is rekey's own file, never a value. */
function failure(what: string, error: unknown): RekeyError {
  const code = (error as NodeJS.ErrnoException).code ?? 'unknown';
  return new RekeyError('AUDIT_WRITE_FAILED', `could not ${what} the audit trail (${code})`, { retryable: true });
}
