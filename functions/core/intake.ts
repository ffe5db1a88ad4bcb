import type { Scanner, ScannerRequest } from './ports/scanner.ts';
import type { DeliveryLog, LeakQueue } from './ports/leak-queue.ts';
import type { Logger } from './ports/logger.ts';
import { AuthError, PayloadError, RekeyError, isRekeyError, publicError } from './errors.ts';
import { leakTask } from './remediation.ts';
import { MAX_BODY_BYTES } from './leak.ts';

const REPLAY_WINDOW_MS = 7 * 24 * 3_600_000;

export interface IntakeDeps {
  scanners: ReadonlyMap<string, Scanner>;
  knownScanners: ReadonlySet<string>;
  queue: LeakQueue;
  deliveries: DeliveryLog;
  indexKey: Buffer;
  logger: Logger;
  now: () => Date;
  /**
   * Non-secret handles in a leaked text that a kind can trace to a managed principal even when no
   * stored version holds the value (AWS access key ids): queued with the task, never the value.
   */
  identify?: (text: string) => string[];
}

export interface IntakeReply {
  status: 202 | 400 | 401 | 404 | 409 | 413 | 415 | 500 | 503;
  body: { message: string; deliveryId?: string; accepted?: number };
}

/**
 * The answer when accepting failed inside rekey (the queue or the delivery log unreachable): 503
 * when trying again may work, else 500 — never 2xx, so the scanner keeps the delivery to resend —
 * and never the error itself. The caller has logged it.
 */
export function failedReply(error: unknown): IntakeReply {
  return isRekeyError(error) && error.retryable
    ? { status: 503, body: { message: 'the delivery could not be queued; send it again' } }
    : { status: 500, body: { message: 'internal error' } };
}

/**
 * One webhook delivery, transport-neutral (the Lambda and `rekey serve` both call this):
 * known scanner (404) → size (413) → configured (503) → content type (415) → verify the raw bytes,
 * in constant time (401) → parse (400) → de-duplicate (409) → fingerprint → enqueue (202). Replies never echo the body or an internal error.
 *
 * `deadline` (the Lambda: some time before its timeout): when it fires while the delivery id is
 * being claimed or the tasks queued, the claim is released and a retryable DEADLINE error thrown
 * (503) — so the scanner's retry is taken rather than refused as a replay of a delivery that was
 * never queued (it may then be queued twice: the worker's remediation is idempotent).
 */
export async function acceptDelivery(
  deps: IntakeDeps,
  scannerName: string,
  request: Omit<ScannerRequest, 'now'>,
  options: { deadline?: AbortSignal } = {},
): Promise<IntakeReply> {
  if (!deps.knownScanners.has(scannerName)) return { status: 404, body: { message: 'unknown scanner' } };
  if (request.body.length > MAX_BODY_BYTES) return { status: 413, body: { message: 'body larger than 1 MiB' } };
  const scanner = deps.scanners.get(scannerName);
  if (!scanner) return { status: 503, body: { message: `the ${scannerName} webhook is not configured on this deployment` } };
  const contentType = (request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (!ACCEPTED_TYPES.has(contentType)) return { status: 415, body: { message: 'content type must be application/json, application/x-ndjson or application/jsonl' } };
  const now = deps.now();
  const full: ScannerRequest = { ...request, now };
  try {
    scanner.verify(full);
  } catch (error) {
    if (error instanceof AuthError) {
      deps.logger.warn('webhook refused', { scanner: scannerName, reason: error.message });
      return { status: 401, body: { message: 'signature or token missing or invalid' } };
    }
    throw error;
  }
  let parsed;
  try {
    parsed = scanner.parse(full);
  } catch (error) {
    if (error instanceof PayloadError) {
      deps.logger.warn('webhook payload refused', { scanner: scannerName, reason: error.message });
      return { status: 400, body: { message: `malformed ${scannerName} payload: ${error.message}` } };
    }
    deps.logger.error('webhook parser failed', { scanner: scannerName, code: isRekeyError(error) ? error.code : 'INTERNAL' });
    return { status: 400, body: { message: `malformed ${scannerName} payload` } };
  }
  // Not queued: the scanner's retry (or a manual redelivery) must not be refused as a replay.
  const release = () =>
    deps.deliveries.release(scannerName, parsed.deliveryId).catch((releaseError: unknown) =>
      deps.logger.error('could not release the delivery id of a delivery that was not queued', { scanner: scannerName, deliveryId: parsed.deliveryId, error: publicError(releaseError) }),
    );
  let claimed: boolean;
  try {
    claimed = await beforeDeadline(deps.deliveries.claim(scannerName, parsed.deliveryId, REPLAY_WINDOW_MS), options.deadline);
  } catch (error) {
    // A claim cut short may still land after this answer.
    if (isRekeyError(error) && error.code === DEADLINE) await release();
    throw error;
  }
  if (!claimed) return { status: 409, body: { message: 'delivery already received', deliveryId: parsed.deliveryId } };
  const tasks = parsed.reports.map((report) => leakTask(deps.indexKey, parsed.deliveryId, report, now, deps.identify));
  if (tasks.length) {
    try {
      await beforeDeadline(deps.queue.enqueue(tasks), options.deadline);
    } catch (error) {
      await release();
      throw error;
    }
  }
  deps.logger.info('webhook accepted', { scanner: scannerName, deliveryId: parsed.deliveryId, reports: tasks.length, ...(parsed.ignored ? { ignored: parsed.ignored } : {}) });
  return { status: 202, body: { message: parsed.ignored ? `accepted, nothing to do: ${parsed.ignored}` : 'accepted', deliveryId: parsed.deliveryId, accepted: tasks.length } };
}

const DEADLINE = 'DEADLINE';

/** `work`, or a retryable DEADLINE error as soon as `deadline` fires (the work itself is left to finish or not). */
function beforeDeadline<T>(work: Promise<T>, deadline: AbortSignal | undefined): Promise<T> {
  if (!deadline) return work;
  const late = () => new RekeyError(DEADLINE, 'the delivery could not be queued in time', { retryable: true });
  if (deadline.aborted) {
    work.catch(() => {}); // settles unobserved
    return Promise.reject(late());
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(late());
    deadline.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => (deadline.removeEventListener('abort', onAbort), resolve(value)),
      (error: unknown) => (deadline.removeEventListener('abort', onAbort), reject(error)),
    );
  });
}

const ACCEPTED_TYPES = new Set(['application/json', 'application/x-ndjson', 'application/jsonl']);
