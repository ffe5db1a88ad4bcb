import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { TargetError, ValidationError } from '#core/errors.ts';
import type { Login, Target } from '#core/ports/target.ts';
import { Sealed } from '#core/sealed.ts';
import { adminSecret, assertCanLogIn, assertCannotLogIn, openSession, tryLogin, uniqueName, type TestEngine } from '#test/helpers/databases.ts';
import { LeakGuard } from '#test/helpers/leak-guard.ts';
import { createUser, dropUser } from '#test/helpers/users.ts';

export interface TargetContractOptions {
  /**
   * The engine knows when each session started, so `endSessions({ startedBefore })` spares a
   * session opened after the cutoff. Without it, the contract only requires that sessions opened
   * before the cutoff end. Default true.
   */
  sparesSessionsAfterCutoff?: boolean;
}

const password = (label = 'pw'): string => `${label}-${randomBytes(12).toString('base64url')}`;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Hostile-but-valid passwords: SQL quotes, escapes, placeholders, format strings, non-ASCII. */
const HOSTILE_PASSWORDS = [
  `it's "quoted" \`back\` ${randomBytes(4).toString('hex')}`,
  `back\\slash\\' \\" \\\\ ${randomBytes(4).toString('hex')}`,
  `$1 $$ ? ?? %s %d :name ${randomBytes(4).toString('hex')}`,
  `pässwörd-密码-🔑-${randomBytes(4).toString('hex')}`,
  `semi;colon -- /* c */ ${randomBytes(4).toString('hex')}`,
];

/**
 * The Target port's contract (functions/core/ports/target.ts), run against every database target
 * on a real server: credentials are proven by logging in with the drivers directly, hostile names
 * and passwords are ordinary input, and no error ever carries a password.
 */
export function targetContract(engine: TestEngine, makeTarget: () => Target, options: TargetContractOptions = {}): void {
  const sparesLater = options.sparesSessionsAfterCutoff ?? true;

  describe(`${engine} target (contract)`, () => {
    let target: Target;
    let admin: Login;
    const created: string[] = [];

    const loginAs = (username: string, pw: string): Login => ({ ...admin, username, password: new Sealed(pw) });
    /** A throwaway user with a known password, dropped in afterAll. */
    const user = async (name = uniqueName('rkt'), pw = password('init')): Promise<{ name: string; pw: string; login: Login }> => {
      created.push(name);
      await createUser(engine, name, pw);
      return { name, pw, login: loginAs(name, pw) };
    };
    const unreachable = (login: Login): Login => ({ ...login, host: '127.0.0.1', port: 1 });
    const expectTargetError = async (promise: Promise<unknown>, code: string): Promise<TargetError> => {
      const error = await promise.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(TargetError);
      expect((error as TargetError).code).toBe(code);
      return error as TargetError;
    };

    beforeAll(() => {
      target = makeTarget();
      admin = adminSecret(engine);
    });

    afterAll(async () => {
      await target.close();
      for (const name of created) {
        await dropUser(engine, `${name}_clone`).catch(() => {});
        await dropUser(engine, name).catch(() => {});
      }
    });

    describe('validateUsername', () => {
      it('accepts names with quotes, semicolons, escapes, spaces, mixed case and non-ASCII letters', () => {
        for (const name of [`we"ird;DROP ROLE x;--`, `O'Brien%\\`, 'MixedCase', 'space name', 'ünïcødé', 'back`tick']) {
          expect(() => target.validateUsername(name, { alternating: false })).not.toThrow();
        }
      });

      it('refuses an empty name', () => {
        expect(() => target.validateUsername('', { alternating: false })).toThrow(ValidationError);
      });

      it('refuses a name containing a NUL byte', () => {
        expect(() => target.validateUsername('a\0b', { alternating: false })).toThrow(ValidationError);
      });

      it('refuses a name longer than any engine allows, naming the limit', () => {
        expect(() => target.validateUsername('u'.repeat(200), { alternating: false })).toThrow(/limit/);
        expect(() => target.validateUsername('u'.repeat(200), { alternating: true })).toThrow(ValidationError);
      });
    });

    describe('setPassword', () => {
      it('via the admin, makes the new password log in and the old one fail', async () => {
        const u = await user();
        const next = password('next');
        await target.setPassword(u.login, u.name, new Sealed(next), { admin });
        await assertCanLogIn(engine, u.name, next);
        await assertCannotLogIn(engine, u.name, u.pw);
      });

      it('via the admin, works when the user has no working login at all', async () => {
        const u = await user();
        await target.setPassword(u.login, u.name, new Sealed(password('lost')), { admin });
        const next = password('next');
        await target.setPassword(u.login, u.name, new Sealed(next), { admin });
        await assertCanLogIn(engine, u.name, next);
      });

      it("via the user's own current login, changes its password", async () => {
        const u = await user();
        const next = password('next');
        await target.setPassword(u.login, u.name, new Sealed(next), { self: [u.login] });
        await assertCanLogIn(engine, u.name, next);
        await assertCannotLogIn(engine, u.name, u.pw);
      });

      it('via own logins [refused, pending already set], succeeds and leaves the pending password working', async () => {
        const u = await user();
        const wrong = loginAs(u.name, password('wrong'));
        await target.setPassword(u.login, u.name, new Sealed(u.pw), { self: [wrong, u.login] });
        await assertCanLogIn(engine, u.name, u.pw);
      });

      it('via own logins [refused, current], changes the password with the second login', async () => {
        const u = await user();
        const next = password('next');
        await target.setPassword(u.login, u.name, new Sealed(next), { self: [loginAs(u.name, password('wrong')), u.login] });
        await assertCanLogIn(engine, u.name, next);
      });

      it('via own logins that are all refused, throws LOGIN_FAILED whose text carries no password', async () => {
        const u = await user();
        const guard = new LeakGuard();
        const wrong = [password('wrong1'), password('wrong2')];
        const next = password('next');
        [...wrong, next, u.pw].forEach((v) => guard.secret(v));
        const error = await expectTargetError(
          target.setPassword(u.login, u.name, new Sealed(next), { self: wrong.map((w) => loginAs(u.name, w)) }),
          'LOGIN_FAILED',
        );
        guard.error('setPassword', error);
        guard.assertClean();
        await assertCanLogIn(engine, u.name, u.pw);
      });

      it('sets passwords full of quotes, escapes, placeholders and non-ASCII characters, via admin and via self', async () => {
        const u = await user();
        let previous = u.pw;
        for (const hostile of HOSTILE_PASSWORDS) {
          await target.setPassword(u.login, u.name, new Sealed(hostile), { admin });
          await assertCanLogIn(engine, u.name, hostile);
          await assertCannotLogIn(engine, u.name, previous);
          const next = `${hostile}-self`;
          await target.setPassword(u.login, u.name, new Sealed(next), { self: [loginAs(u.name, hostile)] });
          await assertCanLogIn(engine, u.name, next);
          previous = next;
        }
      });

      describe('with confirm and restoreTo (a change in place, proven before it counts)', () => {
        const via = (u: { login: Login }, how: 'admin' | 'self') => (how === 'admin' ? { admin } : { self: [u.login] });

        it.each(['admin', 'self'] as const)('via %s, runs confirm once the new password logs in, and keeps it when confirm passes', async (how) => {
          const u = await user();
          const next = password('next');
          let confirmed = 0;
          await target.setPassword(u.login, u.name, new Sealed(next), via(u, how), {
            restoreTo: new Sealed(u.pw),
            confirm: async () => {
              confirmed++;
              await assertCanLogIn(engine, u.name, next);
            },
          });
          expect(confirmed).toBe(1);
          await assertCanLogIn(engine, u.name, next);
          await assertCannotLogIn(engine, u.name, u.pw);
        });

        it.each(['admin', 'self'] as const)('via %s, puts the previous password back when confirm throws, and rethrows that very error', async (how) => {
          const u = await user();
          // A previous password full of quotes and escapes is put back as faithfully as any other.
          const hostile = `${HOSTILE_PASSWORDS[1]}-${how}`;
          await target.setPassword(u.login, u.name, new Sealed(hostile), { admin });
          const next = password('next');
          const refused = new Error('not proven');
          const error = await target
            .setPassword(u.login, u.name, new Sealed(next), how === 'admin' ? { admin } : { self: [loginAs(u.name, hostile)] }, {
              restoreTo: new Sealed(hostile),
              confirm: async () => {
                await assertCanLogIn(engine, u.name, next);
                throw refused;
              },
            })
            .catch((e: unknown) => e);
          expect(error).toBe(refused);
          await assertCanLogIn(engine, u.name, hostile);
          await assertCannotLogIn(engine, u.name, next);
        });

        it('via self, when the session it acted through is gone before the restore, throws RESTORE_FAILED naming the user only, and the new password stays', async () => {
          const u = await user();
          const guard = new LeakGuard();
          const next = password('next');
          [next, u.pw, admin.password.reveal()].forEach((v) => guard.secret(v));
          const error = await expectTargetError(
            target.setPassword(u.login, u.name, new Sealed(next), { self: [u.login] }, {
              restoreTo: new Sealed(u.pw),
              confirm: async () => {
                // The server drops the user's sessions (a failover, an operator): the acting one with them.
                await target.endSessions(u.login, u.name, { admin });
                throw new Error('not proven');
              },
            }),
            'RESTORE_FAILED',
          );
          expect(error.message).toContain(u.name);
          guard.error('setPassword', error);
          guard.assertClean();
          await assertCanLogIn(engine, u.name, next);
        });

        it('without restoreTo, rethrows confirm\'s error and leaves the new password (a credential beside the current one)', async () => {
          const u = await user();
          const next = password('next');
          const refused = new Error('not proven');
          const error = await target.setPassword(u.login, u.name, new Sealed(next), { admin }, { confirm: async () => Promise.reject(refused) }).catch((e: unknown) => e);
          expect(error).toBe(refused);
          await assertCanLogIn(engine, u.name, next);
        });
      });

      it('throws TARGET_UNREACHABLE (retryable, no password in its text) when the server cannot be reached', async () => {
        const guard = new LeakGuard();
        const next = password('next');
        guard.secret(next);
        guard.secret(admin.password);
        const error = await expectTargetError(
          target.setPassword(unreachable(admin), 'nobody', new Sealed(next), { admin: unreachable(admin) }),
          'TARGET_UNREACHABLE',
        );
        expect(error.retryable).toBe(true);
        guard.error('setPassword', error);
        guard.assertClean();
      });
    });

    describe('verify', () => {
      it('resolves for a login that works', async () => {
        const u = await user();
        // Nothing, or a report of identifiers (a session watermark): never a value.
        await expect(target.verify(u.login)).resolves.toSatisfy((report) => report === undefined || typeof report === 'object');
      });

      it('throws LOGIN_FAILED, not retryable, naming the user but never the password', async () => {
        const u = await user();
        const wrong = password('wrong');
        const guard = new LeakGuard();
        guard.secret(wrong);
        guard.secret(u.pw);
        const error = await expectTargetError(target.verify(loginAs(u.name, wrong)), 'LOGIN_FAILED');
        expect(error.retryable).toBe(false);
        expect(error.message).toContain(u.name);
        guard.error('verify', error);
        guard.assertClean();
      });

      it('throws TARGET_UNREACHABLE, retryable, with no password in its text when nothing listens', async () => {
        const guard = new LeakGuard();
        guard.secret(admin.password);
        const error = await expectTargetError(target.verify(unreachable(admin)), 'TARGET_UNREACHABLE');
        expect(error.retryable).toBe(true);
        guard.error('verify', error);
        guard.assertClean();
      });
    });

    describe('canLogIn', () => {
      it('returns true for a working login', async () => {
        const u = await user();
        expect(await target.canLogIn(u.login)).toBe(true);
      });

      it('returns false for a refused password', async () => {
        const u = await user();
        expect(await target.canLogIn(loginAs(u.name, password('wrong')))).toBe(false);
      });

      it('returns false for a user that does not exist', async () => {
        expect(await target.canLogIn(loginAs(uniqueName('rkt_none'), password()))).toBe(false);
      });

      it('throws TARGET_UNREACHABLE rather than answering false when nothing listens', async () => {
        await expectTargetError(target.canLogIn(unreachable(admin)), 'TARGET_UNREACHABLE');
      });
    });

    describe('endSessions', () => {
      it("ends an open session of the user via the admin and spares the admin's own", async () => {
        const u = await user();
        const session = await openSession(engine, u.name, u.pw);
        const adminSession = await openSession(engine, admin.username, admin.password.reveal());
        try {
          const ended = await target.endSessions(u.login, u.name, { admin });
          expect(ended).toBeGreaterThanOrEqual(1);
          expect(await eventuallyDead(session)).toBe(true);
          expect(await adminSession.alive()).toBe(true);
        } finally {
          await session.close();
          await adminSession.close();
        }
      });

      it("ends the user's other sessions via its own login", async () => {
        const u = await user();
        const session = await openSession(engine, u.name, u.pw);
        try {
          expect(await target.endSessions(u.login, u.name, { self: [u.login] })).toBeGreaterThanOrEqual(1);
          expect(await eventuallyDead(session)).toBe(true);
        } finally {
          await session.close();
        }
      });

      it('returns 0 when the user has no session', async () => {
        const u = await user();
        expect(await target.endSessions(u.login, u.name, { admin })).toBe(0);
      });

      it(
        sparesLater
          ? 'with startedBefore, ends a session opened before the cutoff and spares one opened after it'
          : 'with startedBefore, ends a session opened before the cutoff',
        async () => {
          const u = await user();
          const before = await openSession(engine, u.name, u.pw);
          // Gaps over a second so engines that record session times in seconds can tell them apart.
          await sleep(1_100);
          const cutoff = new Date();
          await sleep(1_100);
          const after = await openSession(engine, u.name, u.pw);
          try {
            expect(await target.endSessions(u.login, u.name, { admin }, { startedBefore: cutoff })).toBeGreaterThanOrEqual(1);
            expect(await eventuallyDead(before)).toBe(true);
            if (sparesLater) expect(await after.alive()).toBe(true);
          } finally {
            await before.close();
            await after.close();
          }
        },
      );
    });

    describe('syncClone', () => {
      it('creates the clone, is idempotent, and leaves the original password alone', async () => {
        const u = await user(uniqueName('rkt_orig'));
        const clone = `${u.name}_clone`;
        await target.syncClone(admin, u.name, clone);
        await target.syncClone(admin, u.name, clone);
        await assertCanLogIn(engine, u.name, u.pw);
        // The clone starts with a password nobody knows.
        await assertCannotLogIn(engine, clone, u.pw);
      });

      it('gives a clone that logs in once setPassword has run on it', async () => {
        const u = await user(uniqueName('rkt_orig'));
        const clone = `${u.name}_clone`;
        await target.syncClone(admin, u.name, clone);
        const next = password('clone');
        await target.setPassword(loginAs(clone, next), clone, new Sealed(next), { admin });
        await target.syncClone(admin, u.name, clone); // the next rotation's sync must not undo it
        await assertCanLogIn(engine, clone, next);
        await target.verify(loginAs(clone, next));
        await assertCanLogIn(engine, u.name, u.pw);
      });
    });

    describe('hostile usernames', () => {
      const canaryPw = password('canary');
      let canary: string;
      // Short enough for MySQL 8's 32-character limit, with a unique suffix so parallel runs never clash.
      const names = (): string[] => {
        const tag = randomBytes(2).toString('hex');
        return [
          `w"i;DROP USER ${canary};--`,
          `w'i\`;DROP USER ${canary};#`,
          `O'Brien%\\${tag}`,
          `MixedCase${tag}`,
          `space name ${tag}`,
          `ünïcødé_${tag}`,
          `$1 ?${tag}`,
        ];
      };

      beforeAll(async () => {
        canary = `rkc${randomBytes(4).toString('hex')}`;
        created.push(canary);
        await createUser(engine, canary, canaryPw);
      });

      it('round-trip through setPassword, verify, canLogIn and endSessions without running any of the name as SQL', async () => {
        for (const name of names()) {
          target.validateUsername(name, { alternating: false });
          const u = await user(name);
          const next = password('next');
          await target.setPassword(u.login, name, new Sealed(next), { admin });
          await target.verify(loginAs(name, next));
          expect(await target.canLogIn(u.login)).toBe(false);
          await assertCanLogIn(engine, name, next);

          const session = await openSession(engine, name, next);
          try {
            expect(await target.endSessions(u.login, name, { admin })).toBe(1);
            expect(await eventuallyDead(session)).toBe(true);
          } finally {
            await session.close();
          }
          const self = password('self');
          await target.setPassword(u.login, name, new Sealed(self), { self: [loginAs(name, next)] });
          await assertCanLogIn(engine, name, self);
        }
        // Had any name been spliced into SQL, the canary would be gone.
        expect(await tryLogin(engine, canary, canaryPw)).toBe(true);
      });
    });
  });
}

/** A terminated session may take a moment to notice; poll briefly. */
async function eventuallyDead(session: { alive(): Promise<boolean> }): Promise<boolean> {
  for (let i = 0; i < 20; i++) {
    if (!(await session.alive())) return true;
    await sleep(100);
  }
  return false;
}
