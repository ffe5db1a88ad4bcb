import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { randomBytes, randomUUID } from 'node:crypto';
import type { SQSEvent } from 'aws-lambda';
import { STAGE } from '#core/ports/secret-store.ts';
import { DETAIL_TYPE } from '#core/events.ts';
import { revokeCredential } from '#core/revocation.ts';
import { mockClient } from 'aws-sdk-client-mock';
import { SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import { SqsLeakQueue } from '#adapters/queues/sqs.ts';
import { buildLeakServices } from '#runtime/leak-services.ts';
import { createHandler as webhookHandler } from '../../functions/leak-webhook.ts';
import { createHandler as workerHandler } from '../../functions/leak-worker.ts';
import { assertCanLogIn, assertCannotLogIn, uniqueName, type TestEngine } from '#test/helpers/databases.ts';
import { dropUser } from '#test/helpers/users.ts';
import { managedUser, storedLogin } from '#test/helpers/rekey.ts';
import { lambdaContext, webhookEvent } from '#test/helpers/lambda.ts';
import { TICKETS_REPO, githubDelivery, startLeakPipeline, trufflehogDelivery, type LeakPipeline } from '#test/helpers/leak-pipeline.ts';

/**
 * A burst of 50 leaks of mixed risk — AWSCURRENT, live AWSPREVIOUS, already dead and unmatched
 * values; prod and dev; public and private; admin — is remediated highest risk first: as one
 * TruffleHog report through `rekey serve` and through the Lambdas (one SQS message: one worker
 * invocation orders all 50), and as 50 separate GitHub deliveries through the Lambdas (50
 * messages, handed to the worker in batches of serverless.yml's batchSize: ordered within each).
 */

/** The leak-worker's SQS batchSize in serverless.yml. */
const BATCH_SIZE = 10;

const created: { engine: TestEngine; username: string }[] = [];
afterAll(async () => {
  for (const { engine, username } of created) {
    await dropUser(engine, username).catch(() => {});
    await dropUser(engine, `${username}_clone`).catch(() => {});
  }
});

type Kind = 'current' | 'previous' | 'dead' | 'unmatched';
interface MixedLeak {
  kind: Kind;
  value: string;
  public: boolean;
  engine?: TestEngine;
  username?: string;
  secretId?: string;
  /** The AWSCURRENT version when the burst started (for previous and dead leaks: must not move). */
  currentVersionId?: string;
}

/**
 * 50 leaked values: 6 AWSCURRENT (prod/dev, 2 admin), 6 live AWSPREVIOUS, 8 dead (6 superseded,
 * 2 revoked), 30 unmatched; each public or private. Returned in a shuffled order.
 */
async function mixedLeaks(p: LeakPipeline): Promise<MixedLeak[]> {
  const leaks: MixedLeak[] = [];
  const user = async (engine: TestEngine, strategy: 'single' | 'alternating', tags: Record<string, string>) => {
    const username = uniqueName('burst');
    created.push({ engine, username });
    return managedUser(p.rekey, engine, { username, strategy, withAdmin: true, tags });
  };
  const engines: TestEngine[] = ['postgres', 'mysql'];
  for (let i = 0; i < 6; i++) {
    const engine = engines[i % 2]!;
    const app = await user(engine, 'single', { 'rekey:environment': i < 3 ? 'prod' : 'dev', ...(i % 3 === 0 ? { 'rekey:admin': 'true' } : {}) });
    leaks.push({ kind: 'current', value: app.password, public: i % 2 === 0, engine, username: app.username, secretId: app.secretId });
  }
  for (let i = 0; i < 6; i++) {
    const engine = engines[i % 2]!;
    const app = await user(engine, 'alternating', { 'rekey:environment': i < 3 ? 'prod' : 'dev' });
    await p.rekey.rotation.rotate(app.secretId, { trigger: 'manual' });
    await p.rekey.rotation.rotate(app.secretId, { trigger: 'manual' });
    const previous = await storedLogin(p.rekey, app.secretId, { stage: STAGE.previous });
    const current = await storedLogin(p.rekey, app.secretId, { stage: STAGE.current });
    leaks.push({ kind: 'previous', value: previous.password, public: i % 2 === 1, engine, username: previous.username, secretId: app.secretId, currentVersionId: current.versionId });
    leaks.push({ kind: 'dead', value: app.password, public: true, engine, username: app.username, secretId: app.secretId, currentVersionId: current.versionId });
  }
  for (let i = 0; i < 2; i++) {
    const engine = engines[i % 2]!;
    const app = await user(engine, 'alternating', { 'rekey:environment': 'prod', 'rekey:admin': 'true' });
    await p.rekey.rotation.rotate(app.secretId, { trigger: 'manual' });
    await revokeCredential(p.rekey.deps, app.secretId, { trigger: 'manual' });
    const current = await storedLogin(p.rekey, app.secretId, { stage: STAGE.current });
    leaks.push({ kind: 'dead', value: app.password, public: true, engine, username: app.username, secretId: app.secretId, currentVersionId: current.versionId });
  }
  for (let i = 0; i < 30; i++) {
    const value = `Unowned-${randomBytes(12).toString('base64url')}`;
    p.rekey.guard.secret(value);
    leaks.push({ kind: 'unmatched', value, public: i % 3 === 0 });
  }
  // A fixed shuffle: the arrival order must not be the risk order.
  return leaks.map((leak, i) => ({ leak, rank: (i * 37) % leaks.length })).sort((a, b) => a.rank - b.rank).map((x) => x.leak);
}

/**
 * What must hold after the burst, whatever the transport. `scores` are the risk scores in the
 * order the leaks were worked, one list per group that was ordered together (one worker
 * invocation): highest risk first within each.
 */
async function checkOutcome(p: LeakPipeline, leaks: MixedLeak[], groups: number[][]): Promise<void> {
  const scores = groups.flat();
  expect(scores).toHaveLength(leaks.length);
  for (const group of groups) {
    for (let i = 1; i < group.length; i++) expect(group[i]!, `leak ${i} was worked after a less risky one`).toBeLessThanOrEqual(group[i - 1]!);
  }
  // Spread across all four priorities, so the order is a real test.
  expect(new Set(scores.map((s) => (s >= 75 ? 'P0' : s >= 55 ? 'P1' : s >= 30 ? 'P2' : 'P3'))).size).toBeGreaterThanOrEqual(3);
  for (const leak of leaks) {
    if (leak.kind === 'current' || leak.kind === 'previous') await assertCannotLogIn(leak.engine!, leak.username!, leak.value);
    if (leak.kind === 'previous' || leak.kind === 'dead') {
      const current = await storedLogin(p.rekey, leak.secretId!, { stage: STAGE.current });
      expect(current.versionId, `${leak.kind} leak of ${leak.secretId} must not rotate it`).toBe(leak.currentVersionId);
      await assertCanLogIn(leak.engine!, current.username, current.password);
    }
  }
  const rotated = new Set(p.rekey.events.filter((e) => e.detailType === DETAIL_TYPE.rotationSucceeded && e.detail.trigger === 'leak').map((e) => e.detail.secretId));
  expect([...rotated].sort()).toEqual(leaks.filter((l) => l.kind === 'current').map((l) => l.secretId!).sort());
}

describe('a burst of 50 leaks of mixed risk', () => {
  let p: LeakPipeline;
  beforeEach(async () => {
    p = await startLeakPipeline();
  });
  afterEach(async () => {
    await p.dispose();
    p.rekey.guard.assertClean();
  });

  it('in one TruffleHog report through rekey serve is worked highest risk first', { timeout: 180_000 }, async () => {
    const leaks = await mixedLeaks(p);
    const reply = await p.post('trufflehog', trufflehogDelivery(p.secrets.ingest, leaks.map((l, i) => ({ value: l.value, public: l.public, file: `svc/${i}.env`, verified: l.kind !== 'dead' }))));
    expect(reply.status, reply.text).toBe(202);
    expect(reply.json.accepted).toBe(50);
    await p.settle();
    expect(p.results.filter((r) => r.error)).toEqual([]);
    await checkOutcome(p, leaks, [p.results.map((r) => r.risk.score)]);
    const issues = p.github.issues(TICKETS_REPO);
    expect(issues).toHaveLength(50);
    expect(issues.filter((i) => i.labels.includes('triage'))).toHaveLength(30);
    expect(issues.filter((i) => i.labels.includes('P3')).length).toBeGreaterThanOrEqual(8);
  });

  /** The webhook Lambda with the real SqsLeakQueue (SQS mocked at the SDK), and the worker Lambda. */
  const lambdas = () => {
    const sqs = mockClient(SQSClient);
    sqs.on(SendMessageBatchCommand).resolves({ Successful: [], Failed: [] });
    const queue = new SqsLeakQueue({ client: new SQSClient({ region: 'us-east-1' }), queueUrl: 'https://sqs.us-east-1.amazonaws.com/123456789012/rekey-ci-leaks' });
    const leak = buildLeakServices(p.rekey, p.config, { queue });
    const webhook = webhookHandler({ services: async () => p.rekey, intake: async () => leak.intake });
    const worker = workerHandler({ services: async () => p.rekey, leak: async () => leak.leak });
    const post = async (scanner: string, delivery: { headers: Record<string, string>; body: string | Buffer }) => {
      const reply = (await webhook(webhookEvent(scanner, delivery), lambdaContext())) as { statusCode: number; body: string };
      expect(reply.statusCode, reply.body).toBe(202);
    };
    /** The queue's messages, as the event source mapping hands them over: batches of `size`. */
    const batches = (size: number): SQSEvent[] => {
      const messages = sqs.commandCalls(SendMessageBatchCommand).flatMap((call) => call.args[0].input.Entries ?? []);
      sqs.restore();
      const out: SQSEvent[] = [];
      for (let i = 0; i < messages.length; i += size) {
        out.push({ Records: messages.slice(i, i + size).map((m) => ({ messageId: randomUUID(), body: m.MessageBody! }) as SQSEvent['Records'][number]) });
      }
      return out;
    };
    /** Run each batch through the worker; the risk scores in the order each invocation worked them. */
    const work = async (events: SQSEvent[]): Promise<number[][]> => {
      const groups: number[][] = [];
      for (const batch of events) {
        const before = p.rekey.events.length;
        const answer = (await worker(batch, lambdaContext())) as { batchItemFailures: unknown[] };
        expect(answer.batchItemFailures).toEqual([]);
        const remediated = p.rekey.events.slice(before).filter((e) => e.detailType === DETAIL_TYPE.leakRemediated);
        expect(remediated.every((e) => e.detail.outcome === 'succeeded')).toBe(true);
        groups.push(remediated.map((e) => (e.detail.risk as { score: number }).score));
      }
      return groups;
    };
    return { post, batches, work };
  };

  it('in one TruffleHog report through the webhook and worker Lambdas is one SQS message, worked highest risk first', { timeout: 180_000 }, async () => {
    const leaks = await mixedLeaks(p);
    const aws = lambdas();
    await aws.post('trufflehog', trufflehogDelivery(p.secrets.ingest, leaks.map((l, i) => ({ value: l.value, public: l.public, file: `svc/${i}.env`, verified: l.kind !== 'dead' }))));
    const batches = aws.batches(BATCH_SIZE);
    expect(batches.map((b) => b.Records.length)).toEqual([1]);
    await checkOutcome(p, leaks, await aws.work(batches));
  });

  it(`of separate GitHub deliveries through the Lambdas is worked highest risk first within each SQS batch of ${BATCH_SIZE}`, { timeout: 180_000 }, async () => {
    const leaks = await mixedLeaks(p);
    const aws = lambdas();
    for (const [i, l] of leaks.entries()) {
      p.github.addAlert('acme/billing-api', { number: 1000 + i, secret: l.value });
      await aws.post('github', githubDelivery(p.secrets.github, { number: 1000 + i, private: !l.public }));
    }
    const batches = aws.batches(BATCH_SIZE);
    expect(batches).toHaveLength(Math.ceil(50 / BATCH_SIZE));
    await checkOutcome(p, leaks, await aws.work(batches));
    const resolved = leaks.map((_, i) => p.github.alert('acme/billing-api', 1000 + i)!);
    expect(resolved.filter((a) => a.state === 'resolved')).toHaveLength(20);
    expect(resolved.filter((a, i) => leaks[i]!.kind === 'unmatched' && a.state === 'open')).toHaveLength(30);
  });
});
