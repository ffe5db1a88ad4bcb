import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { STAGE } from '#core/ports/secret-store.ts';
import { DETAIL_TYPE } from '#core/events.ts';
import type { SweepReport } from '#core/sweep.ts';
import { createHandler as createSweepHandler } from '../../functions/scheduled-rotation.ts';
import { createHandler as createOpsHandler } from '../../functions/ops.ts';
import { assertCanLogIn, assertCannotLogIn, uniqueName, type TestEngine } from '#test/helpers/databases.ts';
import { dropUser, setPasswordDirectly } from '#test/helpers/users.ts';
import { lambdaContext } from '#test/helpers/lambda.ts';
import { managedUser, storedLogin, testRekey, type TestRekey } from '#test/helpers/rekey.ts';

const created: { engine: TestEngine; username: string }[] = [];
const user = (engine: TestEngine) => {
  const username = uniqueName('swp');
  created.push({ engine, username });
  return username;
};
afterAll(async () => {
  for (const { engine, username } of created) {
    await dropUser(engine, username).catch(() => {});
    await dropUser(engine, `${username}_clone`).catch(() => {});
  }
});

const DAY = 86_400_000;

/**
 * The sweep handler fails by throwing (errors: 'throw'), so a result is always a report; the
 * middleware's type also admits the `{ ok: false }` form of `errors: 'return'` handlers.
 */
function reportOf(result: SweepReport | { ok: false; error: { code: string; message: string } }): SweepReport {
  if (!('items' in result)) throw new Error(`the sweep answered ${result.error.code} instead of a report`);
  return result;
}

describe('scheduled-rotation handler', () => {
  let rekey: TestRekey;
  let clock = 0;
  beforeEach(async () => {
    clock = 0;
    rekey = await testRekey({ now: () => new Date(Date.now() + clock) });
  });
  afterEach(async () => {
    await rekey.dispose();
    rekey.guard.assertClean();
  });

  describe('sweep', () => {
    it('rotates the due, finishes the interrupted, revokes past grace, reports the stuck, skips the rest and survives a failing secret', async () => {
      const due = await managedUser(rekey, 'postgres', { username: user('postgres'), strategy: 'alternating', tags: { 'rekey:max-age': '1d' } });
      const fresh = await managedUser(rekey, 'mysql', { username: user('mysql'), strategy: 'single', tags: { 'rekey:max-age': '30d' } });
      const graceOver = await managedUser(rekey, 'mysql', { username: user('mysql'), strategy: 'alternating', tags: { 'rekey:max-age': '30d', 'rekey:grace': '1h' } });
      await rekey.rotation.rotate(graceOver.secretId, { trigger: 'manual' });
      const interrupted = await managedUser(rekey, 'postgres', { username: user('postgres'), strategy: 'single', tags: { 'rekey:max-age': '1d' } });
      const interruptedToken = randomUUID();
      await rekey.rotation.runStep('createSecret', interrupted.secretId, interruptedToken, { trigger: 'schedule' });
      // Interrupted too, but its database is gone: past the threshold, it is reported stuck.
      const stuck = await managedUser(rekey, 'postgres', { username: user('postgres'), strategy: 'single', port: 1, tags: { 'rekey:max-age': '1d' } });
      const stuckToken = randomUUID();
      await rekey.rotation.runStep('createSecret', stuck.secretId, stuckToken, { trigger: 'schedule' });
      const broken = await managedUser(rekey, 'postgres', { username: user('postgres'), strategy: 'single', port: 1, tags: { 'rekey:max-age': '1d' } });
      const unmanaged = await managedUser(rekey, 'postgres', { username: user('postgres'), strategy: 'single', tags: { 'rekey:max-age': '1d', 'rekey:managed': 'false' } });
      rekey.events.length = 0;
      clock = 2 * DAY;

      const handler = createSweepHandler({ services: async () => rekey });
      const report = reportOf(await handler({ source: 'aws.events', 'detail-type': 'Scheduled Event' }, lambdaContext()));
      rekey.guard.output('sweep report', report);
      const byId = Object.fromEntries(report.items.map((item) => [item.secretId, item]));

      expect(byId[due.secretId]?.action).toBe('rotated');
      const dueNow = await storedLogin(rekey, due.secretId, { stage: STAGE.current });
      await assertCanLogIn('postgres', dueNow.username, dueNow.password);
      expect(byId[fresh.secretId]?.action).toBe('nothing');
      expect(byId[graceOver.secretId]?.action).toBe('revoked');
      await assertCannotLogIn('mysql', graceOver.username, graceOver.password);
      expect(byId[interrupted.secretId]).toEqual({ secretId: interrupted.secretId, action: 'rotated', versionId: interruptedToken });
      const finished = await storedLogin(rekey, interrupted.secretId, { stage: STAGE.current });
      expect(finished.versionId).toBe(interruptedToken);
      await assertCanLogIn('postgres', finished.username, finished.password);
      expect(byId[stuck.secretId]).toMatchObject({ action: 'stuck', versionId: stuckToken });
      expect(byId[broken.secretId]).toMatchObject({ action: 'failed', error: { code: 'TARGET_UNREACHABLE' } });
      expect(byId[unmanaged.secretId]).toBeUndefined();
      // The two admin secrets are not managed either.
      expect(report.counts).toEqual({ rotated: 2, revoked: 1, purged: 0, pushed: 0, stuck: 1, nothing: 1, failed: 1 });
      const types = rekey.events.map((e) => `${e.detailType}:${e.detail.secretId}`);
      expect(types).toContain(`${DETAIL_TYPE.rotationStuck}:${stuck.secretId}`);
      expect(types).toContain(`${DETAIL_TYPE.rotationSucceeded}:${due.secretId}`);
      expect(types).toContain(`${DETAIL_TYPE.credentialRevoked}:${graceOver.secretId}`);
      expect(types).toContain(`${DETAIL_TYPE.rotationFailed}:${broken.secretId}`);
    });

    it('finishes a single-strategy rotation killed between its change and its promotion, so AWSCURRENT logs in again without a human', async () => {
      for (const engine of ['postgres', 'mysql'] as const) {
        const app = await managedUser(rekey, engine, { username: user(engine), strategy: 'single', withAdmin: engine === 'mysql' });
        const token = randomUUID();
        for (const step of ['createSecret', 'setSecret', 'testSecret'] as const) await rekey.rotation.runStep(step, app.secretId, token, { trigger: 'schedule' });
        const pending = await storedLogin(rekey, app.secretId, { versionId: token });
        await setPasswordDirectly(engine, app.username, pending.password); // finishSecret's change, then the kill
        await assertCannotLogIn(engine, app.username, app.password);
        clock = 60_000; // a minute later, the next tick: well within the stuck threshold

        const report = reportOf(await createSweepHandler({ services: async () => rekey })({}, lambdaContext()));
        expect(report.items.find((i) => i.secretId === app.secretId)).toEqual({ secretId: app.secretId, action: 'rotated', versionId: token });
        const current = await storedLogin(rekey, app.secretId, { stage: STAGE.current });
        expect(current.versionId).toBe(token);
        await assertCanLogIn(engine, current.username, current.password);
      }
    });

    it('leaves an interrupted rotation to the process running it (its lock held), until it is stuck', async () => {
      const app = await managedUser(rekey, 'postgres', { username: user('postgres'), strategy: 'alternating' });
      const token = randomUUID();
      await rekey.rotation.runStep('createSecret', app.secretId, token, { trigger: 'schedule' });
      // The lock held as another process's rotation would hold it.
      const held = await rekey.deps.lock.tryWithLock(app.secretId, async () => reportOf(await createSweepHandler({ services: async () => rekey })({}, lambdaContext())));
      if (!held.acquired) throw new Error('the test could not take the lock');
      const report = held.value;
      expect(report.items.find((i) => i.secretId === app.secretId)).toEqual({ secretId: app.secretId, action: 'nothing' });
      expect((await rekey.deps.store.describeSecret(app.secretId)).versions.find((v) => v.versionId === token)?.stages).toEqual([STAGE.pending]);
    });

    it('leaves a previous credential alone while its grace lasts', async () => {
      const app = await managedUser(rekey, 'postgres', { username: user('postgres'), strategy: 'alternating', tags: { 'rekey:grace': '1h' } });
      await rekey.rotation.rotate(app.secretId, { trigger: 'manual' });
      clock = 30 * 60_000;
      const report = reportOf(await createSweepHandler({ services: async () => rekey })({}, lambdaContext()));
      expect(report.items.find((i) => i.secretId === app.secretId)?.action).toBe('nothing');
      await assertCanLogIn('postgres', app.username, app.password);
    });
  });
});

describe('ops handler', () => {
  let rekey: TestRekey;
  beforeEach(async () => {
    rekey = await testRekey();
  });
  afterEach(async () => {
    await rekey.dispose();
    rekey.guard.assertClean();
  });

  const invoke = async (event: unknown) => {
    const result = await createOpsHandler({ services: async () => rekey })(event, lambdaContext());
    rekey.guard.output('ops result', result);
    return result as { ok: boolean; action?: string; result?: Record<string, unknown>; error?: { code: string; message: string } };
  };

  describe('rotate, inspect, revoke', () => {
    it('runs the same code path as the CLI and never returns a value', async () => {
      const app = await managedUser(rekey, 'mysql', { username: user('mysql'), strategy: 'alternating' });
      const rotated = await invoke({ action: 'rotate', secretId: app.secretId, reason: 'on-call test' });
      expect(rotated).toMatchObject({ ok: true, action: 'rotate', result: { outcome: 'succeeded', strategy: 'alternating' } });
      const inspected = await invoke({ action: 'inspect', secretId: app.secretId });
      expect(inspected).toMatchObject({ ok: true, result: { lastOutcome: 'succeeded', previousLive: true } });
      const revoked = await invoke({ action: 'revoke', secretId: app.secretId, reason: 'on-call test' });
      expect(revoked).toMatchObject({ ok: true, result: { proven: true, username: app.username } });
      await assertCannotLogIn('mysql', app.username, app.password);
      const current = await storedLogin(rekey, app.secretId, { stage: STAGE.current });
      await assertCanLogIn('mysql', current.username, current.password);
      expect(rekey.events.map((e) => e.detail.reason)).toContain('on-call test');
    });

    it('answers a malformed event or an unknown secret with ok:false and a clear message', async () => {
      expect(await invoke({ action: 'explode' })).toMatchObject({ ok: false, error: { code: 'INVALID_INPUT' } });
      expect(await invoke({ action: 'inspect', secretId: 'missing' })).toMatchObject({ ok: false, error: { code: 'NOT_FOUND' } });
    });

    it('accepts the fixtures shipped for serverless invoke', async () => {
      for (const name of ['rotate', 'revoke', 'inspect']) {
        const fixture = JSON.parse(await readFile(join(import.meta.dirname, `../../events/ops/${name}.json`), 'utf8')) as { action: string };
        expect(fixture.action).toBe(name);
        const result = await invoke(fixture);
        // The fixture names a production secret that does not exist here: the answer is a clean NOT_FOUND.
        expect(result).toMatchObject({ ok: false, error: { code: 'NOT_FOUND' } });
      }
    });
  });
});
