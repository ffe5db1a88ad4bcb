import { PutEventsCommand, type EventBridgeClient, type PutEventsRequestEntry } from '@aws-sdk/client-eventbridge';
import type { RekeyEvent } from '#core/events.ts';
import type { EventBus } from '#core/ports/event-bus.ts';
import { RekeyError, ValidationError } from '#core/errors.ts';
import { redactCause } from '#core/redact.ts';

/** PutEvents limits: 10 entries per call, 256 KB per entry and per call (counted as AWS counts). */
export const MAX_ENTRIES_PER_CALL = 10;
export const MAX_EVENT_BYTES = 256 * 1024;
/** AWS counts a set Time as 14 bytes. */
const TIME_BYTES = 14;

const RETRYABLE_NAMES = new Set(['ThrottlingException', 'InternalException', 'InternalFailure', 'ServiceUnavailable', 'TimeoutError', 'RequestTimeout']);
const RETRYABLE_NETWORK_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN']);

interface PendingEntry {
  /** Position in the publish call, to keep order and count failures. */
  index: number;
  entry: PutEventsRequestEntry;
  bytes: number;
}

export interface EventBridgeBusOptions {
  client: EventBridgeClient;
  eventBusName: string;
  /** Sends of a batch, first one included, before its failed entries count as failed (default 4). */
  maxAttempts?: number;
  /** Backoff before retry n is up to base × 2^(n-1) ms, full jitter (default 100). */
  retryBaseDelayMs?: number;
}

/**
 * rekey's events on an EventBridge bus. PutEvents accepts a call and still refuses some of its
 * entries (FailedEntryCount, a per-entry ErrorCode), so each batch is checked entry by entry and
 * only the refused entries are sent again, with backoff. Batches go one after another, so events
 * of one `publish` arrive in order as far as EventBridge keeps it. Error messages count events and
 * name error codes; they never carry a detail.
 */
export class EventBridgeBus implements EventBus {
  readonly #client: EventBridgeClient;
  readonly #eventBusName: string;
  readonly #maxAttempts: number;
  readonly #retryBaseDelayMs: number;

  constructor(options: EventBridgeBusOptions) {
    this.#client = options.client;
    this.#eventBusName = options.eventBusName;
    this.#maxAttempts = Math.max(1, options.maxAttempts ?? 4);
    this.#retryBaseDelayMs = Math.max(0, options.retryBaseDelayMs ?? 100);
  }

  async publish(events: RekeyEvent[]): Promise<void> {
    if (events.length === 0) return;
    // Every entry is checked before the first is sent: an oversized event fails the call whole.
    const entries = events.map((event, index) => this.#entry(event, index));
    let failed = 0;
    const codes = new Set<string>();
    const batches = toBatches(entries);
    for (const [at, batch] of batches.entries()) {
      let outcome: { failed: PendingEntry[]; codes: string[] };
      try {
        outcome = await this.#sendWithRetries(batch);
      } catch (error) {
        // The call itself was refused (access, missing bus, validation): nothing later will fare better.
        const unsent = batches.slice(at).reduce((sum, b) => sum + b.length, 0) + failed;
        const name = errorName(error);
        throw new RekeyError(
          'EVENTS_NOT_PUBLISHED',
          `${unsent} of ${events.length} events were not published to event bus ${this.#eventBusName} (${name})`,
          { retryable: isRetryable(error, name), cause: redactCause(error, []) },
        );
      }
      failed += outcome.failed.length;
      for (const code of outcome.codes) codes.add(code);
    }
    if (failed > 0) {
      throw new RekeyError(
        'EVENTS_NOT_PUBLISHED',
        `${failed} of ${events.length} events were refused by event bus ${this.#eventBusName} after ${this.#maxAttempts} attempts (${[...codes].join(', ') || 'no error code'})`,
        { retryable: true },
      );
    }
  }

  #entry(event: RekeyEvent, index: number): PendingEntry {
    const entry: PutEventsRequestEntry = {
      Source: event.source,
      DetailType: event.detailType,
      // The detail goes as the core built it; the core never puts a value in one (events.ts).
      Detail: JSON.stringify(event.detail),
      Time: event.time,
      EventBusName: this.#eventBusName,
    };
    const bytes = Buffer.byteLength(entry.Source!) + Buffer.byteLength(entry.DetailType!) + Buffer.byteLength(entry.Detail!) + TIME_BYTES;
    if (bytes > MAX_EVENT_BYTES) {
      throw new ValidationError(
        `event ${index + 1} of ${event.detailType} for ${event.detail.secretId} is ${bytes} bytes; EventBridge accepts at most ${MAX_EVENT_BYTES}`,
        'EVENT_TOO_LARGE',
      );
    }
    return { index, entry, bytes };
  }

  /** Sends one batch; resends only refused entries, with backoff. Returns what is still refused. */
  async #sendWithRetries(batch: PendingEntry[]): Promise<{ failed: PendingEntry[]; codes: string[] }> {
    let pending = batch;
    let codes: string[] = [];
    for (let attempt = 1; ; attempt++) {
      let refused: { entry: PendingEntry; code: string }[];
      try {
        const out = await this.#client.send(new PutEventsCommand({ Entries: pending.map((p) => p.entry) }));
        const results = out.Entries ?? [];
        refused = (out.FailedEntryCount ?? 0) > 0 || results.some((r) => r.ErrorCode)
          ? pending.flatMap((p, i) => {
              const result = results[i];
              // An entry without a result or an EventId was not accepted either.
              if (result?.EventId && !result.ErrorCode) return [];
              return [{ entry: p, code: safeCode(result?.ErrorCode) }];
            })
          : [];
      } catch (error) {
        if (!isRetryable(error, errorName(error))) throw error;
        refused = pending.map((entry) => ({ entry, code: errorName(error) }));
      }
      if (refused.length === 0) return { failed: [], codes: [] };
      pending = refused.map((r) => r.entry);
      codes = [...new Set(refused.map((r) => r.code))];
      if (attempt >= this.#maxAttempts) return { failed: pending, codes };
      await sleep(Math.random() * this.#retryBaseDelayMs * 2 ** (attempt - 1));
    }
  }
}

/** At most 10 entries and 256 KB per call, in order. */
function toBatches(entries: PendingEntry[]): PendingEntry[][] {
  const batches: PendingEntry[][] = [];
  let current: PendingEntry[] = [];
  let bytes = 0;
  for (const entry of entries) {
    if (current.length === MAX_ENTRIES_PER_CALL || (current.length > 0 && bytes + entry.bytes > MAX_EVENT_BYTES)) {
      batches.push(current);
      current = [];
      bytes = 0;
    }
    current.push(entry);
    bytes += entry.bytes;
  }
  if (current.length) batches.push(current);
  return batches;
}

function errorName(error: unknown): string {
  const name = (error as { name?: unknown })?.name;
  return typeof name === 'string' && /^[A-Za-z][\w.]{0,80}$/.test(name) ? name : 'Error';
}

/** Error codes are identifiers; anything else is not repeated. */
function safeCode(code: string | undefined): string {
  return code && /^[A-Za-z][\w.]{0,80}$/.test(code) ? code : 'UnknownError';
}

function isRetryable(error: unknown, name: string): boolean {
  const e = error as { $fault?: unknown; $retryable?: unknown; $metadata?: { httpStatusCode?: number }; code?: unknown };
  if (RETRYABLE_NAMES.has(name) || e.$retryable || e.$fault === 'server' || (e.$metadata?.httpStatusCode ?? 0) >= 500) return true;
  return typeof e.code === 'string' && RETRYABLE_NETWORK_CODES.has(e.code);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
