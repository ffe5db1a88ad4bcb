import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { randomBytes, randomUUID } from 'node:crypto';
import { ConsumerAdapters } from '#adapters/consumers/registry.ts';
import { CredentialKinds } from '#adapters/targets/kinds.ts';
import { HttpApiKeyKind } from '#adapters/targets/http-api-key.ts';
import { inspectSecret } from '#core/inspect.ts';
import { DETAIL_TYPE } from '#core/events.ts';
import { REVOKED_LABEL, STAGE } from '#core/ports/secret-store.ts';
import { rotateNow } from '#core/operations.ts';
import { revokeCredential } from '#core/revocation.ts';
import { validateStoredValue } from '#core/credentials.ts';
import { sweep } from '#core/sweep.ts';
import { Sealed } from '#core/sealed.ts';
import { FakeIam } from '#test/helpers/fake-iam.ts';
import { GitHubActionsDouble } from '#test/helpers/github-actions-double.ts';
import { FakeProvider } from '#test/helpers/http-provider.ts';
import { testRekey, type TestRekey } from '#test/helpers/rekey.ts';

/**
 * Provider credentials through the real engine, store, sweep and consumers: AWS IAM access keys
 * (IAM and STS mocked at the SDK client, over one in-memory account), an HTTP provider on
 * 127.0.0.1, and GitHub's Actions secrets API as an HTTP double. The leak guard reads every log
 * line, event, GitHub request and provider request URL.
 */

const REPO = 'acme/deploy';
const HOUR = 3_600_000;

let github: GitHubActionsDouble;
let provider: FakeProvider;
let fake: FakeIam;
let rekey: TestRekey;
/** The engine's clock runs ahead of the store's by this much (grace periods without waiting). */
let ahead = 0;

beforeAll(async () => {
  github = await GitHubActionsDouble.start();
  github.addRepository(REPO, ['production']);
  provider = await FakeProvider.start();
});
afterAll(async () => {
  await github.close();
  await provider.close();
});

beforeEach(async () => {
  fake = new FakeIam({ newKeyRefusals: 2 });
  ahead = 0;
  github.requests.length = 0;
  provider.requests.length = 0;
  rekey = await testRekey({
    now: () => new Date(Date.now() + ahead),
    kinds: new CredentialKinds({ extra: [new HttpApiKeyKind({ retryBaseDelayMs: 1 })] }),
    consumers: (events) => new ConsumerAdapters({ events, octokit: github.octokit() }),
  });
  rekey.guard.secret(provider.adminToken);
});

afterEach(async () => {
  // Every value any version holds, and every key IAM or the provider ever made, is a secret.
  for (const secret of await rekey.deps.store.listSecrets()) {
    for (const version of secret.versions) rekey.guard.secretJson((await rekey.deps.store.getSecretValue(secret.secretId, { versionId: version.versionId })).value);
  }
  for (const keys of fake.users.values()) for (const key of keys) rekey.guard.secret(key.secret);
  for (const key of provider.keys.values()) rekey.guard.secret(key.secret);
  rekey.guard.output('GitHub request log', github.requestLog());
  rekey.guard.output('provider request URLs', provider.requests.map((r) => `${r.method} ${r.url}`).join('\n'));
  fake.restore();
  await rekey.dispose();
  rekey.guard.assertClean();
});

const current = async (secretId: string) => {
  const version = await rekey.deps.store.getSecretValue(secretId, { stage: STAGE.current });
  return { versionId: version.versionId, ...(JSON.parse(version.value.reveal()) as { accessKeyId: string; secretAccessKey: string; keyId: string; key: string }) };
};
const caught = (promise: Promise<unknown>) => promise.then(() => undefined, (error: unknown) => error);
const detailTypes = () => rekey.events.map((e) => e.detailType);

async function iamSecret(options: { consumers?: unknown[]; tags?: Record<string, string> } = {}) {
  const userName = `ci-${randomBytes(3).toString('hex')}`;
  const key = fake.addKey(userName);
  rekey.guard.secret(key.secret);
  const secretId = `iam/${userName}`;
  await rekey.deps.store.createSecret(secretId, fake.value(userName, key, options.consumers ? { consumers: options.consumers } : {}), {
    tags: { 'rekey:managed': 'true', 'rekey:grace': '1h', ...options.tags },
  });
  return { secretId, userName, key };
}

async function httpSecret(options: { consumers?: unknown[]; retries?: number } = {}) {
  const adminSecretId = `providers/acme/${randomBytes(3).toString('hex')}`;
  await rekey.deps.store.createSecret(adminSecretId, provider.adminValue(), { tags: { 'rekey:managed': 'false' } });
  const key = provider.addKey();
  rekey.guard.secret(key.secret);
  const secretId = `api/acme/${key.id}`;
  const value = provider.value(key, { adminSecretId, retries: options.retries ?? 1, ...(options.consumers ? { extra: { consumers: options.consumers } } : {}) });
  await rekey.deps.store.createSecret(secretId, value, { tags: { 'rekey:managed': 'true', 'rekey:grace': '1h' } });
  return { secretId, key, adminSecretId };
}

const githubConsumer = { type: 'github-actions', repository: REPO, environment: 'production', secrets: { AWS_ACCESS_KEY_ID: 'accessKeyId', AWS_SECRET_ACCESS_KEY: 'secretAccessKey' } };

describe('aws-iam-user through the rotation engine', () => {
  it("rotates: a second key, verified through IAM's eventual consistency, promoted; both keys work until the revoke", async () => {
    const app = await iamSecret();
    const result = await rekey.rotation.rotate(app.secretId, { trigger: 'manual', reason: 'test' });
    const now = await current(app.secretId);
    expect(result).toMatchObject({ versionId: now.versionId, strategy: 'two-key', username: app.userName, keyId: now.accessKeyId });
    expect(now.accessKeyId).not.toBe(app.key.id);
    expect(fake.keys(app.userName).map((k) => [k.id, k.status])).toEqual([
      [app.key.id, 'Active'],
      [now.accessKeyId, 'Active'],
    ]);
    // Two refusals while IAM converged, then the third check passed.
    expect(fake.calls.filter((c) => c === 'GetCallerIdentity')).toHaveLength(3);
    const previous = await rekey.deps.store.getSecretValue(app.secretId, { stage: STAGE.previous });
    expect(JSON.parse(previous.value.reveal()).accessKeyId).toBe(app.key.id);
    expect(detailTypes()).toEqual([DETAIL_TYPE.rotationStarted, DETAIL_TYPE.rotationSucceeded]);
    const status = await inspectSecret(rekey.deps, app.secretId);
    expect(status).toMatchObject({ engine: 'aws-iam-user', username: app.userName, keyId: now.accessKeyId, strategy: 'two-key', previousLive: true });
  });

  it('revokes the previous key by deactivating it (proven, retried while IAM converges); the sweep deletes it after a second grace', async () => {
    const app = await iamSecret();
    await rekey.rotation.rotate(app.secretId, { trigger: 'manual' });
    fake.deactivationLag = 1; // STS accepts the deactivated key once more
    const revoked = await revokeCredential(rekey.deps, app.secretId, { trigger: 'manual', reason: 'test' });
    expect(revoked).toMatchObject({ method: 'deactivated', username: app.userName, keyId: app.key.id, proven: true });
    expect(revoked.purgeAfter).toBeDefined();
    expect(fake.key(app.key.id)?.status).toBe('Inactive');
    const described = await rekey.deps.store.describeSecret(app.secretId);
    expect(described.versions.find((v) => v.versionId === revoked.versionId)?.stages).toContain(REVOKED_LABEL);
    expect(rekey.events.at(-1)).toMatchObject({ detailType: DETAIL_TYPE.credentialRevoked, detail: { method: 'deactivated', keyId: app.key.id, proven: true } });

    const tick = () => sweep(rekey.deps, rekey.trigger, { concurrency: 2, stuckAfterMs: 24 * HOUR });
    ahead = HOUR / 2;
    expect((await tick()).items).toEqual([{ secretId: app.secretId, action: 'nothing' }]);
    expect(fake.key(app.key.id)).toBeDefined();
    ahead = 2 * HOUR;
    expect((await tick()).items).toEqual([{ secretId: app.secretId, action: 'purged', versionId: revoked.versionId }]);
    expect(fake.key(app.key.id)).toBeUndefined();
    expect(fake.keys(app.userName)).toHaveLength(1);
    expect(detailTypes()).toContain(DETAIL_TYPE.credentialPurged);
    expect((await tick()).items).toEqual([{ secretId: app.secretId, action: 'nothing' }]);
  });

  it("leaves an orphan when it crashes between CreateAccessKey and storing the key; the next rotation deletes the orphan, never AWSCURRENT's key", async () => {
    const app = await iamSecret();
    const store = rekey.deps.store;
    const put = store.putSecretValue.bind(store);
    store.putSecretValue = async () => {
      store.putSecretValue = put;
      throw new Error('the process died');
    };
    expect(await caught(rekey.rotation.rotate(app.secretId, { trigger: 'schedule' }))).toBeDefined();
    const orphan = fake.keys(app.userName).find((k) => k.id !== app.key.id)!;
    expect(orphan).toBeDefined();
    expect((await current(app.secretId)).accessKeyId).toBe(app.key.id);
    expect((await store.describeSecret(app.secretId)).versions.some((v) => v.stages.includes(STAGE.pending))).toBe(false);

    await rekey.rotation.rotate(app.secretId, { trigger: 'manual' });
    const now = await current(app.secretId);
    expect(fake.key(orphan.id)).toBeUndefined();
    expect(fake.keys(app.userName).map((k) => k.id)).toEqual([app.key.id, now.accessKeyId]);
    expect(fake.key(app.key.id)?.status).toBe('Active');
  });

  it('a verification that keeps failing leaves AWSCURRENT and both keys as they were; a later run resumes the stored key', async () => {
    fake.newKeyRefusals = 1_000;
    const app = await iamSecret();
    const before = await current(app.secretId);
    const error = await caught(rekey.rotation.rotate(app.secretId, { trigger: 'schedule' }));
    expect(error).toMatchObject({ code: 'LOGIN_FAILED' });
    rekey.guard.error('rotation', error);
    expect(await current(app.secretId)).toEqual(before);
    const keys = fake.keys(app.userName);
    expect(keys.map((k) => k.status)).toEqual(['Active', 'Active']);
    const pending = (await rekey.deps.store.describeSecret(app.secretId)).versions.find((v) => v.stages.includes(STAGE.pending))!;
    expect(JSON.parse((await rekey.deps.store.getSecretValue(app.secretId, { versionId: pending.versionId })).value.reveal()).accessKeyId).toBe(keys[1]!.id);
    expect((await rekey.deps.store.describeSecret(app.secretId)).tags['rekey:last-outcome']).toBe('failed LOGIN_FAILED');

    keys[1]!.refusalsLeft = 0; // IAM has caught up
    const resumed = await rekey.rotation.rotate(app.secretId, { trigger: 'manual' });
    expect(resumed).toMatchObject({ resumed: true, versionId: pending.versionId, keyId: keys[1]!.id });
    expect(fake.keys(app.userName)).toHaveLength(2);
  });

  it('keeps at most two keys over rotations in a row, each AWSCURRENT working', async () => {
    fake.newKeyRefusals = 0;
    const app = await iamSecret();
    for (let i = 0; i < 4; i++) {
      await rekey.rotation.rotate(app.secretId, { trigger: 'manual' });
      const now = await current(app.secretId);
      expect(fake.keys(app.userName).length).toBeLessThanOrEqual(2);
      expect(fake.key(now.accessKeyId)?.status).toBe('Active');
    }
  });

  it('on a leak, deactivates the key at once, without waiting for its grace or for consumers', async () => {
    const app = await iamSecret({ consumers: [githubConsumer] });
    github.fail('PUT', /AWS_SECRET_ACCESS_KEY$/, 502);
    const rotated = await rekey.rotation.rotate(app.secretId, { trigger: 'leak', reason: 'leaked' });
    expect(rotated.consumers?.failed).toHaveLength(1);
    const revoked = await revokeCredential(rekey.deps, app.secretId, { stage: STAGE.previous, trigger: 'leak', actor: 'scanner:test' });
    expect(revoked.method).toBe('deactivated');
    expect(fake.key(app.key.id)?.status).toBe('Inactive');
  });
});

describe('consumers', () => {
  it('push the new key pair to GitHub Actions environment secrets, sealed for the environment; the plaintext never travels', async () => {
    const app = await iamSecret({ consumers: [githubConsumer] });
    const result = await rekey.rotation.rotate(app.secretId, { trigger: 'manual' });
    const now = await current(app.secretId);
    expect(result.consumers).toEqual({ versionId: now.versionId, updated: [{ consumer: `github-actions ${REPO} (environment production)`, updated: ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY'] }], failed: [] });
    expect(github.decrypt(REPO, 'AWS_SECRET_ACCESS_KEY', 'production')).toBe(now.secretAccessKey);
    expect(github.decrypt(REPO, 'AWS_ACCESS_KEY_ID', 'production')).toBe(now.accessKeyId);
    expect(github.requestLog()).not.toContain(now.secretAccessKey);
    expect(detailTypes()).toEqual([DETAIL_TYPE.rotationStarted, DETAIL_TYPE.rotationSucceeded, DETAIL_TYPE.consumersUpdated]);
    expect((await inspectSecret(rekey.deps, app.secretId)).consumers).toEqual({ listed: 1, state: 'pushed' });
    // A replay of finishSecret does not push again.
    const requests = github.requests.length;
    await rekey.rotation.runStep('finishSecret', app.secretId, now.versionId, { trigger: 'schedule' });
    expect(github.requests.length).toBe(requests);
  });

  it('a failed push blocks the revoke of the old key and is reported, losing nothing; the sweep pushes again, then revokes', async () => {
    const app = await iamSecret({ consumers: [githubConsumer], tags: { 'rekey:grace': '0' } });
    github.fail('PUT', /AWS_SECRET_ACCESS_KEY$/, 403);
    const result = await rotateNow(rekey.deps, rekey.rotation, app.secretId, { trigger: 'manual', reason: 'test' });
    const now = await current(app.secretId);
    expect(now.accessKeyId).toBe(result.keyId); // the new key is AWSCURRENT: never lost
    expect(result.revoked).toBeUndefined();
    expect(result.revokeBlocked).toMatchObject({ code: 'CONSUMERS_NOT_UPDATED' });
    expect(result.consumers?.failed).toEqual([
      { consumer: `github-actions ${REPO} (environment production)`, error: expect.objectContaining({ code: 'CONSUMER_PUSH_FAILED', retryable: false }) },
    ]);
    expect(rekey.events.find((e) => e.detailType === DETAIL_TYPE.consumerUpdateFailed)?.detail.error).toMatchObject({ code: 'CONSUMER_PUSH_FAILED' });
    expect(fake.key(app.key.id)?.status).toBe('Active');
    expect((await inspectSecret(rekey.deps, app.secretId)).consumers).toEqual({ listed: 1, state: 'failed' });

    const refused = await caught(revokeCredential(rekey.deps, app.secretId, { trigger: 'manual' }));
    expect(refused).toMatchObject({ code: 'CONSUMERS_NOT_UPDATED', retryable: true });
    rekey.guard.error('revoke', refused);
    expect(fake.key(app.key.id)?.status).toBe('Active');

    const report = await sweep(rekey.deps, rekey.trigger, { concurrency: 2, stuckAfterMs: 24 * HOUR });
    expect(report.items).toEqual([{ secretId: app.secretId, action: 'revoked', versionId: expect.any(String) }]);
    expect(github.decrypt(REPO, 'AWS_SECRET_ACCESS_KEY', 'production')).toBe(now.secretAccessKey);
    expect(fake.key(app.key.id)?.status).toBe('Inactive');
  });

  it('a sweep whose push fails again reports it and revokes nothing', async () => {
    const app = await iamSecret({ consumers: [githubConsumer], tags: { 'rekey:grace': '0' } });
    github.fail('PUT', /AWS_SECRET_ACCESS_KEY$/, 502, 2);
    await rotateNow(rekey.deps, rekey.rotation, app.secretId, { trigger: 'manual', reason: 'test' });
    const report = await sweep(rekey.deps, rekey.trigger, { concurrency: 2, stuckAfterMs: 24 * HOUR });
    expect(report.items).toEqual([{ secretId: app.secretId, action: 'failed', versionId: expect.any(String), error: { code: 'CONSUMER_PUSH_FAILED', message: expect.stringContaining('not updated') } }]);
    expect(fake.key(app.key.id)?.status).toBe('Active');
  });

  it('ask for a redeploy with a Consumer Update Requested event that names the version and never carries the value', async () => {
    const app = await httpSecret({ consumers: [{ type: 'event', name: 'billing-api', request: { action: 'ecs-force-new-deployment', cluster: 'prod', service: 'billing' } }] });
    const result = await rekey.rotation.rotate(app.secretId, { trigger: 'manual' });
    const requested = rekey.events.find((e) => e.detailType === DETAIL_TYPE.consumerUpdateRequested)!;
    expect(requested.detail).toMatchObject({ secretId: app.secretId, versionId: result.versionId, consumer: 'billing-api', request: { action: 'ecs-force-new-deployment' } });
    expect(detailTypes().slice(-2)).toEqual([DETAIL_TYPE.consumerUpdateRequested, DETAIL_TYPE.consumersUpdated]);
  });
});

describe('http-api-key through the rotation engine', () => {
  it('rotates through the create endpoint (version id as idempotency key); revoke calls the revoke endpoint and proves the old key refused', async () => {
    const app = await httpSecret();
    const result = await rekey.rotation.rotate(app.secretId, { trigger: 'manual' });
    const now = await current(app.secretId);
    expect(result).toMatchObject({ strategy: 'new-key', username: 'acme', keyId: now.keyId });
    expect(provider.callsTo('create')[0]!.headers['idempotency-key']).toBe(result.versionId);
    expect(provider.keys.get(now.keyId)?.active).toBe(true);
    expect(provider.keys.get(app.key.id)?.active).toBe(true);
    const revoked = await revokeCredential(rekey.deps, app.secretId, { trigger: 'manual' });
    expect(revoked).toMatchObject({ method: 'revoke-endpoint', keyId: app.key.id, proven: true });
    expect(revoked.purgeAfter).toBeUndefined();
    expect(provider.keys.get(app.key.id)?.active).toBe(false);
    expect(provider.callsTo('revoke').map((r) => r.url)).toEqual([`/v1/keys/${app.key.id}`]);
  });

  it('a failing create endpoint leaves AWSCURRENT as it was and stores nothing', async () => {
    const app = await httpSecret({ retries: 0 });
    provider.inject('create', { status: 500 });
    const before = await current(app.secretId);
    expect(await caught(rekey.rotation.rotate(app.secretId, { trigger: 'manual' }))).toMatchObject({ code: 'PROVIDER_ERROR' });
    expect(await current(app.secretId)).toEqual(before);
    expect((await rekey.deps.store.describeSecret(app.secretId)).versions).toHaveLength(1);
  });

  it("gets the same key back when AWS replays createSecret after a crash, so a provider with idempotency keys is left no orphan", async () => {
    const app = await httpSecret();
    const store = rekey.deps.store;
    const put = store.putSecretValue.bind(store);
    store.putSecretValue = async () => {
      store.putSecretValue = put;
      throw new Error('the process died');
    };
    const token = randomUUID();
    const keysBefore = provider.keys.size;
    expect(await caught(rekey.rotation.runStep('createSecret', app.secretId, token, { trigger: 'schedule' }))).toBeDefined();
    await rekey.rotation.runStep('createSecret', app.secretId, token, { trigger: 'schedule' });
    expect(provider.keys.size).toBe(keysBefore + 1);
    for (const step of ['setSecret', 'testSecret', 'finishSecret'] as const) await rekey.rotation.runStep(step, app.secretId, token, { trigger: 'schedule' });
    expect((await current(app.secretId)).versionId).toBe(token);
  });
});

describe('rekey put validation', () => {
  it('accepts provider values and an unmanaged admin credential; refuses a key in a URL or a bad consumer, naming the place', async () => {
    const key = provider.addKey();
    rekey.guard.secret(key.secret);
    validateStoredValue(rekey.deps, provider.value(key), 'api/x', { managed: true });
    validateStoredValue(rekey.deps, provider.adminValue(), 'providers/acme/admin', { managed: false });
    const bad = [
      { value: provider.adminValue(), managed: true, message: /engine/ },
      { value: new Sealed(JSON.stringify({ ...provider.valueJson(key), endpoints: { ...(provider.valueJson(key).endpoints as object), verify: { method: 'GET', url: `${provider.url}/v1/me?k={{key}}` } } })), managed: true, message: /url may use only/ },
      { value: new Sealed(JSON.stringify({ ...provider.valueJson(key), consumers: [{ type: 'github-actions', repository: REPO, secrets: { GITHUB_TOKEN: 'key' } }] })), managed: true, message: /not allowed by GitHub/ },
      { value: new Sealed(JSON.stringify({ ...provider.valueJson(key), consumers: [{ type: 'ftp' }] })), managed: true, message: /unknown consumer type/ },
    ];
    for (const { value, managed, message } of bad) {
      let error: unknown;
      try {
        validateStoredValue(rekey.deps, value, 'api/x', { managed });
      } catch (e) {
        error = e;
      }
      expect((error as Error | undefined)?.message).toMatch(message);
      rekey.guard.error('put', error);
    }
  });
});
