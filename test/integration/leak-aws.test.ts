import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { randomBytes, randomUUID } from 'node:crypto';
import type { APIGatewayProxyStructuredResultV2, SQSEvent } from 'aws-lambda';
import { Sealed } from '#core/sealed.ts';
import { STAGE } from '#core/ports/secret-store.ts';
import { hmslHash } from '#core/fingerprint.ts';
import type { LeakTask } from '#core/remediation.ts';
import { parseConfig } from '#runtime/config.ts';
import { buildLeakServices } from '#runtime/leak-services.ts';
import { createHandler as webhookHandler } from '../../functions/leak-webhook.ts';
import { createHandler as workerHandler } from '../../functions/leak-worker.ts';
import { awsTestRekey, type AwsTestRekey } from '#test/helpers/aws-rekey.ts';
import { assertCanLogIn, assertCannotLogIn, servers, uniqueName } from '#test/helpers/databases.ts';
import { dropUser } from '#test/helpers/users.ts';
import { managedUser, storedLogin, type TestRekey } from '#test/helpers/rekey.ts';
import { GitHubDouble } from '#test/helpers/github-double.ts';
import { lambdaContext, webhookEvent } from '#test/helpers/lambda.ts';
import { gitguardianDelivery, gitleaksDelivery, type Delivery } from '#test/helpers/leak-pipeline.ts';

/**
 * On AWS the fingerprint index is the secrets' own tags (`rekey:fp:<versionId>:<form>` = HMAC),
 * found with one ListSecrets tag-value filter: the leak worker reads the matched secret and its
 * admin secret, and no other value. Against the fake Secrets Manager endpoint (driven by the
 * unmodified SDK client) and the real PostgreSQL server.
 */

const created: string[] = [];
afterAll(async () => {
  for (const username of created) await dropUser('postgres', username).catch(() => {});
});

describe('leak matching on AWS (fingerprints in the secrets’ tags)', () => {
  let rekey: AwsTestRekey;
  let github: GitHubDouble;
  const token = `ghp_${randomBytes(16).toString('hex')}`;
  beforeEach(async () => {
    rekey = await awsTestRekey();
    github = await GitHubDouble.start({ token });
  });
  afterEach(async () => {
    for (const request of github.requests) rekey.guard.output(`GitHub ${request.method} ${request.path}`, JSON.stringify([request.body, request.response]));
    await github.close();
    await rekey.dispose();
    rekey.guard.assertClean();
  });

  it('indexes HMACs only, and matches GitGuardian and Gitleaks leaks by tag lookup without reading other secrets', async () => {
    const username = uniqueName('aws');
    created.push(username);
    const app = await managedUser(rekey as unknown as TestRekey, 'postgres', { username, strategy: 'single', withAdmin: true, tags: { 'rekey:environment': 'prod' } });
    // Bystanders: their values must never be read while matching.
    const s = servers().postgres;
    const bystanders: string[] = [];
    for (let i = 0; i < 5; i++) {
      const password = `By-${randomBytes(12).toString('base64url')}`;
      rekey.guard.secret(password);
      const id = `bystander/${i}-${randomBytes(3).toString('hex')}`;
      bystanders.push(id);
      await rekey.deps.store.createSecret(id, new Sealed(JSON.stringify({ engine: 'postgres', host: s.host, port: s.port, username: `by_${i}`, password, dbname: s.database })));
    }

    const first = await storedLogin(rekey as unknown as TestRekey, app.secretId, { stage: STAGE.current });
    const tags = rekey.sm.inspect(app.secretId)!.tags.filter((t) => t.Key.startsWith('rekey:fp:'));
    expect(tags.map((t) => t.Key).sort()).toEqual(['hmsl', 'password', 'uri'].map((form) => `rekey:fp:${first.versionId}:${form}`).sort());
    for (const tag of tags) {
      expect(tag.Value).toMatch(/^[0-9a-f]{64}$/);
      expect(tag.Value).not.toBe(await hmslHash(app.password)); // keyed: not GitGuardian's public hash
    }

    const queued: LeakTask[] = [];
    const config = parseConfig({
      REKEY_STORE: 'aws',
      AWS_REGION: 'us-east-1',
      REKEY_INDEX_KEY: randomBytes(32).toString('base64'),
      REKEY_EVENT_BUS_NAME: 'rekey-test',
      GITGUARDIAN_WEBHOOK_SECRET: 'gg-secret-for-this-test',
      REKEY_INGEST_TOKEN: 'ingest-token-for-this-test',
      GITHUB_TOKEN: token,
      GITHUB_API_URL: github.url,
      REKEY_TICKETS_REPO: 'acme/security',
    });
    const seen = new Set<string>();
    const leak = buildLeakServices(rekey, config, {
      queue: { enqueue: async (tasks) => void queued.push(...tasks) },
      deliveries: { claim: async (source, id) => !seen.has(`${source}:${id}`) && !!seen.add(`${source}:${id}`), release: async (source, id) => void seen.delete(`${source}:${id}`) },
    });
    const webhook = webhookHandler({ services: async () => rekey, intake: async () => leak.intake });
    const post = async (scanner: string, delivery: Delivery) => {
      const reply = (await webhook(webhookEvent(scanner, delivery), lambdaContext())) as APIGatewayProxyStructuredResultV2;
      expect(reply.statusCode, String(reply.body)).toBe(202);
    };
    const worker = workerHandler({ services: async () => rekey, leak: async () => leak.leak });
    const work = async () => {
      const batch: SQSEvent = { Records: queued.splice(0).map((task) => ({ messageId: randomUUID(), body: JSON.stringify(task) }) as SQSEvent['Records'][number]) };
      const answer = (await worker(batch, lambdaContext())) as { batchItemFailures: unknown[] };
      expect(answer.batchItemFailures).toEqual([]);
    };

    // GitGuardian: only the HMSL hash travels; the index key is the deployment's (REKEY_INDEX_KEY).
    const before = rekey.sm.requests.length;
    await post('gitguardian', gitguardianDelivery(config.GITGUARDIAN_WEBHOOK_SECRET!, { id: 4242, hmslHash: await hmslHash(app.password) }));
    await work();
    const during = rekey.sm.requests.slice(before);
    expect(during.some((r) => r.operation === 'ListSecrets' && JSON.stringify(r.body.Filters).includes('tag-value'))).toBe(true);
    const read = new Set(during.filter((r) => r.operation === 'GetSecretValue').map((r) => String(r.body.SecretId)));
    expect([...read].sort()).toEqual([app.adminSecretId, app.secretId].sort());
    for (const id of bystanders) expect(during.some((r) => JSON.stringify(r.body).includes(id))).toBe(false);
    await assertCannotLogIn('postgres', app.username, app.password);
    const rotated = await storedLogin(rekey as unknown as TestRekey, app.secretId, { stage: STAGE.current });
    expect(rotated.versionId).not.toBe(first.versionId);
    await assertCanLogIn('postgres', rotated.username, rotated.password);
    // The new version is indexed, the old ones kept (for "already revoked") within the budget.
    const keys = rekey.sm.inspect(app.secretId)!.tags.map((t) => t.Key).filter((k) => k.startsWith('rekey:fp:'));
    expect(keys).toEqual(expect.arrayContaining([`rekey:fp:${rotated.versionId}:password`, `rekey:fp:${first.versionId}:password`]));
    expect(rekey.sm.inspect(app.secretId)!.tags.length).toBeLessThanOrEqual(50);

    // Gitleaks reports the new (now current) password a minute later: matched the same way.
    await post('gitleaks', gitleaksDelivery(config.REKEY_INGEST_TOKEN!, [{ value: rotated.password }]));
    await work();
    await assertCannotLogIn('postgres', rotated.username, rotated.password);
    const issues = github.issues('acme/security');
    expect(issues).toHaveLength(2);
    expect(issues.map((i) => i.labels)).toEqual(expect.arrayContaining([expect.arrayContaining(['source:gitguardian']), expect.arrayContaining(['source:gitleaks'])]));
    expect(issues.every((i) => i.title.endsWith(`Leaked credential: ${app.secretId}`))).toBe(true);
  });
});
