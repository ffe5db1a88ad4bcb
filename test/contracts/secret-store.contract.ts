import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { randomBytes, randomUUID } from 'node:crypto';
import { inspect } from 'node:util';
import { ConflictError, NotFoundError } from '#core/errors.ts';
import { REVOKED_LABEL, STAGE, type SecretStore } from '#core/ports/secret-store.ts';
import { Sealed } from '#core/sealed.ts';
import { LeakGuard } from '#test/helpers/leak-guard.ts';

export interface SecretStoreUnderTest {
  store: SecretStore;
  dispose(): Promise<void>;
}

/**
 * The SecretStore port's contract (functions/core/ports/secret-store.ts), with Secrets Manager's
 * semantics, run against every store adapter. Each test gets a fresh `setup()` and uses secret
 * ids and tags unique to the run, so an adapter over a shared account or fake works too. Version
 * ids are UUIDs (AWS wants 32–64 characters). Only what the port promises is checked here;
 * adapter-specific behaviour (rotationEnabled on create, lastRotatedAt, retention of unlabelled
 * versions, encryption at rest) belongs in the adapter's own tests.
 */
export function secretStoreContract(name: string, setup: () => Promise<SecretStoreUnderTest>): void {
  describe(`${name} secret store (contract)`, () => {
    let store: SecretStore;
    let dispose: () => Promise<void>;
    let guard: LeakGuard;
    const run = randomBytes(4).toString('hex');
    let counter = 0;

    /** A unique secret id for this run. */
    const secretId = (label = 'app') => `contract/${run}/${label}-${++counter}`;
    /** A database secret value whose password the leak guard watches. */
    const value = (label = 'pw'): Sealed<string> => {
      const password = `${label}-${randomBytes(12).toString('base64url')}`;
      guard.secret(password);
      const json = JSON.stringify({ engine: 'postgres', host: 'db.internal', port: 5432, username: 'app', password });
      guard.secret(json);
      return new Sealed(json);
    };
    /** The rejection of `promise`, recorded for the leak guard; fails if it resolves. */
    const rejection = async (promise: Promise<unknown>, where: string): Promise<unknown> => {
      const error = await promise.then(
        () => {
          throw new Error(`${where}: expected a rejection`);
        },
        (e: unknown) => e,
      );
      guard.error(where, error);
      return error;
    };
    const expectNotFound = async (promise: Promise<unknown>, where: string) => {
      expect(await rejection(promise, where)).toBeInstanceOf(NotFoundError);
    };
    const expectConflict = async (promise: Promise<unknown>, where: string) => {
      expect(await rejection(promise, where)).toBeInstanceOf(ConflictError);
    };
    /** stage → version id, from describeSecret (also recorded for the leak guard). */
    const stagesOf = async (id: string): Promise<Record<string, string>> => {
      const description = await store.describeSecret(id);
      guard.output('describeSecret', description);
      const stages: Record<string, string> = {};
      for (const version of description.versions) {
        for (const stage of version.stages) {
          expect(stages[stage], `stage ${stage} is on one version at most`).toBeUndefined();
          stages[stage] = version.versionId;
        }
      }
      return stages;
    };
    const reveal = async (id: string, selector?: { versionId?: string; stage?: string }) => (await store.getSecretValue(id, selector)).value.reveal();

    beforeEach(async () => {
      guard = new LeakGuard();
      ({ store, dispose } = await setup());
    });

    afterEach(async () => {
      await dispose();
      guard.assertClean();
    });

    describe('createSecret', () => {
      it('creates a secret whose first version holds AWSCURRENT and returns its version id', async () => {
        const id = secretId();
        const v1 = value();
        const { versionId } = await store.createSecret(id, v1);
        expect(versionId).toEqual(expect.any(String));
        const current = await store.getSecretValue(id);
        expect(current.versionId).toBe(versionId);
        expect(current.stages).toEqual([STAGE.current]);
        expect(current.value.reveal()).toBe(v1.reveal());
      });

      it('uses the version id and tags it is given', async () => {
        const id = secretId();
        const versionId = randomUUID();
        const created = await store.createSecret(id, value(), { versionId, tags: { team: 'payments', 'rekey:managed': 'true' }, description: 'orders database' });
        expect(created.versionId).toBe(versionId);
        const description = await store.describeSecret(id);
        expect(description.tags).toEqual({ team: 'payments', 'rekey:managed': 'true' });
        expect(description.versions.map((v) => v.versionId)).toEqual([versionId]);
      });

      it('throws ConflictError when the secret exists, and keeps the first value', async () => {
        const id = secretId();
        const v1 = value();
        await store.createSecret(id, v1);
        await expectConflict(store.createSecret(id, value('other')), 'createSecret of an existing secret');
        expect(await reveal(id)).toBe(v1.reveal());
      });
    });

    describe('getSecretValue', () => {
      it('returns AWSCURRENT by default, with its version id, stages and creation time', async () => {
        const id = secretId();
        const before = Date.now();
        const v1 = value();
        const { versionId } = await store.createSecret(id, v1);
        const current = await store.getSecretValue(id);
        expect(current).toMatchObject({ versionId, stages: [STAGE.current] });
        expect(current.createdAt).toBeInstanceOf(Date);
        // Second precision at least (AWS reports seconds); allow for clock skew with a fake.
        expect(current.createdAt.getTime()).toBeGreaterThan(before - 60_000);
        expect(current.createdAt.getTime()).toBeLessThan(Date.now() + 60_000);
      });

      it('reads a version by id, by stage, or by both when they agree', async () => {
        const id = secretId();
        const v1 = value('one');
        const v2 = value('two');
        const first = (await store.createSecret(id, v1)).versionId;
        const second = randomUUID();
        await store.putSecretValue(id, second, v2, [STAGE.pending]);
        expect(await reveal(id, { versionId: first })).toBe(v1.reveal());
        expect(await reveal(id, { versionId: second })).toBe(v2.reveal());
        expect(await reveal(id, { stage: STAGE.pending })).toBe(v2.reveal());
        expect(await reveal(id, { stage: STAGE.current })).toBe(v1.reveal());
        const both = await store.getSecretValue(id, { versionId: second, stage: STAGE.pending });
        expect(both).toMatchObject({ versionId: second, stages: [STAGE.pending] });
      });

      it('returns the value sealed, so printing it shows [sealed]', async () => {
        const id = secretId();
        await store.createSecret(id, value());
        const version = await store.getSecretValue(id);
        guard.output('a printed SecretVersion', `${inspect(version)} ${JSON.stringify(version)} ${String(version.value)}`);
        expect(String(version.value)).toBe('[sealed]');
      });

      it('throws NotFoundError for an unknown secret, version or stage, and when id and stage disagree', async () => {
        const id = secretId();
        const first = (await store.createSecret(id, value())).versionId;
        await expectNotFound(store.getSecretValue(secretId('missing')), 'getSecretValue of an unknown secret');
        await expectNotFound(store.getSecretValue(id, { versionId: randomUUID() }), 'getSecretValue of an unknown version');
        await expectNotFound(store.getSecretValue(id, { stage: STAGE.pending }), 'getSecretValue of a stage no version has');
        await expectNotFound(store.getSecretValue(id, { versionId: first, stage: STAGE.pending }), 'getSecretValue with a disagreeing stage');
      });
    });

    describe('putSecretValue', () => {
      it('adds an AWSPENDING version and leaves AWSCURRENT where it was', async () => {
        const id = secretId();
        const v1 = value('one');
        const first = (await store.createSecret(id, v1)).versionId;
        const second = randomUUID();
        await store.putSecretValue(id, second, value('two'), [STAGE.pending]);
        expect(await stagesOf(id)).toEqual({ [STAGE.current]: first, [STAGE.pending]: second });
        expect(await reveal(id)).toBe(v1.reveal());
      });

      it('moves AWSCURRENT to a version put with it, and AWSPREVIOUS to the version that had it', async () => {
        const id = secretId();
        const first = (await store.createSecret(id, value('one'))).versionId;
        const second = randomUUID();
        const v2 = value('two');
        await store.putSecretValue(id, second, v2, [STAGE.current]);
        expect(await stagesOf(id)).toEqual({ [STAGE.current]: second, [STAGE.previous]: first });
        expect(await reveal(id)).toBe(v2.reveal());
      });

      it('does nothing when the same version id arrives again with the same value', async () => {
        const id = secretId();
        const first = (await store.createSecret(id, value('one'))).versionId;
        const second = randomUUID();
        const v2 = value('two');
        await store.putSecretValue(id, second, v2, [STAGE.pending]);
        await store.putSecretValue(id, second, new Sealed(v2.reveal()), [STAGE.pending]);
        expect(await stagesOf(id)).toEqual({ [STAGE.current]: first, [STAGE.pending]: second });
        expect(await reveal(id, { versionId: second })).toBe(v2.reveal());
      });

      it('leaves the labels alone when a put is replayed after its version was promoted', async () => {
        const id = secretId();
        const first = (await store.createSecret(id, value('one'))).versionId;
        const second = randomUUID();
        const v2 = value('two');
        await store.putSecretValue(id, second, v2, [STAGE.pending]);
        await store.updateVersionStage(id, STAGE.current, { moveToVersionId: second, removeFromVersionId: first });
        await store.updateVersionStage(id, STAGE.pending, { removeFromVersionId: second });
        await store.putSecretValue(id, second, new Sealed(v2.reveal()), [STAGE.pending]);
        expect(await stagesOf(id)).toEqual({ [STAGE.current]: second, [STAGE.previous]: first });
      });

      it('throws ConflictError when the same version id arrives with a different value, and keeps the stored one', async () => {
        const id = secretId();
        await store.createSecret(id, value('one'));
        const second = randomUUID();
        const v2 = value('two');
        await store.putSecretValue(id, second, v2, [STAGE.pending]);
        await expectConflict(store.putSecretValue(id, second, value('changed'), [STAGE.pending]), 'putSecretValue with a changed value');
        expect(await reveal(id, { versionId: second })).toBe(v2.reveal());
      });

      it('moves a stage another version holds to the new version', async () => {
        const id = secretId();
        const first = (await store.createSecret(id, value('one'))).versionId;
        const second = randomUUID();
        const third = randomUUID();
        await store.putSecretValue(id, second, value('two'), [STAGE.pending]);
        await store.putSecretValue(id, third, value('three'), [STAGE.pending]);
        expect(await stagesOf(id)).toEqual({ [STAGE.current]: first, [STAGE.pending]: third });
      });

      it('throws NotFoundError for an unknown secret', async () => {
        await expectNotFound(store.putSecretValue(secretId('missing'), randomUUID(), value(), [STAGE.pending]), 'putSecretValue on an unknown secret');
      });
    });

    describe('updateVersionStage', () => {
      it('promotes a pending version: AWSCURRENT moves to it and AWSPREVIOUS to the version that had it', async () => {
        const id = secretId();
        const first = (await store.createSecret(id, value('one'))).versionId;
        const second = randomUUID();
        const v2 = value('two');
        await store.putSecretValue(id, second, v2, [STAGE.pending]);
        await store.updateVersionStage(id, STAGE.current, { moveToVersionId: second, removeFromVersionId: first });
        expect(await stagesOf(id)).toEqual({ [STAGE.current]: second, [STAGE.pending]: second, [STAGE.previous]: first });
        await store.updateVersionStage(id, STAGE.pending, { removeFromVersionId: second });
        expect(await stagesOf(id)).toEqual({ [STAGE.current]: second, [STAGE.previous]: first });
        expect(await reveal(id)).toBe(v2.reveal());
      });

      it('moves AWSPREVIOUS along on every promotion, so a version two rotations old carries no label', async () => {
        const id = secretId();
        const first = (await store.createSecret(id, value('one'))).versionId;
        const second = randomUUID();
        const third = randomUUID();
        await store.putSecretValue(id, second, value('two'), [STAGE.pending]);
        await store.updateVersionStage(id, STAGE.current, { moveToVersionId: second, removeFromVersionId: first });
        await store.putSecretValue(id, third, value('three'), [STAGE.pending]);
        await store.updateVersionStage(id, STAGE.current, { moveToVersionId: third, removeFromVersionId: second });
        await store.updateVersionStage(id, STAGE.pending, { removeFromVersionId: third });
        expect(await stagesOf(id)).toEqual({ [STAGE.current]: third, [STAGE.previous]: second });
        expect((await store.describeSecret(id)).versions.map((v) => v.versionId)).not.toContain(first);
      });

      it('swaps AWSCURRENT and AWSPREVIOUS when AWSCURRENT moves back to the previous version', async () => {
        const id = secretId();
        const first = (await store.createSecret(id, value('one'))).versionId;
        const second = randomUUID();
        await store.putSecretValue(id, second, value('two'), [STAGE.current]);
        await store.updateVersionStage(id, STAGE.current, { moveToVersionId: first, removeFromVersionId: second });
        expect(await stagesOf(id)).toEqual({ [STAGE.current]: first, [STAGE.previous]: second });
      });

      it('throws ConflictError when removeFromVersionId does not name the version holding the stage, and moves nothing', async () => {
        const id = secretId();
        const first = (await store.createSecret(id, value('one'))).versionId;
        const second = randomUUID();
        const third = randomUUID();
        await store.putSecretValue(id, second, value('two'), [STAGE.pending]);
        await store.putSecretValue(id, third, value('three'), ['CONTRACTLABEL']);
        await expectConflict(store.updateVersionStage(id, STAGE.current, { moveToVersionId: second, removeFromVersionId: third }), 'updateVersionStage with a wrong removeFromVersionId');
        expect(await stagesOf(id)).toEqual({ [STAGE.current]: first, [STAGE.pending]: second, CONTRACTLABEL: third });
      });

      it('throws ConflictError when moving a stage another version holds without removeFromVersionId', async () => {
        const id = secretId();
        const first = (await store.createSecret(id, value('one'))).versionId;
        const second = randomUUID();
        await store.putSecretValue(id, second, value('two'), [STAGE.pending]);
        await expectConflict(store.updateVersionStage(id, STAGE.current, { moveToVersionId: second }), 'updateVersionStage without removeFromVersionId');
        expect(await stagesOf(id)).toEqual({ [STAGE.current]: first, [STAGE.pending]: second });
      });

      it('removes a stage when only removeFromVersionId is given', async () => {
        const id = secretId();
        const first = (await store.createSecret(id, value('one'))).versionId;
        const second = randomUUID();
        await store.putSecretValue(id, second, value('two'), [STAGE.pending]);
        await store.updateVersionStage(id, STAGE.pending, { removeFromVersionId: second });
        expect(await stagesOf(id)).toEqual({ [STAGE.current]: first });
        await expectNotFound(store.getSecretValue(id, { stage: STAGE.pending }), 'getSecretValue of a removed stage');
      });

      it('moves a custom label such as REKEYREVOKED like any label, keeping it on one version and AWSPREVIOUS where it is', async () => {
        const id = secretId();
        const first = (await store.createSecret(id, value('one'))).versionId;
        const second = randomUUID();
        const third = randomUUID();
        await store.putSecretValue(id, second, value('two'), [STAGE.current]);
        await store.putSecretValue(id, third, value('three'), [STAGE.current]);
        // first is now unlabelled; a label not held by any version needs no removeFromVersionId
        await store.updateVersionStage(id, REVOKED_LABEL, { moveToVersionId: second });
        expect(await stagesOf(id)).toEqual({ [STAGE.current]: third, [STAGE.previous]: second, [REVOKED_LABEL]: second });
        await expectConflict(store.updateVersionStage(id, REVOKED_LABEL, { moveToVersionId: first }), 'moving a held custom label without removeFromVersionId');
        await store.updateVersionStage(id, REVOKED_LABEL, { moveToVersionId: first, removeFromVersionId: second });
        expect(await stagesOf(id)).toEqual({ [STAGE.current]: third, [STAGE.previous]: second, [REVOKED_LABEL]: first });
        expect((await store.getSecretValue(id, { stage: REVOKED_LABEL })).versionId).toBe(first);
      });

      it('throws NotFoundError for an unknown secret or version', async () => {
        const id = secretId();
        const first = (await store.createSecret(id, value())).versionId;
        await expectNotFound(store.updateVersionStage(secretId('missing'), STAGE.current, { moveToVersionId: randomUUID(), removeFromVersionId: randomUUID() }), 'updateVersionStage on an unknown secret');
        await expectNotFound(store.updateVersionStage(id, STAGE.current, { moveToVersionId: randomUUID(), removeFromVersionId: first }), 'updateVersionStage to an unknown version');
        expect(await stagesOf(id)).toEqual({ [STAGE.current]: first });
      });
    });

    describe('describeSecret', () => {
      it('lists the versions that carry a label, newest first, with their stages and creation times', async () => {
        const id = secretId();
        const first = (await store.createSecret(id, value('one'), { tags: { team: 'a' } })).versionId;
        const second = randomUUID();
        const third = randomUUID();
        const fourth = randomUUID();
        await store.putSecretValue(id, second, value('two'), [STAGE.current]);
        await store.putSecretValue(id, third, value('three'), [STAGE.current]);
        await store.putSecretValue(id, fourth, value('four'), [STAGE.pending]);
        const description = await store.describeSecret(id);
        guard.output('describeSecret', description);
        expect(description.secretId).toBe(id);
        expect(description.createdAt).toBeInstanceOf(Date);
        expect(description.tags).toEqual({ team: 'a' });
        expect(description.versions.map((v) => [v.versionId, v.stages])).toEqual([
          [fourth, [STAGE.pending]],
          [third, [STAGE.current]],
          [second, [STAGE.previous]],
        ]);
        for (const version of description.versions) expect(version.createdAt).toBeInstanceOf(Date);
        expect(description.versions.map((v) => v.versionId)).not.toContain(first);
      });

      it('throws NotFoundError for an unknown secret', async () => {
        await expectNotFound(store.describeSecret(secretId('missing')), 'describeSecret of an unknown secret');
      });
    });

    describe('tagSecret', () => {
      it('merges tags: adds new keys, overwrites given keys and keeps the others', async () => {
        const id = secretId();
        await store.createSecret(id, value(), { tags: { team: 'a', env: 'dev' } });
        await store.tagSecret(id, { env: 'prod', owner: 'alice' });
        expect((await store.describeSecret(id)).tags).toEqual({ team: 'a', env: 'prod', owner: 'alice' });
      });

      it('throws NotFoundError for an unknown secret', async () => {
        await expectNotFound(store.tagSecret(secretId('missing'), { team: 'a' }), 'tagSecret on an unknown secret');
      });
    });

    describe('listSecrets', () => {
      it('returns the secrets that carry every given tag, with their descriptions', async () => {
        const both = secretId('both');
        const onlyRun = secretId('only-run');
        const tagged = secretId('tagged-later');
        const current = (await store.createSecret(both, value(), { tags: { 'contract-run': run, env: 'prod' } })).versionId;
        await store.createSecret(onlyRun, value(), { tags: { 'contract-run': run, env: 'dev' } });
        await store.createSecret(tagged, value(), { tags: { 'contract-run': run } });
        await store.tagSecret(tagged, { env: 'prod' });
        const listed = await store.listSecrets({ tags: { 'contract-run': run, env: 'prod' } });
        guard.output('listSecrets', listed);
        expect(listed.map((d) => d.secretId).sort()).toEqual([both, tagged].sort());
        const described = listed.find((d) => d.secretId === both)!;
        expect(described.tags).toEqual({ 'contract-run': run, env: 'prod' });
        expect(described.versions).toEqual([{ versionId: current, stages: [STAGE.current], createdAt: expect.any(Date) }]);
        expect((await store.listSecrets({ tags: { 'contract-run': run } })).map((d) => d.secretId).sort()).toEqual([both, onlyRun, tagged].sort());
        expect(await store.listSecrets({ tags: { 'contract-run': run, env: 'staging' } })).toEqual([]);
      });

      it('returns every secret without a filter', async () => {
        const ids = [secretId(), secretId()];
        for (const id of ids) await store.createSecret(id, value());
        const listed = await store.listSecrets();
        guard.output('listSecrets', listed);
        expect(listed.map((d) => d.secretId)).toEqual(expect.arrayContaining(ids));
      });
    });

    describe('errors', () => {
      it('never carry a value, whatever the failure', async () => {
        const id = secretId();
        const v1 = value('one');
        const first = (await store.createSecret(id, v1)).versionId;
        const second = randomUUID();
        await store.putSecretValue(id, second, value('two'), [STAGE.pending]);
        // Each failure is recorded by `rejection`; afterEach fails the test if any value appears.
        await rejection(store.createSecret(id, value('dup')), 'createSecret conflict');
        await rejection(store.putSecretValue(id, second, value('changed'), [STAGE.pending]), 'putSecretValue conflict');
        await rejection(store.putSecretValue(id, first, value('changed-first'), [STAGE.current]), 'putSecretValue conflict on AWSCURRENT');
        await rejection(store.updateVersionStage(id, STAGE.current, { moveToVersionId: second }), 'updateVersionStage conflict');
        await rejection(store.getSecretValue(id, { versionId: first, stage: STAGE.pending }), 'getSecretValue mismatch');
        expect(guard.valueCount).toBeGreaterThan(0);
      });
    });
  });
}
