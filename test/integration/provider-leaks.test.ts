import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { DETAIL_TYPE } from '#core/events.ts';
import { STAGE } from '#core/ports/secret-store.ts';
import { FakeIam } from '#test/helpers/fake-iam.ts';
import { FakeProvider } from '#test/helpers/http-provider.ts';
import { TICKETS_REPO, gitleaksDelivery, startLeakPipeline, trufflehogDelivery, type Delivery, type LeakPipeline } from '#test/helpers/leak-pipeline.ts';

/**
 * Provider keys found by scanners, end to end through `rekey serve`: matched by fingerprint like
 * database passwords (the secret access key, the access key id, TruffleHog's id-and-secret run
 * together, an API key) and remediated the same way — rotate, revoke at once, ticket — plus the
 * IAM case no fingerprint can match: a key rekey did not create, on a user it manages.
 */

let provider: FakeProvider;
let fake: FakeIam;
let p: LeakPipeline;

beforeAll(async () => {
  provider = await FakeProvider.start();
});
afterAll(async () => {
  await provider.close();
});
beforeEach(async () => {
  fake = new FakeIam();
  p = await startLeakPipeline();
  p.rekey.guard.secret(provider.adminToken);
});
afterEach(async () => {
  for (const keys of fake.users.values()) for (const key of keys) p.rekey.guard.secret(key.secret);
  for (const key of provider.keys.values()) p.rekey.guard.secret(key.secret);
  p.rekey.guard.output('provider request URLs', provider.requests.map((r) => r.url).join('\n'));
  fake.restore();
  await p.dispose();
  p.rekey.guard.assertClean();
});

async function iamSecret() {
  const userName = `deploy-${randomBytes(3).toString('hex')}`;
  const key = fake.addKey(userName);
  p.rekey.guard.secret(key.secret);
  const secretId = `prod/iam/${userName}`;
  await p.rekey.deps.store.createSecret(secretId, fake.value(userName, key), { tags: { 'rekey:managed': 'true', 'rekey:environment': 'prod', 'rekey:grace': '1h' } });
  return { secretId, userName, key };
}

async function deliver(source: 'trufflehog' | 'gitleaks', delivery: Delivery) {
  const reply = await p.post(source, delivery);
  expect(reply.status, reply.text).toBe(202);
  await p.settle();
  const result = p.results.find((r) => r.tasks.some((t) => t.deliveryId === reply.json.deliveryId));
  expect(result).toBeDefined();
  return result!;
}

const issueOf = (title: RegExp) => p.github.issues(TICKETS_REPO).find((i) => title.test(i.title));
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
    const adminSecretId = `providers/acme/${randomBytes(3).toString('hex')}`;
    await p.rekey.deps.store.createSecret(adminSecretId, provider.adminValue(), { tags: { 'rekey:managed': 'false' } });
    const key = provider.addKey();
    p.rekey.guard.secret(key.secret);
    const secretId = `prod/api/${key.id}`;
    await p.rekey.deps.store.createSecret(secretId, provider.value(key, { adminSecretId }), { tags: { 'rekey:managed': 'true' } });
    const result = await deliver('gitleaks', gitleaksDelivery(p.secrets.ingest, [{ value: key.secret }]));
    expect(result).toMatchObject({ secretId, state: 'current' });
    expect(result.error).toBeUndefined();
    expect(provider.keys.get(key.id)?.active).toBe(false);
    const now = JSON.parse((await p.rekey.deps.store.getSecretValue(secretId, { stage: STAGE.current })).value.reveal()) as { keyId: string };
    expect(provider.keys.get(now.keyId)?.active).toBe(true);
    expect(issueOf(new RegExp(`Leaked credential: ${secretId.replace(/[/]/g, '\\/')}$`))?.body).toMatch(/revoke-endpoint/);
  });
});
