import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { acceptDelivery, failedReply, type IntakeDeps, type IntakeReply } from '#core/intake.ts';
import { publicError } from '#core/errors.ts';
import type { Logger } from '#core/ports/logger.ts';
import { lambdaIntake, lambdaWebhookServices } from '#runtime/webhook-services.ts';
import { lambdaHandler, RETRY_AFTER_SECONDS, type HandlerOptions } from '#runtime/middleware.ts';

/**
 * The intake stops waiting on DynamoDB and SQS this long before the Lambda timeout (10 s), releases
 * the delivery id it claimed and answers 503 itself: the middleware's early timeout comes 1 s before
 * the end, and would answer 503 too but leave the claim, so that the scanner's retry got 409.
 */
export const DEADLINE_MARGIN_MS = 2_500;

/**
 * HTTP API `POST /webhooks/{scanner}`: verify the raw bytes, parse, fingerprint, enqueue; answer
 * 202/400/401/404/409/413/415 (503/500 when rekey cannot take it). The body is never logged or
 * echoed. Only what intake needs is built (runtime/webhook-services.ts): no store, no database.
 * An HTTP API sends a result without a status code as 200, so no failure may leave without one:
 * the handler answers its own (failedReply), and the middleware (`errors: 'http'`) answers 503 with
 * Retry-After for the rest — the early timeout above all. Before that, the intake's own deadline
 * (DEADLINE_MARGIN_MS) releases the delivery id of a delivery it could not queue in time.
 */
export const createHandler = (options: Partial<HandlerOptions<{ logger: Logger }>> & { intake?: () => Promise<IntakeDeps> } = {}) => {
  const intake = options.intake ?? lambdaIntake;
  return lambdaHandler<APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, { logger: Logger }>(
    'leak-webhook',
    async (event, { logger, remainingMs }) => {
      const body = event.body === undefined ? Buffer.alloc(0) : Buffer.from(event.body, event.isBase64Encoded ? 'base64' : 'utf8');
      const headers = Object.fromEntries(Object.entries(event.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
      let reply: IntakeReply;
      let retryAfter = false;
      try {
        const left = remainingMs() - DEADLINE_MARGIN_MS;
        const deadline = Number.isFinite(left) ? AbortSignal.timeout(Math.max(0, left)) : undefined;
        reply = await acceptDelivery(await intake(), event.pathParameters?.scanner ?? '', { body, headers }, deadline ? { deadline } : {});
      } catch (error) {
        logger.error('webhook failed', { error: publicError(error) });
        reply = failedReply(error);
        retryAfter = reply.status === 503;
      }
      return {
        statusCode: reply.status,
        headers: { 'content-type': 'application/json', ...(retryAfter ? { 'retry-after': String(RETRY_AFTER_SECONDS) } : {}) },
        body: JSON.stringify(reply.body),
      };
    },
    { errors: 'http', services: lambdaWebhookServices, ...options },
  );
};

export const handler = createHandler();
