import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { randomUUID } from 'node:crypto';
import { STAGE } from '#core/ports/secret-store.ts';
import { ROTATION_STEPS } from '#core/rotation.ts';
import { revokeCredential } from '#core/revocation.ts';
import { DETAIL_TYPE } from '#core/events.ts';
import { messageFor } from '#core/notifications.ts';
import { auditEntryOf } from '#core/audit.ts';
import { TargetError } from '#core/errors.ts';
import { adminQuery, assertCanLogIn, assertCannotLogIn, openSession, tryLogin, uniqueName, type TestEngine } from '#test/helpers/databases.ts';
import { dropUser, setPasswordDirectly } from '#test/helpers/users.ts';
import { managedUser, storedLogin, testRekey, type TestRekey } from '#test/helpers/rekey.ts';

const engines: TestEngine[] = ['postgres', 'mysql'];
const strategies = ['single', 'alternating'] as const;
const created: { engine: TestEngine; username: string }[] = [];

afterAll(async () => {
  for (const { engine, username } of created) {
    await dropUser(engine, username).catch(() => {});
    await dropUser(engine, `${username}_clone`).catch(() => {});
  }
});

describe.each(engines)('RotationEngine on %s', (engine) => {
  let rekey: TestRekey;
  beforeEach(async () => {
    rekey = await testRekey();
  });
  afterEach(async () => {
    await rekey.dispose();
    rekey.guard.assertClean();
  });

  const user = () => {
    const username = uniqueName('rot');
    created.push({ engine, username });
    return username;
  };

  describe.each(strategies)('%s strategy', (strategy) => {
    describe('rotate', () => {
      it('makes the new password log in, keeps it recorded as AWSCURRENT, and emits started/succeeded', async () => {
        const app = await managedUser(rekey, engine, { username: user(), strategy });
        const result = await rekey.rotation.rotate(app.secretId, { trigger: 'manual', reason: 'test' });
        const current = await storedLogin(rekey, app.secretId, { stage: STAGE.current });
        expect(current.versionId).toBe(result.versionId);
        expect(current.password).not.toBe(app.password);
        expect(current.username).toBe(strategy === 'alternating' ? `${app.username}_clone` : app.username);
        await assertCanLogIn(engine, current.username, current.password);
        const previous = await storedLogin(rekey, app.secretId, { stage: STAGE.previous });
        expect(previous.password).toBe(app.password);
        expect(rekey.events.map((e) => e.detailType)).toEqual([DETAIL_TYPE.rotationStarted, DETAIL_TYPE.rotationSucceeded]);
        expect((await rekey.deps.store.describeSecret(app.secretId)).tags['rekey:last-outcome']).toBe('succeeded');
      });

      it('flips between the user and its clone on each rotation and every AWSCURRENT logs in', async () => {
        const app = await managedUser(rekey, engine, { username: user(), strategy });
        const seen: string[] = [];
        for (let i = 0; i < 3; i++) {
          await rekey.rotation.rotate(app.secretId, { trigger: 'manual' });
          const current = await storedLogin(rekey, app.secretId, { stage: STAGE.current });
          await assertCanLogIn(engine, current.username, current.password);
          seen.push(current.username);
        }
        const expected = strategy === 'alternating' ? [`${app.username}_clone`, app.username, `${app.username}_clone`] : [app.username, app.username, app.username];
        expect(seen).toEqual(expected);
      });
    });

    describe('revoke', () => {
      it('refuses the old password afterwards and ends the sessions opened with it', async () => {
        const app = await managedUser(rekey, engine, { username: user(), strategy });
        const session = await openSession(engine, app.username, app.password);
        try {
          await rekey.rotation.rotate(app.secretId, { trigger: 'manual' });
          const result = await revokeCredential(rekey.deps, app.secretId, { stage: STAGE.previous, trigger: 'manual' });
          expect(result.proven).toBe(true);
          expect(result.sessionsEnded).toBeGreaterThanOrEqual(1);
          await assertCannotLogIn(engine, app.username, app.password);
          expect(await session.alive()).toBe(false);
          const current = await storedLogin(rekey, app.secretId, { stage: STAGE.current });
          await assertCanLogIn(engine, current.username, current.password);
          const described = await rekey.deps.store.describeSecret(app.secretId);
          expect(described.versions.find((v) => v.versionId === result.versionId)?.stages).toContain('REKEYREVOKED');
          expect(rekey.events.at(-1)?.detailType).toBe(DETAIL_TYPE.credentialRevoked);
        } finally {
          await session.close();
        }
      });

      it('succeeds again on a credential that is already dead', async () => {
        const app = await managedUser(rekey, engine, { username: user(), strategy });
        await rekey.rotation.rotate(app.secretId, { trigger: 'manual' });
        await revokeCredential(rekey.deps, app.secretId, { trigger: 'manual' });
        const again = await revokeCredential(rekey.deps, app.secretId, { trigger: 'manual' });
        expect(again.proven).toBe(true);
        await assertCannotLogIn(engine, app.username, app.password);
      });

      it('refuses to revoke AWSCURRENT with a clear error', async () => {
        const app = await managedUser(rekey, engine, { username: user(), strategy });
        await expect(revokeCredential(rekey.deps, app.secretId, { stage: STAGE.current, trigger: 'manual' })).rejects.toMatchObject({ code: 'REVOKE_CURRENT' });
        await assertCanLogIn(engine, app.username, app.password);
      });
    });

    describe('crash recovery', () => {
      it.each([1, 2, 3])('after step %i of 4 leaves a working credential and a rerun completes', async (stepsDone) => {
        const app = await managedUser(rekey, engine, { username: user(), strategy });
        const token = randomUUID();
        for (const step of ROTATION_STEPS.slice(0, stepsDone)) await rekey.rotation.runStep(step, app.secretId, token, { trigger: 'schedule' });
        // The "crash": nothing else runs. What is recorded as current must still log in, whatever
        // the strategy: the single strategy's change waits for finishSecret.
        const current = await storedLogin(rekey, app.secretId, { stage: STAGE.current });
        const pending = await storedLogin(rekey, app.secretId, { versionId: token });
        expect(current.versionId).toBe((await rekey.deps.store.describeSecret(app.secretId)).versions.find((v) => v.stages.includes(STAGE.current))?.versionId);
        await assertCanLogIn(engine, current.username, current.password);
        expect(await tryLogin(engine, pending.username, pending.password)).toBe(strategy === 'alternating' && stepsDone >= 2);
        const result = await rekey.rotation.rotate(app.secretId, { trigger: 'manual' });
        expect(result.versionId).toBe(token);
        expect(result.resumed).toBe(true);
        const after = await storedLogin(rekey, app.secretId, { stage: STAGE.current });
        expect(after.versionId).toBe(token);
        await assertCanLogIn(engine, after.username, after.password);
      });

      it('after finishSecret moved AWSCURRENT but before AWSPENDING was cleared, the next rotation tidies and rotates', async () => {
        const app = await managedUser(rekey, engine, { username: user(), strategy });
        const token = randomUUID();
        for (const step of ROTATION_STEPS.slice(0, 3)) await rekey.rotation.runStep(step, app.secretId, token, { trigger: 'schedule' });
        // What finishSecret does before the crash: single makes its change, then AWSCURRENT moves.
        if (strategy === 'single') await setPasswordDirectly(engine, app.username, (await storedLogin(rekey, app.secretId, { versionId: token })).password);
        const current = (await rekey.deps.store.describeSecret(app.secretId)).versions.find((v) => v.stages.includes(STAGE.current))!;
        await rekey.deps.store.updateVersionStage(app.secretId, STAGE.current, { moveToVersionId: token, removeFromVersionId: current.versionId });
        const result = await rekey.rotation.rotate(app.secretId, { trigger: 'manual' });
        expect(result.versionId).not.toBe(token);
        const versions = (await rekey.deps.store.describeSecret(app.secretId)).versions;
        expect(versions.filter((v) => v.stages.includes(STAGE.pending))).toHaveLength(0);
        const after = await storedLogin(rekey, app.secretId, { stage: STAGE.current });
        await assertCanLogIn(engine, after.username, after.password);
      });

      it('a crash at the promotion (one atomic write of labels and outcome) leaves a working credential, and a rerun completes', async () => {
        const app = await managedUser(rekey, engine, { username: user(), strategy });
        const store = rekey.deps.store;
        expect(store.updateVersionStages).toBeTypeOf('function');
        const crash = failOnce(store, 'updateVersionStages');
        const failed = await rekey.rotation.rotate(app.secretId, { trigger: 'manual' }).then(() => undefined, (e: unknown) => e);
        expect(crash.calls).toBe(1);
        expect(failed).toMatchObject({ message: 'crash during the promotion' });
        // Nothing of the batch happened: AWSCURRENT is where it was, AWSPENDING still pending.
        const described = await store.describeSecret(app.secretId);
        const pendingVersion = described.versions.find((v) => v.stages.includes(STAGE.pending))!;
        expect(pendingVersion.stages).toEqual([STAGE.pending]);
        const current = await storedLogin(rekey, app.secretId, { stage: STAGE.current });
        const pending = await storedLogin(rekey, app.secretId, { stage: STAGE.pending });
        await assertCanLogIn(engine, current.username, current.password);
        // Single: the change was undone when its promotion failed; alternating: the clone waits, valid.
        expect(await tryLogin(engine, pending.username, pending.password)).toBe(strategy === 'alternating');
        expect(rekey.events.at(-1)?.detailType).toBe(DETAIL_TYPE.rotationFailed);
        const result = await rekey.rotation.rotate(app.secretId, { trigger: 'manual' });
        expect(result).toMatchObject({ versionId: pendingVersion.versionId, resumed: true });
        const after = await storedLogin(rekey, app.secretId, { stage: STAGE.current });
        expect(after.versionId).toBe(pendingVersion.versionId);
        await assertCanLogIn(engine, after.username, after.password);
        expect((await store.describeSecret(app.secretId)).versions.filter((v) => v.stages.includes(STAGE.pending))).toHaveLength(0);
      });

      if (strategy === 'single') {
        it('a new password that will not log in is undone: the previous one is set back, stays AWSCURRENT, and a rerun completes', async () => {
          const app = await managedUser(rekey, engine, { username: user(), strategy, withAdmin: engine === 'postgres' });
          const refusing = refuseVerifyOf(rekey, app.username);
          const error = await rekey.rotation.rotate(app.secretId, { trigger: 'manual' }).then(() => undefined, (e: unknown) => e);
          expect(error).toMatchObject({ code: 'LOGIN_FAILED' });
          rekey.guard.error('rotation error', error);
          expect(refusing.calls).toBeGreaterThan(1); // retried with backoff before giving up
          const current = await storedLogin(rekey, app.secretId, { stage: STAGE.current });
          const pending = await storedLogin(rekey, app.secretId, { stage: STAGE.pending });
          expect(current.password).toBe(app.password);
          await assertCanLogIn(engine, app.username, app.password);
          await assertCannotLogIn(engine, pending.username, pending.password);
          expect((await rekey.deps.store.describeSecret(app.secretId)).tags['rekey:last-outcome']).toBe('failed LOGIN_FAILED');
          refusing.stop();
          const result = await rekey.rotation.rotate(app.secretId, { trigger: 'manual' });
          expect(result).toMatchObject({ versionId: pending.versionId, resumed: true });
          await assertCanLogIn(engine, pending.username, pending.password);
          await assertCannotLogIn(engine, app.username, app.password);
        });

        it.each([
          ['as the admin', true],
          ['as the user itself', false],
        ])('a process killed between the change and the promotion (%s) leaves the new password stored as AWSPENDING; the rerun finishes', async (_how, withAdmin) => {
          const app = await managedUser(rekey, engine, { username: user(), strategy, withAdmin });
          const token = randomUUID();
          for (const step of ROTATION_STEPS.slice(0, 3)) await rekey.rotation.runStep(step, app.secretId, token, { trigger: 'schedule' });
          const pending = await storedLogin(rekey, app.secretId, { versionId: token });
          await setPasswordDirectly(engine, app.username, pending.password); // finishSecret's change, then the kill
          await assertCannotLogIn(engine, app.username, app.password);
          const result = await rekey.rotation.rotate(app.secretId, { trigger: 'manual' });
          expect(result).toMatchObject({ versionId: token, resumed: true });
          const after = await storedLogin(rekey, app.secretId, { stage: STAGE.current });
          expect(after.versionId).toBe(token);
          await assertCanLogIn(engine, after.username, after.password);
        });

        it('a failed promotion that cannot be told from a written one keeps the new password (never undone under a promoted AWSCURRENT); the rerun finishes', async () => {
          const app = await managedUser(rekey, engine, { username: user(), strategy, withAdmin: true });
          let blind: { calls: number } | undefined;
          // The write fails, and so does the look that would tell whether it landed.
          failOnce(rekey.deps.store, 'updateVersionStages', { then: () => (blind = failOnce(rekey.deps.store, 'describeSecret')) });
          const failed = await rekey.rotation.rotate(app.secretId, { trigger: 'manual' }).then(() => undefined, (e: unknown) => e);
          expect(failed).toMatchObject({ code: 'PROMOTION_UNCONFIRMED', retryable: true });
          expect((failed as Error).cause).toMatchObject({ message: 'crash during the promotion' });
          rekey.guard.error('rotation error', failed);
          expect(rekey.events.at(-1)).toMatchObject({ detailType: DETAIL_TYPE.rotationFailed, detail: { step: 'finishSecret', error: { code: 'PROMOTION_UNCONFIRMED' } } });
          expect(blind?.calls).toBe(1);
          const pending = await storedLogin(rekey, app.secretId, { stage: STAGE.pending });
          await assertCanLogIn(engine, pending.username, pending.password);
          const result = await rekey.rotation.rotate(app.secretId, { trigger: 'manual' });
          expect(result).toMatchObject({ versionId: pending.versionId, resumed: true });
          await assertCanLogIn(engine, pending.username, pending.password);
        });
      }

      it('replays every step of a finished rotation without changing anything', async () => {
        const app = await managedUser(rekey, engine, { username: user(), strategy });
        const result = await rekey.rotation.rotate(app.secretId, { trigger: 'manual' });
        for (const step of ROTATION_STEPS) await rekey.rotation.runStep(step, app.secretId, result.versionId, { trigger: 'schedule' });
        const after = await storedLogin(rekey, app.secretId, { stage: STAGE.current });
        expect(after.versionId).toBe(result.versionId);
        await assertCanLogIn(engine, after.username, after.password);
      });
    });

    describe('concurrency', () => {
      it('refuses a second rotation while one is in progress and never holds two pending versions', async () => {
        const app = await managedUser(rekey, engine, { username: user(), strategy });
        const first = randomUUID();
        await rekey.rotation.runStep('createSecret', app.secretId, first, { trigger: 'schedule' });
        await expect(rekey.rotation.runStep('createSecret', app.secretId, randomUUID(), { trigger: 'manual' })).rejects.toMatchObject({ code: 'ROTATION_IN_PROGRESS' });
        const outcomes = await Promise.allSettled([rekey.rotation.rotate(app.secretId, { trigger: 'manual' }), rekey.rotation.rotate(app.secretId, { trigger: 'manual' })]);
        const rejected = outcomes.filter((o) => o.status === 'rejected');
        expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(1);
        expect(rejected).toHaveLength(1);
        expect((rejected[0] as PromiseRejectedResult).reason).toMatchObject({ code: 'ROTATION_IN_PROGRESS' });
        rekey.guard.error('rotation in progress', (rejected[0] as PromiseRejectedResult).reason);
        const versions = (await rekey.deps.store.describeSecret(app.secretId)).versions;
        expect(versions.filter((v) => v.stages.includes(STAGE.pending)).length).toBeLessThanOrEqual(1);
        const current = await storedLogin(rekey, app.secretId, { stage: STAGE.current });
        expect(current.versionId).toBe(first);
        await assertCanLogIn(engine, current.username, current.password);
      });
    });

    describe('a database that is down', () => {
      it('fails with a clear message and leaves AWSCURRENT unchanged', async () => {
        const app = await managedUser(rekey, engine, { username: user(), strategy, port: 1 });
        const before = (await rekey.deps.store.getSecretValue(app.secretId)).versionId;
        const error = await rekey.rotation.rotate(app.secretId, { trigger: 'schedule' }).then(() => undefined, (e: unknown) => e);
        expect(error).toMatchObject({ code: 'TARGET_UNREACHABLE' });
        rekey.guard.error('rotation error', error);
        expect((error as Error).message).toMatch(/127\.0\.0\.1:1|unreachable|connect/i);
        expect((await rekey.deps.store.getSecretValue(app.secretId)).versionId).toBe(before);
        expect((await rekey.deps.store.describeSecret(app.secretId)).tags['rekey:last-outcome']).toBe('failed TARGET_UNREACHABLE');
        expect(rekey.events.at(-1)?.detailType).toBe(DETAIL_TYPE.rotationFailed);
        await assertCanLogIn(engine, app.username, app.password);
      });
    });
  });
});

describe.each(engines)('RotationEngine on %s: killing the replaced credential early (a leak)', (engine) => {
  let rekey: TestRekey;
  beforeEach(async () => {
    rekey = await testRekey();
  });
  afterEach(async () => {
    await rekey.dispose();
    rekey.guard.assertClean();
  });
  const user = () => {
    const username = uniqueName('rotk');
    created.push({ engine, username });
    return username;
  };
  const currentVersion = async (secretId: string) => (await rekey.deps.store.getSecretValue(secretId)).versionId;

  it('alternating: the leaked user is scrambled once the clone is verified, and the revoke proves it without scrambling again', async () => {
    const app = await managedUser(rekey, engine, { username: user(), strategy: 'alternating' });
    const leaked = await currentVersion(app.secretId);
    const result = await rekey.rotation.rotate(app.secretId, { trigger: 'leak' }, { killReplaced: { versionId: leaked } });
    expect(result.killed).toMatchObject({ versionId: leaked, outcome: { method: 'password-scrambled', principal: app.username } });
    await assertCannotLogIn(engine, app.username, app.password);
    const current = await storedLogin(rekey, app.secretId, { stage: STAGE.current });
    expect(current.username).toBe(`${app.username}_clone`);
    await assertCanLogIn(engine, current.username, current.password);
    const revoked = await revokeCredential(rekey.deps, app.secretId, { versionId: leaked, trigger: 'leak', alreadyKilled: result.killed! });
    expect(revoked).toMatchObject({ versionId: leaked, method: 'password-scrambled', proven: true });
    expect((await rekey.deps.store.describeSecret(app.secretId)).versions.find((v) => v.versionId === leaked)?.stages).toContain('REKEYREVOKED');
    await assertCanLogIn(engine, current.username, current.password);
  });

  it('single: nothing is killed early, since the change itself replaced the password', async () => {
    const app = await managedUser(rekey, engine, { username: user(), strategy: 'single', withAdmin: true });
    const leaked = await currentVersion(app.secretId);
    const result = await rekey.rotation.rotate(app.secretId, { trigger: 'leak' }, { killReplaced: { versionId: leaked } });
    expect(result.killed).toBeUndefined();
    await assertCannotLogIn(engine, app.username, app.password);
    const current = await storedLogin(rekey, app.secretId, { stage: STAGE.current });
    await assertCanLogIn(engine, current.username, current.password);
  });

  it('never kills a version that is not the AWSCURRENT being replaced (a leaked AWSPENDING is promoted, not killed)', async () => {
    const app = await managedUser(rekey, engine, { username: user(), strategy: 'alternating' });
    const token = randomUUID();
    await rekey.rotation.runStep('createSecret', app.secretId, token, { trigger: 'schedule' });
    const result = await rekey.rotation.rotate(app.secretId, { trigger: 'leak' }, { killReplaced: { versionId: token } });
    expect(result).toMatchObject({ versionId: token, resumed: true });
    expect(result.killed).toBeUndefined();
    const current = await storedLogin(rekey, app.secretId, { stage: STAGE.current });
    await assertCanLogIn(engine, current.username, current.password);
    await assertCanLogIn(engine, app.username, app.password); // the previous one is left to the revoke
  });

  it('a crash after the early kill and before the promotion leaves AWSPENDING working, and the next run promotes it', async () => {
    const app = await managedUser(rekey, engine, { username: user(), strategy: 'alternating' });
    const leaked = await currentVersion(app.secretId);
    const crash = failOnce(rekey.deps.store, 'updateVersionStages');
    const failed = await rekey.rotation.rotate(app.secretId, { trigger: 'leak' }, { killReplaced: { versionId: leaked } }).then(() => undefined, (e: unknown) => e);
    expect(failed).toMatchObject({ message: 'crash during the promotion' });
    expect(crash.calls).toBe(1);
    // The failure says AWSCURRENT was revoked on purpose (chat must not claim it still works).
    const failure = rekey.events.at(-1)!;
    expect(failure).toMatchObject({ detailType: DETAIL_TYPE.rotationFailed, detail: { step: 'finishSecret', currentRevoked: leaked } });
    expect(messageFor(failure)!.text).not.toContain('still works');
    expect(auditEntryOf(failure)).toMatchObject({ action: DETAIL_TYPE.rotationFailed, currentRevoked: leaked });
    // The single strategy's window, no longer: AWSCURRENT (the leaked user) is dead, AWSPENDING works.
    expect(await currentVersion(app.secretId)).toBe(leaked);
    await assertCannotLogIn(engine, app.username, app.password);
    const pending = await storedLogin(rekey, app.secretId, { stage: STAGE.pending });
    await assertCanLogIn(engine, pending.username, pending.password);
    // What a redelivered leak does: rotate again (resuming the pending version), then revoke.
    const again = await rekey.rotation.rotate(app.secretId, { trigger: 'leak' }, { killReplaced: { versionId: leaked } });
    expect(again).toMatchObject({ versionId: pending.versionId, resumed: true });
    const current = await storedLogin(rekey, app.secretId, { stage: STAGE.current });
    expect(current.versionId).toBe(pending.versionId);
    await assertCanLogIn(engine, current.username, current.password);
    const revoked = await revokeCredential(rekey.deps, app.secretId, { versionId: leaked, trigger: 'leak', ...(again.killed ? { alreadyKilled: again.killed } : {}) });
    expect(revoked.proven).toBe(true);
    await assertCannotLogIn(engine, app.username, app.password);
  });
});

/**
 * Makes `method` of `store` throw once (a crash at that write), then behave again; counts the calls.
 * `then` runs at the failure (to break the next call of something else).
 */
function failOnce(store: object, method: string, options: { then?: () => void } = {}): { calls: number } {
  const counter = { calls: 0 };
  const target = store as Record<string, (...args: unknown[]) => Promise<unknown>>;
  const original = target[method]!;
  target[method] = async (..._args: unknown[]) => {
    counter.calls += 1;
    target[method] = original;
    options.then?.();
    throw new Error('crash during the promotion');
  };
  return counter;
}

/**
 * The server refusing every login of `username` (a pg_hba or a proxy that has not caught up), as
 * the kinds' `verify` sees it: LOGIN_FAILED. Counts the refusals; `stop()` lets logins through.
 */
function refuseVerifyOf(rekey: TestRekey, username: string): { calls: number; stop(): void } {
  const state = { calls: 0, stop: () => restore.forEach((undo) => undo()) };
  const restore: (() => void)[] = [];
  for (const kind of rekey.deps.kinds.kinds) {
    const original = kind.verify.bind(kind);
    const patched = kind as { verify: typeof kind.verify };
    patched.verify = async (value, ctx) => {
      if ((JSON.parse(value.reveal()) as { username?: string }).username === username) {
        state.calls += 1;
        throw new TargetError('LOGIN_FAILED', `login as ${username} refused by the test`);
      }
      return original(value, ctx);
    };
    restore.push(() => delete (patched as Partial<typeof patched>).verify);
  }
  return state;
}

describe('RotationEngine alternating on postgres', () => {
  it('keeps one owner: a table created while the clone was current is usable by the original after the flip', async () => {
    const rekey = await testRekey();
    try {
      const username = uniqueName('own');
      created.push({ engine: 'postgres', username });
      const app = await managedUser(rekey, 'postgres', { username, strategy: 'alternating' });
      await adminQuery('postgres', `GRANT CREATE ON SCHEMA public TO "${username}"`);
      await rekey.rotation.rotate(app.secretId, { trigger: 'manual' });
      const asClone = await storedLogin(rekey, app.secretId, { stage: STAGE.current });
      expect(asClone.username).toBe(`${username}_clone`);
      const { default: pg } = await import('pg');
      const { servers } = await import('#test/helpers/databases.ts');
      const s = servers().postgres;
      const query = async (login: { username: string; password: string }, sql: string) => {
        const client = new pg.Client({ host: s.host, port: s.port, user: login.username, password: login.password, database: s.database });
        await client.connect();
        try {
          return (await client.query(sql)).rows;
        } finally {
          await client.end();
        }
      };
      const table = `t_${username}`;
      await query(asClone, `CREATE TABLE "${table}" (id int)`);
      await rekey.rotation.rotate(app.secretId, { trigger: 'manual' });
      const asOriginal = await storedLogin(rekey, app.secretId, { stage: STAGE.current });
      expect(asOriginal.username).toBe(username);
      await query(asOriginal, `INSERT INTO "${table}" VALUES (1)`);
      await query(asOriginal, `ALTER TABLE "${table}" ADD COLUMN note text`);
      const owner = await adminQuery<{ tableowner: string }>('postgres', 'SELECT tableowner FROM pg_tables WHERE tablename = $1', [table]);
      expect(owner[0]?.tableowner).toBe(username);
      await adminQuery('postgres', `DROP TABLE "${table}"`);
      await adminQuery('postgres', `REVOKE CREATE ON SCHEMA public FROM "${username}"`);
    } finally {
      await rekey.dispose();
      rekey.guard.assertClean();
    }
  });
});

describe('RotationEngine alternating on mysql', () => {
  it('mirrors a grant added to and a grant revoked from the original on the clone at every rotation, whichever user takes over', async () => {
    const rekey = await testRekey();
    try {
      const username = uniqueName('grt');
      created.push({ engine: 'mysql', username });
      const app = await managedUser(rekey, 'mysql', { username, strategy: 'alternating' });
      const table = `t_${username}`;
      await adminQuery('mysql', `CREATE TABLE rekey_test.\`${table}\` (id int)`);
      await adminQuery('mysql', `GRANT SELECT, INSERT ON rekey_test.\`${table}\` TO ?@'%'`, [username]);
      await rekey.rotation.rotate(app.secretId, { trigger: 'manual' });
      const grantsOf = async (user: string) =>
        (await adminQuery<{ PRIVILEGE_TYPE: string }>('mysql', 'SELECT PRIVILEGE_TYPE FROM information_schema.TABLE_PRIVILEGES WHERE TABLE_NAME = ? AND GRANTEE = ?', [table, `'${user}'@'%'`]))
          .map((r) => r.PRIVILEGE_TYPE)
          .sort();
      expect(await grantsOf(`${username}_clone`)).toEqual(['INSERT', 'SELECT']);
      await adminQuery('mysql', `REVOKE INSERT ON rekey_test.\`${table}\` FROM ?@'%'`, [username]);
      await adminQuery('mysql', `GRANT UPDATE ON rekey_test.\`${table}\` TO ?@'%'`, [username]);
      // Back to the original: the clone (now AWSPREVIOUS, live for its grace) loses INSERT at once.
      await rekey.rotation.rotate(app.secretId, { trigger: 'manual' });
      expect((await storedLogin(rekey, app.secretId, { stage: STAGE.current })).username).toBe(username);
      expect(await grantsOf(`${username}_clone`)).toEqual(['SELECT', 'UPDATE']);
      await adminQuery('mysql', `REVOKE UPDATE ON rekey_test.\`${table}\` FROM ?@'%'`, [username]);
      await rekey.rotation.rotate(app.secretId, { trigger: 'manual' }); // to the clone
      expect((await storedLogin(rekey, app.secretId, { stage: STAGE.current })).username).toBe(`${username}_clone`);
      expect(await grantsOf(`${username}_clone`)).toEqual(['SELECT']);
      await adminQuery('mysql', `DROP TABLE rekey_test.\`${table}\``);
    } finally {
      await rekey.dispose();
      rekey.guard.assertClean();
    }
  });
});

describe('RotationEngine single on mysql: the revoke spares sessions opened with the new password', () => {
  const WATERMARK = 'rekey:session-watermark';
  /** A single-strategy user, a session opened with its password, then `rotate` (whatever way); returns what the test needs. */
  async function rotatedWithOldSession(rekey: TestRekey, rotate: (secretId: string) => Promise<string>) {
    const username = uniqueName('wm');
    created.push({ engine: 'mysql', username });
    const app = await managedUser(rekey, 'mysql', { username, strategy: 'single' });
    const old = await openSession('mysql', username, app.password);
    const versionId = await rotate(app.secretId);
    const current = await storedLogin(rekey, app.secretId, { stage: STAGE.current });
    expect(current.versionId).toBe(versionId);
    const fresh = await openSession('mysql', username, current.password);
    return { app, old, fresh, versionId };
  }

  const rotations = {
    'rotate (one run: the watermark rides on the promotion write)': async (rekey: TestRekey, secretId: string) => (await rekey.rotation.rotate(secretId, { trigger: 'manual' })).versionId,
    'one step per call, as Secrets Manager drives it (finishSecret tags it, where the new password is proven)': async (rekey: TestRekey, secretId: string) => {
      const token = randomUUID();
      for (const step of ROTATION_STEPS) await rekey.rotation.runStep(step, secretId, token, { trigger: 'schedule' });
      return token;
    },
  };

  it.each(Object.keys(rotations) as (keyof typeof rotations)[])(
    'after %s, revoking AWSPREVIOUS ends the session opened with the old password and spares the one opened with the new',
    async (how) => {
      const rekey = await testRekey();
      try {
        const { app, old, fresh, versionId } = await rotatedWithOldSession(rekey, (id) => rotations[how](rekey, id));
        try {
          const tags = (await rekey.deps.store.describeSecret(app.secretId)).tags;
          rekey.guard.output('tags', JSON.stringify(tags));
          // An identifier bound to the version: `<versionId> <connection id>@<server digest>`, never a value.
          expect(tags[WATERMARK]).toMatch(new RegExp(`^${versionId} \\d+@[0-9a-f]{16}$`));
          const revoked = await revokeCredential(rekey.deps, app.secretId, { trigger: 'manual' });
          expect(revoked).toMatchObject({ method: 'password-already-replaced', sessionsEnded: 1, proven: true });
          expect(await old.alive()).toBe(false);
          expect(await fresh.alive()).toBe(true);
          expect(await fresh.alive()).toBe(true);
          await assertCannotLogIn('mysql', app.username, app.password);
        } finally {
          await old.close();
          await fresh.close();
        }
      } finally {
        await rekey.dispose();
        rekey.guard.assertClean();
      }
    },
  );

  it.each([
    ['absent (a rotation before watermarks existed)', undefined],
    // The very watermark AWSCURRENT's verify took, but bound to another version: not used.
    ['naming another version', (tag: string) => `${randomUUID()} ${tag.split(' ')[1]}`],
    ['unreadable', () => 'garbage'],
  ] as const)('with the watermark tag %s, every session of the user ends, as before', async (_label, replace) => {
    const rekey = await testRekey();
    try {
      const { app, old, fresh } = await rotatedWithOldSession(rekey, async (id) => (await rekey.rotation.rotate(id, { trigger: 'manual' })).versionId);
      try {
        if (replace) {
          const tag = (await rekey.deps.store.describeSecret(app.secretId)).tags[WATERMARK]!;
          await rekey.deps.store.tagSecret(app.secretId, { [WATERMARK]: replace(tag) });
        } else {
          const describe = rekey.deps.store.describeSecret.bind(rekey.deps.store);
          vi.spyOn(rekey.deps.store, 'describeSecret').mockImplementation(async (id) => {
            const described = await describe(id);
            const { [WATERMARK]: _dropped, ...tags } = described.tags;
            return { ...described, tags };
          });
        }
        const revoked = await revokeCredential(rekey.deps, app.secretId, { trigger: 'manual' });
        expect(revoked.sessionsEnded).toBe(2);
        expect(await old.alive()).toBe(false);
        expect(await fresh.alive()).toBe(false);
      } finally {
        vi.restoreAllMocks();
        await old.close();
        await fresh.close();
      }
    } finally {
      await rekey.dispose();
      rekey.guard.assertClean();
    }
  });
});
