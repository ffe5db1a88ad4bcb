import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { acceptDelivery, failedReply, type IntakeDeps } from '#core/intake.ts';
import { publicError } from '#core/errors.ts';
import type { Logger } from '#core/ports/logger.ts';
import { lambdaIntake, lambdaWebhookServices } from '#runtime/webhook-services.ts';
import { lambdaHandler, type HandlerOptions } from '#runtime/middleware.ts';

/**
 * HTTP API `POST /webhooks/{scanner}`: verify the raw bytes, parse, fingerprint, enqueue; answer
 * 202/400/401/404/409/413/415 (503/500 when rekey cannot take it). The body is never logged or
 * echoed. Only what intake needs is built (runtime/webhook-services.ts): no store, no database.
 */
export const createHandler = (options: Partial<HandlerOptions<{ logger: Logger }>> & { intake?: () => Promise<IntakeDeps> } = {}) => {
  const intake = options.intake ?? lambdaIntake;
  return lambdaHandler<APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, { logger: Logger }>(
    'leak-webhook',
    async (event, { logger }) => {
      const body = event.body === undefined ? Buffer.alloc(0) : Buffer.from(event.body, event.isBase64Encoded ? 'base64' : 'utf8');
      const headers = Object.fromEntries(Object.entries(event.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
      let reply;
      try {
        reply = await acceptDelivery(await intake(), event.pathParameters?.scanner ?? '', { body, headers });
      } catch (error) {
        // An HTTP API takes a result without a status code as 200: a failure must answer 5xx itself,
        // or the scanner believes the leak was delivered.
        logger.error('webhook failed', { error: publicError(error) });
        reply = failedReply(error);
      }
      return { statusCode: reply.status, headers: { 'content-type': 'application/json' }, body: JSON.stringify(reply.body) };
    },
    { errors: 'return', services: lambdaWebhookServices, ...options },
  );
};

export const handler = createHandler();
