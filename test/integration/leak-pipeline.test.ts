import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { STAGE } from '#core/ports/secret-store.ts';
import { DETAIL_TYPE } from '#core/events.ts';
import { hmslHash } from '#core/fingerprint.ts';
import { revokeCredential } from '#core/revocation.ts';
import { assertCanLogIn, assertCannotLogIn, openSession, servers, uniqueName, type TestEngine } from '#test/helpers/databases.ts';
import { dropUser } from '#test/helpers/users.ts';
import { managedUser, storedLogin, type ManagedUser } from '#test/helpers/rekey.ts';
import {
  TICKETS_REPO,
  gitguardianDelivery,
  githubDelivery,
  gitleaksDelivery,
  startLeakPipeline,
  trufflehogDelivery,
  type Delivery,
  type LeakPipeline,
} from '#test/helpers/leak-pipeline.ts';

/**
 * The leak path end to end through `rekey serve`'s HTTP server: a signed scanner delivery of a
 * managed user's password, against the private PostgreSQL and MariaDB servers, until the leaked
 * password is refused, its sessions are gone, the GitHub alert is resolved and exactly one issue
 * carries the right labels. The GitHub API is the HTTP double, driven by the production Octokit.
 */

type Source = 'github' | 'gitguardian' | 'trufflehog' | 'gitleaks';
const SOURCES: Source[] = ['github', 'gitguardian', 'trufflehog', 'gitleaks'];
const ENGINES: TestEngine[] = ['postgres', 'mysql'];
const REPO = 'acme/billing-api';
const created: { engine: TestEngine; username: string }[] = [];
let alertNumbers = 100;

afterAll(async () => {
  for (const { engine, username } of created) {
    await dropUser(engine, username).catch(() => {});
    await dropUser(engine, `${username}_clone`).catch(() => {});
  }
});

/** How each scanner reports a value: GitHub and Gitleaks the URI, TruffleHog its own URI form, GitGuardian an HMSL hash. */
function uriOf(engine: TestEngine, user: { username: string }, password: string, form: 'full' | 'trufflehog' | 'no-port'): string {
  const s = servers()[engine];
  const scheme = engine === 'postgres' ? (form === 'trufflehog' ? 'postgresql' : 'postgres') : 'mysql';
  if (form === 'trufflehog') return `${scheme}://${user.username}:${password}@${s.host}:${s.port}`;
  if (form === 'no-port') return `${scheme}://${user.username}:${password}@${s.host}/${s.database}`;
  return `${scheme}://${user.username}:${password}@${s.host}:${s.port}/${s.database}`;
}

/** A signed delivery of `password` (as that scanner would report it) and the id to find its result by. */
async function deliveryOf(p: LeakPipeline, source: Source, engine: TestEngine, user: ManagedUser, password: string, options: { alertNumber?: number; incidentId?: number } = {}): Promise<Delivery & { deliveryId: string }> {
  if (source === 'github') {
    const number = options.alertNumber ?? alertNumbers++;
    if (!p.github.alert(REPO, number)) p.github.addAlert(REPO, { number, secret: uriOf(engine, user, password, 'full') });
    const d = githubDelivery(p.secrets.github, { number, private: false });
    return { ...d, deliveryId: d.deliveryId! };
  }
  if (source === 'gitguardian') {
    const d = gitguardianDelivery(p.secrets.gitguardian, { id: options.incidentId ?? alertNumbers++, hmslHash: await hmslHash(password), visibility: 'private' });
    return { ...d, deliveryId: `gitguardian-${options.incidentId}` };
  }
  if (source === 'trufflehog') {
    const d = trufflehogDelivery(p.secrets.ingest, [{ value: uriOf(engine, user, password, 'trufflehog'), public: true, verified: true }]);
    return { ...d, deliveryId: d.deliveryId! };
  }
  const d = gitleaksDelivery(p.secrets.ingest, [{ value: password }]);
  return { ...d, deliveryId: d.deliveryId! };
}

/** Posts, checks the 202, waits for the worker, and returns the result for this delivery. */
async function deliver(p: LeakPipeline, source: Source, delivery: Delivery) {
  const reply = await p.post(source, delivery);
  expect(reply.status, reply.text).toBe(202);
  expect(reply.json.accepted).toBe(1);
  await p.settle();
  const result = p.results.find((r) => r.tasks.some((t) => t.deliveryId === reply.json.deliveryId));
  expect(result, `a result for the ${source} delivery`).toBeDefined();
  return result!;
}

const issuesFor = (p: LeakPipeline, secretId: string) => p.github.issues(TICKETS_REPO).filter((i) => i.title.endsWith(`Leaked credential: ${secretId}`));

describe('leak pipeline (rekey serve, real databases, GitHub double)', () => {
  let p: LeakPipeline;
  beforeEach(async () => {
    p = await startLeakPipeline();
  });
  afterEach(async () => {
    await p.dispose();
    p.rekey.guard.assertClean();
  });

  const user = async (engine: TestEngine, strategy: 'single' | 'alternating', tags: Record<string, string> = {}) => {
    const username = uniqueName('lk');
    created.push({ engine, username });
    return managedUser(p.rekey, engine, { username, strategy, withAdmin: true, tags: { 'rekey:environment': 'prod', ...tags } });
  };

  describe.each(ENGINES)('on %s', (engine) => {
    describe.each(SOURCES.map((source, i) => [source, (i + (engine === 'mysql' ? 1 : 0)) % 2 === 0 ? 'alternating' : 'single'] as const))('%s delivery (%s strategy)', (source, strategy) => {
      it('rotates the leaked AWSCURRENT value, refuses it, ends its sessions, resolves the alert and opens one labelled issue', async () => {
        const app = await user(engine, strategy, { 'rekey:owner': 'octocat' });
        const session = await openSession(engine, app.username, app.password);
        try {
          const before = await storedLogin(p.rekey, app.secretId, { stage: STAGE.current });
          const delivery = await deliveryOf(p, source, engine, app, app.password, { alertNumber: 7, incidentId: 9001 });
          const result = await deliver(p, source, delivery);

          expect(result).toMatchObject({ secretId: app.secretId, versionId: before.versionId, state: 'current' });
          expect(result.error).toBeUndefined();
          await assertCannotLogIn(engine, app.username, app.password);
          expect(await session.alive(), 'the session opened with the leaked password').toBe(false);
          const after = await storedLogin(p.rekey, app.secretId, { stage: STAGE.current });
          expect(after.versionId).not.toBe(before.versionId);
          await assertCanLogIn(engine, after.username, after.password);

          if (source === 'github') {
            const alert = p.github.alert(REPO, 7)!;
            expect(alert).toMatchObject({ state: 'resolved', resolution: 'revoked' });
            expect(alert.resolutionComment).toContain(app.secretId);
          }
          const issues = issuesFor(p, app.secretId);
          expect(issues).toHaveLength(1);
          const issue = issues[0]!;
          expect(issue.title).toBe(`[${result.risk.priority}] Leaked credential: ${app.secretId}`);
          expect(['P0', 'P1']).toContain(result.risk.priority);
          expect(issue.labels).toEqual(expect.arrayContaining([result.risk.priority, `source:${source}`, 'rekey', 'leaked-credential']));
          expect(issue.labels).not.toContain('triage');
          expect(issue.assignees).toEqual(['octocat']);
          expect(issue.body).toContain('### Why this priority');
          expect(issue.body).toContain('the leaked value is AWSCURRENT');
          expect(issue.body).toMatch(/Rotated .* is now AWSCURRENT/);
          expect(issue.body).toMatch(/Revoked the leaked credential .* a login with it was refused/);
          expect(issue.body).toContain('- [ ] Purge the value from the repository history');

          const types = p.rekey.events.map((e) => e.detailType);
          for (const type of [DETAIL_TYPE.leakDetected, DETAIL_TYPE.rotationSucceeded, DETAIL_TYPE.credentialRevoked, DETAIL_TYPE.ticketOpened, DETAIL_TYPE.leakRemediated]) {
            expect(types).toContain(type);
          }
          expect(p.rekey.events.filter((e) => e.detail.trigger === 'leak').every((e) => e.detail.actor === `scanner:${source}`)).toBe(true);

          // A re-delivery (new delivery id, same value) updates the same issue and keeps its history.
          const again = await deliveryOf(p, source, engine, app, app.password, { alertNumber: 7, incidentId: 9001 });
          const second = await deliver(p, source, again);
          expect(second.state).toBe('revoked');
          expect(second.ticket?.id).toBe(result.ticket?.id);
          const updated = issuesFor(p, app.secretId);
          expect(updated).toHaveLength(1);
          expect(updated[0]!.title).toBe(issue.title);
          expect(updated[0]!.body).toContain('a login with it was refused');
          expect(updated[0]!.comments).toHaveLength(1);
          expect(updated[0]!.comments[0]!.body).toContain(`Reported again by ${source}`);
          expect(p.rekey.events.filter((e) => e.detailType === DETAIL_TYPE.rotationSucceeded)).toHaveLength(1);
        } finally {
          await session.close();
        }
      });
    });

    it('revokes a leaked AWSPREVIOUS value without rotating: AWSCURRENT is unchanged and still logs in', async () => {
      const app = await user(engine, 'alternating', { 'rekey:environment': 'dev' });
      await p.rekey.rotation.rotate(app.secretId, { trigger: 'manual' });
      const current = await storedLogin(p.rekey, app.secretId, { stage: STAGE.current });
      const previous = await storedLogin(p.rekey, app.secretId, { stage: STAGE.previous });
      await assertCanLogIn(engine, previous.username, previous.password);
      const session = await openSession(engine, previous.username, previous.password);
      try {
        const result = await deliver(p, 'gitleaks', gitleaksDelivery(p.secrets.ingest, [{ value: previous.password }]));
        expect(result).toMatchObject({ secretId: app.secretId, versionId: previous.versionId, state: 'previous-live' });
        expect(result.error).toBeUndefined();
        await assertCannotLogIn(engine, previous.username, previous.password);
        expect(await session.alive()).toBe(false);
        const still = await storedLogin(p.rekey, app.secretId, { stage: STAGE.current });
        expect(still.versionId).toBe(current.versionId);
        await assertCanLogIn(engine, current.username, current.password);
        expect(p.rekey.events.filter((e) => e.detailType === DETAIL_TYPE.rotationStarted && e.detail.trigger === 'leak')).toHaveLength(0);
        expect(issuesFor(p, app.secretId)[0]!.labels).toEqual(expect.arrayContaining([result.risk.priority, 'source:gitleaks']));
      } finally {
        await session.close();
      }
    });

    it('gives an already revoked value low priority and takes no action', async () => {
      const app = await user(engine, 'alternating');
      await p.rekey.rotation.rotate(app.secretId, { trigger: 'manual' });
      const previous = await storedLogin(p.rekey, app.secretId, { stage: STAGE.previous });
      await revokeCredential(p.rekey.deps, app.secretId, { trigger: 'manual' });
      const current = await storedLogin(p.rekey, app.secretId, { stage: STAGE.current });
      const eventsBefore = p.rekey.events.length;
      p.github.addAlert(REPO, { number: 55, secret: previous.password });

      const result = await deliver(p, 'github', githubDelivery(p.secrets.github, { number: 55, private: false, publiclyLeaked: true }));
      expect(result).toMatchObject({ secretId: app.secretId, versionId: previous.versionId, state: 'revoked' });
      expect(result.risk.priority).toBe('P3');
      expect(result.risk.score).toBeLessThanOrEqual(10);
      expect(result.actions.join('\n')).toContain('No action needed');
      const later = p.rekey.events.slice(eventsBefore).map((e) => e.detailType);
      expect(later).not.toContain(DETAIL_TYPE.rotationStarted);
      expect(later).not.toContain(DETAIL_TYPE.credentialRevoked);
      expect((await storedLogin(p.rekey, app.secretId, { stage: STAGE.current })).versionId).toBe(current.versionId);
      const issue = issuesFor(p, app.secretId)[0]!;
      expect(issue.title).toBe(`[P3] Leaked credential: ${app.secretId}`);
      expect(issue.labels).toEqual(expect.arrayContaining(['P3', 'source:github']));
      expect(p.github.alert(REPO, 55)).toMatchObject({ state: 'resolved', resolution: 'revoked' });
    });

    it('matches the connection-URI form without a port (scheme://user:pass@host/db)', async () => {
      const app = await user(engine, 'single');
      const uri = uriOf(engine, app, app.password, 'no-port');
      const result = await deliver(p, 'gitleaks', gitleaksDelivery(p.secrets.ingest, [{ value: uri }]));
      expect(result).toMatchObject({ secretId: app.secretId, state: 'current' });
      await assertCannotLogIn(engine, app.username, app.password);
    });
  });

  it('opens a triage ticket for a value no managed secret matches, and leaves the alert for a human', async () => {
    const stranger = `Stranger-${randomBytes(12).toString('base64url')}`;
    p.rekey.guard.secret(stranger);
    p.github.addAlert(REPO, { number: 77, secret: stranger, secretType: 'generic_password' });
    const eventsBefore = p.rekey.events.length;
    const result = await deliver(p, 'github', githubDelivery(p.secrets.github, { number: 77, private: true }));
    expect(result.state).toBe('unmatched');
    expect(result.secretId).toBeUndefined();
    const later = p.rekey.events.slice(eventsBefore).map((e) => e.detailType);
    expect(later).not.toContain(DETAIL_TYPE.rotationStarted);
    expect(later).toEqual(expect.arrayContaining([DETAIL_TYPE.leakDetected, DETAIL_TYPE.ticketOpened, DETAIL_TYPE.leakRemediated]));
    const issue = p.github.issues(TICKETS_REPO).find((i) => i.number === Number(result.ticket?.id))!;
    expect(issue.title).toBe(`[${result.risk.priority}] Leaked credential: unmatched postgres_connection_string in ${REPO}`);
    expect(issue.labels).toEqual(expect.arrayContaining([result.risk.priority, 'source:github', 'triage']));
    expect(issue.body).toContain('owner unknown, triage needed');
    expect(issue.body).toContain('- [ ] Find the owner of this credential');
    expect(p.github.alert(REPO, 77)).toMatchObject({ state: 'open', resolution: null });
  });

  it('opens a triage ticket naming the failure when the alert cannot be read (a token without the scope)', async () => {
    p.github.addAlert(REPO, { number: 88, secret: `Unread-${randomBytes(10).toString('hex')}` });
    p.github.fail('GET', /\/secret-scanning\/alerts\/88$/, 403);
    const reply = await p.post('github', githubDelivery(p.secrets.github, { number: 88 }));
    expect(reply.status).toBe(202);
    await p.settle();
    const result = p.resultOf(reply.json.deliveryId!)!;
    expect(result.error).toMatchObject({ code: 'ALERT_API_FAILED', retryable: false });
    const issue = p.github.issues(TICKETS_REPO).find((i) => i.number === Number(result.ticket?.id))!;
    expect(issue.title).toBe(`[${result.risk.priority}] Leaked credential: could not read github finding ${REPO}#88`);
    expect(issue.labels).toEqual(expect.arrayContaining(['triage', 'source:github']));
    expect(issue.body).toContain('HTTP 403');
    expect(p.rekey.events.filter((e) => e.detailType === DETAIL_TYPE.leakRemediated).map((e) => e.detail.outcome)).toEqual(['failed']);
  });

  it('remediates one value found twice in one report once, with one ticket listing both places', async () => {
    const app = await user('postgres', 'single');
    const uri = uriOf('postgres', app, app.password, 'trufflehog');
    const delivery = trufflehogDelivery(p.secrets.ingest, [
      { value: uri, file: 'a.env', public: false },
      { value: uri, file: 'b.env', public: true },
    ]);
    const reply = await p.post('trufflehog', delivery);
    expect(reply.json.accepted).toBe(2);
    await p.settle();
    const results = p.results.filter((r) => r.secretId === app.secretId);
    expect(results).toHaveLength(1);
    expect(results[0]!.tasks).toHaveLength(2);
    expect(results[0]!.state).toBe('current');
    expect(p.rekey.events.filter((e) => e.detailType === DETAIL_TYPE.rotationSucceeded)).toHaveLength(1);
    const issue = issuesFor(p, app.secretId)[0]!;
    expect(issue.body).toContain('a.env');
    expect(issue.body).toContain('b.env');
    expect(issue.body).toContain('exposure: public');
    await assertCannotLogIn('postgres', app.username, app.password);
  });
});
