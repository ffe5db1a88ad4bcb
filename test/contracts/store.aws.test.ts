import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { randomBytes, randomUUID } from 'node:crypto';
import { mockClient } from 'aws-sdk-client-mock';
import {
  CreateSecretCommand,
  DescribeSecretCommand,
  GetSecretValueCommand,
  ListSecretVersionIdsCommand,
  ListSecretsCommand,
  PutSecretValueCommand,
  RotateSecretCommand,
  SecretsManagerClient,
  UpdateSecretVersionStageCommand,
} from '@aws-sdk/client-secrets-manager';
import { AwsSecretsManagerStore } from '#adapters/stores/aws-secrets-manager.ts';
import { SecretTagsFingerprintIndex } from '#adapters/fingerprints/secret-tags.ts';
import { ConflictError, NotFoundError, RekeyError, ValidationError } from '#core/errors.ts';
import { STAGE } from '#core/ports/secret-store.ts';
import { Sealed } from '#core/sealed.ts';
import { LeakGuard } from '#test/helpers/leak-guard.ts';
import { startFakeSecretsManager, type FakeSecretsManager } from '#test/helpers/fake-secrets-manager.ts';
import { secretStoreContract } from './secret-store.contract.ts';

secretStoreContract('aws-secrets-manager (fake endpoint)', async () => {
  const fake = await startFakeSecretsManager();
  return { store: new AwsSecretsManagerStore({ client: fake.client() }), dispose: () => fake.close() };
});

/** A database secret value whose password the guard watches. */
function databaseValue(guard: LeakGuard, label = 'pw'): Sealed<string> {
  const password = `${label}-${randomBytes(12).toString('base64url')}`;
  guard.secret(password);
  return new Sealed(JSON.stringify({ engine: 'postgres', host: 'db.internal', port: 5432, username: 'app', password }));
}

const mockSecretsManager = (client: SecretsManagerClient) => mockClient(client);

async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (error: unknown) => error,
  );
}

describe('AwsSecretsManagerStore', () => {
  describe('against the fake endpoint', () => {
    let fake: FakeSecretsManager;
    let store: AwsSecretsManagerStore;
    let guard: LeakGuard;

    beforeEach(async () => {
      fake = await startFakeSecretsManager();
      store = new AwsSecretsManagerStore({ client: fake.client() });
      guard = new LeakGuard();
    });

    afterEach(async () => {
      await fake.close();
      guard.assertClean();
    });

    describe('kind', () => {
      it('is aws', () => {
        expect(store.kind).toBe('aws');
      });
    });

    describe('createSecret', () => {
      it('sends the version id as ClientRequestToken, with the tags and description', async () => {
        const versionId = randomUUID();
        await store.createSecret('app/orders', databaseValue(guard), { versionId, tags: { team: 'payments' }, description: 'orders database' });
        expect(fake.requestsFor('CreateSecret')[0]!.body).toMatchObject({
          Name: 'app/orders',
          ClientRequestToken: versionId,
          Description: 'orders database',
          Tags: [{ Key: 'team', Value: 'payments' }],
        });
      });

      it('refuses a version id Secrets Manager would not accept as a ClientRequestToken, before calling it', async () => {
        const error = await rejectionOf(store.createSecret('app/orders', databaseValue(guard), { versionId: 'v1' }));
        expect(error).toBeInstanceOf(ValidationError);
        expect(fake.requests).toHaveLength(0);
      });
    });

    describe('putSecretValue', () => {
      it('stores a value in the version RotateSecret created without one', async () => {
        await store.createSecret('app/orders', databaseValue(guard));
        fake.setRotationEnabled('app/orders', true);
        const { VersionId: pending } = await fake.client().send(new RotateSecretCommand({ SecretId: 'app/orders' }));
        await expect(store.getSecretValue('app/orders', { versionId: pending!, stage: STAGE.pending })).rejects.toBeInstanceOf(NotFoundError);
        const next = databaseValue(guard, 'next');
        await store.putSecretValue('app/orders', pending!, next, [STAGE.pending]);
        expect((await store.getSecretValue('app/orders', { versionId: pending!, stage: STAGE.pending })).value.reveal()).toBe(next.reveal());
      });

      it('changes no label when a put is replayed with other stages, as AWS does', async () => {
        const first = (await store.createSecret('app/orders', databaseValue(guard))).versionId;
        const second = randomUUID();
        const v2 = databaseValue(guard, 'two');
        await store.putSecretValue('app/orders', second, v2, [STAGE.pending]);
        await store.putSecretValue('app/orders', second, v2, [STAGE.current]);
        const described = await store.describeSecret('app/orders');
        expect(described.versions.map((v) => [v.versionId, v.stages])).toEqual([
          [second, [STAGE.pending]],
          [first, [STAGE.current]],
        ]);
        expect(fake.requestsFor('UpdateSecretVersionStage')).toEqual([]);
      });

      it('refuses an empty list of stages (AWS would move AWSCURRENT)', async () => {
        await store.createSecret('app/orders', databaseValue(guard));
        await expect(store.putSecretValue('app/orders', randomUUID(), databaseValue(guard), [])).rejects.toBeInstanceOf(ValidationError);
      });
    });

    describe('getSecretValue', () => {
      it('asks for AWSCURRENT explicitly when given no selector', async () => {
        await store.createSecret('app/orders', databaseValue(guard));
        await store.getSecretValue('app/orders');
        expect(fake.requestsFor('GetSecretValue')[0]!.body).toEqual({ SecretId: 'app/orders', VersionStage: STAGE.current });
      });

      it('treats a version id AWS could never have issued as not found, without calling it', async () => {
        await store.createSecret('app/orders', databaseValue(guard));
        await expect(store.getSecretValue('app/orders', { versionId: 'nope' })).rejects.toBeInstanceOf(NotFoundError);
        expect(fake.requestsFor('GetSecretValue')).toHaveLength(0);
      });

      it('reads a secret by its ARN as well as its name', async () => {
        await store.createSecret('app/orders', databaseValue(guard));
        const arn = fake.inspect('app/orders')!.arn;
        expect((await store.getSecretValue(arn)).stages).toEqual([STAGE.current]);
      });
    });

    describe('describeSecret', () => {
      it('takes creation times from ListSecretVersionIds and rotation state from DescribeSecret', async () => {
        let clock = new Date('2026-01-01T00:00:00Z');
        fake.now = () => clock;
        const first = (await store.createSecret('app/orders', databaseValue(guard))).versionId;
        clock = new Date('2026-01-02T00:00:00Z');
        const second = randomUUID();
        await store.putSecretValue('app/orders', second, databaseValue(guard, 'two'), [STAGE.pending]);
        fake.setRotationEnabled('app/orders', true);
        clock = new Date('2026-01-03T00:00:00Z');
        await store.updateVersionStage('app/orders', STAGE.current, { moveToVersionId: second, removeFromVersionId: first });
        const described = await store.describeSecret('app/orders');
        expect(described).toMatchObject({
          secretId: 'app/orders',
          createdAt: new Date('2026-01-01T00:00:00Z'),
          rotationEnabled: true,
          lastRotatedAt: new Date('2026-01-03T00:00:00Z'),
        });
        expect(described.versions).toEqual([
          { versionId: second, stages: [STAGE.pending, STAGE.current], createdAt: new Date('2026-01-02T00:00:00Z') },
          { versionId: first, stages: [STAGE.previous], createdAt: new Date('2026-01-01T00:00:00Z') },
        ]);
      });

      it('reports rotation disabled for a secret no rotation schedule covers', async () => {
        await store.createSecret('app/orders', databaseValue(guard));
        expect(await store.describeSecret('app/orders')).toMatchObject({ rotationEnabled: false });
        expect((await store.describeSecret('app/orders')).lastRotatedAt).toBeUndefined();
      });

      it('keeps the secret id it was asked about, even when that is an ARN', async () => {
        await store.createSecret('app/orders', databaseValue(guard));
        const arn = fake.inspect('app/orders')!.arn;
        expect((await store.describeSecret(arn)).secretId).toBe(arn);
      });
    });

    describe('listSecrets', () => {
      it('matches tags exactly although Secrets Manager filters by prefix and on any tag', async () => {
        await store.createSecret('app/exact', databaseValue(guard), { tags: { 'rekey:managed': 'true' } });
        await store.createSecret('app/longer-value', databaseValue(guard), { tags: { 'rekey:managed': 'trueish' } });
        await store.createSecret('app/longer-key', databaseValue(guard), { tags: { 'rekey:managed-by': 'true' } });
        // Carries the key and the value, but on different tags.
        await store.createSecret('app/crossed', databaseValue(guard), { tags: { 'rekey:managed': 'false', other: 'true' } });
        const listed = await store.listSecrets({ tags: { 'rekey:managed': 'true' } });
        expect(listed.map((d) => d.secretId)).toEqual(['app/exact']);
        expect(fake.requestsFor('ListSecrets')[0]!.body).toMatchObject({
          Filters: [
            { Key: 'tag-key', Values: ['rekey:managed'] },
            { Key: 'tag-value', Values: ['true'] },
          ],
        });
      });

      it('follows NextToken through every page', async () => {
        const paged = await startFakeSecretsManager({ pageSize: 2 });
        try {
          const pagedStore = new AwsSecretsManagerStore({ client: paged.client() });
          const ids = ['app/a', 'app/b', 'app/c', 'app/d', 'app/e'];
          for (const id of ids) await pagedStore.createSecret(id, databaseValue(guard), { tags: { 'rekey:managed': 'true' } });
          const listed = await pagedStore.listSecrets({ tags: { 'rekey:managed': 'true' } });
          expect(listed.map((d) => d.secretId)).toEqual(ids);
          expect(paged.requestsFor('ListSecrets')).toHaveLength(3);
          for (const d of listed) expect(d.versions).toEqual([{ versionId: expect.any(String), stages: [STAGE.current], createdAt: expect.any(Date) }]);
        } finally {
          await paged.close();
        }
      });

      it('still finds tags whose text no ListSecrets filter may carry, by matching after listing', async () => {
        await store.createSecret('app/a', databaseValue(guard), { tags: { owner: 'ops#1' } });
        await store.createSecret('app/b', databaseValue(guard), { tags: { owner: 'ops#2' } });
        expect((await store.listSecrets({ tags: { owner: 'ops#2' } })).map((d) => d.secretId)).toEqual(['app/b']);
        expect(fake.requestsFor('ListSecrets')[0]!.body).not.toHaveProperty('Filters');
      });
    });

    describe('errors', () => {
      it('turns throttling into a retryable RekeyError naming the operation and secret', async () => {
        const impatient = new AwsSecretsManagerStore({ client: fake.client({ maxAttempts: 1 }) });
        await impatient.createSecret('app/orders', databaseValue(guard));
        fake.fail('GetSecretValue', 'ThrottlingException');
        const error = await rejectionOf(impatient.getSecretValue('app/orders'));
        guard.error('throttled getSecretValue', error);
        expect(error).toBeInstanceOf(RekeyError);
        expect(error).toMatchObject({ code: 'SECRETS_MANAGER_UNAVAILABLE', retryable: true });
        expect((error as Error).message).toContain('GetSecretValue');
        expect((error as Error).message).toContain('app/orders');
      });

      it('turns a server fault into a retryable RekeyError', async () => {
        const impatient = new AwsSecretsManagerStore({ client: fake.client({ maxAttempts: 1 }) });
        await impatient.createSecret('app/orders', databaseValue(guard));
        fake.fail('DescribeSecret', 'InternalServiceError');
        await expect(impatient.describeSecret('app/orders')).rejects.toMatchObject({ retryable: true });
      });

      it('lets the SDK retry a throttled call before giving up', async () => {
        await store.createSecret('app/orders', databaseValue(guard));
        fake.fail('GetSecretValue', 'ThrottlingException', { times: 1 });
        expect((await store.getSecretValue('app/orders')).stages).toEqual([STAGE.current]);
        expect(fake.requestsFor('GetSecretValue').map((r) => r.status)).toEqual([400, 200]);
      });

      it('keeps a refused call not retryable, with its exception name', async () => {
        await store.createSecret('app/orders', databaseValue(guard));
        fake.fail('PutSecretValue', 'AccessDeniedException');
        const error = await rejectionOf(store.putSecretValue('app/orders', randomUUID(), databaseValue(guard), [STAGE.pending]));
        guard.error('denied putSecretValue', error);
        expect(error).toMatchObject({ code: 'SECRETS_MANAGER_FAILED', retryable: false });
        expect((error as Error).message).toContain('AccessDeniedException');
      });

      it('never puts a value in an error, even when the service quotes it back', async () => {
        await store.createSecret('app/orders', databaseValue(guard));
        const sent = databaseValue(guard, 'quoted');
        const password = (JSON.parse(sent.reveal()) as { password: string }).password;
        fake.fail('PutSecretValue', 'InvalidParameterException', { message: `bad SecretString ${sent.reveal()}; password ${password}` });
        const error = await rejectionOf(store.putSecretValue('app/orders', randomUUID(), sent, [STAGE.pending]));
        guard.error('putSecretValue refused with the value quoted', error);
        expect((error as Error).message).not.toContain('quoted-');
      });
    });

    describe('values on the wire', () => {
      it('send a value only in CreateSecret and PutSecretValue requests', async () => {
        const v1 = databaseValue(guard, 'one');
        const v2 = databaseValue(guard, 'two');
        const first = (await store.createSecret('app/orders', v1, { tags: { 'rekey:managed': 'true' } })).versionId;
        const second = randomUUID();
        await store.putSecretValue('app/orders', second, v2, [STAGE.pending]);
        await store.updateVersionStage('app/orders', STAGE.current, { moveToVersionId: second, removeFromVersionId: first });
        await store.tagSecret('app/orders', { owner: 'alice' });
        await store.describeSecret('app/orders');
        await store.listSecrets({ tags: { 'rekey:managed': 'true' } });
        await store.getSecretValue('app/orders');
        for (const request of fake.requests) {
          const carries = [v1, v2].some((v) => request.raw.includes(JSON.stringify(v.reveal()).slice(1, -1)));
          expect(carries, `${request.operation} carries a value`).toBe(['CreateSecret', 'PutSecretValue'].includes(request.operation));
        }
      });
    });
  });

  describe('SDK mapping (aws-sdk-client-mock)', () => {
    // One mocked instance: mocking the class would also capture the clients talking to the fake.
    let sm: ReturnType<typeof mockSecretsManager>;
    let store: AwsSecretsManagerStore;

    beforeEach(() => {
      const client = new SecretsManagerClient({ region: 'us-east-1', credentials: { accessKeyId: 'test', secretAccessKey: 'test' } });
      sm = mockSecretsManager(client);
      store = new AwsSecretsManagerStore({ client });
    });

    afterEach(() => {
      sm.restore();
    });

    const serviceError = (name: string, fault: 'client' | 'server', message = `${name} message`) =>
      Object.assign(new Error(message), { name, $fault: fault, $metadata: { httpStatusCode: fault === 'server' ? 500 : 400 } });

    describe('putSecretValue', () => {
      it('always sends ClientRequestToken and VersionStages', async () => {
        const versionId = randomUUID();
        sm.on(PutSecretValueCommand).resolves({ VersionId: versionId, VersionStages: [STAGE.pending] });
        await store.putSecretValue('app/orders', versionId, new Sealed('{"password":"p-1234567890"}'), [STAGE.pending]);
        const [call] = sm.commandCalls(PutSecretValueCommand);
        expect(call!.args[0].input).toEqual({
          SecretId: 'app/orders',
          ClientRequestToken: versionId,
          SecretString: '{"password":"p-1234567890"}',
          VersionStages: [STAGE.pending],
        });
      });

      it('maps ResourceExistsException (a reused token with another value) to ConflictError', async () => {
        sm.on(PutSecretValueCommand).rejects(serviceError('ResourceExistsException', 'client'));
        await expect(store.putSecretValue('app/orders', randomUUID(), new Sealed('x'.repeat(8)), [STAGE.pending])).rejects.toBeInstanceOf(ConflictError);
      });
    });

    describe('getSecretValue', () => {
      it('sends VersionId and VersionStage together when both are asked for', async () => {
        const versionId = randomUUID();
        sm.on(GetSecretValueCommand).resolves({ VersionId: versionId, VersionStages: [STAGE.pending], SecretString: '{}', CreatedDate: new Date() });
        await store.getSecretValue('app/orders', { versionId, stage: STAGE.pending });
        expect(sm.commandCalls(GetSecretValueCommand)[0]!.args[0].input).toEqual({ SecretId: 'app/orders', VersionId: versionId, VersionStage: STAGE.pending });
      });

      it('maps ResourceNotFoundException to NotFoundError', async () => {
        sm.on(GetSecretValueCommand).rejects(serviceError('ResourceNotFoundException', 'client'));
        const error = await rejectionOf(store.getSecretValue('app/orders'));
        expect(error).toBeInstanceOf(NotFoundError);
        expect((error as Error).message).toContain('app/orders');
      });

      it('maps a VersionId/VersionStage mismatch (InvalidRequestException) to NotFoundError', async () => {
        sm.on(GetSecretValueCommand).rejects(serviceError('InvalidRequestException', 'client'));
        await expect(store.getSecretValue('app/orders', { versionId: randomUUID(), stage: STAGE.pending })).rejects.toBeInstanceOf(NotFoundError);
      });

      it('maps ThrottlingException to a retryable RekeyError', async () => {
        sm.on(GetSecretValueCommand).rejects(serviceError('ThrottlingException', 'client', 'Rate exceeded'));
        await expect(store.getSecretValue('app/orders')).rejects.toMatchObject({ code: 'SECRETS_MANAGER_UNAVAILABLE', retryable: true });
      });

      it('maps a network failure to a retryable RekeyError', async () => {
        sm.on(GetSecretValueCommand).rejects(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }));
        await expect(store.getSecretValue('app/orders')).rejects.toMatchObject({ retryable: true });
      });

      it('keeps the SDK message only as a cause scrubbed of the value sent', async () => {
        const value = 'hunter2-very-secret';
        sm.on(PutSecretValueCommand).rejects(serviceError('ValidationException', 'client', `1 validation error: SecretString '${value}'`));
        const versionId = randomUUID();
        const error = await rejectionOf(store.putSecretValue('app/orders', versionId, new Sealed(value), [STAGE.pending]));
        const guard = new LeakGuard();
        guard.secret(value);
        guard.error('mapped SDK error', error);
        guard.assertClean();
        expect((error as Error).message).toBe(`Secrets Manager PutSecretValue on version ${versionId} of secret app/orders failed (ValidationException)`);
        expect((error as Error & { cause: { name: string } }).cause.name).toBe('ValidationException');
      });
    });

    describe('updateVersionStage', () => {
      it('maps moveToVersionId and removeFromVersionId to MoveToVersionId and RemoveFromVersionId', async () => {
        const from = randomUUID();
        const to = randomUUID();
        sm.on(UpdateSecretVersionStageCommand).resolves({});
        await store.updateVersionStage('app/orders', STAGE.current, { moveToVersionId: to, removeFromVersionId: from });
        expect(sm.commandCalls(UpdateSecretVersionStageCommand)[0]!.args[0].input).toEqual({
          SecretId: 'app/orders',
          VersionStage: STAGE.current,
          MoveToVersionId: to,
          RemoveFromVersionId: from,
        });
      });

      it('maps InvalidParameterException for a label held elsewhere to ConflictError', async () => {
        const from = randomUUID();
        const to = randomUUID();
        sm.on(UpdateSecretVersionStageCommand).rejects(serviceError('InvalidParameterException', 'client'));
        sm.on(ListSecretVersionIdsCommand).resolves({ Versions: [{ VersionId: from, CreatedDate: new Date() }, { VersionId: to, CreatedDate: new Date() }] });
        await expect(store.updateVersionStage('app/orders', STAGE.current, { moveToVersionId: to, removeFromVersionId: from })).rejects.toBeInstanceOf(ConflictError);
      });
    });

    describe('describeSecret', () => {
      it('asks ListSecretVersionIds for every version, deprecated included, by the secret ARN', async () => {
        const arn = 'arn:aws:secretsmanager:us-east-1:123456789012:secret:app/orders-AbCdEf';
        const v = randomUUID();
        sm.on(DescribeSecretCommand).resolves({ ARN: arn, Name: 'app/orders', CreatedDate: new Date(), VersionIdsToStages: { [v]: [STAGE.current] } });
        sm.on(ListSecretVersionIdsCommand).resolves({ Versions: [{ VersionId: v, VersionStages: [STAGE.current], CreatedDate: new Date('2026-01-01T00:00:00Z') }] });
        const described = await store.describeSecret('app/orders');
        expect(sm.commandCalls(ListSecretVersionIdsCommand)[0]!.args[0].input).toMatchObject({ SecretId: arn, IncludeDeprecated: true });
        expect(described.versions).toEqual([{ versionId: v, stages: [STAGE.current], createdAt: new Date('2026-01-01T00:00:00Z') }]);
        expect(described.rotationEnabled).toBe(false);
      });
    });

    describe('createSecret', () => {
      it('maps ResourceExistsException to ConflictError', async () => {
        sm.on(CreateSecretCommand).rejects(serviceError('ResourceExistsException', 'client'));
        await expect(store.createSecret('app/orders', new Sealed('{}'))).rejects.toBeInstanceOf(ConflictError);
      });
    });

    describe('listSecrets', () => {
      it('maps a throttled listing to a retryable RekeyError', async () => {
        sm.on(ListSecretsCommand).rejects(serviceError('ThrottlingException', 'client'));
        await expect(store.listSecrets()).rejects.toMatchObject({ retryable: true });
      });
    });
  });
});

describe('fake Secrets Manager, for the other adapters that call it', () => {
  let fake: FakeSecretsManager;

  beforeEach(async () => {
    fake = await startFakeSecretsManager();
  });

  afterEach(async () => {
    await fake.close();
  });

  describe('SecretTagsFingerprintIndex', () => {
    it('records, finds by tag value, and forgets fingerprints through TagResource, ListSecrets and UntagResource', async () => {
      const store = new AwsSecretsManagerStore({ client: fake.client() });
      const index = new SecretTagsFingerprintIndex(fake.client());
      const keep = randomUUID();
      const drop = randomUUID();
      const fingerprint = 'a'.repeat(64);
      await store.createSecret('app/orders', new Sealed('{}'), { versionId: keep });
      await index.record('app/orders', keep, [{ form: 'password', value: fingerprint }]);
      await index.record('app/orders', drop, [{ form: 'password', value: 'b'.repeat(64) }]);
      // The secret's name, as the store and the CLI call it, not its ARN.
      expect(await index.lookup(fingerprint)).toEqual([{ secretId: 'app/orders', versionId: keep, form: 'password' }]);
      await index.forget('app/orders', [keep]);
      expect(fake.inspect('app/orders')!.tags.map((t) => t.Key)).toEqual([`rekey:fp:${keep}:password`]);
    });
  });

  describe('RotateSecret', () => {
    it('creates a value-less AWSPENDING version, records the call and runs the hook after answering', async () => {
      const client = fake.client();
      const store = new AwsSecretsManagerStore({ client });
      await store.createSecret('app/orders', new Sealed('{}'));
      fake.setRotationEnabled('app/orders', true);
      const seen: string[] = [];
      fake.onRotate(async ({ versionId }) => {
        seen.push((await store.describeSecret('app/orders')).versions.find((v) => v.versionId === versionId)!.stages.join());
      });
      const { VersionId } = await client.send(new RotateSecretCommand({ SecretId: 'app/orders', RotateImmediately: true }));
      await fake.settled();
      expect(seen).toEqual([STAGE.pending]);
      expect(fake.rotations).toEqual([{ secretId: fake.inspect('app/orders')!.arn, versionId: VersionId, rotateImmediately: true }]);
    });

    it("refuses a second rotation while AWSPENDING is unresolved, with AWS's message", async () => {
      const client = fake.client();
      await new AwsSecretsManagerStore({ client }).createSecret('app/orders', new Sealed('{}'));
      fake.setRotationEnabled('app/orders', true);
      await client.send(new RotateSecretCommand({ SecretId: 'app/orders' }));
      await expect(client.send(new RotateSecretCommand({ SecretId: 'app/orders' }))).rejects.toMatchObject({
        name: 'InvalidRequestException',
        message: "A previous rotation isn't complete. That rotation will be reattempted.",
      });
    });

    it('refuses to rotate a secret without a rotation configured', async () => {
      const client = fake.client();
      await new AwsSecretsManagerStore({ client }).createSecret('app/orders', new Sealed('{}'));
      await expect(client.send(new RotateSecretCommand({ SecretId: 'app/orders' }))).rejects.toMatchObject({ name: 'InvalidRequestException' });
    });
  });
});
