import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { randomBytes } from 'node:crypto';
import type { APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import { CreateSecretCommand } from '@aws-sdk/client-secrets-manager';
import { SQSClient, SendMessageBatchCommand } from '@aws-sdk/client-sqs';
import { tasksOfMessage } from '#adapters/queues/sqs.ts';
import { ConditionalCheckFailedException, DeleteItemCommand, DynamoDBClient, PutItemCommand } from '@aws-sdk/client-dynamodb';
import type { LeakTask } from '#core/remediation.ts';
import { handler } from '../../functions/leak-webhook.ts';
import { startFakeSecretsManager, type FakeSecretsManager, stubLambdaEnvFor } from '#test/helpers/fake-secrets-manager.ts';
import { accessKeyId } from '#test/helpers/fake-iam.ts';
import { LeakGuard } from '#test/helpers/leak-guard.ts';
import { lambdaContext, webhookEvent } from '#test/helpers/lambda.ts';
import { gitleaksDelivery, trufflehogDelivery, type Delivery } from '#test/helpers/leak-pipeline.ts';

/**
 * The leak-webhook Lambda as deployed: the module's exported `handler`, configured only by the
 * environment serverless.yml gives it (test/packaging/serverless-template.test.ts checks that list),
 * its credentials read from the fake Secrets Manager, SQS and DynamoDB stubbed at the client. What
 * the wiring in runtime/webhook-services.ts and the middleware add to the intake: the access key ids
 * of a leak queued with its task, and a proper status on every failure path.
 */

const WEBHOOK_SECRET_ID = 'rekey/ci/leak-webhook-credentials';
const QUEUE_URL = 'https://sqs.us-east-1.amazonaws.com/123456789012/rekey-ci-leaks';
const TABLE = 'rekey-ci-deliveries';

let sm: FakeSecretsManager;
let sqs: ReturnType<typeof mockClient>;
let dynamo: ReturnType<typeof mockClient>;
let claimed: Set<string>;
let ingestToken: string;
let guard: LeakGuard;
let stderr: string[];
let replies: APIGatewayProxyStructuredResultV2[];

beforeAll(async () => {
  sm = await startFakeSecretsManager();
  ingestToken = `ingest-${randomBytes(12).toString('hex')}`;
  await sm.client().send(new CreateSecretCommand({ Name: WEBHOOK_SECRET_ID, SecretString: JSON.stringify({ githubWebhookSecret: '', gitguardianWebhookSecret: '', ingestToken }) }));
  // serverless.yml's environment for leak-webhook, and what the Lambda runtime adds (region, credentials).
  vi.stubEnv('REKEY_LOG_LEVEL', 'info');
  vi.stubEnv('REKEY_INDEX_KEY', randomBytes(32).toString('base64'));
  vi.stubEnv('REKEY_LEAK_QUEUE_URL', QUEUE_URL);
  vi.stubEnv('REKEY_DELIVERIES_TABLE', TABLE);
  vi.stubEnv('REKEY_LEAK_WEBHOOK_SECRET_ID', WEBHOOK_SECRET_ID);
  vi.stubEnv('AWS_REGION', 'us-east-1');
  stubLambdaEnvFor(sm);
  for (const name of ['REKEY_STORE', 'REKEY_EVENT_BUS_NAME', 'GITHUB_WEBHOOK_SECRET', 'GITGUARDIAN_WEBHOOK_SECRET', 'REKEY_INGEST_TOKEN', 'GITHUB_TOKEN']) vi.stubEnv(name, undefined);
  sqs = mockClient(SQSClient);
  dynamo = mockClient(DynamoDBClient);
});

afterAll(async () => {
  sqs.restore();
  dynamo.restore();
  await sm.close();
  vi.unstubAllEnvs();
});

beforeEach(() => {
  guard = new LeakGuard();
  guard.secret(ingestToken);
  stderr = [];
  replies = [];
  // The handler's logger writes JSON lines on stderr, as on Lambda.
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => (stderr.push(String(chunk)), true));
  sqs.reset();
  sqs.on(SendMessageBatchCommand).resolves({ Successful: [], Failed: [] });
  dynamo.reset();
  claimed = new Set();
  dynamo.on(PutItemCommand).callsFake((input: { Item: { pk: { S: string } } }) => {
    if (claimed.has(input.Item.pk.S)) throw new ConditionalCheckFailedException({ message: 'The conditional request failed', $metadata: {} });
    claimed.add(input.Item.pk.S);
    return {};
  });
  dynamo.on(DeleteItemCommand).callsFake((input: { Key: { pk: { S: string } } }) => (claimed.delete(input.Key.pk.S), {}));
});

afterEach(() => {
  vi.restoreAllMocks();
  guard.output('logs', stderr.join(''));
  guard.output('replies', JSON.stringify(replies));
  guard.output('queued tasks', JSON.stringify(queued()));
  guard.assertClean();
});

async function post(scanner: string, delivery: Delivery, remainingMs?: number): Promise<APIGatewayProxyStructuredResultV2> {
  const reply = (await handler(webhookEvent(scanner, delivery), lambdaContext(remainingMs))) as APIGatewayProxyStructuredResultV2;
  replies.push(reply);
  return reply;
}

const queued = (): LeakTask[] =>
  sqs.commandCalls(SendMessageBatchCommand).flatMap((call) => (call.args[0].input as { Entries: { MessageBody: string }[] }).Entries.flatMap((e) => tasksOfMessage(e.MessageBody)));
const logLines = () => stderr.join('').trim().split('\n').filter(Boolean).map((line) => JSON.parse(line) as { msg: string; error?: { code: string } });

describe('leak-webhook Lambda (the exported handler, configured by its environment)', () => {
  describe('access key ids', () => {
    it('queues a leaked AWS access key id with its identifiers, as rekey serve does; the task carries no secret', async () => {
      const [pairId, lineId, otherId] = [accessKeyId(), accessKeyId(), accessKeyId()];
      const secret = randomBytes(30).toString('base64');
      const password = `Pw-${randomBytes(12).toString('base64url')}`;
      for (const value of [secret, password]) guard.secret(value);
      const delivery = trufflehogDelivery(ingestToken, [
        { value: `${pairId}${secret}` }, // TruffleHog's AWS detector: id and secret run together
        { value: `[default]\naws_access_key_id = ${lineId}\naws_secret_access_key = ${secret}\n# old: ${otherId}` },
        { value: password },
      ]);
      const reply = await post('trufflehog', delivery);
      expect(reply.statusCode, String(reply.body)).toBe(202);
      expect(JSON.parse(String(reply.body))).toMatchObject({ accepted: 3 });
      const tasks = queued();
      expect(tasks.map((task) => task.identifiers ?? [])).toEqual([[pairId], [lineId, otherId], []]);
      expect(sqs.commandCalls(SendMessageBatchCommand).every((c) => (c.args[0].input as { QueueUrl: string }).QueueUrl === QUEUE_URL)).toBe(true);
    });

    it('finds them in every scanner format (a Gitleaks report here)', async () => {
      const id = accessKeyId();
      const secret = randomBytes(30).toString('base64');
      guard.secret(secret);
      expect((await post('gitleaks', gitleaksDelivery(ingestToken, [{ value: `AWS_ACCESS_KEY_ID=${id} AWS_SECRET_ACCESS_KEY=${secret}` }]))).statusCode).toBe(202);
      expect(queued().map((task) => task.identifiers)).toEqual([[id]]);
    });
  });

  describe('failure paths', () => {
    const canaryDelivery = () => {
      const canary = `Canary-${randomBytes(12).toString('base64url')}`;
      guard.secret(canary);
      return { canary, delivery: trufflehogDelivery(ingestToken, [{ value: canary }]) };
    };
    const expect503 = (reply: APIGatewayProxyStructuredResultV2, canary: string) => {
      expect(reply.statusCode).toBe(503);
      expect(reply.headers?.['retry-after']).toBe('30');
      expect(String(reply.body)).not.toContain(canary);
      expect(JSON.stringify(reply)).not.toContain('Canary');
    };

    it("answers the middleware's early timeout 503 with Retry-After, not {ok: false} (which API Gateway sends as 200)", async () => {
      // SQS never answers; with 1 s left (the middleware's margin) its timeout is due at once.
      sqs.on(SendMessageBatchCommand).callsFake(() => new Promise(() => {}));
      const { canary, delivery } = canaryDelivery();
      const reply = await post('trufflehog', delivery, 1_000);
      expect503(reply, canary);
      expect(JSON.parse(String(reply.body))).toEqual({ message: expect.any(String) });
      expect(logLines().find((line) => line.msg === 'handler failed')?.error?.code).toBe('TIMEOUT');
      // The handler, still waiting, then reaches its own deadline and releases the delivery id (on
      // Lambda, when the container next runs: this is the last resort, the deadline below comes first).
      const key = `trufflehog#${delivery.deliveryId}`;
      await vi.waitFor(() => expect(dynamo.commandCalls(DeleteItemCommand).map((c) => (c.args[0].input as unknown as { Key: { pk: { S: string } } }).Key.pk.S)).toEqual([key]));
      expect(claimed.has(key)).toBe(false);
    });

    it('stops waiting on SQS before the timeout, releases the delivery id and answers 503, so the retry is queued rather than refused as a replay', async () => {
      let down = true;
      sqs.on(SendMessageBatchCommand).callsFake(() => (down ? new Promise(() => {}) : Promise.resolve({ Successful: [], Failed: [] })));
      const { canary, delivery } = canaryDelivery();
      // 2 s left: the intake's deadline (2.5 s before the end) is already due; the middleware's (1 s) is not.
      const reply = await post('trufflehog', delivery, 2_000);
      expect503(reply, canary);
      expect(JSON.parse(String(reply.body))).toEqual({ message: 'the delivery could not be queued; send it again' });
      expect(logLines().find((line) => line.msg === 'webhook failed')?.error?.code).toBe('DEADLINE');
      expect(dynamo.commandCalls(DeleteItemCommand).map((c) => c.args[0].input)).toEqual([{ TableName: TABLE, Key: { pk: { S: `trufflehog#${delivery.deliveryId}` } } }]);
      down = false;
      expect((await post('trufflehog', delivery)).statusCode).toBe(202);
      expect((await post('trufflehog', delivery)).statusCode).toBe(409);
    });
  });
});
