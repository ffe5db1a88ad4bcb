import type { APIGatewayProxyEventV2, Context } from 'aws-lambda';

/** A Lambda context with enough time left; handlers only read the request id and the clock. */
export function lambdaContext(remainingMs = 60_000): Context {
  const deadline = Date.now() + remainingMs;
  return {
    awsRequestId: `test-${Math.random().toString(16).slice(2)}`,
    functionName: 'test',
    functionVersion: '$LATEST',
    invokedFunctionArn: 'arn:aws:lambda:us-east-1:123456789012:function:test',
    memoryLimitInMB: '256',
    logGroupName: '/aws/lambda/test',
    logStreamName: 'test',
    callbackWaitsForEmptyEventLoop: false,
    getRemainingTimeInMillis: () => deadline - Date.now(),
    done: () => {},
    fail: () => {},
    succeed: () => {},
  };
}

/**
 * The API Gateway HTTP API (payload v2) event of a webhook delivery to the leak-webhook Lambda:
 * `POST /webhooks/{scanner}`, the body base64-encoded as API Gateway sends binary bodies (or as
 * text), and the headers as given — or with mixed case (`X-Hub-Signature-256`), as custom clients
 * send them and API Gateway passes them on.
 */
export function webhookEvent(
  scanner: string,
  delivery: { headers: Record<string, string>; body: string | Buffer },
  options: { base64?: boolean; mixedCaseHeaders?: boolean } = {},
): APIGatewayProxyEventV2 {
  const raw = Buffer.isBuffer(delivery.body) ? delivery.body : Buffer.from(delivery.body);
  const base64 = options.base64 ?? true;
  const headers = options.mixedCaseHeaders
    ? Object.fromEntries(Object.entries(delivery.headers).map(([k, v]) => [k.replace(/(^|-)([a-z])/g, (m) => m.toUpperCase()), v]))
    : delivery.headers;
  return {
    version: '2.0',
    routeKey: 'POST /webhooks/{scanner}',
    rawPath: `/webhooks/${scanner}`,
    rawQueryString: '',
    headers,
    pathParameters: { scanner },
    body: base64 ? raw.toString('base64') : raw.toString('utf8'),
    isBase64Encoded: base64,
    requestContext: { http: { method: 'POST', path: `/webhooks/${scanner}` } },
  } as unknown as APIGatewayProxyEventV2;
}
