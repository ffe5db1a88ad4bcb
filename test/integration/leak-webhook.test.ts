import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import type { APIGatewayProxyStructuredResultV2, SQSEvent } from 'aws-lambda';
import type { LeakTask } from '#core/remediation.ts';
import { DETAIL_TYPE } from '#core/events.ts';
import { RekeyError } from '#core/errors.ts';
import { buildLeakServices, type LeakServices } from '#runtime/leak-services.ts';
import { createHandler as webhookHandler } from '../../functions/leak-webhook.ts';
import { createHandler as workerHandler } from '../../functions/leak-worker.ts';
import { lambdaContext, webhookEvent } from '#test/helpers/lambda.ts';
import { uniqueName } from '#test/helpers/databases.ts';
import { dropUser } from '#test/helpers/users.ts';
import { managedUser } from '#test/helpers/rekey.ts';
import {
  gitguardianDelivery,
  githubDelivery,
  gitleaksDelivery,
  startLeakPipeline,
  trufflehogDelivery,
  type Delivery,
  type LeakPipeline,
} from '#test/helpers/leak-pipeline.ts';

/**
 * What the webhook refuses, over `rekey serve`'s HTTP server and through the Lambda handler (API
 * Gateway HTTP API events): each hostile delivery gets its status, nothing is queued, and nothing
 * that was in the body reaches a log line or the reply. A canary string sits in every body; the
 * leak guard fails the test if it shows up anywhere rekey wrote.
 */

const TWO_MIB = 2 * 1024 * 1024;
const sign = (key: string, body: string | Buffer) => `sha256=${createHmac('sha256', key).update(body).digest('hex')}`;

describe('webhook intake over HTTP (rekey serve)', () => {
  let p: LeakPipeline;
  let canary: string;
  beforeEach(async () => {
    p = await startLeakPipeline();
    canary = `Canary-${randomBytes(12).toString('base64url')}`;
    p.rekey.guard.secret(canary);
  });
  afterEach(async () => {
    await p.dispose();
    expect(p.rekey.logs.join('\n')).not.toContain(canary);
    p.rekey.guard.assertClean();
  });

  /** Posts a hostile delivery and checks the status, that nothing was queued and the body stayed out of the reply. */
  const refused = async (scanner: string, delivery: Delivery, status: number) => {
    const queuedBefore = p.enqueued.length;
    const reply = await p.post(scanner, delivery);
    expect(reply.status, reply.text).toBe(status);
    expect(reply.text).not.toContain(canary);
    expect(typeof reply.json.message).toBe('string');
    expect(p.enqueued.length, 'nothing queued').toBe(queuedBefore);
    return reply;
  };

  describe('replayed delivery', () => {
    it.each([
      ['github', (p: LeakPipeline, c: string) => (p.github.addAlert('acme/billing-api', { number: 3, secret: c }), githubDelivery(p.secrets.github, { number: 3 }))],
      ['gitguardian', (p: LeakPipeline) => gitguardianDelivery(p.secrets.gitguardian, { id: 31, eventAt: new Date('2026-11-02T10:00:00Z') })],
      ['trufflehog', (p: LeakPipeline, c: string) => trufflehogDelivery(p.secrets.ingest, [{ value: c }], 'ci-run-77-attempt-1')],
      ['gitleaks', (p: LeakPipeline, c: string) => ({ ...gitleaksDelivery(p.secrets.ingest, [{ value: c }]), headers: { 'content-type': 'application/json', authorization: `Bearer ${p.secrets.ingest}` } })],
    ] as const)('%s: the same delivery twice is accepted once, then refused with 409', async (scanner, make) => {
      const delivery = make(p, canary);
      const first = await p.post(scanner, delivery);
      expect(first.status, first.text).toBe(202);
      expect(first.json.deliveryId).toEqual(expect.any(String));
      expect(p.enqueued).toHaveLength(1);
      // GitGuardian retries with a new send time: only the signature and Timestamp header change.
      const again = scanner === 'gitguardian' ? gitguardianDelivery(p.secrets.gitguardian, { id: 31, eventAt: new Date('2026-11-02T10:00:00Z') }) : delivery;
      const reply = await refused(scanner, again, 409);
      expect(reply.json.deliveryId).toBe(first.json.deliveryId);
      await p.settle();
      expect(p.results).toHaveLength(1);
    });
  });

  describe('authentication', () => {
    it('refuses a GitHub delivery signed with another secret, or unsigned, with 401', async () => {
      const good = githubDelivery(p.secrets.github, { number: 4 });
      const body = String(good.body).replace('"number":4', `"number":4,"note":"${canary}"`);
      await refused('github', { body, headers: { ...good.headers, 'x-hub-signature-256': sign('not-the-secret', body) } }, 401);
      await refused('github', { body, headers: { ...good.headers, 'x-hub-signature-256': good.headers['x-hub-signature-256']! } }, 401); // signature of other bytes
      const { 'x-hub-signature-256': _, ...unsigned } = good.headers;
      await refused('github', { body, headers: unsigned }, 401);
    });

    it('refuses a stale GitGuardian timestamp with 401, even correctly signed', async () => {
      /** The canary goes into the body, and the delivery is signed again: only its timestamp is wrong. */
      const withCanary = (d: Delivery): Delivery => {
        const body = String(d.body).replace('"incident_triggered"', `"incident_triggered","x":"${canary}"`);
        expect(body).toContain(canary);
        return { body, headers: { ...d.headers, 'gitguardian-signature': sign(d.headers.timestamp! + p.secrets.gitguardian, body) } };
      };
      const logsBefore = p.rekey.logs.length;
      const stale = withCanary(gitguardianDelivery(p.secrets.gitguardian, { id: 5, sentAt: new Date(Date.now() - 10 * 60_000) }));
      await refused('gitguardian', stale, 401);
      const future = withCanary(gitguardianDelivery(p.secrets.gitguardian, { id: 5, sentAt: new Date(Date.now() + 10 * 60_000) }));
      await refused('gitguardian', future, 401);
      // Refused for the timestamp (not the signature), and the body of neither reached a log line.
      const refusals = p.rekey.logs.slice(logsBefore).filter((l) => l.includes('webhook refused'));
      expect(refusals).toHaveLength(2);
      for (const line of refusals) expect(line).toContain('timestamp outside the 300 s tolerance');
      expect(p.rekey.logs.join('\n')).not.toContain(canary);
      p.rekey.guard.assertClean();
      const body = String(gitguardianDelivery(p.secrets.gitguardian, { id: 6 }).body).replace('"incident_triggered"', `"incident_triggered","x":"${canary}"`);
      const timestamp = String(Math.floor(Date.now() / 1000));
      await refused('gitguardian', { body, headers: { 'content-type': 'application/json', timestamp, 'gitguardian-signature': sign(p.secrets.gitguardian, body) } }, 401); // key without the timestamp
    });

    it('verifies before parsing: a body that is not JSON, with a wrong or missing signature or token, gets 401, not 400', async () => {
      const garbage = `not json {"${canary}`;
      const gh = githubDelivery(p.secrets.github, { number: 7 });
      await refused('github', { body: garbage, headers: { ...gh.headers, 'x-hub-signature-256': sign('not-the-secret', garbage) } }, 401);
      const { 'x-hub-signature-256': _gh, ...ghUnsigned } = gh.headers;
      await refused('github', { body: garbage, headers: ghUnsigned }, 401);
      const gg = gitguardianDelivery(p.secrets.gitguardian, { id: 7 });
      await refused('gitguardian', { body: garbage, headers: { ...gg.headers, 'gitguardian-signature': sign(gg.headers.timestamp! + 'not-the-secret', garbage) } }, 401);
      const { 'gitguardian-signature': _gg, ...ggUnsigned } = gg.headers;
      await refused('gitguardian', { body: garbage, headers: ggUnsigned }, 401);
      for (const scanner of ['trufflehog', 'gitleaks'] as const) {
        const ci = (scanner === 'trufflehog' ? trufflehogDelivery : gitleaksDelivery)(p.secrets.ingest, []);
        await refused(scanner, { body: garbage, headers: { ...ci.headers, authorization: 'Bearer wrong-token-wrong-token' } }, 401);
        const { authorization: _ci, ...anonymous } = ci.headers;
        await refused(scanner, { body: garbage, headers: anonymous }, 401);
      }
      // The same bodies, correctly signed, are what the parser refuses (400): the 401s above came first.
      await refused('github', { body: garbage, headers: { ...gh.headers, 'x-hub-signature-256': sign(p.secrets.github, garbage) } }, 400);
      await refused('gitguardian', { body: garbage, headers: { ...gg.headers, 'gitguardian-signature': sign(gg.headers.timestamp! + p.secrets.gitguardian, garbage) } }, 400);
      await refused('gitleaks', { body: garbage, headers: gitleaksDelivery(p.secrets.ingest, []).headers }, 400);
      expect(p.rekey.logs.filter((l) => l.includes('webhook payload refused'))).toHaveLength(3);
    });

    it('refuses a CI report with a wrong or missing bearer token with 401', async () => {
      const report = trufflehogDelivery(p.secrets.ingest, [{ value: canary }]);
      await refused('trufflehog', { ...report, headers: { ...report.headers, authorization: 'Bearer wrong-token-wrong-token' } }, 401);
      const leaks = gitleaksDelivery(p.secrets.ingest, [{ value: canary }]);
      const { authorization: _, ...anonymous } = leaks.headers;
      await refused('gitleaks', { ...leaks, headers: anonymous }, 401);
      await refused('gitleaks', { ...leaks, headers: { ...anonymous, authorization: `Basic ${Buffer.from(`x:${p.secrets.ingest}`).toString('base64')}` } }, 401);
    });
  });

  describe('malformed bodies', () => {
    it('refuses truncated JSON from every scanner with 400, whatever the signature', async () => {
      p.github.addAlert('acme/billing-api', { number: 8, secret: canary });
      const cut = (d: Delivery) => String(d.body).slice(0, Math.floor(String(d.body).length / 2));
      const gh = githubDelivery(p.secrets.github, { number: 8 });
      const ghBody = `${cut(gh)}"${canary}`;
      await refused('github', { body: ghBody, headers: { ...gh.headers, 'x-hub-signature-256': sign(p.secrets.github, ghBody) } }, 400);
      const gg = gitguardianDelivery(p.secrets.gitguardian, { id: 9 });
      const ggBody = `${cut(gg)}"${canary}`;
      await refused('gitguardian', { body: ggBody, headers: { ...gg.headers, 'gitguardian-signature': sign(gg.headers.timestamp! + p.secrets.gitguardian, ggBody) } }, 400);
      const th = trufflehogDelivery(p.secrets.ingest, [{ value: canary }]);
      await refused('trufflehog', { ...th, body: String(th.body).slice(0, String(th.body).indexOf(canary) + canary.length) }, 400);
      const gl = gitleaksDelivery(p.secrets.ingest, [{ value: canary }]);
      await refused('gitleaks', { ...gl, body: String(gl.body).slice(0, String(gl.body).indexOf(canary) + canary.length) }, 400);
    });

    it('refuses a 2 MiB body with 413 without reading it all', async () => {
      const body = Buffer.alloc(TWO_MIB, `{"x":"${canary}"}`);
      const gh = githubDelivery(p.secrets.github, { number: 10 });
      await refused('github', { body, headers: { ...gh.headers, 'x-hub-signature-256': sign(p.secrets.github, body) } }, 413);
      await refused('trufflehog', { body, headers: trufflehogDelivery(p.secrets.ingest, []).headers }, 413);
    });

    it('refuses a content type other than JSON with 415 (GitHub form encoding included)', async () => {
      const gh = githubDelivery(p.secrets.github, { number: 11 });
      const form = `payload=${encodeURIComponent(String(gh.body))}&x=${canary}`;
      await refused('github', { body: form, headers: { ...gh.headers, 'content-type': 'application/x-www-form-urlencoded', 'x-hub-signature-256': sign(p.secrets.github, form) } }, 415);
      const gl = gitleaksDelivery(p.secrets.ingest, [{ value: canary }]);
      await refused('gitleaks', { ...gl, headers: { ...gl.headers, 'content-type': 'text/plain' } }, 415);
      const { 'content-type': _, ...untyped } = gl.headers;
      await refused('gitleaks', { ...gl, headers: untyped }, 415);
    });

    it('answers 404 for an unknown scanner and 405 for another method', async () => {
      await refused('snyk', gitleaksDelivery(p.secrets.ingest, [{ value: canary }]), 404);
      const response = await fetch(`${p.server.url}/webhooks/github`);
      expect(response.status).toBe(405);
      await response.text();
    });
  });
});

// ---------------------------------------------------------------------------------- Lambda

describe('leak-webhook handler (API Gateway HTTP API)', () => {
  let p: LeakPipeline;
  let leak: LeakServices;
  let queued: LeakTask[];
  let canary: string;
  let handler: ReturnType<typeof webhookHandler>;
  const invoke = async (scanner: string, delivery: Delivery, options?: { base64?: boolean }) => {
    const reply = (await handler(webhookEvent(scanner, delivery, { ...options, mixedCaseHeaders: true }), lambdaContext())) as APIGatewayProxyStructuredResultV2;
    p.rekey.guard.output('lambda reply', JSON.stringify(reply));
    expect(String(reply.body)).not.toContain(canary);
    return { status: reply.statusCode, json: JSON.parse(String(reply.body)) as { message: string; deliveryId?: string } };
  };

  beforeEach(async () => {
    p = await startLeakPipeline();
    queued = [];
    leak = buildLeakServices(p.rekey, p.config, { queue: { enqueue: async (tasks) => void queued.push(...tasks) } });
    handler = webhookHandler({ services: async () => p.rekey, intake: async () => leak.intake });
    canary = `Canary-${randomBytes(12).toString('base64url')}`;
    p.rekey.guard.secret(canary);
  });
  afterEach(async () => {
    await p.dispose();
    expect(p.rekey.logs.join('\n')).not.toContain(canary);
    p.rekey.guard.assertClean();
  });

  it('queues a signed delivery with a base64 body and answers 202 with the delivery id', async () => {
    const delivery = trufflehogDelivery(p.secrets.ingest, [{ value: canary, public: true }]);
    const reply = await invoke('trufflehog', delivery);
    expect(reply).toEqual({ status: 202, json: { message: 'accepted', deliveryId: delivery.deliveryId, accepted: 1 } });
    expect(queued).toHaveLength(1);
    expect(JSON.stringify(queued)).not.toContain(canary); // fingerprints only
    expect(queued[0]!.fingerprints.length).toBeGreaterThan(0);
  });

  it('accepts a body API Gateway passed as text', async () => {
    const reply = await invoke('gitleaks', gitleaksDelivery(p.secrets.ingest, [{ value: canary }]), { base64: false });
    expect(reply.status).toBe(202);
  });

  it('answers 400 / 401 / 404 / 409 / 413 / 415 and queues nothing for each', async () => {
    const good = githubDelivery(p.secrets.github, { number: 12 });
    p.github.addAlert('acme/billing-api', { number: 12, secret: canary });
    expect((await invoke('github', good)).status).toBe(202);
    expect(queued).toHaveLength(1);

    const truncated = `${String(good.body).slice(0, 200)}"${canary}`;
    expect((await invoke('github', { body: truncated, headers: { ...good.headers, 'x-github-delivery': randomUUID(), 'x-hub-signature-256': sign(p.secrets.github, truncated) } })).status).toBe(400);
    const forged = `${String(good.body).slice(0, -1)},"x":"${canary}"}`;
    expect((await invoke('github', { body: forged, headers: { ...good.headers, 'x-github-delivery': randomUUID() } })).status).toBe(401);
    expect((await invoke('bitbucket', good)).status).toBe(404);
    expect((await invoke('github', good)).status).toBe(409);
    const huge = Buffer.alloc(TWO_MIB, canary);
    expect((await invoke('github', { body: huge, headers: { ...good.headers, 'x-hub-signature-256': sign(p.secrets.github, huge) } })).status).toBe(413);
    expect((await invoke('github', { ...good, headers: { ...good.headers, 'content-type': 'text/plain' } })).status).toBe(415);
    expect(queued).toHaveLength(1);
  });

  it('answers 503 (never 2xx) when the queue fails, and accepts the same delivery once the queue is back', async () => {
    let down = true;
    const flaky = buildLeakServices(p.rekey, p.config, {
      queue: {
        enqueue: async (tasks) => {
          if (down) throw new RekeyError('QUEUE_FAILED', 'could not queue the leak for remediation', { retryable: true });
          queued.push(...tasks);
        },
      },
    });
    handler = webhookHandler({ services: async () => p.rekey, intake: async () => flaky.intake });
    const delivery = gitleaksDelivery(p.secrets.ingest, [{ value: canary }]);
    expect(await invoke('gitleaks', delivery)).toEqual({ status: 503, json: { message: 'the delivery could not be queued; send it again' } });
    expect(p.rekey.logs.some((l) => l.includes('webhook failed') && l.includes('QUEUE_FAILED'))).toBe(true);
    down = false;
    expect((await invoke('gitleaks', delivery)).status).toBe(202);
    expect(queued).toHaveLength(1);
    expect((await invoke('gitleaks', delivery)).status).toBe(409);
  });

  it('answers 503 for a known scanner this deployment has no secret for', async () => {
    const bare = buildLeakServices(p.rekey, { ...p.config, GITGUARDIAN_WEBHOOK_SECRET: undefined }, { queue: { enqueue: async (tasks) => void queued.push(...tasks) } });
    handler = webhookHandler({ services: async () => p.rekey, intake: async () => bare.intake });
    const reply = await invoke('gitguardian', gitguardianDelivery(p.secrets.gitguardian, { id: 14 }));
    expect(reply.status).toBe(503);
    expect(queued).toHaveLength(0);
  });
});

describe('leak-worker handler (SQS, ReportBatchItemFailures)', () => {
  const created: string[] = [];
  afterAll(async () => {
    for (const username of created) await dropUser('postgres', username).catch(() => {});
  });

  let p: LeakPipeline;
  beforeEach(async () => {
    p = await startLeakPipeline();
  });
  afterEach(async () => {
    await p.dispose();
    p.rekey.guard.assertClean();
  });

  it('fails only the message whose remediation failed; drops a message that is not a task', async () => {
    const queued: LeakTask[] = [];
    const leak = buildLeakServices(p.rekey, p.config, { queue: { enqueue: async (tasks) => void queued.push(...tasks) } });
    const webhook = webhookHandler({ services: async () => p.rekey, intake: async () => leak.intake });
    const post = async (scanner: string, delivery: Delivery) => {
      const reply = (await webhook(webhookEvent(scanner, delivery, { mixedCaseHeaders: true }), lambdaContext())) as APIGatewayProxyStructuredResultV2;
      expect(reply.statusCode, String(reply.body)).toBe(202);
    };
    // 1. fine: an unmatched value → a triage ticket.
    const stray = `Stray-${randomBytes(10).toString('base64url')}`;
    p.rekey.guard.secret(stray);
    await post('gitleaks', gitleaksDelivery(p.secrets.ingest, [{ value: stray }]));
    // 2. fails: a managed secret whose database cannot be reached (nothing listens on that port).
    const username = uniqueName('sqs');
    created.push(username);
    const broken = await managedUser(p.rekey, 'postgres', { username, strategy: 'single', withAdmin: true, port: 9 });
    await post('trufflehog', trufflehogDelivery(p.secrets.ingest, [{ value: broken.password }]));
    // 3. fails at assessment: GitHub's alert API answers 502 once.
    const other = `Other-${randomBytes(10).toString('hex')}`;
    p.rekey.guard.secret(other);
    p.github.addAlert('acme/billing-api', { number: 21, secret: other });
    await post('github', githubDelivery(p.secrets.github, { number: 21 }));
    p.github.fail('GET', /\/secret-scanning\/alerts\/21$/, 502);
    expect(queued).toHaveLength(3);

    const ids = queued.map(() => randomUUID());
    const event: SQSEvent = {
      Records: [
        ...queued.map((task, i) => ({ messageId: ids[i]!, body: JSON.stringify(task) }) as SQSEvent['Records'][number]),
        { messageId: 'not-a-task', body: '{"hello":' } as SQSEvent['Records'][number],
      ],
    };
    const worker = workerHandler({ services: async () => p.rekey, leak: async () => leak.leak });
    const answer = (await worker(event, lambdaContext())) as { batchItemFailures: { itemIdentifier: string }[] };
    expect(answer.batchItemFailures.map((f) => f.itemIdentifier).sort()).toEqual([ids[1]!, ids[2]!].sort());
    expect(p.rekey.logs.some((l) => l.includes('dropped a queue message that is not a leak task') && l.includes('not-a-task'))).toBe(true);
    const outcomes = p.rekey.events.filter((e) => e.detailType === DETAIL_TYPE.leakRemediated).map((e) => [e.detail.sourceId, e.detail.outcome]);
    expect(outcomes).toEqual(expect.arrayContaining([['acme/billing-api#21', 'failed']]));
    expect(outcomes.filter(([, o]) => o === 'succeeded')).toHaveLength(1);

    // SQS redelivers the two: the alert API answers now; the database is still down.
    const retry: SQSEvent = { Records: [1, 2].map((i) => ({ messageId: ids[i]!, body: JSON.stringify(queued[i]) }) as SQSEvent['Records'][number]) };
    const second = (await worker(retry, lambdaContext())) as { batchItemFailures: { itemIdentifier: string }[] };
    expect(second.batchItemFailures).toEqual([{ itemIdentifier: ids[1]! }]);
  });
});
