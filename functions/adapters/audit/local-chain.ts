import { mkdir, open, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import lockfile from 'proper-lockfile';
import { RekeyError } from '#core/errors.ts';
import { chain, parseRecord, verifyChain, type AuditEntry, type AuditRecord, type ChainCheck } from '#core/audit.ts';
import type { AuditLog } from '#core/ports/audit-log.ts';

/** How much of the file's end is read to find the last record (records are a few hundred bytes). */
const TAIL_BYTES = 64 * 1024;

/**
 * The laptop's audit trail: `<dir>/audit.jsonl`, one JSON record per line, each chained to the one
 * before by hash. Appends take a cross-process lock (proper-lockfile) so the CLI, `rekey serve` and
 * a second terminal can write at once and still leave one chain; within a process they queue.
 * The file is only ever appended to (mode 0600).
 */
export class LocalChainAuditLog implements AuditLog {
  readonly kind = 'local-chain';
  readonly file: string;
  readonly #dir: string;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(options: { dir: string }) {
    this.#dir = options.dir;
    this.file = join(options.dir, 'audit.jsonl');
  }

  append(entry: AuditEntry): Promise<AuditRecord> {
    const next = this.#queue.then(() => this.#appendLocked(entry));
    this.#queue = next.catch(() => {});
    return next;
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

  async #appendLocked(entry: AuditEntry): Promise<AuditRecord> {
    let release: (() => Promise<void>) | undefined;
    try {
      await mkdir(this.#dir, { recursive: true, mode: 0o700 });
      // proper-lockfile locks an existing path: create the file empty once (never truncate it).
      await writeFile(this.file, '', { flag: 'a', mode: 0o600 });
      release = await lockfile.lock(this.file, {
        realpath: false,
        stale: 10_000,
        retries: { retries: 200, factor: 1.2, minTimeout: 5, maxTimeout: 100, randomize: true },
        // A lock lost while held (a very slow disk) must not crash the process from a timer.
        onCompromised: () => {},
      });
      const previous = await this.#lastRecord();
      const record = chain(entry, previous);
      const handle = await open(this.file, 'a', 0o600);
      try {
        await handle.write(`${JSON.stringify(record)}\n`);
        await handle.datasync();
      } finally {
        await handle.close();
      }
      return record;
    } catch (error) {
      if (error instanceof RekeyError) throw error;
      throw failure('append to', error);
    } finally {
      await release?.().catch(() => {});
    }
  }

  /** The last record, read from the end of the file (the trail only grows). */
  async #lastRecord(): Promise<AuditRecord | undefined> {
    const { size } = await stat(this.file);
    if (size === 0) return undefined;
    const length = Math.min(size, TAIL_BYTES);
    const handle = await open(this.file, 'r');
    let tail: string;
    try {
      const buffer = Buffer.alloc(length);
      await handle.read(buffer, 0, length, size - length);
      tail = buffer.toString('utf8');
    } finally {
      await handle.close();
    }
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
