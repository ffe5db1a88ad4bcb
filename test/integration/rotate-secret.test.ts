import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { RotateSecretCommand } from '@aws-sdk/client-secrets-manager';
import { STAGE } from '#core/ports/secret-store.ts';
import { ROTATION_STEPS } from '#core/rotation.ts';
import { DETAIL_TYPE } from '#core/events.ts';
import { Sealed } from '#core/sealed.ts';
import { adminSecret, assertCanLogIn, assertCannotLogIn, tryLogin, uniqueName, type TestEngine } from '#test/helpers/databases.ts';
import { dropUser } from '#test/helpers/users.ts';
import { SECRETS_ACTIONS } from '#test/helpers/iam.ts';
import { managedUser, storedLogin, type ManagedUser } from '#test/helpers/rekey.ts';
import { secretNameOf } from '../../functions/rotate-secret.ts';
import { asSecretsManager, awsTestRekey, everyStepTwice, type AwsTestRekey } from '#test/helpers/aws-rekey.ts';

/**
 * rotate-secret as Secrets Manager drives it: RotateSecret on the fake endpoint, whose hook invokes
 * the handler step by step, against real PostgreSQL and MariaDB users. Every order AWS can produce:
 * the four steps, each replayed, a failed step and the whole rotation retried, a lone testSecret
 * (RotateImmediately=false), a token already AWSCURRENT, a stale token, a token that is no version,
 * a secret without rotation enabled, and a malformed event.
 */

const created: { engine: TestEngine; username: string }[] = [];
afterAll(async () => {
  for (const { engine, username } of created) {
    await dropUser(engine, username).catch(() => {});
    await dropUser(engine, `${username}_clone`).catch(() => {});
  }
});

const WRITES = ['PutSecretValue', 'UpdateSecretVersionStage', 'TagResource', 'UntagResource', 'CreateSecret'];

let rekey: AwsTestRekey;
beforeEach(async () => {
  rekey = await awsTestRekey();
  rekey.driveRotations(asSecretsManager);
});
afterEach(async () => {
  rekey.assertGrantedByIam();
  await rekey.dispose();
  rekey.guard.assertClean();
});

/** A database user and its secret in the fake Secrets Manager, with rotation configured (rekey attached). */
async function attached(engine: TestEngine, strategy: 'single' | 'alternating', tags: Record<string, string> = {}): Promise<ManagedUser & { arn: string }> {
  const username = uniqueName('rsm');
  created.push({ engine, username });
  const app = await managedUser(rekey, engine, { username, strategy, tags, adminTags: { 'rekey:admin': 'true' } });
  rekey.sm.setRotationEnabled(app.secretId, true);
  return { ...app, arn: rekey.sm.inspect(app.secretId)!.arn };
}

/** `aws secretsmanager rotate-secret` (RotateImmediately defaults to true), then wait for AWS to drive it. */
async function rotateSecret(secretId: string, options: { rotateImmediately?: boolean } = {}): Promise<string> {
  const out = await rekey.sm.client().send(new RotateSecretCommand({ SecretId: secretId, RotateImmediately: options.rotateImmediately ?? true }));
  await rekey.sm.settled();
  return out.VersionId!;
}

/** Stages by version id, as Secrets Manager holds them. */
function stagesOf(secretId: string): Record<string, string[]> {
  return Object.fromEntries(rekey.sm.inspect(secretId)!.versions.filter((v) => v.stages.length).map((v) => [v.versionId, [...v.stages].sort()]));
}

/** AWSCURRENT's stored credential logs in, and it is the version expected. */
async function expectCurrentLogsIn(engine: TestEngine, secretId: string, versionId?: string): Promise<{ username: string; password: string }> {
  const current = await storedLogin(rekey, secretId, { stage: STAGE.current });
  if (versionId) expect(current.versionId).toBe(versionId);
  await assertCanLogIn(engine, current.username, current.password);
  return current;
}

const writesSince = (mark: number) => rekey.sm.requests.slice(mark).filter((r) => WRITES.includes(r.operation) && r.status === 200);
const eventTypes = () => rekey.events.map((e) => e.detailType);

/** The handler's failure: AWS sees only "CODE: message", never a cause or a value. */
async function refusal(event: unknown): Promise<Error> {
  const error = await rekey.rotateSecret(event).then(
    () => {
      throw new Error('expected rotate-secret to refuse');
    },
    (e: unknown) => e as Error,
  );
  expect(error.name).toBe('RekeyError');
  expect(error.cause).toBeUndefined();
  return error;
}

describe('rotate-secret handler', () => {
  describe('a rotation Secrets Manager drives', () => {
    it.each([
      ['postgres', 'single'],
      ['postgres', 'alternating'],
      ['mysql', 'single'],
      ['mysql', 'alternating'],
    ] as const)('on %s, %s strategy: runs the four steps and leaves the new AWSCURRENT logging in', async (engine, strategy) => {
      const app = await attached(engine, strategy);
      const before = stagesOf(app.secretId);
      const token = await rotateSecret(app.secretId);

      expect(rekey.failedRotations).toEqual([]);
      expect(rekey.invocations.map((i) => [(i.event as { Step: string }).Step, i.result?.outcome])).toEqual(ROTATION_STEPS.map((s) => [s, 'done']));
      // Secrets Manager sends the ARN; every step acted on the secret's name, keyed by the token RotateSecret returned.
      expect((rekey.invocations[0]!.event as { SecretId: string }).SecretId).toBe(app.arn);
      expect(rekey.invocations.every((i) => i.result?.secretId === app.secretId && i.result.versionId === token)).toBe(true);
      const [first] = Object.keys(before);
      expect(stagesOf(app.secretId)).toEqual({ [first!]: [STAGE.previous], [token]: [STAGE.current] });
      const current = await expectCurrentLogsIn(engine, app.secretId, token);
      expect(current.username).toBe(strategy === 'alternating' ? `${app.username}_clone` : app.username);
      // single: the user's password changed under it; alternating: the old one lives until revoked.
      if (strategy === 'single') await assertCannotLogIn(engine, app.username, app.password);
      else await assertCanLogIn(engine, app.username, app.password);
      expect(eventTypes()).toEqual([DETAIL_TYPE.rotationStarted, DETAIL_TYPE.rotationSucceeded]);
      // Events name the secret as the sweep, ops and the CLI do: by its name, not the ARN.
      expect(rekey.events.map((e) => [e.detail.secretId, e.detail.versionId])).toEqual([
        [app.secretId, token],
        [app.secretId, token],
      ]);
      const tags = (await rekey.deps.store.describeSecret(app.secretId)).tags;
      expect(tags['rekey:last-outcome']).toBe('succeeded');
      // MySQL/MariaDB: the login that proved the new password left its session watermark, bound to the version.
      if (engine === 'mysql') expect(tags['rekey:session-watermark']).toMatch(new RegExp(`^${token} \\d+@[0-9a-f]{16}$`));
    });

    it('calls only Secrets Manager operations its IAM role grants (serverless.yml)', async () => {
      const app = await attached('postgres', 'alternating');
      await rotateSecret(app.secretId);
      expect(rekey.operationsOf('rotate-secret')).toEqual([
        'DescribeSecret',
        'GetSecretValue',
        'ListSecretVersionIds',
        'PutSecretValue',
        'TagResource',
        'UpdateSecretVersionStage',
      ]);
      expect(SECRETS_ACTIONS['rotate-secret']).toEqual(expect.arrayContaining(rekey.operationsOf('rotate-secret')));
    });

    it('stores the new value as AWSPENDING before the database is touched, in one PutSecretValue', async () => {
      const app = await attached('postgres', 'single');
      const token = await rotateSecret(app.secretId);
      const puts = rekey.sm.requestsFor('PutSecretValue');
      expect(puts.map((r) => [r.body.ClientRequestToken, r.body.VersionStages])).toEqual([[token, [STAGE.pending]]]);
      await expectCurrentLogsIn('postgres', app.secretId, token);
    });
  });

  describe('between the steps', () => {
    it.each([
      ['postgres', 'single'],
      ['postgres', 'alternating'],
      ['mysql', 'single'],
      ['mysql', 'alternating'],
    ] as const)('on %s, %s strategy: what Secrets Manager holds as AWSCURRENT logs in after every step it calls', async (engine, strategy) => {
      const app = await attached(engine, strategy);
      const seen: [string, string, boolean][] = [];
      rekey.driveRotations(async (call, step) => {
        for (const name of ROTATION_STEPS) {
          await step(name);
          const current = await storedLogin(rekey, call.secretId, { stage: STAGE.current });
          seen.push([name, current.versionId === call.versionId ? 'new' : 'old', await tryLogin(engine, current.username, current.password)]);
        }
      });
      await rotateSecret(app.secretId);
      expect(rekey.failedRotations).toEqual([]);
      expect(seen).toEqual([
        ['createSecret', 'old', true],
        ['setSecret', 'old', true],
        ['testSecret', 'old', true],
        ['finishSecret', 'new', true],
      ]);
    });
  });

  describe('replays', () => {
    it('gives the same result when every step is delivered twice', async () => {
      const app = await attached('mysql', 'alternating');
      rekey.driveRotations(everyStepTwice);
      const token = await rotateSecret(app.secretId);

      expect(rekey.failedRotations).toEqual([]);
      expect(rekey.invocations.map((i) => [(i.event as { Step: string }).Step, i.result?.outcome])).toEqual(
        ROTATION_STEPS.flatMap((s) => [
          [s, 'done'],
          [s, s === 'finishSecret' ? 'already-current' : 'done'],
        ]),
      );
      // The replayed createSecret reused the pending value rather than generating another.
      expect(rekey.sm.requestsFor('PutSecretValue').filter((r) => r.status === 200)).toHaveLength(1);
      expect(Object.values(stagesOf(app.secretId)).sort()).toEqual([[STAGE.current], [STAGE.previous]]);
      await expectCurrentLogsIn('mysql', app.secretId, token);
      expect(eventTypes()).toEqual([DETAIL_TYPE.rotationStarted, DETAIL_TYPE.rotationSucceeded]);
    });

    it('resumes the same version when a failed setSecret is retried with the whole rotation, once the cause is fixed', async () => {
      const app = await attached('postgres', 'alternating');
      // The admin secret holds a wrong password: setSecret cannot log in as the admin.
      const admin = adminSecret('postgres');
      const wrong = { engine: admin.engine, host: admin.host, port: admin.port, username: admin.username, password: `wrong-${randomUUID()}`, dbname: admin.dbname };
      await rekey.deps.store.putSecretValue(app.adminSecretId, randomUUID(), new Sealed(JSON.stringify(wrong)), [STAGE.current]);

      const token = await rotateSecret(app.secretId);
      expect(rekey.failedRotations.map((f) => f.step)).toEqual(['setSecret']);
      expect(rekey.failedRotations[0]!.error.message).toMatch(/^LOGIN_FAILED: /);
      // Nothing is stranded: AWSCURRENT still logs in, the new value waits as AWSPENDING.
      await expectCurrentLogsIn('postgres', app.secretId);
      expect(stagesOf(app.secretId)[token]).toEqual([STAGE.pending]);
      expect(eventTypes()).toEqual([DETAIL_TYPE.rotationStarted, DETAIL_TYPE.rotationFailed]);
      expect(rekey.events[1]!.detail).toMatchObject({ step: 'setSecret', error: { code: 'LOGIN_FAILED' } });
      // A second RotateSecret is refused while this one is unresolved; AWS reattempts it instead.
      await expect(rekey.sm.client().send(new RotateSecretCommand({ SecretId: app.secretId }))).rejects.toMatchObject({ name: 'InvalidRequestException' });

      const right = { ...wrong, password: admin.password.reveal() };
      await rekey.deps.store.putSecretValue(app.adminSecretId, randomUUID(), new Sealed(JSON.stringify(right)), [STAGE.current]);
      for (const step of ROTATION_STEPS) await rekey.rotateSecret(rekey.stepEvent(step, app.arn, token));

      await expectCurrentLogsIn('postgres', app.secretId, token);
      expect(rekey.sm.requestsFor('PutSecretValue').filter((r) => r.body.ClientRequestToken === token && r.status === 200)).toHaveLength(1);
      expect(eventTypes()).toEqual([DETAIL_TYPE.rotationStarted, DETAIL_TYPE.rotationFailed, DETAIL_TYPE.rotationSucceeded]);
    });

    it('finishes on retry when finishSecret could not promote, with AWSCURRENT logging in meanwhile (the change undone)', async () => {
      const app = await attached('mysql', 'single');
      rekey.sm.fail('UpdateSecretVersionStage', 'InternalServiceError');
      const token = await rotateSecret(app.secretId);
      expect(rekey.failedRotations.map((f) => [f.step, f.error.message.split(':')[0]])).toEqual([['finishSecret', 'SECRETS_MANAGER_UNAVAILABLE']]);
      // The password was changed, proven, and set back when the promotion failed: what is stored as
      // AWSCURRENT still logs in, and the new value waits as AWSPENDING.
      const pending = await storedLogin(rekey, app.secretId, { stage: STAGE.pending });
      expect(pending.versionId).toBe(token);
      await assertCanLogIn('mysql', app.username, app.password);
      await assertCannotLogIn('mysql', pending.username, pending.password);

      for (const step of ROTATION_STEPS) await rekey.rotateSecret(rekey.stepEvent(step, app.arn, token));
      await expectCurrentLogsIn('mysql', app.secretId, token);
      expect(stagesOf(app.secretId)[token]).toEqual([STAGE.current]);
      await assertCannotLogIn('mysql', app.username, app.password);
    });

    it('accepts a lone testSecret (RotateImmediately=false): tests AWSCURRENT and changes nothing', async () => {
      const app = await attached('postgres', 'single');
      const before = stagesOf(app.secretId);
      const mark = rekey.sm.requests.length;
      await rotateSecret(app.secretId, { rotateImmediately: false });

      expect(rekey.failedRotations).toEqual([]);
      expect(rekey.invocations.map((i) => [(i.event as { Step: string }).Step, i.result?.outcome])).toEqual([['testSecret', 'done']]);
      expect(stagesOf(app.secretId)).toEqual(before);
      // Only AWS's own removal of the test version's label was written; no value, no database change.
      expect(writesSince(mark).map((r) => r.operation)).toEqual(['UpdateSecretVersionStage']);
      await assertCanLogIn('postgres', app.username, app.password);
      expect(rekey.events).toEqual([]);

      // Nothing was left pending: the next real rotation goes through.
      const token = await rotateSecret(app.secretId);
      await expectCurrentLogsIn('postgres', app.secretId, token);
    });

    it('fails a lone testSecret when AWSCURRENT does not log in, and changes no credential', async () => {
      const app = await attached('mysql', 'single');
      const current = JSON.parse((await rekey.deps.store.getSecretValue(app.secretId)).value.reveal()) as Record<string, unknown>;
      await rekey.deps.store.putSecretValue(app.secretId, randomUUID(), new Sealed(JSON.stringify({ ...current, password: `stale-${randomUUID()}` })), [STAGE.current]);
      rekey.events.length = 0;
      await rotateSecret(app.secretId, { rotateImmediately: false });
      expect(rekey.failedRotations.map((f) => [f.step, f.error.message.split(':')[0]])).toEqual([['testSecret', 'LOGIN_FAILED']]);
      expect(eventTypes()).toEqual([DETAIL_TYPE.rotationFailed]);
      expect(rekey.sm.requestsFor('PutSecretValue')).toHaveLength(1); // the stale value this test stored
      expect(Object.values(stagesOf(app.secretId)).sort()).toEqual([[STAGE.current], [STAGE.previous]]);
      await assertCanLogIn('mysql', app.username, app.password);
    });

    it('returns at once for a token already AWSCURRENT, whatever the step, and changes nothing', async () => {
      const app = await attached('postgres', 'alternating');
      const token = await rotateSecret(app.secretId);
      const stages = stagesOf(app.secretId);
      const events = rekey.events.length;
      const mark = rekey.sm.requests.length;

      for (const step of ROTATION_STEPS) {
        expect(await rekey.rotateSecret(rekey.stepEvent(step, app.arn, token))).toEqual({ step, secretId: app.secretId, versionId: token, outcome: 'already-current' });
      }
      expect(writesSince(mark)).toEqual([]);
      expect(rekey.sm.requests.slice(mark).map((r) => r.operation)).not.toContain('GetSecretValue');
      expect(rekey.events).toHaveLength(events);
      expect(stagesOf(app.secretId)).toEqual(stages);
      await expectCurrentLogsIn('postgres', app.secretId, token);
    });
  });

  describe('refusals', () => {
    it('refuses a stale token (a version that is neither AWSPENDING nor AWSCURRENT) and one no longer labelled', async () => {
      const app = await attached('mysql', 'alternating');
      const first = await rotateSecret(app.secretId);
      const second = await rotateSecret(app.secretId);
      const original = rekey.sm.inspect(app.secretId)!.versions[0]!.versionId;
      expect(stagesOf(app.secretId)).toEqual({ [first]: [STAGE.previous], [second]: [STAGE.current] });
      const stages = stagesOf(app.secretId);
      const mark = rekey.sm.requests.length;
      const events = rekey.events.length;

      for (const step of ROTATION_STEPS) {
        const error = await refusal(rekey.stepEvent(step, app.arn, first));
        expect(error.message).toBe(`TOKEN_NOT_PENDING: version ${first} of secret ${app.secretId} is not set as AWSPENDING for rotation`);
        // The original version lost its labels two rotations ago: AWS's templates call that no stage for rotation.
        expect((await refusal(rekey.stepEvent(step, app.arn, original))).message).toMatch(/^TOKEN_NOT_A_VERSION: /);
      }
      expect(writesSince(mark)).toEqual([]);
      expect(rekey.events).toHaveLength(events);
      expect(stagesOf(app.secretId)).toEqual(stages);
      await expectCurrentLogsIn('mysql', app.secretId, second);
    });

    it('refuses a token that is no version of the secret', async () => {
      const app = await attached('postgres', 'single');
      const mark = rekey.sm.requests.length;
      for (const step of ROTATION_STEPS) {
        const token = randomUUID();
        const error = await refusal(rekey.stepEvent(step, app.arn, token));
        expect(error.message).toBe(`TOKEN_NOT_A_VERSION: version ${token} has no stage for rotation of secret ${app.secretId}`);
      }
      expect(writesSince(mark)).toEqual([]);
      expect(rekey.events).toEqual([]);
      await expectCurrentLogsIn('postgres', app.secretId);
      await assertCanLogIn('postgres', app.username, app.password);
    });

    it('refuses every step when rotation is not enabled on the secret', async () => {
      const app = await attached('mysql', 'single');
      // RotateSecret created the pending version; then rotation was cancelled (rotation disabled).
      rekey.driveRotations(undefined);
      const token = await rotateSecret(app.secretId);
      rekey.sm.setRotationEnabled(app.secretId, false);
      const mark = rekey.sm.requests.length;
      for (const step of ROTATION_STEPS) {
        const error = await refusal(rekey.stepEvent(step, app.arn, token));
        expect(error.message).toBe(`ROTATION_NOT_ENABLED: secret ${app.secretId} does not have rotation enabled`);
      }
      expect(writesSince(mark)).toEqual([]);
      expect(rekey.events).toEqual([]);
      await assertCanLogIn('mysql', app.username, app.password);
    });

    it('refuses a malformed event with a clear error naming the fields it needs', async () => {
      const app = await attached('postgres', 'single');
      const mark = rekey.sm.requests.length;
      const malformed: unknown[] = [
        {},
        null,
        'createSecret',
        { Step: 'rotateSecret', SecretId: app.arn, ClientRequestToken: randomUUID() },
        { Step: 'createSecret', SecretId: app.arn },
        { Step: 'createSecret', SecretId: '', ClientRequestToken: randomUUID() },
        { step: 'createSecret', secretId: app.arn, clientRequestToken: randomUUID() },
      ];
      for (const event of malformed) {
        const error = await refusal(event);
        expect(error.message).toBe('INVALID_INPUT: not a Secrets Manager rotation event (Step, SecretId, ClientRequestToken)');
      }
      // Refused before Secrets Manager is asked anything.
      expect(rekey.sm.requests.slice(mark)).toEqual([]);
    });

    it('answers an unknown secret with NOT_FOUND, naming the secret only', async () => {
      const arn = 'arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/missing-AbCdEf';
      const error = await refusal(rekey.stepEvent('createSecret', arn, randomUUID()));
      expect(error.message).toMatch(/^NOT_FOUND: secret prod\/missing not found/);
    });

    it('takes a name or a partial ARN as given, and strips only the suffix AWS adds to a full ARN', () => {
      expect(secretNameOf('arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/app/db-a1B2c3')).toBe('prod/app/db');
      expect(secretNameOf('arn:aws-us-gov:secretsmanager:us-gov-west-1:123456789012:secret:db-admin-Ab-cd-XyZ123')).toBe('db-admin-Ab-cd');
      expect(secretNameOf('prod/app/db-a1B2c3')).toBe('prod/app/db-a1B2c3');
      expect(secretNameOf('arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/app/db')).toBe('arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/app/db');
    });
  });

  describe('fixtures', () => {
    it.each(['create', 'set', 'test', 'finish'])('events/secrets-manager/%s-secret.json is the event Secrets Manager sends', async (name) => {
      const fixture = JSON.parse(await readFile(join(import.meta.dirname, `../../events/secrets-manager/${name}-secret.json`), 'utf8')) as Record<string, string>;
      expect(Object.keys(fixture).sort()).toEqual(['ClientRequestToken', 'RotationToken', 'SecretId', 'Step']);
      expect(ROTATION_STEPS).toContain(fixture.Step);
      expect(fixture.Step).toBe(`${name}Secret`);
      expect(fixture.SecretId).toMatch(/^arn:aws:secretsmanager:[a-z0-9-]+:\d{12}:secret:[\w/+=.@-]+-[A-Za-z0-9]{6}$/);
      expect(fixture.ClientRequestToken!.length).toBeGreaterThanOrEqual(32);
      // It names a production secret that is not here: the event parses, and the answer is a clean NOT_FOUND.
      expect((await refusal(fixture)).message).toMatch(/^NOT_FOUND: /);
    });
  });
});
