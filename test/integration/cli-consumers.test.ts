import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { ConsumerAdapters } from '#adapters/consumers/registry.ts';
import type { AuditRecord } from '#core/audit.ts';
import { DETAIL_TYPE } from '#core/events.ts';
import { REVOKED_LABEL, STAGE } from '#core/ports/secret-store.ts';
import { cliRunner } from '#test/helpers/cli.ts';
import { FakeIam } from '#test/helpers/fake-iam.ts';
import { GitHubActionsDouble } from '#test/helpers/github-actions-double.ts';
import { testRekey, type TestRekey } from '#test/helpers/rekey.ts';

/**
 * README "Consumers", through the CLI an on-call engineer types: a push that fails keeps the new
 * value (AWSCURRENT), is reported by `rekey rotate` (a `consumer NOT updated` line, exit status 1)
 * and blocks the revoke of the old value until someone says `--force`. IAM and STS are mocked at
 * the SDK client; GitHub's Actions secrets API is an HTTP double driven by a real Octokit.
 */

const REPO = 'acme/deploy';
const CONSUMER = `github-actions ${REPO} (environment production)`;

let github: GitHubActionsDouble;
let fake: FakeIam;
let rekey: TestRekey;
let cli: ReturnType<typeof cliRunner>;

beforeAll(async () => {
  github = await GitHubActionsDouble.start();
  github.addRepository(REPO, ['production']);
});
afterAll(async () => {
  await github.close();
});

beforeEach(async () => {
  fake = new FakeIam();
  github.requests.length = 0;
  rekey = await testRekey({ consumers: (events) => new ConsumerAdapters({ events, octokit: github.octokit() }) });
  cli = cliRunner(rekey, { REKEY_ACTOR: 'cli:tester' });
});

afterEach(async () => {
  for (const secret of await rekey.deps.store.listSecrets()) {
    for (const version of secret.versions) rekey.guard.secretJson((await rekey.deps.store.getSecretValue(secret.secretId, { versionId: version.versionId })).value);
  }
  for (const keys of fake.users.values()) for (const key of keys) rekey.guard.secret(key.secret);
  rekey.guard.output('GitHub request log', github.requestLog());
  fake.restore();
  await rekey.dispose();
  rekey.guard.assertClean();
});

async function iamSecret(tags: Record<string, string>) {
  const userName = `ci-${randomBytes(3).toString('hex')}`;
  const key = fake.addKey(userName);
  rekey.guard.secret(key.secret);
  const secretId = `iam/${userName}`;
  const consumers = [{ type: 'github-actions', repository: REPO, environment: 'production', secrets: { AWS_ACCESS_KEY_ID: 'accessKeyId', AWS_SECRET_ACCESS_KEY: 'secretAccessKey' } }];
  await rekey.deps.store.createSecret(secretId, fake.value(userName, key, { consumers }), { tags: { 'rekey:managed': 'true', ...tags } });
  return { secretId, userName, key };
}

const current = async (secretId: string) => {
  const version = await rekey.deps.store.getSecretValue(secretId, { stage: STAGE.current });
  return { versionId: version.versionId, ...(JSON.parse(version.value.reveal()) as { accessKeyId: string; secretAccessKey: string }) };
};

describe('rekey rotate with a consumer whose push fails', () => {
  it('prints "consumer NOT updated" and exits 1; the new key stays AWSCURRENT and the old one is not revoked, even with a grace of 0', async () => {
    const app = await iamSecret({ 'rekey:grace': '0' });
    github.fail('PUT', /AWS_SECRET_ACCESS_KEY$/, 403);

    const rotated = await cli('rotate', app.secretId, '--reason', 'quarterly');
    expect(rotated.code).toBe(1);
    const now = await current(app.secretId);
    expect(now.accessKeyId).not.toBe(app.key.id);
    expect(rotated.stdout).toContain(`rotated ${app.secretId}: version ${now.versionId} is AWSCURRENT (two-key, key ${now.accessKeyId} of ${app.userName}`);
    expect(rotated.stdout).toContain('previous credential stays valid until every consumer has the new value');
    expect(rotated.stdout).toMatch(new RegExp(`^consumer NOT updated: ${CONSUMER.replace(/[()]/g, '\\$&')}: CONSUMER_PUSH_FAILED: .+$`, 'm'));
    expect(rotated.stderr).toBe('');
    // The new key is kept and works; the old one was not revoked although the grace is 0.
    expect(fake.key(now.accessKeyId)?.status).toBe('Active');
    expect(fake.key(app.key.id)?.status).toBe('Active');
    const previous = await rekey.deps.store.getSecretValue(app.secretId, { stage: STAGE.previous });
    expect(JSON.parse(previous.value.reveal()).accessKeyId).toBe(app.key.id);
    expect((await rekey.deps.store.describeSecret(app.secretId)).tags['rekey:consumers']).toBe(`${now.versionId} failed`);
    // The push half-happened: the id went through, the secret access key did not.
    expect(github.decrypt(REPO, 'AWS_ACCESS_KEY_ID', 'production')).toBe(now.accessKeyId);
    expect(github.decrypt(REPO, 'AWS_SECRET_ACCESS_KEY', 'production')).toBeUndefined();

    const status = await cli('status', app.secretId);
    expect(status.stdout).toContain('consumers: 1, failed (the previous value is not revoked until a push succeeds)');
    // The CLI's own audit trail: the failed push is recorded, and no revoke happened.
    const audit = JSON.parse((await cli('audit', '--secret', app.secretId, '--json')).stdout) as AuditRecord[];
    expect(audit.find((r) => r.action === DETAIL_TYPE.consumerUpdateFailed)).toMatchObject({ actor: 'cli:tester', versionId: now.versionId, error: { code: 'CONSUMER_PUSH_FAILED' } });
    expect(audit.map((r) => r.action)).not.toContain(DETAIL_TYPE.credentialRevoked);
  });

  it('then `rekey revoke` refuses without --force, changing nothing, and revokes the old key with --force', async () => {
    const app = await iamSecret({ 'rekey:grace': '1h' });
    github.fail('PUT', /AWS_SECRET_ACCESS_KEY$/, 502);
    expect((await cli('rotate', app.secretId)).code).toBe(1);
    const now = await current(app.secretId);
    const previousVersion = (await rekey.deps.store.getSecretValue(app.secretId, { stage: STAGE.previous })).versionId;

    const refused = await cli('revoke', app.secretId, '--reason', 'done with it');
    expect(refused.code).toBe(1);
    expect(refused.stdout).toBe('');
    expect(refused.stderr).toBe(
      `rekey: the consumers of ${app.secretId} have not all received AWSCURRENT (version ${now.versionId}), so version ${previousVersion} stays until a push succeeds (the sweep retries it; --force revokes anyway)\n`,
    );
    expect(fake.key(app.key.id)?.status).toBe('Active');
    expect((await rekey.deps.store.describeSecret(app.secretId)).versions.find((v) => v.versionId === previousVersion)?.stages).not.toContain(REVOKED_LABEL);

    const forced = await cli('revoke', app.secretId, '--force', '--reason', 'the consumer is gone');
    expect(forced.code).toBe(0);
    expect(forced.stdout).toMatch(new RegExp(`^revoked ${app.secretId} version ${previousVersion} \\(key ${app.key.id} of ${app.userName}, deactivated\\): login refused`));
    expect(fake.key(app.key.id)?.status).toBe('Inactive');
    expect(fake.key(now.accessKeyId)?.status).toBe('Active');
    expect((await rekey.deps.store.describeSecret(app.secretId)).versions.find((v) => v.versionId === previousVersion)?.stages).toContain(REVOKED_LABEL);
    expect((await current(app.secretId)).versionId).toBe(now.versionId);
  });
});
