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
}

export interface HandlerOptions<S extends { logger: Logger } = Services> {
  /**
   * `throw`: the invoker must see a failure (Secrets Manager retries a failed step, EventBridge's
   * async retries and the on-failure destination apply); the error is replaced by its safe form.
   * `return`: the caller is a person or an HTTP client; failures come back as `{ ok: false, error }`.
   */
  errors: 'throw' | 'return';
  /**
   * The services each invocation gets: the core ones (runtime/services.ts) for the rotation
   * functions, narrower ones for on-rekey-event and leak-webhook. Always given by the handler, so
   * this module imports no services and a bundle holds only the ones its handler uses.
   */
  services: () => Promise<S>;
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
      const result = await fn(event, { services, logger: log, signal, requestId: context?.awsRequestId ?? 'local' });
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
