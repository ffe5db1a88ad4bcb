import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { ConsumerAdapters } from '#adapters/consumers/registry.ts';
import { GitHubActionsConsumer } from '#adapters/consumers/github-actions.ts';
import { CONSUMER_UPDATE_REQUESTED, EventRequestConsumer } from '#adapters/consumers/event-request.ts';
import { InProcessEventBus } from '#adapters/buses/in-process.ts';
import { ConfigError, RekeyError, ValidationError } from '#core/errors.ts';
import type { RekeyEvent } from '#core/events.ts';
import type { ConsumerPush, ConsumerSpec } from '#core/ports/consumer.ts';
import { Sealed } from '#core/sealed.ts';
import { GitHubActionsDouble } from '#test/helpers/github-actions-double.ts';
import { LeakGuard } from '#test/helpers/leak-guard.ts';

const REPO = 'acme/deploy';

describe('consumers', () => {
  let guard: LeakGuard;
  let accessKey: string;
  let secretKey: string;
  let value: Sealed<string>;

  beforeEach(() => {
    guard = new LeakGuard();
    accessKey = `AKIA${randomBytes(8).toString('hex').toUpperCase()}`;
    secretKey = randomBytes(30).toString('base64');
    guard.secret(secretKey);
    value = new Sealed(JSON.stringify({ engine: 'aws-iam-user', userName: 'ci', accessKeyId: accessKey, secretAccessKey: secretKey }));
  });
  afterEach(() => {
    guard.assertClean();
  });

  const push = (consumer: ConsumerSpec): ConsumerPush => ({
    secretId: 'iam/ci',
    versionId: 'v2',
    value,
    secrets: [new Sealed(secretKey)],
    consumer,
  });
  const caught = (promise: Promise<unknown>) => promise.then(() => undefined, (e: unknown) => e);

  describe('GitHubActionsConsumer', () => {
    let github: GitHubActionsDouble;
    let consumer: GitHubActionsConsumer;

    beforeAll(async () => {
      github = await GitHubActionsDouble.start();
      github.addRepository(REPO, ['production']);
    });
    afterAll(async () => {
      await github.close();
    });
    beforeEach(() => {
      consumer = new GitHubActionsConsumer({ octokit: github.octokit() });
      github.requests.length = 0;
    });
    afterEach(() => {
      guard.output('GitHub request log', github.requestLog());
    });

    const spec = (extra: Record<string, unknown> = {}): ConsumerSpec => ({
      type: 'github-actions',
      repository: REPO,
      secrets: { AWS_ACCESS_KEY_ID: 'accessKeyId', AWS_SECRET_ACCESS_KEY: '$.secretAccessKey' },
      ...extra,
    });

    it('writes repository secrets sealed with the repository key: they open with its private key to the new values', async () => {
      const outcome = await consumer.push(push(spec()));
      expect(outcome).toEqual({ consumer: `github-actions ${REPO}`, updated: ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY'] });
      expect(github.decrypt(REPO, 'AWS_SECRET_ACCESS_KEY')).toBe(secretKey);
      expect(github.decrypt(REPO, 'AWS_ACCESS_KEY_ID')).toBe(accessKey);
      expect(github.requests.map((r) => `${r.method} ${r.url} ${r.status}`)).toEqual([
        `GET /repos/${REPO}/actions/secrets/public-key 200`,
        `PUT /repos/${REPO}/actions/secrets/AWS_ACCESS_KEY_ID 201`,
        `PUT /repos/${REPO}/actions/secrets/AWS_SECRET_ACCESS_KEY 201`,
      ]);
      // The plaintext is nowhere in what travelled (URLs, headers, bodies): the guard checks it.
      expect(github.requestLog()).not.toContain(secretKey);
    });

    it('writes environment secrets with the environment key, and pushing again updates them', async () => {
      await consumer.push(push(spec({ environment: 'production', secrets: { DB_SECRET: 'secretAccessKey' } })));
      secretKey = randomBytes(30).toString('base64');
      guard.secret(secretKey);
      value = new Sealed(JSON.stringify({ engine: 'aws-iam-user', userName: 'ci', accessKeyId: accessKey, secretAccessKey: secretKey }));
      await consumer.push(push(spec({ environment: 'production', secrets: { DB_SECRET: 'secretAccessKey' } })));
      expect(github.decrypt(REPO, 'DB_SECRET', 'production')).toBe(secretKey);
      expect(github.secretNames(REPO)).not.toContain('DB_SECRET');
      expect(github.requests.at(-1)).toMatchObject({ method: 'PUT', url: `/repos/${REPO}/environments/production/secrets/DB_SECRET`, status: 204 });
    });

    it('uses the key id of the public key it sealed with (GitHub refuses a stale one)', async () => {
      github.rotateKey(REPO);
      await consumer.push(push(spec({ secrets: { ONE: 'secretAccessKey' } })));
      const put = github.requests.find((r) => r.method === 'PUT')!;
      expect(JSON.parse(put.body).key_id).toBe(github.keyId(REPO));
      expect(put.status).toBe(201);
      expect(github.decrypt(REPO, 'ONE')).toBe(secretKey);
    });

    it('refuses a path that is not a string in the value before writing anything', async () => {
      const error = await caught(consumer.push(push(spec({ secrets: { A: 'accessKeyId', B: '$.nope' } }))));
      expect(error).toBeInstanceOf(ValidationError);
      expect(github.requests).toHaveLength(0);
      guard.error('push', error);
    });

    it.each([
      [403, false, /token may not write/],
      [404, false, /no such repository or environment/],
      [502, true, /502/],
    ])('reports GitHub answering %i as CONSUMER_PUSH_FAILED (retryable: %s) without the value', async (status, retryable, message) => {
      github.fail('PUT', /AWS_SECRET_ACCESS_KEY$/, status);
      const error = await caught(consumer.push(push(spec())));
      expect(error).toBeInstanceOf(RekeyError);
      expect(error).toMatchObject({ code: 'CONSUMER_PUSH_FAILED', retryable });
      expect((error as Error).message).toMatch(message);
      guard.error('push', error);
    });

    it('validates specs: repository, environment, GitHub secret names and paths, unknown fields', () => {
      const bad: ConsumerSpec[] = [
        { type: 'github-actions', repository: 'not a repo', secrets: { A: 'x' } },
        { type: 'github-actions', repository: REPO, secrets: {} },
        { type: 'github-actions', repository: REPO, secrets: { GITHUB_TOKEN: 'x' } },
        { type: 'github-actions', repository: REPO, secrets: { '1A': 'x' } },
        { type: 'github-actions', repository: REPO, secrets: { A: '$..x' } },
        { type: 'github-actions', repository: REPO, environment: '', secrets: { A: 'x' } },
        { type: 'github-actions', repository: REPO, secrets: { A: 'x' }, token: 'ghp_x' },
      ];
      for (const s of bad) expect(() => consumer.validate(s, 'secret x'), JSON.stringify(s)).toThrow(ValidationError);
      expect(() => consumer.validate(spec({ environment: 'production' }), 'secret x')).not.toThrow();
    });

    it('without a GitHub token, validates specs but refuses to push with CONFIG_INVALID', async () => {
      const offline = new GitHubActionsConsumer({});
      expect(() => offline.validate(spec(), 'secret x')).not.toThrow();
      expect(await caught(offline.push(push(spec())))).toBeInstanceOf(ConfigError);
    });

    it('takes a client source, asked on each push and only then; without a token it names the setting to fill', async () => {
      let asked = 0;
      let octokit: ReturnType<typeof github.octokit> | undefined;
      const lazy = new GitHubActionsConsumer({ octokit: async () => (asked++, octokit), tokenSetting: '"githubToken" in the token secret' });
      lazy.validate(spec(), 'secret x');
      lazy.describe(spec());
      expect(asked).toBe(0);
      const refused = await caught(lazy.push(push(spec())));
      expect(refused).toBeInstanceOf(ConfigError);
      expect((refused as Error).message).toBe(`no GitHub token to push iam/ci to github-actions ${REPO}: set "githubToken" in the token secret`);
      expect(github.requests).toEqual([]);
      octokit = github.octokit();
      expect(await lazy.push(push(spec()))).toMatchObject({ updated: ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY'] });
      expect(asked).toBe(2);
    });

    it('passes on a failed token read as it is (its code and message name no value)', async () => {
      const unreadable = new RekeyError('LEAK_CREDENTIALS_UNREADABLE', 'could not read the GitHub token credentials secret (AccessDeniedException)', { retryable: true });
      const lazy = new GitHubActionsConsumer({ octokit: () => Promise.reject(unreadable) });
      expect(await caught(lazy.push(push(spec())))).toBe(unreadable);
    });
  });

  describe('EventRequestConsumer', () => {
    let bus: InProcessEventBus;
    let events: RekeyEvent[];

    beforeEach(() => {
      bus = new InProcessEventBus();
      events = [];
      bus.subscribe(async (event) => void events.push(event));
    });
    afterEach(() => {
      guard.output('events', JSON.stringify(events));
    });

    it('publishes Consumer Update Requested naming the secret, version and request — never the value', async () => {
      const consumer = new EventRequestConsumer({ events: bus });
      const outcome = await consumer.push(push({ type: 'event', name: 'orders-api', request: { action: 'ecs-force-new-deployment', cluster: 'prod', service: 'orders' } }));
      expect(outcome).toEqual({ consumer: 'event orders-api', updated: ['request sent'] });
      expect(events).toHaveLength(1);
      expect(events[0]).toMatchObject({
        source: 'rekey',
        detailType: CONSUMER_UPDATE_REQUESTED,
        detail: { secretId: 'iam/ci', versionId: 'v2', consumer: 'orders-api', request: { action: 'ecs-force-new-deployment', cluster: 'prod', service: 'orders' } },
      });
    });

    it('refuses a request that holds the secret value, sending nothing', async () => {
      const consumer = new EventRequestConsumer({ events: bus });
      const error = await caught(consumer.push(push({ type: 'event', name: 'leaky', request: { env: { SECRET: secretKey } } })));
      expect(error).toMatchObject({ code: 'CONSUMER_INVALID' });
      expect(events).toHaveLength(0);
      guard.error('push', error);
    });

    it('reports a bus that does not accept the event as CONSUMER_PUSH_FAILED, retryable', async () => {
      const consumer = new EventRequestConsumer({ events: { publish: async () => Promise.reject(new Error('1 of 1 events failed')) } });
      const error = await caught(consumer.push(push({ type: 'event', name: 'orders-api' })));
      expect(error).toMatchObject({ code: 'CONSUMER_PUSH_FAILED', retryable: true });
      guard.error('push', error);
    });

    it('validates specs: a name, an object request under 4 KiB, no unknown fields', () => {
      const consumer = new EventRequestConsumer({ events: bus });
      for (const s of [{ type: 'event' }, { type: 'event', name: 'a b' }, { type: 'event', name: 'x', request: [1] }, { type: 'event', name: 'x', request: { big: 'x'.repeat(5000) } }, { type: 'event', name: 'x', url: 'https://x' }]) {
        expect(() => consumer.validate(s as ConsumerSpec, 'secret x'), JSON.stringify(s).slice(0, 80)).toThrow(ValidationError);
      }
    });
  });

  describe('ConsumerAdapters', () => {
    it('finds adapters by type and names the known types for an unknown one', () => {
      const registry = new ConsumerAdapters({ events: new InProcessEventBus() });
      expect(registry.types).toEqual(['github-actions', 'event']);
      expect(registry.forType('event').type).toBe('event');
      expect(() => registry.forType('ftp')).toThrow(/known: github-actions, event/);
    });
  });
});
