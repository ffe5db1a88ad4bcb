import { afterEach, describe, expect, it } from 'vitest';
import { mockClient } from 'aws-sdk-client-mock';
import { SendMessageBatchCommand, SQSClient, type SendMessageBatchRequestEntry } from '@aws-sdk/client-sqs';
import { MAX_MESSAGE_BYTES, SqsLeakQueue, packTasks, tasksOfMessage } from '#adapters/queues/sqs.ts';
import type { LeakTask } from '#core/remediation.ts';

const QUEUE_URL = 'https://sqs.us-east-1.amazonaws.com/123456789012/rekey-ci-leaks';
const sqs = mockClient(SQSClient);
afterEach(() => sqs.reset());

/** A task shaped as the webhook makes them; `pad` makes it big (a long file path). */
function task(n: number, pad = 0): LeakTask {
  return {
    deliveryId: 'delivery-1',
    receivedAt: '2026-11-25T10:00:00.000Z',
    report: { source: 'trufflehog', sourceId: `finding-${n}`, location: { repository: 'acme/api', path: `svc/${n}.env${'x'.repeat(pad)}` } },
    fingerprints: [`fp-${n}-a`, `fp-${n}-b`],
  } as unknown as LeakTask;
}

const sent = () => sqs.commandCalls(SendMessageBatchCommand).map((call) => call.args[0].input.Entries as SendMessageBatchRequestEntry[]);

describe('SqsLeakQueue', () => {
  it("sends one delivery's tasks together, as one message, so one worker invocation sees them all", async () => {
    sqs.on(SendMessageBatchCommand).resolves({ Successful: [], Failed: [] });
    const tasks = Array.from({ length: 50 }, (_, n) => task(n));
    await new SqsLeakQueue({ client: new SQSClient({ region: 'us-east-1' }), queueUrl: QUEUE_URL }).enqueue(tasks);
    const calls = sent();
    expect(calls).toHaveLength(1);
    expect(calls[0]).toHaveLength(1);
    expect(tasksOfMessage(calls[0]![0]!.MessageBody!)).toEqual(tasks);
  });

  it('splits a report too large for one message into messages and calls within the SQS size limit, in order', async () => {
    sqs.on(SendMessageBatchCommand).resolves({ Successful: [], Failed: [] });
    const tasks = Array.from({ length: 1000 }, (_, n) => task(n, 900));
    await new SqsLeakQueue({ client: new SQSClient({ region: 'us-east-1' }), queueUrl: QUEUE_URL }).enqueue(tasks);
    const calls = sent();
    expect(calls.length).toBeGreaterThan(1);
    for (const entries of calls) {
      expect(entries.length).toBeLessThanOrEqual(10);
      expect(entries.reduce((sum, e) => sum + Buffer.byteLength(e.MessageBody!), 0)).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
    }
    expect(calls.flat().flatMap((e) => tasksOfMessage(e.MessageBody!))).toEqual(tasks);
  });

  it('retries the entries SQS refused once, then raises a retryable error naming no task', async () => {
    sqs.on(SendMessageBatchCommand).resolvesOnce({ Successful: [], Failed: [{ Id: '0', Code: 'InternalError', SenderFault: false }] }).resolves({ Successful: [], Failed: [] });
    const queue = new SqsLeakQueue({ client: new SQSClient({ region: 'us-east-1' }), queueUrl: QUEUE_URL });
    await queue.enqueue([task(1)]);
    expect(sent()).toHaveLength(2);

    sqs.reset();
    sqs.on(SendMessageBatchCommand).resolves({ Successful: [], Failed: [{ Id: '0', Code: 'InternalError', SenderFault: false }] });
    await expect(queue.enqueue([task(1)])).rejects.toMatchObject({ code: 'QUEUE_FAILED', retryable: true });
  });
});

describe('packTasks / tasksOfMessage', () => {
  it('round-trips any number of tasks, each body within the limit', () => {
    for (const count of [1, 2, 7, 300]) {
      const tasks = Array.from({ length: count }, (_, n) => task(n, n % 3 === 0 ? 2000 : 10));
      const bodies = packTasks(tasks);
      for (const body of bodies) expect(Buffer.byteLength(body)).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
      expect(bodies.flatMap(tasksOfMessage)).toEqual(tasks);
    }
    expect(packTasks([])).toEqual([]);
  });

  it('reads a single task (messages queued by earlier versions during a deploy) and refuses anything else', () => {
    expect(tasksOfMessage(JSON.stringify(task(3)))).toEqual([task(3)]);
    for (const bad of ['[]', '{}', '[{"deliveryId":1}]', 'null', '"text"', 'not json', `[${JSON.stringify(task(1))},{}]`]) {
      expect(() => tasksOfMessage(bad), bad).toThrow();
    }
  });
});
