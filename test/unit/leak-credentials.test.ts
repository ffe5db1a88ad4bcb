import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { CreateSecretCommand, PutSecretValueCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { RekeyError } from '#core/errors.ts';
import {
  WEBHOOK_CREDENTIALS,
  WORKER_CREDENTIALS,
  githubToken,
  githubTokenSource,
  readLeakCredentials,
  refreshing,
  webhookCredentials,
} from '#runtime/leak-credentials.ts';
import { startFakeSecretsManager, type FakeSecretsManager } from '#test/helpers/fake-secrets-manager.ts';
import { LeakGuard } from '#test/helpers/leak-guard.ts';

/**
 * The leak path's credentials on AWS (runtime/leak-credentials.ts): the webhook secrets and the
 * GitHub token, read from their Secrets Manager secrets through an unmodified SDK client against the
 * fake endpoint. Every value is watched by the leak guard: no error may carry one.
 */

const WEBHOOK_ID = 'rekey/ci/leak-webhook-credentials';
const TOKEN_ID = 'rekey/ci/github-token';

describe('leak credentials', () => {
  let sm: FakeSecretsManager;
  let client: SecretsManagerClient;
  let guard: LeakGuard;
  const value = (prefix: string) => {
    const v = `${prefix}-${randomBytes(12).toString('hex')}`;
    guard.secret(v);
    return v;
  };
  const store = async (id: string, text: string) => {
    if (sm.inspect(id)) await client.send(new PutSecretValueCommand({ SecretId: id, SecretString: text }));
    else await client.send(new CreateSecretCommand({ Name: id, SecretString: text }));
  };
  /** The error `promise` rejects with, handed to the leak guard. */
  const failure = async (promise: Promise<unknown>): Promise<RekeyError> => {
    const error = await promise.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(RekeyError);
    guard.error('reader error', error);
    return error as RekeyError;
  };

  beforeEach(async () => {
    sm = await startFakeSecretsManager();
    client = sm.client({ maxAttempts: 1 });
    guard = new LeakGuard();
  });
  afterEach(async () => {
    await sm.close();
    guard.assertClean();
  });

  describe('readLeakCredentials', () => {
    it('returns the fields of a valid secret', async () => {
      const values = { githubWebhookSecret: value('ghws'), gitguardianWebhookSecret: value('ggws'), ingestToken: value('ingest') };
      await store(WEBHOOK_ID, JSON.stringify(values));
      expect(await readLeakCredentials(client, WEBHOOK_ID, WEBHOOK_CREDENTIALS, 'leak webhook')).toEqual(values);
      expect(sm.requestsFor('GetSecretValue').map((r) => r.body.SecretId)).toEqual([WEBHOOK_ID]);
    });

    it('leaves out empty, null and missing fields: that scanner or feature is off', async () => {
      const ingestToken = value('ingest');
      await store(WEBHOOK_ID, JSON.stringify({ githubWebhookSecret: '', gitguardianWebhookSecret: null, ingestToken }));
      expect(await readLeakCredentials(client, WEBHOOK_ID, WEBHOOK_CREDENTIALS, 'leak webhook')).toEqual({ ingestToken });
      // As the stack creates it.
      await store(TOKEN_ID, '{"githubToken":""}');
      expect(await readLeakCredentials(client, TOKEN_ID, WORKER_CREDENTIALS, 'GitHub token')).toEqual({});
      await store(TOKEN_ID, '{}');
      expect(await readLeakCredentials(client, TOKEN_ID, WORKER_CREDENTIALS, 'GitHub token')).toEqual({});
    });

    it('refuses a secret that is not a JSON object, without quoting it', async () => {
      const token = value('ghp');
      for (const text of [`ghp ${token}`, `{"githubToken": "${token}"`, JSON.stringify([token]), JSON.stringify(token)]) {
        await store(TOKEN_ID, text);
        const error = await failure(readLeakCredentials(client, TOKEN_ID, WORKER_CREDENTIALS, 'GitHub token'));
        expect(error.code).toBe('LEAK_CREDENTIALS_INVALID');
        expect(error.retryable).toBe(false);
        expect(error.message).toMatch(/^the GitHub token credentials secret (is not|must be) JSON like \{"githubToken": "…"\}$/);
        expect(error.cause).toBeUndefined();
      }
    });

    it('refuses a field of the wrong type or a short ingest token, naming the field only', async () => {
      await store(WEBHOOK_ID, JSON.stringify({ githubWebhookSecret: { value: value('ghws') } }));
      expect((await failure(readLeakCredentials(client, WEBHOOK_ID, WEBHOOK_CREDENTIALS, 'leak webhook'))).message).toBe(
        'the leak webhook credentials secret field "githubWebhookSecret" must be a string',
      );
      await store(WEBHOOK_ID, JSON.stringify({ ingestToken: value('short').slice(0, 15) }));
      expect((await failure(readLeakCredentials(client, WEBHOOK_ID, WEBHOOK_CREDENTIALS, 'leak webhook'))).message).toBe(
        'the leak webhook credentials secret field "ingestToken" must be at least 16 characters',
      );
    });

    it('refuses the GitHub token in the webhook secret (it belongs in the worker one), and an unknown field without naming it', async () => {
      const token = value('ghp');
      await store(WEBHOOK_ID, JSON.stringify({ githubWebhookSecret: value('ghws'), githubToken: token }));
      const misplaced = await failure(readLeakCredentials(client, WEBHOOK_ID, WEBHOOK_CREDENTIALS, 'leak webhook'));
      expect(misplaced.code).toBe('LEAK_CREDENTIALS_INVALID');
      expect(misplaced.message).toContain('holds "githubToken", which belongs in another secret');
      // A value pasted as a key is not repeated.
      const pasted = value('ghp');
      await store(TOKEN_ID, JSON.stringify({ [pasted]: '' }));
      const unknown = await failure(readLeakCredentials(client, TOKEN_ID, WORKER_CREDENTIALS, 'GitHub token'));
      expect(unknown.message).toBe('the GitHub token credentials secret holds a field that is not one of "githubToken"');
    });

    it.each(['AccessDeniedException', 'ResourceNotFoundException', 'InternalServiceError'])('reports %s as a retryable failure naming the SDK error only', async (type) => {
      await store(TOKEN_ID, JSON.stringify({ githubToken: value('ghp') }));
      sm.fail('GetSecretValue', type);
      const error = await failure(readLeakCredentials(client, TOKEN_ID, WORKER_CREDENTIALS, 'GitHub token'));
      expect(error.code).toBe('LEAK_CREDENTIALS_UNREADABLE');
      expect(error.retryable).toBe(true);
      expect(error.message).toBe(`could not read the GitHub token credentials secret (${type})`);
      expect(error.cause).toBeUndefined();
    });

    it('reports a secret that does not exist as unreadable', async () => {
      const error = await failure(readLeakCredentials(client, 'rekey/ci/missing', WORKER_CREDENTIALS, 'GitHub token'));
      expect(error.message).toBe('could not read the GitHub token credentials secret (ResourceNotFoundException)');
    });
  });

  describe('webhookCredentials', () => {
    it('takes the environment first and reads the secret only for what it lacks', async () => {
      const stored = { githubWebhookSecret: value('ghws'), gitguardianWebhookSecret: value('ggws'), ingestToken: value('ingest') };
      await store(WEBHOOK_ID, JSON.stringify(stored));
      const fromEnv = value('env-ghws');
      const resolved = await webhookCredentials({ GITHUB_WEBHOOK_SECRET: fromEnv, REKEY_LEAK_WEBHOOK_SECRET_ID: WEBHOOK_ID }, () => client);
      expect(resolved).toEqual({ ...stored, githubWebhookSecret: fromEnv });
      expect(sm.requestsFor('GetSecretValue')).toHaveLength(1);
    });

    it('reads no secret when the environment has all three, or no secret is configured (rekey serve)', async () => {
      const env = { GITHUB_WEBHOOK_SECRET: value('a'), GITGUARDIAN_WEBHOOK_SECRET: value('b'), REKEY_INGEST_TOKEN: value('ingest') };
      expect(await webhookCredentials({ ...env, REKEY_LEAK_WEBHOOK_SECRET_ID: WEBHOOK_ID }, () => client)).toEqual({
        githubWebhookSecret: env.GITHUB_WEBHOOK_SECRET,
        gitguardianWebhookSecret: env.GITGUARDIAN_WEBHOOK_SECRET,
        ingestToken: env.REKEY_INGEST_TOKEN,
      });
      expect(await webhookCredentials({ GITHUB_WEBHOOK_SECRET: env.GITHUB_WEBHOOK_SECRET }, () => client)).toEqual({ githubWebhookSecret: env.GITHUB_WEBHOOK_SECRET });
      expect(sm.requestsFor('GetSecretValue')).toEqual([]);
    });
  });

  describe('githubToken', () => {
    it('takes GITHUB_TOKEN first, else the secret, else none', async () => {
      const token = value('ghp');
      await store(TOKEN_ID, JSON.stringify({ githubToken: token }));
      const env = value('ghp-env');
      expect(await githubToken({ GITHUB_TOKEN: env, REKEY_GITHUB_TOKEN_SECRET_ID: TOKEN_ID }, () => client)).toBe(env);
      expect(sm.requestsFor('GetSecretValue')).toEqual([]);
      expect(await githubToken({ REKEY_GITHUB_TOKEN_SECRET_ID: TOKEN_ID }, () => client)).toBe(token);
      expect(await githubToken({}, () => client)).toBeUndefined();
      await store(TOKEN_ID, '{"githubToken":""}');
      expect(await githubToken({ REKEY_GITHUB_TOKEN_SECRET_ID: TOKEN_ID }, () => client)).toBeUndefined();
    });
  });

  describe('githubTokenSource (GitHub Actions consumers)', () => {
    it('reads nothing until asked; then keeps a token 5 minutes, but never an empty field or a failed read', async () => {
      let clock = 0;
      const get = githubTokenSource({ REKEY_GITHUB_TOKEN_SECRET_ID: TOKEN_ID }, () => client, { clock: () => clock });
      const reads = () => sm.requestsFor('GetSecretValue').length;
      await store(TOKEN_ID, '{"githubToken":""}');
      expect(reads()).toBe(0);
      // Empty, as the stack creates it: not kept, so filling it takes effect on the next push.
      expect(await get()).toBeUndefined();
      expect(await get()).toBeUndefined();
      expect(reads()).toBe(2);
      const token = value('ghp');
      await store(TOKEN_ID, JSON.stringify({ githubToken: token }));
      expect(await get()).toBe(token);
      clock = 299_999;
      expect(await get()).toBe(token);
      expect(reads()).toBe(3);
      // Unreadable: the error (the SDK's name only), not kept either.
      clock = 300_000;
      sm.fail('GetSecretValue', 'AccessDeniedException');
      expect((await failure(get())).code).toBe('LEAK_CREDENTIALS_UNREADABLE');
      expect(await get()).toBe(token);
      expect(reads()).toBe(5);
    });

    it('takes GITHUB_TOKEN and never reads the secret; without either, has no token', async () => {
      const env = value('ghp-env');
      expect(await githubTokenSource({ GITHUB_TOKEN: env, REKEY_GITHUB_TOKEN_SECRET_ID: TOKEN_ID }, () => client)()).toBe(env);
      expect(await githubTokenSource({}, () => client)()).toBeUndefined();
      expect(sm.requests).toEqual([]);
    });
  });

  describe('refreshing', () => {
    it('loads once for concurrent callers, again once the period has passed, and retries after a failure', async () => {
      let clock = 0;
      let loads = 0;
      let fail = false;
      const get = refreshing(
        async () => {
          loads++;
          if (fail) throw new RekeyError('LEAK_CREDENTIALS_UNREADABLE', 'unreadable', { retryable: true });
          return loads;
        },
        { everyMs: 300_000, now: () => clock },
      );
      expect(await Promise.all([get(), get(), get()])).toEqual([1, 1, 1]);
      clock = 299_999;
      expect(await get()).toBe(1);
      clock = 300_000;
      expect(await get()).toBe(2);
      clock = 600_000;
      fail = true;
      await expect(get()).rejects.toThrow('unreadable');
      // Not cached: the next call reads again, without waiting for another period.
      fail = false;
      expect(await get()).toBe(4);
      expect(await get()).toBe(4);
    });
  });
});
