import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { ConsumerAdapters } from '#adapters/consumers/registry.ts';
import { DETAIL_TYPE } from '#core/events.ts';
import { hmslHash } from '#core/fingerprint.ts';
import { STAGE } from '#core/ports/secret-store.ts';
import { FakeIam } from '#test/helpers/fake-iam.ts';
import { GitHubActionsDouble } from '#test/helpers/github-actions-double.ts';
import { FakeProvider } from '#test/helpers/http-provider.ts';
import { TICKETS_REPO, gitguardianDelivery, gitleaksDelivery, startLeakPipeline, trufflehogDelivery, type Delivery, type LeakPipeline } from '#test/helpers/leak-pipeline.ts';

/**
 * Provider keys found by scanners, end to end through `rekey serve`: matched by fingerprint like
 * database passwords (the secret access key, the access key id, TruffleHog's id-and-secret run
 * together, an API key) and remediated the same way — rotate, revoke at once, ticket — plus the
 * IAM case no fingerprint can match: a key rekey did not create, on a user it manages.
 */

let provider: FakeProvider;
let actions: GitHubActionsDouble;
let fake: FakeIam;
let p: LeakPipeline;

beforeAll(async () => {
  provider = await FakeProvider.start();
  actions = await GitHubActionsDouble.start();
  actions.addRepository(DEPLOY_REPO, ['production']);
});
afterAll(async () => {
  await provider.close();
  await actions.close();
});
beforeEach(async () => {
  fake = new FakeIam();
  provider.requests.length = 0;
  p = await startLeakPipeline();
  p.rekey.guard.secret(provider.adminToken);
});
afterEach(async () => {
  for (const keys of fake.users.values()) for (const key of keys) p.rekey.guard.secret(key.secret);
  for (const key of provider.keys.values()) p.rekey.guard.secret(key.secret);
  p.rekey.guard.output('provider request URLs', provider.requests.map((r) => r.url).join('\n'));
  p.rekey.guard.output('GitHub Actions request log', actions.requestLog());
  actions.requests.length = 0;
  fake.restore();
  await p.dispose();
  p.rekey.guard.assertClean();
});

const DEPLOY_REPO = 'acme/deploy';

async function iamSecret(options: { consumers?: unknown[] } = {}) {
  const userName = `deploy-${randomBytes(3).toString('hex')}`;
  const key = fake.addKey(userName);
  p.rekey.guard.secret(key.secret);
  const secretId = `prod/iam/${userName}`;
  await p.rekey.deps.store.createSecret(secretId, fake.value(userName, key, options.consumers ? { consumers: options.consumers } : {}), {
    tags: { 'rekey:managed': 'true', 'rekey:environment': 'prod', 'rekey:grace': '1h' },
  });
  return { secretId, userName, key };
}

async function httpSecret() {
  const adminSecretId = `providers/acme/${randomBytes(3).toString('hex')}`;
  await p.rekey.deps.store.createSecret(adminSecretId, provider.adminValue(), { tags: { 'rekey:managed': 'false' } });
  const key = provider.addKey();
  p.rekey.guard.secret(key.secret);
  const secretId = `prod/api/${key.id}`;
  await p.rekey.deps.store.createSecret(secretId, provider.value(key, { adminSecretId }), { tags: { 'rekey:managed': 'true' } });
  return { secretId, key, adminSecretId };
}

/** Does the provider itself accept `key` (its verify endpoint, called directly, not through rekey)? */
async function providerAccepts(key: string): Promise<boolean> {
  const reply = await fetch(`${provider.url}/v1/me`, { headers: { authorization: `Bearer ${key}` } });
  await reply.arrayBuffer();
  if (reply.status !== 200 && reply.status !== 401) throw new Error(`unexpected status ${reply.status} from the provider`);
  return reply.status === 200;
}

async function deliver(source: 'trufflehog' | 'gitleaks' | 'gitguardian', delivery: Delivery) {
  const reply = await p.post(source, delivery);
  expect(reply.status, reply.text).toBe(202);
  await p.settle();
  const result = p.results.find((r) => r.tasks.some((t) => t.deliveryId === reply.json.deliveryId));
  expect(result).toBeDefined();
  return result!;
}

const issueOf = (title: RegExp) => p.github.issues(TICKETS_REPO).find((i) => title.test(i.title));
const escaped = (text: string) => text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
const currentKeyId = async (secretId: string) => JSON.parse((await p.rekey.deps.store.getSecretValue(secretId, { stage: STAGE.current })).value.reveal()).accessKeyId as string;

describe('leaked AWS access keys', () => {
  it("TruffleHog's id-and-secret of AWSCURRENT: rotated, the leaked key deactivated at once, one ticket", async () => {
    const app = await iamSecret();
    const result = await deliver('trufflehog', trufflehogDelivery(p.secrets.ingest, [{ value: app.key.id + app.key.secret, public: true, verified: true }]));
    expect(result).toMatchObject({ secretId: app.secretId, state: 'current' });
    expect(result.error).toBeUndefined();
    expect(fake.key(app.key.id)?.status).toBe('Inactive');
    const now = await currentKeyId(app.secretId);
    expect(now).not.toBe(app.key.id);
    expect(fake.key(now)?.status).toBe('Active');
    const issue = issueOf(new RegExp(`Leaked credential: ${app.secretId}$`))!;
    expect(issue.body).toMatch(new RegExp(`Revoked the leaked credential \\(key ${app.key.id} of ${app.userName}, version .*deactivated\\)`));
    expect(issue.body).toContain('It is disabled now and deleted after');
    const types = p.rekey.events.map((e) => e.detailType);
    for (const type of [DETAIL_TYPE.leakDetected, DETAIL_TYPE.rotationSucceeded, DETAIL_TYPE.credentialRevoked, DETAIL_TYPE.leakRemediated]) expect(types).toContain(type);
  });

  it('a Gitleaks finding of the access key id alone matches its version the same way', async () => {
    const app = await iamSecret();
    const result = await deliver('gitleaks', gitleaksDelivery(p.secrets.ingest, [{ value: app.key.id }]));
    expect(result).toMatchObject({ secretId: app.secretId, state: 'current' });
    expect(fake.key(app.key.id)?.status).toBe('Inactive');
  });

  it('the secret access key of AWSPREVIOUS: deactivated at once, without another rotation', async () => {
    const app = await iamSecret();
    await p.rekey.rotation.rotate(app.secretId, { trigger: 'manual', reason: 'quarterly' });
    const now = await currentKeyId(app.secretId);
    const result = await deliver('gitleaks', gitleaksDelivery(p.secrets.ingest, [{ value: app.key.secret }]));
    expect(result).toMatchObject({ secretId: app.secretId, state: 'previous-live' });
    expect(fake.key(app.key.id)?.status).toBe('Inactive');
    expect(await currentKeyId(app.secretId)).toBe(now);
    expect(fake.key(now)?.status).toBe('Active');
  });

  it('a key rekey did not create, of a managed user: deactivated, traced to the managed secret, AWSCURRENT untouched', async () => {
    const app = await iamSecret();
    const stray = fake.addKey(app.userName); // made by hand in the console, then committed
    p.rekey.guard.secret(stray.secret);
    const result = await deliver('gitleaks', gitleaksDelivery(p.secrets.ingest, [{ value: stray.id }]));
    expect(result).toMatchObject({ state: 'unmatched', secretId: app.secretId });
    expect(result.error).toBeUndefined();
    expect(fake.key(stray.id)?.status).toBe('Inactive');
    expect(fake.key(app.key.id)?.status).toBe('Active');
    expect(await currentKeyId(app.secretId)).toBe(app.key.id);
    expect(result.actions.join('\n')).toContain(`Disabled the leaked key ${stray.id} of ${app.userName}`);
    expect(p.rekey.events.find((e) => e.detailType === DETAIL_TYPE.credentialRevoked)?.detail).toMatchObject({ secretId: app.secretId, keyId: stray.id, stray: true });
  });

  it('a key of a user no managed secret covers: nothing is disabled, and the ticket asks for its owner', async () => {
    const outsider = fake.addKey('someone-elses-user');
    p.rekey.guard.secret(outsider.secret);
    const result = await deliver('gitleaks', gitleaksDelivery(p.secrets.ingest, [{ value: outsider.id }]));
    expect(result.state).toBe('unmatched');
    expect(result.secretId).toBeUndefined();
    expect(fake.key(outsider.id)?.status).toBe('Active');
    expect(result.actions.join('\n')).toContain('which no managed secret covers');
    expect(result.actions.join('\n')).toContain('Find its owner');
  });
});

describe('leaked HTTP API keys', () => {
  it('a Gitleaks finding of the key: rotated through the create endpoint, the old key revoked and refused', async () => {
    const { secretId, key } = await httpSecret();
    const result = await deliver('gitleaks', gitleaksDelivery(p.secrets.ingest, [{ value: key.secret }]));
    expect(result).toMatchObject({ secretId, state: 'current' });
    expect(result.error).toBeUndefined();
    expect(provider.keys.get(key.id)?.active).toBe(false);
    const now = JSON.parse((await p.rekey.deps.store.getSecretValue(secretId, { stage: STAGE.current })).value.reveal()) as { keyId: string };
    expect(provider.keys.get(now.keyId)?.active).toBe(true);
    expect(issueOf(new RegExp(`Leaked credential: ${secretId.replace(/[/]/g, '\\/')}$`))?.body).toMatch(/revoke-endpoint/);
  });

  it('the key of AWSPREVIOUS: revoked at once through the revoke endpoint, without another rotation; the provider refuses it', async () => {
    const app = await httpSecret();
    await p.rekey.rotation.rotate(app.secretId, { trigger: 'manual', reason: 'quarterly' });
    const now = JSON.parse((await p.rekey.deps.store.getSecretValue(app.secretId, { stage: STAGE.current })).value.reveal()) as { keyId: string; key: string };
    expect(await providerAccepts(app.key.secret)).toBe(true); // the grace (default) keeps it alive
    const creates = provider.callsTo('create').length;

    const result = await deliver('gitleaks', gitleaksDelivery(p.secrets.ingest, [{ value: app.key.secret }]));
    expect(result).toMatchObject({ secretId: app.secretId, state: 'previous-live' });
    expect(result.error).toBeUndefined();
    expect(await providerAccepts(app.key.secret)).toBe(false);
    expect(provider.callsTo('revoke').map((r) => r.url)).toEqual([`/v1/keys/${app.key.id}`]);
    // Not rotated again: AWSCURRENT and its key are untouched.
    expect(provider.callsTo('create')).toHaveLength(creates);
    expect(JSON.parse((await p.rekey.deps.store.getSecretValue(app.secretId, { stage: STAGE.current })).value.reveal()).keyId).toBe(now.keyId);
    expect(await providerAccepts(now.key)).toBe(true);
    expect(p.rekey.events.some((e) => e.detailType === DETAIL_TYPE.rotationStarted && e.detail.trigger === 'leak')).toBe(false);
    expect(issueOf(new RegExp(`Leaked credential: ${escaped(app.secretId)}$`))?.body).toContain(`Revoked the leaked credential (key ${app.key.id} of acme`);
  });
});

describe('GitGuardian (no value, only its HMSL hash)', () => {
  it('an incident whose hmsl_hash is an API key of AWSCURRENT: matched, rotated, the old key revoked and refused, ticketed', async () => {
    const app = await httpSecret();
    const result = await deliver('gitguardian', gitguardianDelivery(p.secrets.gitguardian, { id: 7001, hmslHash: await hmslHash(app.key.secret), visibility: 'public' }));
    expect(result).toMatchObject({ secretId: app.secretId, state: 'current', sourceId: '7001' });
    expect(result.error).toBeUndefined();
    expect(await providerAccepts(app.key.secret)).toBe(false);
    const now = JSON.parse((await p.rekey.deps.store.getSecretValue(app.secretId, { stage: STAGE.current })).value.reveal()) as { keyId: string; key: string };
    expect(now.keyId).not.toBe(app.key.id);
    expect(await providerAccepts(now.key)).toBe(true);
    const issue = issueOf(new RegExp(`Leaked credential: ${escaped(app.secretId)}$`))!;
    expect(issue.body).toContain('gitguardian (7001)');
    expect(issue.body).toMatch(/revoke-endpoint/);
  });

  it('an incident whose hmsl_hash is the secret access key of an IAM key: matched and the key deactivated', async () => {
    const app = await iamSecret();
    const result = await deliver('gitguardian', gitguardianDelivery(p.secrets.gitguardian, { id: 7002, hmslHash: await hmslHash(app.key.secret) }));
    expect(result).toMatchObject({ secretId: app.secretId, state: 'current' });
    expect(result.error).toBeUndefined();
    expect(fake.key(app.key.id)?.status).toBe('Inactive');
    expect(fake.key(await currentKeyId(app.secretId))?.status).toBe('Active');
  });
});

describe('a value no kind handles (`{"token": …}`, no engine)', () => {
  it('its leak is matched to the secret and ticketed, not failed: nothing can be rotated, and the ticket asks a human to rotate it', async () => {
    const adminSecretId = `providers/acme/admin-${randomBytes(3).toString('hex')}`;
    await p.rekey.deps.store.createSecret(adminSecretId, provider.adminValue(), { tags: { 'rekey:managed': 'false', 'rekey:environment': 'prod' } });
    const before = (await p.rekey.deps.store.describeSecret(adminSecretId)).versions;

    const result = await deliver('gitleaks', gitleaksDelivery(p.secrets.ingest, [{ value: provider.adminToken }]));
    expect(result).toMatchObject({ secretId: adminSecretId, state: 'current' });
    // Not a failure: a retry (SQS redelivery, `rekey serve`'s) could do no more.
    expect(result.error).toBeUndefined();
    expect(result.actions).toEqual([`Nothing rotated or revoked: the value of ${adminSecretId} names no engine rekey handles, so the leaked credential still works.`]);
    const issue = issueOf(new RegExp(`^\\[P\\d\\] Leaked credential: ${escaped(adminSecretId)}$`))!;
    expect(issue).toBeDefined();
    expect(result.ticket).toBeDefined();
    expect(issue.body).toContain('reported by gitleaks');
    expect(issue.body).toContain(`- [ ] Rotate this credential where it was issued (revoke the leaked one there), then store the new value with \`rekey put ${adminSecretId}\``);
    // Nothing rotated or revoked: the same single version, and no call to the provider.
    expect((await p.rekey.deps.store.describeSecret(adminSecretId)).versions).toEqual(before);
    expect(provider.requests).toHaveLength(0);
    const types = p.rekey.events.map((e) => e.detailType);
    for (const type of [DETAIL_TYPE.leakDetected, DETAIL_TYPE.ticketOpened]) expect(types).toContain(type);
    for (const type of [DETAIL_TYPE.rotationStarted, DETAIL_TYPE.credentialRevoked]) expect(types).not.toContain(type);
    expect(p.rekey.events.find((e) => e.detailType === DETAIL_TYPE.leakRemediated)?.detail).toMatchObject({ secretId: adminSecretId, outcome: 'succeeded' });
  });
});

describe('consumers on a leak', () => {
  it('a failed GitHub Actions push does not hold back the revoke of the leaked key, and the ticket says the push failed', async () => {
    p.rekey.deps.consumers = new ConsumerAdapters({ events: p.rekey.bus, octokit: actions.octokit() });
    const consumer = { type: 'github-actions', repository: DEPLOY_REPO, environment: 'production', secrets: { AWS_ACCESS_KEY_ID: 'accessKeyId', AWS_SECRET_ACCESS_KEY: 'secretAccessKey' } };
    const app = await iamSecret({ consumers: [consumer] });
    actions.fail('PUT', /AWS_SECRET_ACCESS_KEY$/, 403);

    const result = await deliver('gitleaks', gitleaksDelivery(p.secrets.ingest, [{ value: app.key.secret }]));
    expect(result).toMatchObject({ secretId: app.secretId, state: 'current' });
    const now = await currentKeyId(app.secretId);
    expect(now).not.toBe(app.key.id);
    expect(fake.key(now)?.status).toBe('Active'); // the new key is kept
    expect(fake.key(app.key.id)?.status).toBe('Inactive'); // the leak did not wait for the consumer
    expect(p.rekey.events.find((e) => e.detailType === DETAIL_TYPE.consumerUpdateFailed)?.detail.error).toMatchObject({ code: 'CONSUMER_PUSH_FAILED' });
    const issue = issueOf(new RegExp(`Leaked credential: ${escaped(app.secretId)}$`))!;
    expect(issue.body).toContain(`github-actions ${DEPLOY_REPO} (environment production)`);
    expect(issue.body).toMatch(/consumer NOT updated/i);
    expect(issue.body).toContain('CONSUMER_PUSH_FAILED');
    expect(issue.body).toContain(`- [ ] Make sure github-actions ${DEPLOY_REPO} (environment production) has the new value (its push failed)`);
  });
});
