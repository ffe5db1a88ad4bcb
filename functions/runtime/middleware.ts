import middy from '@middy/core';
import type { Context } from 'aws-lambda';
import { RekeyError, publicError } from '#core/errors.ts';
import type { Logger } from '#core/ports/logger.ts';
import type { Services } from './services.ts';
import { config } from './config.ts';
import { jsonLogger } from './logger.ts';

export interface HandlerContext<S extends { logger: Logger } = Services> {
  services: S;
  logger: Logger;
  /** Aborted one second before the Lambda timeout, so work can stop cleanly. */
  signal: AbortSignal;
  requestId: string;
  /** Milliseconds left before the Lambda timeout (Infinity without a Lambda context: local scripts). */
  remainingMs: () => number;
}

export interface HandlerOptions<S extends { logger: Logger } = Services> {
  /**
   * `throw`: the invoker must see a failure (Secrets Manager retries a failed step, EventBridge's
   * async retries and the on-failure destination apply); the error is replaced by its safe form.
   * `return`: the caller is a person (a direct invoke); failures come back as `{ ok: false, error }`.
   * `http`: the caller is an HTTP API, which would send `{ ok: false }` — a result without a status
   * code — as 200: every failure the handler did not answer itself (the early timeout, services
   * that failed to build, a throw) is answered `HTTP_FAILURE`, a 503 with Retry-After.
   */
  errors: 'throw' | 'return' | 'http';
  /**
   * The services each invocation gets: the core ones (runtime/services.ts) for the rotation
   * functions, narrower ones for on-rekey-event and leak-webhook. Always given by the handler, so
   * this module imports no services and a bundle holds only the ones its handler uses.
   */
  services: () => Promise<S>;
}

/** What an HTTP handler's failure answers (`errors: 'http'`): the code is in the log, never in the reply. */
export interface HttpFailure {
  statusCode: 503;
  headers: { 'content-type': 'application/json'; 'retry-after': string };
  body: string;
}

/** Seconds a client is asked to wait before sending again (Retry-After). */
export const RETRY_AFTER_SECONDS = 30;

/**
 * 503 with a retry hint and a fixed message: never 2xx (the sender keeps what it sent, to send it
 * again), never the request body, a header or the error.
 */
export function httpFailure(): HttpFailure {
  return {
    statusCode: 503,
    headers: { 'content-type': 'application/json', 'retry-after': String(RETRY_AFTER_SECONDS) },
    body: JSON.stringify({ message: 'rekey could not take the request; send it again later' }),
  };
}

/**
 * The one middy stack every handler shares: a structured log line at start and end (never the
 * event or a body), an abort signal before the timeout, and RekeyError → safe result.
 */
export function lambdaHandler<E, R, S extends { logger: Logger } = Services>(name: string, fn: (event: E, ctx: HandlerContext<S>) => Promise<R>, options: HandlerOptions<S>) {
  const getServices = options.services;
  // The logger of the invocation's services, once built: a failure is logged where its start was.
  const loggers = new WeakMap<object, Logger>();
  return middy<E, R | { ok: false; error: { code: string; message: string } }, Error, Context>({
    timeoutEarlyInMillis: 1_000,
    timeoutEarlyResponse: () => {
      throw new RekeyError('TIMEOUT', `${name} ran out of time before finishing; the next invocation resumes`, { retryable: true });
    },
  })
    .use({
      onError: async (request) => {
        const safe = publicError(request.error);
        const log = (request.context && loggers.get(request.context)) || logger();
        log.error('handler failed', { function: name, requestId: request.context?.awsRequestId, error: safe });
        if (options.errors === 'http') {
          // Only HTTP handlers choose 'http': their result is an HTTP API result, as this is.
          request.response = httpFailure() as unknown as R;
          return;
        }
        if (options.errors === 'return') {
          request.response = { ok: false, error: safe };
          return;
        }
        // The runtime prints a thrown error with its stack and cause: throw only the safe form.
        const replacement = new Error(`${safe.code}: ${safe.message}`);
        replacement.name = 'RekeyError';
        request.error = replacement;
      },
    })
    .handler(async (event: E, context: Context, { signal }: { signal: AbortSignal }) => {
      const started = performance.now();
      const services = await getServices();
      const log = services.logger;
      if (context) loggers.set(context, log);
      log.info('handler start', { function: name, requestId: context?.awsRequestId });
      const remainingMs = () => (typeof context?.getRemainingTimeInMillis === 'function' ? context.getRemainingTimeInMillis() : Number.POSITIVE_INFINITY);
      const result = await fn(event, { services, logger: log, signal, requestId: context?.awsRequestId ?? 'local', remainingMs });
      log.info('handler done', { function: name, requestId: context?.awsRequestId, ms: Math.round(performance.now() - started) });
      return result;
    });
}

let fallback: Logger | undefined;
/** A logger that works even when configuration (and so the services) failed to load. */
function logger(): Logger {
  if (!fallback) {
    let level: Parameters<typeof jsonLogger>[0] = 'info';
    try {
      level = config().REKEY_LOG_LEVEL;
    } catch {
      // keep info: the configuration error itself is what needs logging
    }
    fallback = jsonLogger(level);
  }
  return fallback;
}
