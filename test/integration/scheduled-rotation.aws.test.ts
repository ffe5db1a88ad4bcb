import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { RotateSecretCommand } from '@aws-sdk/client-secrets-manager';
import { STAGE, type SecretStore } from '#core/ports/secret-store.ts';
import { DETAIL_TYPE } from '#core/events.ts';
import { Sealed } from '#core/sealed.ts';
import type { SweepReport } from '#core/sweep.ts';
import { config } from '#runtime/config.ts';
import { createHandler as createSweepHandler } from '../../functions/scheduled-rotation.ts';
import { assertCanLogIn, assertCannotLogIn, uniqueName, type TestEngine } from '#test/helpers/databases.ts';
import { dropUser } from '#test/helpers/users.ts';
import { lambdaContext } from '#test/helpers/lambda.ts';
import { managedUser, storedLogin, type ManagedUser } from '#test/helpers/rekey.ts';
import { asSecretsManager, awsTestRekey, type AwsTestRekey } from '#test/helpers/aws-rekey.ts';

/**
 * The schedule sweep on AWS semantics: a rotation is started with RotateSecret on the fake Secrets
 * Manager, whose hook then invokes rotate-secret step by step as AWS would; revokes and stuck
 * reports happen in the sweep itself. Real PostgreSQL and MariaDB users throughout.
 */

const created: { engine: TestEngine; username: string }[] = [];
afterAll(async () => {
  for (const { engine, username } of created) {
    await dropUser(engine, username).catch(() => {});
    await dropUser(engine, `${username}_clone`).catch(() => {});
  }
});

const DAY = 86_400_000;

let rekey: AwsTestRekey;
let clock = 0;
beforeEach(async () => {
  clock = 0;
  rekey = await awsTestRekey({ now: () => new Date(Date.now() + clock) });
  rekey.driveRotations(asSecretsManager);
});
afterEach(async () => {
  rekey.assertGrantedByIam();
  await rekey.dispose();
  rekey.guard.assertClean();
});

/** A managed database user in the fake Secrets Manager; `attach` configures rekey as its rotation function. */
async function secret(engine: TestEngine, strategy: 'single' | 'alternating', tags: Record<string, string>, options: { attach?: boolean; port?: number } = {}): Promise<ManagedUser> {
  const username = uniqueName('swa');
  created.push({ engine, username });
  const app = await managedUser(rekey, engine, { username, strategy, tags, adminTags: { 'rekey:admin': 'true' }, ...(options.port ? { port: options.port } : {}) });
  if (options.attach ?? true) rekey.sm.setRotationEnabled(app.secretId, true);
  return app;
}

/** `aws secretsmanager rotate-secret`, then wait for AWS to drive the steps. */
async function rotateSecret(secretId: string): Promise<string> {
  const out = await rekey.sm.client().send(new RotateSecretCommand({ SecretId: secretId }));
  await rekey.sm.settled();
  return out.VersionId!;
}

/**
 * One schedule tick, as EventBridge delivers it; resolves once every rotation it started has run.
 * Secrets Manager runs those rotations after RotateSecret answers, here once the sweep has returned
 * (one order AWS can produce), so each Secrets Manager call is known to be the sweep's or rotate-secret's.
 */
async function tick(): Promise<SweepReport> {
  const event = JSON.parse(await readFile(join(import.meta.dirname, '../../events/schedule/tick.json'), 'utf8')) as unknown;
  const release = rekey.holdRotations();
  let result;
  try {
    result = await rekey.invokeAs('scheduled-rotation', () => createSweepHandler({ services: async () => rekey })(event, lambdaContext()));
  } finally {
    release();
  }
  if (!('items' in result)) throw new Error(`the sweep answered ${result.error.code} instead of a report`);
  rekey.guard.output('sweep report', result);
  await rekey.sm.settled();
  return result;
}

const stagesOf = (secretId: string) =>
  Object.fromEntries(rekey.sm.inspect(secretId)!.versions.filter((v) => v.stages.length).map((v) => [v.versionId, [...v.stages].sort()]));

describe('scheduled-rotation handler on AWS', () => {
  describe('sweep', () => {
    it('rotates the due through RotateSecret, revokes past grace, reports the stuck, skips the rest, and survives failing secrets', async () => {
      const due = await secret('postgres', 'alternating', { 'rekey:max-age': '1d' });
      const notDue = await secret('mysql', 'single', { 'rekey:max-age': '30d' });
      const pastGrace = await secret('mysql', 'alternating', { 'rekey:grace': '1h' });
      const withinGrace = await secret('postgres', 'alternating', { 'rekey:grace': '3d' });
      const pastGraceVersion = await rotateSecret(pastGrace.secretId);
      const withinGraceVersion = await rotateSecret(withinGrace.secretId);
      // A rotation AWS started whose function never ran (throttled, misconfigured…): AWSPENDING stays.
      const stuck = await secret('postgres', 'single', { 'rekey:max-age': '1d' });
      rekey.driveRotations(undefined);
      const stuckVersion = await rotateSecret(stuck.secretId);
      rekey.driveRotations(asSecretsManager);
      // Due, but its database is unreachable: Secrets Manager accepts RotateSecret, the rotation fails.
      const unreachable = await secret('postgres', 'single', { 'rekey:max-age': '1d' }, { port: 1 });
      // Due, but nobody attached a rotation function: Secrets Manager refuses RotateSecret.
      const unattached = await secret('mysql', 'single', { 'rekey:max-age': '1d' }, { attach: false });
      const unmanaged = await secret('postgres', 'single', { 'rekey:max-age': '1d', 'rekey:managed': 'false' });
      const before = Object.fromEntries([due, notDue, unreachable, unattached, unmanaged].map((s) => [s.secretId, stagesOf(s.secretId)]));
      rekey.events.length = 0;
      rekey.invocations.length = 0;
      clock = 2 * DAY;

      const report = await tick();
      const byId = Object.fromEntries(report.items.map((item) => [item.secretId, item]));

      expect(report.counts).toEqual({ rotated: 2, revoked: 1, purged: 0, pushed: 0, stuck: 1, nothing: 2, failed: 1 });
      // Admin secrets (rekey:admin=true) and the unmanaged one are not the sweep's business.
      expect(Object.keys(byId).sort()).toEqual([due, notDue, pastGrace, withinGrace, stuck, unreachable, unattached].map((s) => s.secretId).sort());
      expect(byId[unmanaged.secretId]).toBeUndefined();

      // Due: RotateSecret, then AWS drove rotate-secret through the four steps.
      expect(byId[due.secretId]).toMatchObject({ action: 'rotated', versionId: expect.any(String) });
      const dueVersion = byId[due.secretId]!.versionId!;
      expect(rekey.sm.rotations.filter((r) => r.versionId === dueVersion)).toHaveLength(1);
      const dueNow = await storedLogin(rekey, due.secretId, { stage: STAGE.current });
      expect(dueNow.versionId).toBe(dueVersion);
      await assertCanLogIn('postgres', dueNow.username, dueNow.password);

      // Not due: untouched.
      expect(byId[notDue.secretId]?.action).toBe('nothing');
      expect(stagesOf(notDue.secretId)).toEqual(before[notDue.secretId]);
      await assertCanLogIn('mysql', notDue.username, notDue.password);

      // Grace over: the previous credential no longer logs in; AWSCURRENT still does.
      expect(byId[pastGrace.secretId]).toMatchObject({ action: 'revoked' });
      await assertCannotLogIn('mysql', pastGrace.username, pastGrace.password);
      const pastGraceNow = await storedLogin(rekey, pastGrace.secretId, { stage: STAGE.current });
      expect(pastGraceNow.versionId).toBe(pastGraceVersion);
      await assertCanLogIn('mysql', pastGraceNow.username, pastGraceNow.password);

      // Within grace: the previous credential still works.
      expect(byId[withinGrace.secretId]?.action).toBe('nothing');
      await assertCanLogIn('postgres', withinGrace.username, withinGrace.password);
      expect((await storedLogin(rekey, withinGrace.secretId, { stage: STAGE.current })).versionId).toBe(withinGraceVersion);

      // Stuck: reported (not rotated again: Secrets Manager would refuse while AWSPENDING is unresolved).
      expect(byId[stuck.secretId]).toEqual({ secretId: stuck.secretId, action: 'stuck', versionId: stuckVersion });
      expect(stagesOf(stuck.secretId)[stuckVersion]).toEqual([STAGE.pending]);
      await assertCanLogIn('postgres', stuck.username, stuck.password);

      // Unreachable: RotateSecret was accepted (on AWS "rotated" means started); the rotation itself
      // failed where the single strategy changes the password, at finishSecret, and reported so;
      // AWSCURRENT is untouched and still works on the real port.
      expect(byId[unreachable.secretId]?.action).toBe('rotated');
      const unreachableVersion = byId[unreachable.secretId]!.versionId!;
      expect(rekey.failedRotations.map((f) => [f.call.versionId, f.step, f.error.message.split(':')[0]])).toEqual([
        [unreachableVersion, 'finishSecret', 'TARGET_UNREACHABLE'],
      ]);
      expect(stagesOf(unreachable.secretId)).toEqual({ ...before[unreachable.secretId], [unreachableVersion]: [STAGE.pending] });
      await assertCanLogIn('postgres', unreachable.username, unreachable.password);

      // Unattached: Secrets Manager refused RotateSecret; the sweep said so and went on.
      expect(byId[unattached.secretId]).toMatchObject({ action: 'failed', error: { code: 'ROTATE_SECRET_FAILED' } });
      expect(stagesOf(unattached.secretId)).toEqual(before[unattached.secretId]);
      await assertCanLogIn('mysql', unattached.username, unattached.password);

      const types = rekey.events.map((e) => `${e.detailType}:${e.detail.secretId}`);
      expect(types).toEqual(
        expect.arrayContaining([
          `${DETAIL_TYPE.rotationStarted}:${due.secretId}`,
          `${DETAIL_TYPE.rotationSucceeded}:${due.secretId}`,
          `${DETAIL_TYPE.credentialRevoked}:${pastGrace.secretId}`,
          `${DETAIL_TYPE.rotationStuck}:${stuck.secretId}`,
          `${DETAIL_TYPE.rotationStarted}:${unreachable.secretId}`,
          `${DETAIL_TYPE.rotationFailed}:${unreachable.secretId}`,
          `${DETAIL_TYPE.batchCompleted}:*`,
        ]),
      );
      expect(types).toHaveLength(7);
      const stuckEvent = rekey.events.find((e) => e.detailType === DETAIL_TYPE.rotationStuck)!;
      expect(stuckEvent.detail).toMatchObject({ versionId: stuckVersion, trigger: 'schedule', batchId: report.batchId });
      expect(stuckEvent.detail.durationMs).toBeGreaterThanOrEqual(2 * DAY - 60_000);
      expect(rekey.events.find((e) => e.detailType === DETAIL_TYPE.batchCompleted)!.detail).toMatchObject({ rotationsAsync: true, batchId: report.batchId });
    });

    it('leaves a recent AWSPENDING alone: the rotation AWS is retrying is neither stuck nor started again', async () => {
      const app = await secret('mysql', 'single', { 'rekey:max-age': '1d' });
      rekey.driveRotations(undefined);
      const pending = await rotateSecret(app.secretId);
      clock = 30 * 60_000;
      rekey.events.length = 0;
      const report = await tick();
      expect(report.items).toEqual([{ secretId: app.secretId, action: 'nothing' }]);
      expect(rekey.sm.rotations).toHaveLength(1);
      expect(stagesOf(app.secretId)[pending]).toEqual([STAGE.pending]);
      expect(rekey.events.map((e) => e.detailType)).toEqual([DETAIL_TYPE.batchCompleted]);
    });

    it(`never works on more secrets at once than REKEY_SWEEP_CONCURRENCY`, async () => {
      const limit = config().REKEY_SWEEP_CONCURRENCY;
      const ids: string[] = [];
      for (let i = 0; i < limit + 3; i++) {
        const id = `app/gate/${i}-${randomBytes(3).toString('hex')}`;
        const password = `gate-${randomBytes(12).toString('base64url')}`;
        rekey.guard.secret(password);
        await rekey.deps.store.createSecret(id, new Sealed(JSON.stringify({ engine: 'postgres', host: '127.0.0.1', username: 'gate', password })), { tags: { 'rekey:managed': 'true' } });
        ids.push(id);
      }
      // Hold every read of a value (the first thing the sweep does for a secret) until released.
      const held: (() => void)[] = [];
      let holding = true;
      const store = rekey.deps.store;
      rekey.deps.store = new Proxy(store, {
        get(target, property, receiver) {
          if (property !== 'getSecretValue') return Reflect.get(target, property, receiver) as unknown;
          return async (...args: Parameters<SecretStore['getSecretValue']>) => {
            if (holding) await new Promise<void>((release) => held.push(release));
            return target.getSecretValue(...args);
          };
        },
      });
      try {
        const sweeping = tick();
        while (held.length === 0) await new Promise((resolve) => setImmediate(resolve));
        // Every secret was ready to start at once; give the others every chance to join.
        for (let i = 0; i < 10; i++) await new Promise((resolve) => setImmediate(resolve));
        expect(held).toHaveLength(limit);
        holding = false;
        for (const release of held.splice(0)) release();
        const report = await sweeping;
        expect(report.items.map((i) => i.secretId).sort()).toEqual([...ids].sort());
        expect(report.counts.nothing).toBe(ids.length);
      } finally {
        rekey.deps.store = store;
      }
    });
  });
});
