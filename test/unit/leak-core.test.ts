import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { randomBytes } from 'node:crypto';
import { priorityOf, scoreLeak, type LeakState, type RiskInput } from '#core/risk.ts';
import { candidatesOfLeak, fingerprint, fingerprintsOfValue, hmslFingerprint, hmslHash } from '#core/fingerprint.ts';
import { leakTask, type LeakTask, type RemediationResult } from '#core/remediation.ts';
import { Sealed } from '#core/sealed.ts';
import { InProcessLeakQueue } from '#adapters/queues/in-process.ts';
import { CredentialKinds } from '#adapters/targets/kinds.ts';

/** Which texts of a value are sensitive is its kind's to say (here: the database kind's). */
const kinds = new CredentialKinds();

const STATES: LeakState[] = ['current', 'pending', 'previous-live', 'unmatched', 'revoked', 'superseded'];
const riskInput = fc.record(
  {
    state: fc.constantFrom(...STATES),
    public: fc.option(fc.boolean(), { nil: undefined }),
    privileged: fc.boolean(),
    environment: fc.option(fc.constantFrom('prod', 'production', 'staging', 'dev', 'development', 'qa', 'PROD'), { nil: undefined }),
    exposedForMs: fc.option(fc.integer({ min: 0, max: 400 * 24 * 3_600_000 }), { nil: undefined }),
    occurrences: fc.integer({ min: 0, max: 10_000 }),
    scannerValidity: fc.option(fc.constantFrom('active' as const, 'inactive' as const, 'unknown' as const), { nil: undefined }),
  },
  { requiredKeys: ['state', 'privileged', 'occurrences'] },
) as fc.Arbitrary<RiskInput>;

describe('scoreLeak', () => {
  describe('bounds', () => {
    it('scores 0 to 100 with a priority that follows from the score, and names at least one reason', () => {
      fc.assert(
        fc.property(riskInput, (input) => {
          const risk = scoreLeak(input);
          expect(risk.score).toBeGreaterThanOrEqual(0);
          expect(risk.score).toBeLessThanOrEqual(100);
          expect(Number.isInteger(risk.score)).toBe(true);
          expect(risk.priority).toBe(priorityOf(risk.score));
          expect(risk.reasons.length).toBeGreaterThan(0);
        }),
      );
    });

    it('keeps a dead value (revoked or superseded) at P3 whatever else is true', () => {
      fc.assert(
        fc.property(riskInput, fc.constantFrom<LeakState>('revoked', 'superseded'), (input, state) => {
          const risk = scoreLeak({ ...input, state });
          expect(risk.score).toBeLessThanOrEqual(10);
          expect(risk.priority).toBe('P3');
        }),
      );
    });
  });

  describe('ordering', () => {
    it('never scores lower for more exposure, privilege, production or occurrences', () => {
      fc.assert(
        fc.property(riskInput, (input) => {
          const base = scoreLeak(input).score;
          expect(scoreLeak({ ...input, public: true }).score).toBeGreaterThanOrEqual(scoreLeak({ ...input, public: false }).score);
          expect(scoreLeak({ ...input, privileged: true }).score).toBeGreaterThanOrEqual(scoreLeak({ ...input, privileged: false }).score);
          expect(scoreLeak({ ...input, environment: 'prod' }).score).toBeGreaterThanOrEqual(scoreLeak({ ...input, environment: 'dev' }).score);
          expect(scoreLeak({ ...input, occurrences: input.occurrences + 1 }).score).toBeGreaterThanOrEqual(base);
        }),
      );
    });

    it('ranks what the value is now: current > previous (still live) > unmatched > dead, all else equal', () => {
      fc.assert(
        fc.property(riskInput, (input) => {
          const s = (state: LeakState) => scoreLeak({ ...input, state, scannerValidity: undefined }).score;
          expect(s('current')).toBeGreaterThanOrEqual(s('previous-live'));
          expect(s('previous-live')).toBeGreaterThanOrEqual(s('unmatched'));
          expect(s('unmatched')).toBeGreaterThanOrEqual(s('revoked'));
        }),
      );
    });

    it('makes a public production admin AWSCURRENT leak P0 and names each reason', () => {
      const risk = scoreLeak({ state: 'current', public: true, privileged: true, environment: 'prod', occurrences: 3, exposedForMs: 2 * 86_400_000 });
      expect(risk).toMatchObject({ score: 100, priority: 'P0' });
      expect(risk.reasons).toEqual([
        'the leaked value is AWSCURRENT: it works right now',
        'exposed publicly (public repository or package)',
        'privileged: an admin credential that manages other users',
        'production environment',
        'exposed for more than a day',
        'found in 3 places',
      ]);
    });
  });
});

describe('fingerprints', () => {
  const key = randomBytes(32);
  const value = (password: string, extra: Record<string, unknown> = {}) =>
    new Sealed(JSON.stringify({ engine: 'postgres', host: 'db.internal', port: 5432, username: 'app', password, dbname: 'app', ...extra }));

  describe('hmslHash', () => {
    it("computes HasMySecretLeaked's hash as GitGuardian publishes it", async () => {
      // The example of `ggshield hmsl decrypt` in GitGuardian's documentation.
      expect(await hmslHash('sup3rstr0ngpass1ForGG')).toBe('d775db0302080c1b7516109e929dd4b214a0f353ed3b66ff2e56c47d55a102ed');
    });
  });

  describe('fingerprintsOfValue', () => {
    it('indexes the password, the canonical URI and the HMSL hash of the password, each keyed', async () => {
      const fps = await fingerprintsOfValue(key, value('S3cret/pass:word'), kinds);
      expect(fps.map((f) => f.form)).toEqual(['password', 'uri', 'hmsl']);
      expect(fps[0]!.value).toBe(fingerprint(key, 'S3cret/pass:word'));
      expect(fps[1]!.value).toBe(fingerprint(key, 'postgres://app:S3cret%2Fpass%3Aword@db.internal:5432/app'));
      expect(fps[2]!.value).toBe(hmslFingerprint(key, await hmslHash('S3cret/pass:word')));
      const other = await fingerprintsOfValue(randomBytes(32), value('S3cret/pass:word'), kinds);
      expect(other.map((f) => f.value)).not.toEqual(fps.map((f) => f.value));
    });

    it('indexes nothing for a value without a password or that is not JSON', async () => {
      expect(await fingerprintsOfValue(key, new Sealed('not json'), kinds)).toEqual([]);
      expect(await fingerprintsOfValue(key, value(''), kinds)).toEqual([]);
    });

    it('spells MariaDB and Aurora engines as mysql:// and mariadb:// URIs', async () => {
      const fps = await fingerprintsOfValue(key, value('pw-123456', { engine: 'mariadb', port: 3306 }), kinds);
      expect(fps[1]!.value).toBe(fingerprint(key, 'mariadb://app:pw-123456@db.internal:3306/app'));
    });
  });

  describe('candidatesOfLeak', () => {
    it('finds the password in any URI spelling, encoded or not', () => {
      fc.assert(
        fc.property(fc.string({ minLength: 1, maxLength: 40 }).filter((p) => !/\s/.test(p)), fc.constantFrom('postgres', 'postgresql', 'mysql', 'mariadb'), (password, scheme) => {
          expect(candidatesOfLeak(`${scheme}://app:${encodeURIComponent(password)}@db.internal:5432/app?sslmode=require`)).toContain(password);
          if (!password.includes('/') && !password.includes('?') && !password.includes('#')) {
            expect(candidatesOfLeak(`${scheme}://app:${password}@db.internal/app`)).toContain(password);
          }
        }),
      );
    });

    it('keeps a bare value as its only candidate', () => {
      expect(candidatesOfLeak('  just-a-password  ')).toEqual(['just-a-password']);
    });
  });

  describe('leakTask', () => {
    it('queues fingerprints and never the value or the HMSL hash', () => {
      fc.assert(
        fc.property(fc.string({ minLength: 8, maxLength: 60 }).filter((v) => /[^0-9a-f]/.test(v) && v.trim() === v), (leaked) => {
          const task = leakTask(key, 'd1', { source: 'gitleaks', sourceId: 'x', secretType: 't', value: new Sealed(leaked), locations: [], occurrences: 1 }, new Date());
          const text = JSON.stringify(task);
          expect(text.includes(leaked)).toBe(false);
          expect(text.includes(JSON.stringify(leaked).slice(1, -1))).toBe(false);
          expect(task.fingerprints).toContain(fingerprint(key, leaked));
        }),
      );
      const hash = 'ab'.repeat(32);
      const task = leakTask(key, 'd2', { source: 'gitguardian', sourceId: '9', secretType: 't', hmslHash: hash, locations: [], occurrences: 1 }, new Date());
      expect(JSON.stringify(task)).not.toContain(hash);
      expect(task.fingerprints).toEqual([hmslFingerprint(key, hash)]);
    });
  });
});

describe('InProcessLeakQueue', () => {
  const task = (id: string): LeakTask => ({ deliveryId: id, receivedAt: new Date().toISOString(), report: { source: 'gitleaks', sourceId: id, secretType: 't', locations: [], occurrences: 1 }, fingerprints: [] });
  const result = (t: LeakTask, error?: RemediationResult['error']): RemediationResult => ({
    deliveryId: t.deliveryId,
    sourceId: t.report.sourceId,
    tasks: [{ deliveryId: t.deliveryId, sourceId: t.report.sourceId }],
    state: 'unmatched',
    risk: { score: 50, priority: 'P2', reasons: [] },
    actions: [],
    ...(error ? { error } : {}),
    durationMs: 1,
  });

  describe('enqueue', () => {
    it('hands tasks that arrive while a burst is worked to that burst, and reports each result as it is done', async () => {
      const seen: string[] = [];
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      const queue = new InProcessLeakQueue({
        work: async (tasks, burst) => {
          const all = [...tasks];
          await gate;
          all.push(...(burst.more?.() ?? []));
          for (const t of all) burst.onResult?.(result(t));
          return [];
        },
        onResult: (r) => seen.push(r.deliveryId),
      });
      await queue.enqueue([task('a')]);
      await new Promise((resolve) => setImmediate(resolve));
      await queue.enqueue([task('b'), task('c')]);
      release();
      await queue.idle();
      expect(seen).toEqual(['a', 'b', 'c']);
    });
  });

  describe('retries', () => {
    it('works a task again after a retryable failure, and not after a final one', async () => {
      const attempts = new Map<string, number>();
      const queue = new InProcessLeakQueue({
        retryDelaysMs: [1, 1],
        work: async (tasks, burst) => {
          for (const t of tasks) {
            const n = (attempts.get(t.deliveryId) ?? 0) + 1;
            attempts.set(t.deliveryId, n);
            const fail = t.deliveryId === 'flaky' ? n < 2 : t.deliveryId === 'broken';
            burst.onResult?.(result(t, fail ? { code: 'X', message: 'x', retryable: t.deliveryId === 'flaky' } : undefined));
          }
          return [];
        },
      });
      await queue.enqueue([task('flaky'), task('broken'), task('fine')]);
      await queue.idle();
      expect(Object.fromEntries(attempts)).toEqual({ flaky: 2, broken: 1, fine: 1 });
      expect(queue.results.filter((r) => !r.error).map((r) => r.deliveryId).sort()).toEqual(['fine', 'flaky']);
    });

    it('gives up after the last delay, and stop() drops the retries still waiting', async () => {
      let calls = 0;
      const queue = new InProcessLeakQueue({
        retryDelaysMs: [1, 1],
        work: async (tasks, burst) => {
          calls += tasks.length;
          for (const t of tasks) burst.onResult?.(result(t, { code: 'BUSY', message: 'busy', retryable: true }));
          return [];
        },
      });
      await queue.enqueue([task('t')]);
      await queue.idle();
      expect(calls).toBe(3);
      let failed!: () => void;
      const firstFailure = new Promise<void>((resolve) => (failed = resolve));
      const stopped = new InProcessLeakQueue({
        retryDelaysMs: [60_000],
        work: async (tasks, burst) => (tasks.forEach((t) => burst.onResult?.(result(t, { code: 'B', message: 'b', retryable: true }))), []),
        onResult: () => failed(),
      });
      await stopped.enqueue([task('u')]);
      await firstFailure;
      stopped.stop();
      await stopped.idle();
      expect(stopped.results).toHaveLength(1);
    });
  });
});
