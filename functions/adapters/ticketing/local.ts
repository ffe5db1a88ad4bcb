import { mkdir, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import lockfile from 'proper-lockfile';
import writeFileAtomic from 'write-file-atomic';
import { RekeyError, isRekeyError } from '#core/errors.ts';
import type { Priority, Ticket, TicketDraft, TicketSystem } from '#core/ports/tickets.ts';
import { redactCause } from '#core/redact.ts';
import { PRIORITY_LABEL, clampScore, compareTickets, titleOf, validateDraft, labelsOf } from './common.ts';

interface StoredTicket {
  key: string;
  id: string;
  title: string;
  body: string;
  priority: Priority;
  score: number;
  labels: string[];
  assignee?: string;
  state: 'open' | 'closed';
  createdAt: string;
  updatedAt: string;
  /** Notes added by re-deliveries of a leak already dealt with (`ifExists: 'note'`), oldest first. */
  notes?: { at: string; text: string }[];
}

interface TicketFile {
  version: 1;
  nextId: number;
  tickets: StoredTicket[];
}

const EMPTY: TicketFile = { version: 1, nextId: 1, tickets: [] };

/**
 * Tickets in one JSON file in the store directory (`<dir>/tickets.json`), for a laptop without
 * GitHub. Writers take a lock (a re-delivery processed twice at once still finds one entry) and
 * replace the file atomically, so readers never see half a file and need no lock.
 */
export class LocalFileTickets implements TicketSystem {
  readonly kind = 'local-file';
  readonly #file: string;
  readonly #now: () => Date;

  constructor(options: { file: string; now?: () => Date }) {
    this.#file = options.file;
    this.#now = options.now ?? (() => new Date());
  }

  async upsert(draft: TicketDraft): Promise<{ ticket: Ticket; created: boolean }> {
    validateDraft(draft);
    try {
      return await this.#locked(async () => {
        const data = await this.#read();
        const now = this.#now().toISOString();
        const fields = {
          title: titleOf(draft),
          body: draft.body,
          priority: draft.priority,
          score: clampScore(draft.score),
          labels: labelsOf(draft),
          ...(draft.assignee ? { assignee: draft.assignee } : {}),
        };
        const index = data.tickets.findIndex((t) => t.key === draft.key);
        const existing = data.tickets[index];
        let stored: StoredTicket;
        if (existing && draft.ifExists === 'note') {
          // Already dealt with: the ticket keeps its history, priority and state; the note is added.
          const labels = [...new Set([...existing.labels, ...fields.labels.filter((l) => !PRIORITY_LABEL.test(l))])];
          stored = { ...existing, labels, notes: [...(existing.notes ?? []), { at: now, text: draft.note ?? draft.body }], updatedAt: now };
          data.tickets[index] = stored;
        } else if (existing) {
          // A re-delivery means the value leaked again: a closed ticket opens again.
          stored = { ...existing, ...fields, state: 'open', updatedAt: now };
          data.tickets[index] = stored;
        } else {
          stored = { key: draft.key, id: `local-${data.nextId}`, ...fields, state: 'open', createdAt: now, updatedAt: now };
          data.tickets.push(stored);
          data.nextId += 1;
        }
        await writeFileAtomic(this.#file, `${JSON.stringify(data, null, 2)}\n`, { mode: 0o600 });
        return { ticket: toTicket(stored), created: !existing };
      });
    } catch (error) {
      throw this.#failure('open or update the ticket in', error, [draft.body, draft.title, ...(draft.note ? [draft.note] : [])]);
    }
  }

  async list(): Promise<Ticket[]> {
    try {
      const data = await this.#read();
      return data.tickets.filter((t) => t.state === 'open').map(toTicket).sort(compareTickets);
    } catch (error) {
      throw this.#failure('list the tickets in', error, []);
    }
  }

  async #read(): Promise<TicketFile> {
    let text: string;
    try {
      text = await readFile(this.#file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return structuredClone(EMPTY);
      throw error;
    }
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch {
      data = undefined;
    }
    // Refuse rather than start over: overwriting a damaged file would lose every ticket in it.
    if (!isTicketFile(data)) throw new RekeyError('TICKET_FAILED', `the ticket file ${this.#file} is not a rekey ticket file`);
    return data;
  }

  async #locked<T>(work: () => Promise<T>): Promise<T> {
    await mkdir(dirname(this.#file), { recursive: true, mode: 0o700 });
    // realpath false: the file need not exist yet; the lock is a sibling `<file>.lock` directory.
    const release = await lockfile.lock(this.#file, { realpath: false, stale: 10_000, retries: { retries: 100, minTimeout: 5, maxTimeout: 100 } });
    try {
      return await work();
    } finally {
      await release();
    }
  }

  #failure(what: string, error: unknown, scrubbed: string[]): RekeyError {
    if (isRekeyError(error) && error.code === 'TICKET_FAILED') return error;
    const code = (error as { code?: unknown } | undefined)?.code;
    return new RekeyError('TICKET_FAILED', `could not ${what} ${this.#file}${typeof code === 'string' ? ` (${code})` : ''}`, {
      retryable: code === 'ELOCKED',
      cause: redactCause(error, scrubbed),
    });
  }
}

function toTicket(stored: StoredTicket): Ticket {
  return {
    key: stored.key,
    id: stored.id,
    title: stored.title,
    priority: stored.priority,
    score: stored.score,
    state: stored.state,
    createdAt: new Date(stored.createdAt),
    updatedAt: new Date(stored.updatedAt),
  };
}

function isTicketFile(value: unknown): value is TicketFile {
  if (typeof value !== 'object' || value === null) return false;
  const file = value as Partial<TicketFile>;
  return file.version === 1 && typeof file.nextId === 'number' && Array.isArray(file.tickets);
}
