import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { randomBytes, randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, SQSEvent } from 'aws-lambda';
import { CreateSecretCommand, PutSecretValueCommand, RotateSecretCommand } from '@aws-sdk/client-secrets-manager';
import { DETAIL_TYPE } from '#core/events.ts';
import { STAGE } from '#core/ports/secret-store.ts';
import type { LeakTask } from '#core/remediation.ts';
import type { SweepReport } from '#core/sweep.ts';
import { parseConfig } from '#runtime/config.ts';
import { webhookIntake } from '#runtime/webhook-services.ts';
import { workerLeakDeps } from '#runtime/leak-services.ts';
import { createHandler as createSweepHandler } from '../../functions/scheduled-rotation.ts';
import { createHandler as createOpsHandler, type OpsResult } from '../../functions/ops.ts';
import { createHandler as createWebhookHandler } from '../../functions/leak-webhook.ts';
import { createHandler as createWorkerHandler } from '../../functions/leak-worker.ts';
import { asSecretsManager, awsTestRekey, type AwsTestRekey } from '#test/helpers/aws-rekey.ts';
import { FakeIam } from '#test/helpers/fake-iam.ts';
import { GitHubActionsDouble } from '#test/helpers/github-actions-double.ts';
import { GitHubDouble } from '#test/helpers/github-double.ts';
import { lambdaContext } from '#test/helpers/lambda.ts';
import { trufflehogDelivery } from '#test/helpers/leak-pipeline.ts';

/**
 * Consumers on AWS: the functions that rotate (rotate-secret driven by Secrets Manager, the sweep,
 * ops, and leak-worker on a leak) push the new value to GitHub Actions with the token they read at
 * run time from `rekey/<stage>/github-token` — as serverless.yml configures them
 * (REKEY_GITHUB_TOKEN_SECRET_ID, no GITHUB_TOKEN) — and read it only when the value lists a GitHub
 * consumer. AWS IAM access keys (IAM and STS stubbed at the SDK client over one in-memory account),
 * the fake Secrets Manager endpoint, GitHub's Actions secrets API as an HTTP double. Every Secrets
 * Manager call is checked against the caller's role (test/helpers/iam.ts), the token's reads
 * against the roles that may read it; the leak guard reads every log line, event, result, error and
 * request rekey sent GitHub.
 */

const REPO = 'acme/deploy';
const ENVIRONMENT = 'production';
const TOKEN_SECRET_ID = 'rekey/ci/github-token';
const CONSUMER = `github-actions ${REPO} (environment ${ENVIRONMENT})`;
const githubConsumer = { type: 'github-actions', repository: REPO, environment: ENVIRONMENT, secrets: { AWS_ACCESS_KEY_ID: 'accessKeyId', AWS_SECRET_ACCESS_KEY: 'secretAccessKey' } };

let actions: GitHubActionsDouble;
let fake: FakeIam;
let rekey: AwsTestRekey;
let token: string;

beforeEach(async () => {
  token = `ghp_${randomBytes(16).toString('hex')}`;
  actions = await GitHubActionsDouble.start({ token });
  actions.addRepository(REPO, [ENVIRONMENT]);
  fake = new FakeIam();
  // As serverless.yml configures the rotation functions: the token secret's id, no GITHUB_TOKEN.
  rekey = await awsTestRekey({ env: { REKEY_GITHUB_TOKEN_SECRET_ID: TOKEN_SECRET_ID, GITHUB_API_URL: actions.url } });
  rekey.guard.secret(token);
  rekey.driveRotations(asSecretsManager);
});

afterEach(async () => {
  rekey.assertGrantedByIam();
  for (const keys of fake.users.values()) for (const key of keys) rekey.guard.secret(key.secret);
  // What rekey sent GitHub but the Authorization header, which must carry the token.
  rekey.guard.output('GitHub requests', actions.requests.map((r) => `${r.method} ${r.url}\n${r.body}`).join('\n'));
  fake.restore();
  await actions.close();
  await rekey.dispose();
  rekey.guard.assertClean();
});

/** The token secret as the stack creates it (`{"githubToken": ""}`), or filled. */
async function putToken(value: string, create = false): Promise<void> {
  const text = JSON.stringify({ githubToken: value });
  if (create) await rekey.sm.client().send(new CreateSecretCommand({ Name: TOKEN_SECRET_ID, SecretString: text }));
  else await rekey.sm.client().send(new PutSecretValueCommand({ SecretId: TOKEN_SECRET_ID, SecretString: text }));
}

const tokenReads = () => rekey.sm.requestsFor('GetSecretValue').filter((r) => r.body.SecretId === TOKEN_SECRET_ID);

/** An IAM user's access key as a managed secret with rekey attached as its rotation function. */
async function iamSecret(options: { consumers?: unknown[]; grace?: string } = {}) {
  const userName = `ci-${randomBytes(3).toString('hex')}`;
  const key = fake.addKey(userName);
  rekey.guard.secret(key.secret);
  const secretId = `iam/${userName}`;
  await rekey.deps.store.createSecret(secretId, fake.value(userName, key, options.consumers ? { consumers: options.consumers } : {}), {
    tags: { 'rekey:managed': 'true', 'rekey:grace': options.grace ?? '1h' },
  });
  rekey.sm.setRotationEnabled(secretId, true);
  return { secretId, userName, key };
}

/** `aws secretsmanager rotate-secret`: Secrets Manager then drives rotate-secret through the four steps. */
async function rotateThroughSecretsManager(secretId: string): Promise<string> {
  const out = await rekey.sm.client().send(new RotateSecretCommand({ SecretId: secretId }));
  await rekey.sm.settled();
  expect(rekey.failedRotations.map((f) => f.error.message)).toEqual([]);
  return out.VersionId!;
}

async function current(secretId: string) {
  const version = await rekey.deps.store.getSecretValue(secretId, { stage: STAGE.current });
  return { versionId: version.versionId, ...(JSON.parse(version.value.reveal()) as { accessKeyId: string; secretAccessKey: string }) };
}

const consumersTag = (secretId: string) => rekey.sm.inspect(secretId)!.tags.find((t) => t.Key === 'rekey:consumers')?.Value;

/** One schedule tick, as EventBridge delivers it. */
async function tick(): Promise<SweepReport> {
  const event = JSON.parse(await readFile(join(import.meta.dirname, '../../events/schedule/tick.json'), 'utf8')) as unknown;
  const result = await rekey.invokeAs('scheduled-rotation', () => createSweepHandler({ services: async () => rekey })(event, lambdaContext()));
  if (!('items' in result)) throw new Error(`the sweep answered ${result.error.code} instead of a report`);
  rekey.guard.output('sweep report', result);
  return result;
}

function expectPushed(now: { accessKeyId: string; secretAccessKey: string }): void {
  expect(actions.decrypt(REPO, 'AWS_ACCESS_KEY_ID', ENVIRONMENT)).toBe(now.accessKeyId);
  expect(actions.decrypt(REPO, 'AWS_SECRET_ACCESS_KEY', ENVIRONMENT)).toBe(now.secretAccessKey);
  // Authenticated with the secret's token: the double answers 401 to anything else.
  expect(actions.requests.length).toBeGreaterThan(0);
  expect(actions.requests.filter((r) => r.status === 401)).toEqual([]);
}

describe('GitHub Actions consumers on AWS: the token from rekey/<stage>/github-token', () => {
  describe('rotate-secret', () => {
    it('pushes the new key pair with the token it reads from the secret on finishSecret, which is in no environment', async () => {
      await putToken(token, true);
      const app = await iamSecret({ consumers: [githubConsumer] });
      const versionId = await rotateThroughSecretsManager(app.secretId);
      const now = await current(app.secretId);
      expect(now.versionId).toBe(versionId);
      expectPushed(now);
      expect(consumersTag(app.secretId)).toBe(`${versionId} ok`);
      expect(rekey.events.find((e) => e.detailType === DETAIL_TYPE.consumersUpdated)?.detail).toMatchObject({ secretId: app.secretId, versionId, consumers: [{ consumer: CONSUMER, updated: ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY'] }] });
      // Read once, by rotate-secret (whose role grants it: assertGrantedByIam, after each test).
      expect(tokenReads()).toHaveLength(1);
      expect(rekey.operationsOf('rotate-secret')).toContain('GetSecretValue');
      expect(process.env.GITHUB_TOKEN ?? '').not.toBe(token);
    });

    it('reads no token for values that list no GitHub consumer (none, or only an event consumer)', async () => {
      await putToken(token, true);
      const bare = await iamSecret();
      const evented = await iamSecret({ consumers: [{ type: 'event', name: 'deployer', request: { action: 'ecs-force-new-deployment' } }] });
      await rotateThroughSecretsManager(bare.secretId);
      const versionId = await rotateThroughSecretsManager(evented.secretId);
      expect(rekey.events.find((e) => e.detailType === DETAIL_TYPE.consumerUpdateRequested)?.detail).toMatchObject({ secretId: evented.secretId, versionId, consumer: 'deployer' });
      expect(tokenReads()).toEqual([]);
      expect(actions.requests).toEqual([]);
    });

    it('with the token secret still empty (as deployed): the push fails naming the setting, the new key stays AWSCURRENT and the revoke waits; once filled, the sweep pushes, then revokes', async () => {
      await putToken('', true);
      const app = await iamSecret({ consumers: [githubConsumer], grace: '0' });
      const versionId = await rotateThroughSecretsManager(app.secretId);
      // The rotation succeeded: the new key is AWSCURRENT and works; nothing was lost.
      const now = await current(app.secretId);
      expect(now.versionId).toBe(versionId);
      expect(now.accessKeyId).not.toBe(app.key.id);
      expect(fake.key(now.accessKeyId)?.status).toBe('Active');
      expect(rekey.invocations.filter((i) => i.error)).toEqual([]);
      // The push failed, clearly, and is recorded; GitHub was not called without a token.
      const message = `no GitHub token to push ${app.secretId} to ${CONSUMER}: set "githubToken" in the secret REKEY_GITHUB_TOKEN_SECRET_ID names (rekey/<stage>/github-token)`;
      expect(rekey.events.find((e) => e.detailType === DETAIL_TYPE.consumerUpdateFailed)?.detail).toMatchObject({ secretId: app.secretId, versionId, failed: [{ consumer: CONSUMER, code: 'CONFIG_INVALID', message }] });
      expect(consumersTag(app.secretId)).toBe(`${versionId} failed`);
      expect(actions.requests).toEqual([]);

      // Grace 0, but the old key is still in GitHub's copy: the sweep pushes again (still no token) and revokes nothing.
      const blocked = await tick();
      expect(blocked.items).toEqual([{ secretId: app.secretId, action: 'failed', versionId, error: { code: 'CONFIG_INVALID', message: expect.stringContaining(message) } }]);
      expect(fake.key(app.key.id)?.status).toBe('Active');

      // The token is filled: the next tick reads it (an empty one was not kept), pushes, then revokes.
      await putToken(token);
      const done = await tick();
      expect(done.items).toEqual([{ secretId: app.secretId, action: 'revoked', versionId: expect.any(String) }]);
      expectPushed(now);
      expect(consumersTag(app.secretId)).toBe(`${versionId} ok`);
      expect(fake.key(app.key.id)?.status).toBe('Inactive');
      expect(tokenReads()).toHaveLength(3); // rotate-secret, then each tick
    });

    it('reports a token secret it cannot read as the push failure (the SDK error only), and keeps the new key', async () => {
      // No such secret (a wrong ARN, or a role that may not read it: the SDK error's name differs).
      const app = await iamSecret({ consumers: [githubConsumer] });
      const versionId = await rotateThroughSecretsManager(app.secretId);
      expect((await current(app.secretId)).versionId).toBe(versionId);
      expect(rekey.events.find((e) => e.detailType === DETAIL_TYPE.consumerUpdateFailed)?.detail).toMatchObject({
        failed: [{ consumer: CONSUMER, code: 'LEAK_CREDENTIALS_UNREADABLE', message: 'could not read the GitHub token credentials secret (ResourceNotFoundException)' }],
      });
      expect(consumersTag(app.secretId)).toBe(`${versionId} failed`);
      expect(actions.requests).toEqual([]);
    });
  });

  describe('ops', () => {
    it('rotates in-process, pushes with the token from the secret, then revokes at once (grace 0) — with no RotateSecret', async () => {
      await putToken(token, true);
      const app = await iamSecret({ consumers: [githubConsumer], grace: '0' });
      const ops = createOpsHandler({ services: async () => rekey });
      const answer = (await rekey.invokeAs('ops', () => ops({ action: 'rotate', secretId: app.secretId, reason: 'on-call: test' }, lambdaContext()))) as OpsResult;
      rekey.guard.output('ops result', answer);
      expect(answer).toMatchObject({ ok: true, action: 'rotate', result: { consumers: { updated: [{ consumer: CONSUMER }], failed: [] }, revoked: { method: 'deactivated', keyId: app.key.id } } });
      expectPushed(await current(app.secretId));
      expect(fake.key(app.key.id)?.status).toBe('Inactive');
      expect(rekey.operationsOf('ops')).not.toContain('RotateSecret');
      expect(tokenReads()).toHaveLength(1);
    });
  });

  describe('leak-worker', () => {
    it('on a leak of AWSCURRENT: rotates, pushes the new pair with the token from the secret, deactivates the leaked key and opens the ticket', async () => {
      await putToken(token, true);
      const app = await iamSecret({ consumers: [githubConsumer] });
      const issues = await GitHubDouble.start({ token });
      try {
        // The webhook queues the TruffleHog finding (the id and secret run together).
        const ingestToken = `ingest-${randomBytes(12).toString('hex')}`;
        rekey.guard.secret(ingestToken);
        const tasks: LeakTask[] = [];
        const intake = webhookIntake(parseConfig({ REKEY_STORE: 'aws', AWS_REGION: 'us-east-1', REKEY_INDEX_KEY: rekey.indexKey.toString('base64'), REKEY_INGEST_TOKEN: ingestToken }), {
          logger: rekey.logger,
          queue: { enqueue: async (queued) => void tasks.push(...queued) },
          deliveries: { claim: async () => true, release: async () => {} },
        });
        const delivery = trufflehogDelivery(ingestToken, [{ value: `${app.key.id}${app.key.secret}`, public: true }]);
        const event = { version: '2.0', headers: delivery.headers, pathParameters: { scanner: 'trufflehog' }, body: Buffer.from(delivery.body).toString('base64'), isBase64Encoded: true } as unknown as APIGatewayProxyEventV2;
        const reply = (await createWebhookHandler({ services: async () => rekey, intake })(event, lambdaContext())) as APIGatewayProxyStructuredResultV2;
        rekey.guard.output('webhook reply', reply);
        expect(reply.statusCode, String(reply.body)).toBe(202);
        expect(tasks.map((t) => t.identifiers)).toEqual([[app.key.id]]);

        // As serverless.yml configures leak-worker: the token secret's id, the tickets repository.
        const config = parseConfig({
          REKEY_STORE: 'aws',
          AWS_REGION: 'us-east-1',
          REKEY_INDEX_KEY: rekey.indexKey.toString('base64'),
          REKEY_EVENT_BUS_NAME: 'rekey-test',
          REKEY_GITHUB_TOKEN_SECRET_ID: TOKEN_SECRET_ID,
          REKEY_TICKETS_REPO: 'acme/security',
          GITHUB_API_URL: issues.url,
        });
        const worker = createWorkerHandler({ services: async () => rekey, leak: workerLeakDeps(async () => rekey, config) });
        const batch: SQSEvent = { Records: tasks.map((task) => ({ messageId: randomUUID(), body: JSON.stringify(task) }) as SQSEvent['Records'][number]) };
        const answer = (await rekey.invokeAs('leak-worker', () => worker(batch, lambdaContext()))) as { batchItemFailures: unknown[] };
        rekey.guard.output('worker answer', answer);
        expect(answer.batchItemFailures).toEqual([]);

        const now = await current(app.secretId);
        expect(now.accessKeyId).not.toBe(app.key.id);
        expectPushed(now);
        expect(fake.key(app.key.id)?.status).toBe('Inactive');
        expect(issues.issues('acme/security')).toHaveLength(1);
        expect(issues.requests.filter((r) => r.status === 401)).toEqual([]);
        expect(rekey.operationsOf('leak-worker')).not.toContain('RotateSecret');
        for (const request of issues.requests) rekey.guard.output(`GitHub ${request.method} ${request.path}`, JSON.stringify({ query: request.query, body: request.body }));
      } finally {
        await issues.close();
      }
    });
  });
});
