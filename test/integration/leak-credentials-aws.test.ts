import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { randomBytes, randomUUID } from 'node:crypto';
import type { APIGatewayProxyStructuredResultV2, SQSEvent } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import { CreateSecretCommand, PutSecretValueCommand } from '@aws-sdk/client-secrets-manager';
import { SQSClient, SendMessageBatchCommand } from '@aws-sdk/client-sqs';
import { tasksOfMessage } from '#adapters/queues/sqs.ts';
import { ConditionalCheckFailedException, DynamoDBClient, DeleteItemCommand, PutItemCommand } from '@aws-sdk/client-dynamodb';
import type { Logger } from '#core/ports/logger.ts';
import type { LeakTask } from '#core/remediation.ts';
import { parseConfig } from '#runtime/config.ts';
import { webhookIntake } from '#runtime/webhook-services.ts';
import { workerLeakDeps } from '#runtime/leak-services.ts';
import { createHandler as webhookHandler } from '../../functions/leak-webhook.ts';
import { createHandler as workerHandler } from '../../functions/leak-worker.ts';
import { startFakeSecretsManager, type FakeSecretsManager, stubLambdaEnvFor } from '#test/helpers/fake-secrets-manager.ts';
import { awsTestRekey, type AwsTestRekey } from '#test/helpers/aws-rekey.ts';
import { GitHubDouble } from '#test/helpers/github-double.ts';
import { LeakGuard } from '#test/helpers/leak-guard.ts';
import { SECRETS_ACTIONS } from '#test/helpers/iam.ts';
import { lambdaContext, webhookEvent } from '#test/helpers/lambda.ts';
import { githubDelivery, gitguardianDelivery, gitleaksDelivery, trufflehogDelivery, type Delivery } from '#test/helpers/leak-pipeline.ts';

/**
 * The leak path's credentials as deployed (serverless.yml): leak-webhook reads the three webhook
 * secrets from `rekey/<stage>/leak-webhook-credentials`, leak-worker the GitHub token from
 * `rekey/<stage>/github-token` — at run time, through an unmodified SDK client against the fake
 * Secrets Manager endpoint (AWS_ENDPOINT_URL_SECRETS_MANAGER), never from their environment. SQS and
 * DynamoDB are aws-sdk-client-mock stubs, so the production queue and delivery log run unchanged.
 * Every credential and leaked value is watched by the leak guard.
 */

const WEBHOOK_SECRET_ID = 'rekey/ci/leak-webhook-credentials';
const TOKEN_SECRET_ID = 'rekey/ci/github-token';
const QUEUE_URL = 'https://sqs.us-east-1.amazonaws.com/123456789012/rekey-ci-leaks';
const TABLE = 'rekey-ci-deliveries';

function capturingLogger(lines: string[]): Logger {
  const log = (level: string) => (msg: string, fields: Record<string, unknown> = {}) => void lines.push(JSON.stringify({ level, msg, ...fields }));
  return { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') };
}

describe('leak-webhook on AWS: webhook credentials from Secrets Manager', () => {
  let sm: FakeSecretsManager;
  let guard: LeakGuard;
  let logs: string[];
  let clock: number;
  let sqs: ReturnType<typeof mockClient>;
  let dynamo: ReturnType<typeof mockClient>;
  let claimed: Set<string>;
  let handler: ReturnType<typeof webhookHandler>;
  let secrets: { githubWebhookSecret: string; gitguardianWebhookSecret: string; ingestToken: string };
  let canary: string;
  const replies: string[] = [];

  const putCredentials = async (value: Record<string, string>, create = false) => {
    const client = sm.client();
    const text = JSON.stringify(value);
    if (create) await client.send(new CreateSecretCommand({ Name: WEBHOOK_SECRET_ID, SecretString: text }));
    else await client.send(new PutSecretValueCommand({ SecretId: WEBHOOK_SECRET_ID, SecretString: text }));
  };
  const post = async (scanner: string, delivery: Delivery) => {
    const reply = (await handler(webhookEvent(scanner, delivery), lambdaContext())) as APIGatewayProxyStructuredResultV2;
    replies.push(JSON.stringify(reply));
    return { status: reply.statusCode, json: JSON.parse(String(reply.body)) as { message: string; deliveryId?: string } };
  };
  const queued = (): LeakTask[] =>
    sqs.commandCalls(SendMessageBatchCommand).flatMap((call) => (call.args[0].input as { Entries: { MessageBody: string }[] }).Entries.flatMap((e) => tasksOfMessage(e.MessageBody)));

  beforeEach(async () => {
    sm = await startFakeSecretsManager();
    stubLambdaEnvFor(sm);
    guard = new LeakGuard();
    logs = [];
    replies.length = 0;
    clock = 1_000_000;
    canary = `Canary-${randomBytes(12).toString('base64url')}`;
    guard.secret(canary);
    secrets = { githubWebhookSecret: `ghws-${randomBytes(12).toString('hex')}`, gitguardianWebhookSecret: '', ingestToken: `ingest-${randomBytes(12).toString('hex')}` };
    for (const value of Object.values(secrets)) if (value) guard.secret(value);
    await putCredentials(secrets, true);
    // SQS and DynamoDB at the client boundary: a conditional put per new delivery id, as the table does.
    sqs = mockClient(SQSClient);
    sqs.on(SendMessageBatchCommand).resolves({ Successful: [], Failed: [] });
    dynamo = mockClient(DynamoDBClient);
    claimed = new Set();
    dynamo.on(PutItemCommand).callsFake((input: { Item: { pk: { S: string } } }) => {
      const pk = input.Item.pk.S;
      if (claimed.has(pk)) throw new ConditionalCheckFailedException({ message: 'The conditional request failed', $metadata: {} });
      claimed.add(pk);
      return {};
    });
    dynamo.on(DeleteItemCommand).callsFake((input: { Key: { pk: { S: string } } }) => (claimed.delete(input.Key.pk.S), {}));
    // As serverless.yml configures leak-webhook: no credential in the environment, only the secret's ARN.
    const config = parseConfig({
      REKEY_STORE: 'aws',
      AWS_REGION: 'us-east-1',
      REKEY_INDEX_KEY: randomBytes(32).toString('base64'),
      REKEY_EVENT_BUS_NAME: 'rekey-ci',
      REKEY_LEAK_QUEUE_URL: QUEUE_URL,
      REKEY_DELIVERIES_TABLE: TABLE,
      REKEY_LEAK_WEBHOOK_SECRET_ID: WEBHOOK_SECRET_ID,
      REKEY_LOG_LEVEL: 'debug',
    });
    const logger = capturingLogger(logs);
    handler = webhookHandler({ services: async () => ({ logger }), intake: webhookIntake(config, { logger, clock: () => clock }) });
  });

  afterEach(async () => {
    guard.output('logs', logs.join('\n'));
    guard.output('replies', replies.join('\n'));
    guard.output('queued tasks', JSON.stringify(queued()));
    guard.output('DynamoDB requests', JSON.stringify([...dynamo.calls()].map((c) => c.args[0].input)));
    for (const request of sm.requests) if (request.operation !== 'CreateSecret' && request.operation !== 'PutSecretValue') guard.output(`${request.operation} request`, request.raw);
    sqs.restore();
    dynamo.restore();
    await sm.close();
    vi.unstubAllEnvs();
    guard.assertClean();
  });

  it('verifies signed deliveries with the secret’s credentials and answers 202, reading the secret once', async () => {
    const github = await post('github', githubDelivery(secrets.githubWebhookSecret, { number: 7 }));
    expect(github.status, github.json.message).toBe(202);
    const ci = await post('trufflehog', trufflehogDelivery(secrets.ingestToken, [{ value: canary }]));
    expect(ci).toEqual({ status: 202, json: { message: 'accepted', deliveryId: expect.any(String), accepted: 1 } });
    expect(queued()).toHaveLength(2);
    expect(sqs.commandCalls(SendMessageBatchCommand).every((c) => (c.args[0].input as { QueueUrl: string }).QueueUrl === QUEUE_URL)).toBe(true);
    expect(sm.requestsFor('GetSecretValue').map((r) => r.body.SecretId)).toEqual([WEBHOOK_SECRET_ID]);
    // Only what its role grants (serverless.yml, test/helpers/iam.ts).
    expect([...new Set(sm.requests.filter((r) => r.operation !== 'CreateSecret' && r.operation !== 'PutSecretValue').map((r) => r.operation))]).toEqual(
      SECRETS_ACTIONS['leak-webhook'],
    );
  });

  it('refuses a delivery signed with anything else (401), and answers 503 for a scanner whose field is empty', async () => {
    expect((await post('github', githubDelivery(`ghws-${randomBytes(12).toString('hex')}`, { number: 8 }))).status).toBe(401);
    expect((await post('gitleaks', gitleaksDelivery(`not-the-ingest-token-${canary}`, [{ value: canary }]))).status).toBe(401);
    const gitguardian = await post('gitguardian', gitguardianDelivery(`ggws-${randomBytes(12).toString('hex')}`, { id: 3 }));
    expect(gitguardian).toEqual({ status: 503, json: { message: 'the gitguardian webhook is not configured on this deployment' } });
    expect(queued()).toEqual([]);
  });

  it('answers 503 while the secret cannot be read, logging the SDK error only, and accepts the same delivery once it can', async () => {
    sm.fail('GetSecretValue', 'AccessDeniedException');
    const delivery = gitleaksDelivery(secrets.ingestToken, [{ value: canary }]);
    expect(await post('gitleaks', delivery)).toEqual({ status: 503, json: { message: 'the delivery could not be queued; send it again' } });
    const failed = logs.filter((l) => l.includes('webhook failed'));
    expect(failed).toHaveLength(1);
    expect(JSON.parse(failed[0]!).error).toEqual({ code: 'LEAK_CREDENTIALS_UNREADABLE', message: 'could not read the leak webhook credentials secret (AccessDeniedException)' });
    expect(queued()).toEqual([]);
    // A failed read is not cached: the scanner's retry reads the secret again and gets in.
    expect((await post('gitleaks', delivery)).status).toBe(202);
    expect(queued()).toHaveLength(1);
    expect(sm.requestsFor('GetSecretValue')).toHaveLength(2);
  });

  it('answers 500 for a secret that is not JSON, without quoting it', async () => {
    await sm.client().send(new PutSecretValueCommand({ SecretId: WEBHOOK_SECRET_ID, SecretString: `githubWebhookSecret=${secrets.githubWebhookSecret}` }));
    expect(await post('github', githubDelivery(secrets.githubWebhookSecret, { number: 9 }))).toEqual({ status: 500, json: { message: 'internal error' } });
    expect(logs.some((l) => l.includes('LEAK_CREDENTIALS_INVALID'))).toBe(true);
  });

  it('takes a replaced webhook secret into account within 5 minutes, without a deploy', async () => {
    const replaced = { ...secrets, githubWebhookSecret: `ghws-${randomBytes(12).toString('hex')}` };
    guard.secret(replaced.githubWebhookSecret);
    expect((await post('github', githubDelivery(secrets.githubWebhookSecret, { number: 10 }))).status).toBe(202);
    await putCredentials(replaced);
    clock += 4 * 60_000;
    expect((await post('github', githubDelivery(secrets.githubWebhookSecret, { number: 11 }))).status).toBe(202);
    clock += 60_000;
    expect((await post('github', githubDelivery(secrets.githubWebhookSecret, { number: 12 }))).status).toBe(401);
    expect((await post('github', githubDelivery(replaced.githubWebhookSecret, { number: 12 }))).status).toBe(202);
    expect(sm.requestsFor('GetSecretValue')).toHaveLength(2);
  });

  it('releases the delivery id (DeleteItem) when SQS refuses, so the retry is accepted rather than answered 409', async () => {
    let down = true;
    sqs.on(SendMessageBatchCommand).callsFake(() => {
      if (down) throw Object.assign(new Error('Service unavailable'), { name: 'ServiceUnavailable' });
      return { Successful: [], Failed: [] };
    });
    const delivery = trufflehogDelivery(secrets.ingestToken, [{ value: canary }]);
    expect((await post('trufflehog', delivery)).status).toBe(503);
    expect(dynamo.commandCalls(DeleteItemCommand).map((c) => c.args[0].input)).toEqual([{ TableName: TABLE, Key: { pk: { S: `trufflehog#${delivery.deliveryId}` } } }]);
    down = false;
    expect((await post('trufflehog', delivery)).status).toBe(202);
    expect((await post('trufflehog', delivery)).status).toBe(409);
    // The DynamoDB actions the webhook's role grants (serverless.yml: PutItem, DeleteItem) are all it uses.
    expect([...new Set(dynamo.calls().map((c) => c.args[0].constructor.name))].sort()).toEqual(['DeleteItemCommand', 'PutItemCommand']);
  });
});

describe('leak-worker on AWS: the GitHub token from Secrets Manager', () => {
  let rekey: AwsTestRekey;
  let github: GitHubDouble;
  let token: string;
  let tasks: LeakTask[];
  const config = (overrides: Record<string, string> = {}) =>
    parseConfig({
      REKEY_STORE: 'aws',
      AWS_REGION: 'us-east-1',
      REKEY_INDEX_KEY: randomBytes(32).toString('base64'),
      REKEY_EVENT_BUS_NAME: 'rekey-ci',
      REKEY_GITHUB_TOKEN_SECRET_ID: TOKEN_SECRET_ID,
      GITHUB_API_URL: github.url,
      REKEY_TICKETS_REPO: 'acme/security',
      ...overrides,
    });
  const batch = (): SQSEvent => ({ Records: tasks.splice(0).map((task) => ({ messageId: randomUUID(), body: JSON.stringify(task) }) as SQSEvent['Records'][number]) });

  beforeEach(async () => {
    rekey = await awsTestRekey();
    token = `ghp_${randomBytes(16).toString('hex')}`;
    rekey.guard.secret(token);
    github = await GitHubDouble.start({ token });
    await rekey.sm.client().send(new CreateSecretCommand({ Name: TOKEN_SECRET_ID, SecretString: JSON.stringify({ githubToken: token }) }));
    // A GitHub alert delivery, queued by the webhook (its own secret from the environment here).
    const stray = `Stray-${randomBytes(12).toString('base64url')}`;
    rekey.guard.secret(stray);
    github.addAlert('acme/billing-api', { number: 31, secret: stray });
    tasks = [];
    const webhookSecret = `ghws-${randomBytes(12).toString('hex')}`;
    const seen = new Set<string>();
    const intake = webhookIntake(config({ GITHUB_WEBHOOK_SECRET: webhookSecret }), {
      logger: rekey.logger,
      queue: { enqueue: async (queued) => void tasks.push(...queued) },
      deliveries: { claim: async (s, id) => !seen.has(`${s}:${id}`) && !!seen.add(`${s}:${id}`), release: async (s, id) => void seen.delete(`${s}:${id}`) },
    });
    const reply = (await webhookHandler({ services: async () => rekey, intake })(webhookEvent('github', githubDelivery(webhookSecret, { number: 31 })), lambdaContext())) as APIGatewayProxyStructuredResultV2;
    expect(reply.statusCode, String(reply.body)).toBe(202);
    expect(tasks).toHaveLength(1);
  });

  afterEach(async () => {
    // What rekey sent GitHub (not GitHub's answer to the alert read, which holds the value by design).
    for (const request of github.requests) rekey.guard.output(`GitHub ${request.method} ${request.path}`, JSON.stringify({ query: request.query, body: request.body }));
    await github.close();
    await rekey.dispose();
    rekey.guard.assertClean();
  });

  it('reads the alert and opens the ticket with the token from the secret, which is in no environment', async () => {
    const before = rekey.sm.requests.length;
    const leak = workerLeakDeps(async () => rekey, config());
    const answer = (await workerHandler({ services: async () => rekey, leak })(batch(), lambdaContext())) as { batchItemFailures: unknown[] };
    expect(answer.batchItemFailures).toEqual([]);
    // Authenticated: the double answers 401 to any other token.
    expect(github.requests.every((r) => r.status !== 401)).toBe(true);
    expect(github.requestsTo('GET', /\/secret-scanning\/alerts\/31$/)).toHaveLength(1);
    expect(github.issues('acme/security')).toHaveLength(1);
    expect(rekey.sm.requestsFor('GetSecretValue').filter((r) => r.body.SecretId === TOKEN_SECRET_ID)).toHaveLength(1);
    // Only Secrets Manager operations its role grants (serverless.yml, test/helpers/iam.ts).
    const operations = [...new Set(rekey.sm.requests.slice(before).map((r) => r.operation))];
    expect(operations.filter((operation) => !(SECRETS_ACTIONS['leak-worker'] as readonly string[]).includes(operation))).toEqual([]);
  });

  it('re-reads the token every 5 minutes and rebuilds the GitHub client only when it changed', async () => {
    let clock = 0;
    const leak = workerLeakDeps(async () => rekey, config(), { clock: () => clock });
    const first = await leak();
    clock += 5 * 60_000;
    expect(await leak()).toBe(first);
    const replaced = `ghp_${randomBytes(16).toString('hex')}`;
    rekey.guard.secret(replaced);
    await rekey.sm.client().send(new PutSecretValueCommand({ SecretId: TOKEN_SECRET_ID, SecretString: JSON.stringify({ githubToken: replaced }) }));
    clock += 4 * 60_000;
    expect(await leak()).toBe(first);
    clock += 60_000;
    const second = await leak();
    expect(second).not.toBe(first);
    expect(second.tickets).not.toBe(first.tickets);
    expect(rekey.sm.requestsFor('GetSecretValue').filter((r) => r.body.SecretId === TOKEN_SECRET_ID)).toHaveLength(3);
  });

  it('fails the batch (SQS redelivers it) while the token secret cannot be read, naming the SDK error only', async () => {
    rekey.sm.fail('GetSecretValue', 'AccessDeniedException');
    const leak = workerLeakDeps(async () => rekey, config());
    const worker = workerHandler({ services: async () => rekey, leak });
    const event = batch();
    const error = await worker(event, lambdaContext()).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    rekey.guard.error('worker error', error);
    expect(error?.message).toBe('LEAK_CREDENTIALS_UNREADABLE: could not read the GitHub token credentials secret (AccessDeniedException)');
    expect(github.requests).toEqual([]);
    // The redelivery reads the secret again.
    const answer = (await worker(event, lambdaContext())) as { batchItemFailures: unknown[] };
    expect(answer.batchItemFailures).toEqual([]);
    expect(github.issues('acme/security')).toHaveLength(1);
  });
});
