import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { ConflictError, NotFoundError, RekeyError, TargetError, ValidationError } from '#core/errors.ts';
import type { CredentialKind, KindContext } from '#core/ports/credential-kind.ts';
import type { Logger } from '#core/ports/logger.ts';
import { Sealed } from '#core/sealed.ts';
import { LeakGuard } from '#test/helpers/leak-guard.ts';

/** One managed credential, as a harness sets it up: it works when returned. */
export interface KindFixture {
  secretId: string;
  value: Sealed<string>;
  tags: Record<string, string>;
  /** Other secrets the kind may read (`ctx.readSecret`): admin secrets, by id. */
  secrets: Map<string, Sealed<string>>;
}

/**
 * What a kind's contract run needs from the system it rotates. Proofs are independent of the kind
 * under test (a driver login, the fake IAM account's state, the fake provider's keys).
 */
export interface KindHarness {
  kind(): CredentialKind;
  /** A fresh working credential; `extra` fields go into its value JSON (they must survive rotations). */
  fresh(extra: Record<string, unknown>): Promise<KindFixture>;
  /** Does `value` work on the system right now? (Not through the kind.) */
  works(value: Sealed<string>): Promise<boolean>;
  /** The same credential with a wrong secret (refused, same principal). */
  wrongSecret(value: Sealed<string>): Sealed<string>;
  /** The same credential pointing at a system that cannot be reached. */
  unreachable(fixture: KindFixture): { value: Sealed<string>; secrets?: Map<string, Sealed<string>> };
  /** The texts of a value that must never appear in output. */
  secretsOf(value: Sealed<string>): string[];
  /** Values the kind must refuse (a missing secret field, a wrong type…). */
  invalid(value: Sealed<string>): Sealed<string>[];
  /** True when the previous value keeps working after `apply` of the next one, until revoked. */
  oldSurvivesApply: boolean;
  /** Called after each test (reset injected failures…), if at all. */
  teardown?(): Promise<void>;
  /** Called once at the end (drop users, close servers). */
  cleanup?(): Promise<void>;
}

/** The credential fields of an admin secret (password, token, key, secret…), for the leak guard. */
function credentialFields(value: Sealed<string>): string[] {
  try {
    const json = JSON.parse(value.reveal()) as Record<string, unknown>;
    return Object.entries(json)
      .filter(([field, v]) => /pass|token|secret|key/i.test(field) && typeof v === 'string')
      .map(([, v]) => v as string);
  } catch {
    return [];
  }
}

const EXTRA = { note: 'kept across rotations', consumers: [{ type: 'event', name: 'contract' }] };
const attempts = 8;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The CredentialKind port's contract (functions/core/ports/credential-kind.ts): every kind, on its
 * own system, rotates (next → apply → verify), refuses wrong credentials, revokes provably and
 * idempotently, never revokes AWSCURRENT, keeps unknown fields, fingerprints its secrets, and never
 * lets a secret into a log or an error.
 */
export function credentialKindContract(name: string, makeHarness: () => KindHarness | Promise<KindHarness>): void {
  describe(`${name} credential kind (contract)`, () => {
    let harness: KindHarness;
    let kind: CredentialKind;
    let guard: LeakGuard;
    let logs: string[];

    const logger = (): Logger => {
      const log = (level: string) => (msg: string, fields: Record<string, unknown> = {}) => {
        logs.push(JSON.stringify({ level, msg, ...fields }));
      };
      return { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') };
    };
    const ctxFor = (fixture: KindFixture, current: Sealed<string>, extra: Partial<KindContext> = {}): KindContext => ({
      secretId: fixture.secretId,
      tags: fixture.tags,
      current,
      readSecret: async (id) => {
        const found = fixture.secrets.get(id);
        if (!found) throw new NotFoundError(`secret ${id} not found`);
        return found;
      },
      now: () => new Date(),
      logger: logger(),
      ...extra,
    });
    const track = (value: Sealed<string>) => {
      for (const text of harness.secretsOf(value)) guard.secret(text);
    };
    const fresh = async () => {
      const fixture = await harness.fresh(EXTRA);
      track(fixture.value);
      for (const secret of fixture.secrets.values()) for (const text of credentialFields(secret)) guard.secret(text);
      return fixture;
    };
    /** The engine's loop: LOGIN_FAILED is retried (IAM and friends converge). */
    const verifyEventually = async (value: Sealed<string>, ctx: KindContext) => {
      for (let attempt = 1; ; attempt++) {
        try {
          // What verify reports is kept in a tag: identifiers only.
          guard.output('verify report', JSON.stringify((await kind.verify(value, ctx)) ?? {}));
          return;
        } catch (error) {
          if (!(error instanceof TargetError && error.code === 'LOGIN_FAILED') || attempt >= attempts) throw error;
          await sleep(10 * attempt);
        }
      }
    };
    const deadEventually = async (value: Sealed<string>, ctx: KindContext): Promise<boolean> => {
      for (let attempt = 1; attempt <= attempts; attempt++) {
        if (!(await kind.canLogIn(value, ctx))) return true;
        await sleep(10 * attempt);
      }
      return false;
    };
    /** next → apply → verify, as the engine runs them; returns the new value. */
    const rotate = async (fixture: KindFixture, current: Sealed<string>) => {
      const ctx = ctxFor(fixture, current, { versionId: randomUUID() });
      const next = await kind.next(ctx);
      track(next);
      await kind.apply(next, ctx);
      await verifyEventually(next, ctx);
      return next;
    };
    const caught = async (promise: Promise<unknown>): Promise<unknown> =>
      promise.then(
        () => undefined,
        (error: unknown) => error,
      );

    beforeAll(async () => {
      harness = await makeHarness();
      kind = harness.kind();
    });
    afterAll(async () => {
      await kind?.close();
      await harness?.cleanup?.();
    });
    // A fresh guard per test; each test ends by checking it against every log line and error seen.
    const begin = () => {
      guard = new LeakGuard();
      logs = [];
    };
    afterEach(async () => {
      guard.output('logs', logs.join('\n'));
      guard.assertClean();
      await harness.teardown?.();
    });

    describe('validate and describe', () => {
      it('accepts a working value and describes it by identifiers only', async () => {
        begin();
        const fixture = await fresh();
        kind.validate(fixture.value, fixture.secretId);
        const summary = kind.describe(fixture.value, fixture.secretId, fixture.tags);
        expect(kind.engines).toContain(summary.engine);
        expect(summary.principal.length).toBeGreaterThan(0);
        expect(summary.strategy.length).toBeGreaterThan(0);
        guard.output('describe', JSON.stringify(summary));
      });

      it('refuses invalid values with a ValidationError that names fields and echoes no value', async () => {
        begin();
        const fixture = await fresh();
        const bad = [new Sealed(`{"not json ${harness.secretsOf(fixture.value)[0]}`), ...harness.invalid(fixture.value)];
        for (const value of bad) {
          let error: unknown;
          try {
            kind.validate(value, fixture.secretId);
          } catch (e) {
            error = e;
          }
          expect(error).toBeInstanceOf(ValidationError);
          expect((error as Error).message).toContain(fixture.secretId);
          guard.error('validate', error);
        }
      });

      it('lists its secret texts as sensitive forms for fingerprinting', async () => {
        begin();
        const fixture = await fresh();
        const texts = kind.sensitiveForms(fixture.value).map((f) => f.text);
        for (const secret of harness.secretsOf(fixture.value)) expect(texts).toContain(secret);
        expect(kind.sensitiveForms(new Sealed('not json'))).toEqual([]);
      });
    });

    describe('verify and canLogIn', () => {
      it('accept a working value', async () => {
        begin();
        const fixture = await fresh();
        const ctx = ctxFor(fixture, fixture.value);
        await expect(kind.verify(fixture.value, ctx)).resolves.toSatisfy((report) => report === undefined || typeof report === 'object');
        expect(await kind.canLogIn(fixture.value, ctx)).toBe(true);
      });

      it('refuse a wrong secret: LOGIN_FAILED naming the principal, never the secret; canLogIn false', async () => {
        begin();
        const fixture = await fresh();
        const wrong = harness.wrongSecret(fixture.value);
        track(wrong);
        const ctx = ctxFor(fixture, fixture.value);
        const error = await caught(kind.verify(wrong, ctx));
        expect(error).toBeInstanceOf(TargetError);
        expect((error as TargetError).code).toBe('LOGIN_FAILED');
        guard.error('verify', error);
        expect(await kind.canLogIn(wrong, ctx)).toBe(false);
      });

      it('throw TARGET_UNREACHABLE (retryable) rather than answering false when the system cannot be reached', async () => {
        begin();
        const fixture = await fresh();
        const down = harness.unreachable(fixture);
        const ctx = ctxFor({ ...fixture, secrets: down.secrets ?? fixture.secrets }, down.value);
        const error = await caught(kind.canLogIn(down.value, ctx));
        expect(error).toBeInstanceOf(TargetError);
        expect((error as TargetError).code).toBe('TARGET_UNREACHABLE');
        expect((error as TargetError).retryable).toBe(true);
        guard.error('canLogIn', error);
      });
    });

    describe('next, apply, verify', () => {
      it('make a new working value with a new secret, keeping the fields rekey does not know', async () => {
        begin();
        const fixture = await fresh();
        const next = await rotate(fixture, fixture.value);
        expect(await harness.works(next)).toBe(true);
        expect(harness.secretsOf(next)[0]).not.toBe(harness.secretsOf(fixture.value)[0]);
        expect(JSON.parse(next.reveal())).toMatchObject(EXTRA);
        kind.validate(next, fixture.secretId);
        expect(await harness.works(fixture.value)).toBe(harness.oldSurvivesApply);
      });

      it('apply with confirm: runs it once the new value works, and when it throws, rethrows that error with the current value still working', async () => {
        begin();
        const fixture = await fresh();
        const ctx = ctxFor(fixture, fixture.value, { versionId: randomUUID() });
        const next = await kind.next(ctx);
        track(next);
        const refused = new Error('not proven');
        let ran = 0;
        const error = await caught(
          kind.apply(next, ctx, {
            confirm: async () => {
              ran++;
              await verifyEventually(next, ctx);
              throw refused;
            },
          }),
        );
        expect(ran).toBe(1);
        expect(error).toBe(refused);
        // A change in place is undone; a new credential beside the current one leaves it alone.
        expect(await harness.works(fixture.value)).toBe(true);
      });

      it('rotate three times in a row, each value working, with every old one revoked in between', async () => {
        begin();
        const fixture = await fresh();
        let current = fixture.value;
        for (let i = 0; i < 3; i++) {
          const next = await rotate(fixture, current);
          const ctx = ctxFor(fixture, next);
          if (harness.oldSurvivesApply) await kind.revoke(current, ctx, { mode: 'grace' });
          expect(await deadEventually(current, ctx)).toBe(true);
          current = next;
          expect(await harness.works(current)).toBe(true);
        }
      });
    });

    describe('revoke', () => {
      it.each(['grace', 'leak'] as const)('(%s) makes the old value stop working, proven, and the current one keeps working', async (mode) => {
        begin();
        const fixture = await fresh();
        const next = await rotate(fixture, fixture.value);
        const ctx = ctxFor(fixture, next);
        const outcome = await kind.revoke(fixture.value, ctx, { mode });
        expect(outcome.principal.length).toBeGreaterThan(0);
        guard.output('revoke outcome', JSON.stringify(outcome));
        expect(await deadEventually(fixture.value, ctx)).toBe(true);
        expect(await harness.works(fixture.value)).toBe(false);
        expect(await harness.works(next)).toBe(true);
        await verifyEventually(next, ctx);
      });

      it('succeeds again on a credential that is already dead, and purges what it only disabled', async () => {
        begin();
        const fixture = await fresh();
        const next = await rotate(fixture, fixture.value);
        const ctx = ctxFor(fixture, next);
        const first = await kind.revoke(fixture.value, ctx, { mode: 'grace' });
        await kind.revoke(fixture.value, ctx, { mode: 'grace' });
        if (first.purgeLater) {
          expect(kind.purge).toBeTypeOf('function');
          await kind.purge!(fixture.value, ctx);
          await kind.purge!(fixture.value, ctx);
          await kind.revoke(fixture.value, ctx, { mode: 'leak' });
        }
        expect(await deadEventually(fixture.value, ctx)).toBe(true);
        expect(await harness.works(next)).toBe(true);
      });

      it('refuses to revoke the AWSCURRENT value and leaves it working', async () => {
        begin();
        const fixture = await fresh();
        const ctx = ctxFor(fixture, fixture.value);
        const error = await caught(kind.revoke(fixture.value, ctx, { mode: 'leak' }));
        expect(error).toBeInstanceOf(ConflictError);
        expect((error as RekeyError).code).toBe('REVOKE_CURRENT');
        guard.error('revoke current', error);
        expect(await harness.works(fixture.value)).toBe(true);
      });
    });
  });
}
