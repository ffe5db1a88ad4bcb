import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { IAMClient } from '@aws-sdk/client-iam';
import { AwsIamUserKind } from '#adapters/targets/aws-iam-user.ts';
import { ConflictError, NotFoundError, TargetError } from '#core/errors.ts';
import type { KindContext } from '#core/ports/credential-kind.ts';
import { Sealed } from '#core/sealed.ts';
import { FakeIam, accessKeyId, type FakeKey } from '#test/helpers/fake-iam.ts';
import { LeakGuard } from '#test/helpers/leak-guard.ts';

const USER = 'ci-deployer';

describe('AwsIamUserKind', () => {
  let fake: FakeIam;
  let kind: AwsIamUserKind;
  let guard: LeakGuard;
  let logs: string[];

  beforeEach(() => {
    fake = new FakeIam();
    kind = new AwsIamUserKind({ iam: new IAMClient({ region: 'us-east-1' }) });
    guard = new LeakGuard();
    logs = [];
  });
  afterEach(() => {
    guard.output('logs', logs.join('\n'));
    guard.assertClean();
    fake.restore();
  });

  const ctx = (current: Sealed<string>, extra: Partial<KindContext> = {}): KindContext => {
    const log = (level: string) => (msg: string, fields: Record<string, unknown> = {}) => void logs.push(JSON.stringify({ level, msg, ...fields }));
    return {
      secretId: `iam/${USER}`,
      versionId: randomUUID(),
      tags: {},
      current,
      readSecret: async (id) => {
        throw new NotFoundError(`secret ${id} not found`);
      },
      now: () => new Date(),
      logger: { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') },
      ...extra,
    };
  };
  const valueOf = (key: Pick<FakeKey, 'id' | 'secret'>, userName = USER) => {
    guard.secret(key.secret);
    return fake.value(userName, key, { consumers: [{ type: 'event', name: 'x' }] });
  };
  const parsed = (value: Sealed<string>) => {
    const v = JSON.parse(value.reveal()) as { accessKeyId: string; secretAccessKey: string; consumers?: unknown };
    guard.secret(v.secretAccessKey);
    return v;
  };
  const caught = (promise: Promise<unknown>) => promise.then(() => undefined, (e: unknown) => e);
  const statuses = () => Object.fromEntries(fake.keys(USER).map((k) => [k.id, k.status]));

  describe('next', () => {
    it('with no existing key, creates one and deletes nothing', async () => {
      fake.addUser(USER);
      const gone = { id: accessKeyId(), secret: 'a-key-deleted-by-hand-0000' };
      const next = parsed(await kind.next(ctx(valueOf(gone))));
      expect(fake.keys(USER).map((k) => k.id)).toEqual([next.accessKeyId]);
      expect(fake.calls).not.toContain('DeleteAccessKey');
    });

    it('with one key (AWSCURRENT), creates a second, deletes nothing, and keeps unknown fields', async () => {
      const current = fake.addKey(USER);
      const next = parsed(await kind.next(ctx(valueOf(current))));
      expect(fake.keys(USER).map((k) => k.id)).toEqual([current.id, next.accessKeyId]);
      expect(next.secretAccessKey).toBe(fake.key(next.accessKeyId)!.secret);
      expect(next.consumers).toEqual([{ type: 'event', name: 'x' }]);
      expect(fake.calls).not.toContain('DeleteAccessKey');
    });

    it('with two keys, deletes the inactive one that is not AWSCURRENT, then creates', async () => {
      const previous = fake.addKey(USER, { status: 'Inactive' });
      const current = fake.addKey(USER);
      const next = parsed(await kind.next(ctx(valueOf(current))));
      expect(fake.key(previous.id)).toBeUndefined();
      expect(fake.keys(USER).map((k) => k.id)).toEqual([current.id, next.accessKeyId]);
      expect(logs.join('\n')).toContain(previous.id);
    });

    it('with two active keys, deletes the older one that is not AWSCURRENT', async () => {
      const older = fake.addKey(USER);
      const current = fake.addKey(USER);
      await kind.next(ctx(valueOf(current)));
      expect(fake.key(older.id)).toBeUndefined();
      expect(fake.key(current.id)?.status).toBe('Active');
    });

    it("never deletes AWSCURRENT's key, even when it is the older and the inactive one", async () => {
      const current = fake.addKey(USER, { status: 'Inactive' });
      const other = fake.addKey(USER);
      await kind.next(ctx(valueOf(current)));
      expect(fake.key(current.id)).toBeDefined();
      expect(fake.key(other.id)).toBeUndefined();
    });

    it('clears the orphan a crash left between CreateAccessKey and storing it, on the next run', async () => {
      const current = fake.addKey(USER);
      await kind.next(ctx(valueOf(current))); // the "crash": the new pair is never stored
      const orphan = fake.keys(USER).find((k) => k.id !== current.id)!;
      const next = parsed(await kind.next(ctx(valueOf(current))));
      expect(fake.key(orphan.id)).toBeUndefined();
      expect(fake.keys(USER).map((k) => k.id)).toEqual([current.id, next.accessKeyId]);
    });

    it('follows ListAccessKeys pagination', async () => {
      fake.restore();
      fake = new FakeIam({ pageSize: 1 });
      const older = fake.addKey(USER);
      const current = fake.addKey(USER);
      await kind.next(ctx(valueOf(current)));
      expect(fake.key(older.id)).toBeUndefined();
      expect(fake.calls.filter((c) => c === 'ListAccessKeys')).toHaveLength(2);
    });

    it('reports a refused call as ACCESS_DENIED naming the action, with no secret anywhere', async () => {
      const current = fake.addKey(USER);
      fake.failNext('CreateAccessKey', FakeIam.accessDenied());
      const error = await caught(kind.next(ctx(valueOf(current))));
      expect(error).toMatchObject({ code: 'ACCESS_DENIED' });
      expect((error as Error).message).toContain(`create an access key for ${USER}`);
      guard.error('next', error);
    });

    it('reports throttling as TARGET_UNREACHABLE, retryable, and an unknown user as PRINCIPAL_NOT_FOUND', async () => {
      const current = fake.addKey(USER);
      fake.failNext('ListAccessKeys', FakeIam.throttled());
      expect(await caught(kind.next(ctx(valueOf(current))))).toMatchObject({ code: 'TARGET_UNREACHABLE', retryable: true });
      const error = await caught(kind.next(ctx(valueOf(current, 'no-such-user'))));
      expect(error).toMatchObject({ code: 'PRINCIPAL_NOT_FOUND' });
      guard.error('next', error);
    });
  });

  describe('verify', () => {
    it('waits out eventual consistency: the first checks of a new key are refused, later ones pass', async () => {
      fake.newKeyRefusals = 3;
      const current = fake.addKey(USER);
      const next = await kind.next(ctx(valueOf(current)));
      parsed(next);
      const outcomes: string[] = [];
      for (let i = 0; i < 5; i++) {
        const error = await caught(kind.verify(next, ctx(valueOf(current))));
        if (error) guard.error('verify', error);
        outcomes.push(error ? (error as TargetError).code : 'ok');
      }
      expect(outcomes).toEqual(['LOGIN_FAILED', 'LOGIN_FAILED', 'LOGIN_FAILED', 'ok', 'ok']);
    });

    it("refuses a key that works but signs as another user (KEY_USER_MISMATCH)", async () => {
      const someoneElses = fake.addKey('someone-else');
      const error = await caught(kind.verify(valueOf(someoneElses, USER), ctx(valueOf(someoneElses, USER))));
      expect(error).toMatchObject({ code: 'KEY_USER_MISMATCH' });
      guard.error('verify', error);
    });

    it('a rotation whose verification never passes leaves AWSCURRENT working and both keys as they were', async () => {
      fake.newKeyRefusals = 100;
      const current = fake.addKey(USER);
      const currentValue = valueOf(current);
      const c = ctx(currentValue);
      const pending = await kind.next(c); // stored as AWSPENDING by the engine, before anything else
      parsed(pending);
      await kind.apply(pending, c);
      const before = statuses();
      for (let attempt = 0; attempt < 3; attempt++) {
        const error = await caught(kind.verify(pending, c));
        expect(error).toMatchObject({ code: 'LOGIN_FAILED' });
        guard.error('verify', error);
      }
      // The engine gives up here: nothing is promoted, nothing is revoked.
      expect(statuses()).toEqual(before);
      expect(Object.values(before)).toEqual(['Active', 'Active']);
      expect(await kind.canLogIn(currentValue, c)).toBe(true);
      expect(fake.calls.filter((call) => call === 'UpdateAccessKey' || call === 'DeleteAccessKey')).toEqual([]);
    });
  });

  describe('revoke', () => {
    it('on a leak, deactivates the key at once (no delete yet) and the key stops working', async () => {
      const leaked = fake.addKey(USER);
      const current = fake.addKey(USER);
      const c = ctx(valueOf(current));
      const outcome = await kind.revoke(valueOf(leaked), c, { mode: 'leak' });
      expect(outcome).toEqual({ method: 'deactivated', principal: USER, keyId: leaked.id, purgeLater: true });
      expect(fake.key(leaked.id)?.status).toBe('Inactive');
      expect(fake.calls.filter((call) => call === 'UpdateAccessKey')).toHaveLength(1);
      expect(fake.calls).not.toContain('DeleteAccessKey');
      expect(await kind.canLogIn(valueOf(leaked), c)).toBe(false);
      expect(await kind.canLogIn(valueOf(current), c)).toBe(true);
    });

    it('is idempotent: an inactive key stays inactive, a deleted key or a deleted user is already dead', async () => {
      const old = fake.addKey(USER, { status: 'Inactive' });
      const current = fake.addKey(USER);
      const c = ctx(valueOf(current));
      expect((await kind.revoke(valueOf(old), c, { mode: 'grace' })).method).toBe('already-inactive');
      expect((await kind.revoke(valueOf({ id: accessKeyId(), secret: 'deleted-key-secret-000' }), c, { mode: 'grace' })).method).toBe('already-deleted');
      const gone = { id: accessKeyId(), secret: 'user-gone-secret-00000' };
      expect((await kind.revoke(valueOf(gone, 'deleted-user'), c, { mode: 'leak' })).method).toBe('already-deleted');
    });

    it("refuses AWSCURRENT's key and leaves it active", async () => {
      const current = fake.addKey(USER);
      const error = await caught(kind.revoke(valueOf(current), ctx(valueOf(current)), { mode: 'leak' }));
      expect(error).toBeInstanceOf(ConflictError);
      expect(fake.key(current.id)?.status).toBe('Active');
    });
  });

  describe('purge', () => {
    it('deletes a deactivated key after its second grace, and again is a no-op', async () => {
      const old = fake.addKey(USER, { status: 'Inactive' });
      const current = fake.addKey(USER);
      const c = ctx(valueOf(current));
      await kind.purge(valueOf(old), c);
      await kind.purge(valueOf(old), c);
      expect(fake.keys(USER).map((k) => k.id)).toEqual([current.id]);
    });

    it('refuses to delete a key someone re-activated (a false alarm undone) or the AWSCURRENT key', async () => {
      const old = fake.addKey(USER);
      const current = fake.addKey(USER);
      const c = ctx(valueOf(current));
      expect(await caught(kind.purge(valueOf(old), c))).toMatchObject({ code: 'PURGE_ACTIVE_KEY' });
      expect(await caught(kind.purge(valueOf(current), c))).toMatchObject({ code: 'REVOKE_CURRENT' });
      expect(fake.keys(USER)).toHaveLength(2);
    });
  });

  describe('leaks of keys rekey did not create', () => {
    it('finds access key ids in a leaked text, alone or run together with their secret', () => {
      const id = accessKeyId();
      expect(kind.identifiersOfLeak(`aws_access_key_id = ${id}\naws_secret_access_key = x`)).toEqual([id]);
      expect(kind.identifiersOfLeak(`${id}wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY`)).toEqual([id]);
      expect(kind.identifiersOfLeak('postgres://u:p@h/db')).toEqual([]);
    });

    it("names the IAM user that holds a key of this account, and nobody for another account's key", async () => {
      const stray = fake.addKey(USER);
      expect(await kind.ownerOf(stray.id)).toBe(USER);
      expect(await kind.ownerOf(accessKeyId())).toBeUndefined();
    });

    it("deactivates a leaked key of a managed user that no version holds, proving it by IAM's listing", async () => {
      const current = fake.addKey(USER);
      const stray = fake.addKey(USER); // made by hand in the console, then committed somewhere
      const outcome = await kind.revokeStray(stray.id, ctx(valueOf(current)));
      expect(outcome).toMatchObject({ method: 'deactivated', principal: USER, keyId: stray.id });
      expect(fake.key(stray.id)?.status).toBe('Inactive');
      expect(fake.key(current.id)?.status).toBe('Active');
    });

    it("refuses AWSCURRENT's own key and a key that belongs to another user", async () => {
      const current = fake.addKey(USER);
      const elsewhere = fake.addKey('someone-else');
      expect(await caught(kind.revokeStray(current.id, ctx(valueOf(current))))).toMatchObject({ code: 'REVOKE_CURRENT' });
      expect(await caught(kind.revokeStray(elsewhere.id, ctx(valueOf(current))))).toBeInstanceOf(NotFoundError);
      expect(fake.key(elsewhere.id)?.status).toBe('Active');
    });
  });

  describe('sensitiveForms', () => {
    it('lists the secret access key, the key id and the two run together (TruffleHog RawV2)', () => {
      const key = fake.addKey(USER);
      const forms = kind.sensitiveForms(valueOf(key));
      expect(forms).toEqual([
        { form: 'secret-access-key', text: key.secret, hmsl: true },
        { form: 'access-key-id', text: key.id },
        { form: 'key-pair', text: key.id + key.secret },
      ]);
    });
  });
});
