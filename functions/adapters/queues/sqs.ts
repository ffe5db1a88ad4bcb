import { SendMessageBatchCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { LeakQueue } from '#core/ports/leak-queue.ts';
import type { LeakTask } from '#core/remediation.ts';
import { RekeyError } from '#core/errors.ts';
import { redactCause } from '#core/redact.ts';

/**
 * Bytes of tasks per message, and per SendMessageBatch call: under SQS's 256 KiB for both, with
 * room for the request's own framing. A task is fingerprints and a location (~0.5–1.5 KB), so a
 * report of a few hundred findings is one message.
 */
export const MAX_MESSAGE_BYTES = 200 * 1024;

/**
 * SQS between the webhook and the worker. One delivery's tasks travel **together**, as a JSON
 * array in as few messages as fit, so the worker receives a report's findings in one invocation
 * and can work them highest risk first (sent one per message, SQS would spread them over several
 * concurrent invocations). Messages go in batches of at most 10; failed entries are retried once,
 * then raised.
 */
export class SqsLeakQueue implements LeakQueue {
  constructor(private readonly options: { client: SQSClient; queueUrl: string }) {}

  async enqueue(tasks: LeakTask[]): Promise<void> {
    const bodies = packTasks(tasks);
    for (let i = 0; i < bodies.length; ) {
      // Up to 10 messages per call, and no more bytes than one message may have.
      let size = 0;
      let end = i;
      while (end < bodies.length && end - i < 10 && (end === i || size + Buffer.byteLength(bodies[end]!) <= MAX_MESSAGE_BYTES)) {
        size += Buffer.byteLength(bodies[end]!);
        end++;
      }
      await this.#send(bodies.slice(i, end));
      i = end;
    }
  }

  async #send(bodies: string[]): Promise<void> {
    let entries = bodies.map((body, n) => ({ Id: String(n), MessageBody: body }));
    for (let attempt = 1; entries.length; attempt++) {
      let failed: string[];
      try {
        const out = await this.options.client.send(new SendMessageBatchCommand({ QueueUrl: this.options.queueUrl, Entries: entries }));
        failed = (out.Failed ?? []).map((f) => f.Id ?? '');
      } catch (error) {
        throw new RekeyError('QUEUE_FAILED', 'could not queue the leak for remediation', { retryable: true, cause: redactCause(error, []) });
      }
      entries = entries.filter((e) => failed.includes(e.Id));
      if (entries.length && attempt >= 2) {
        throw new RekeyError('QUEUE_FAILED', `${entries.length} leak task(s) were not accepted by SQS`, { retryable: true });
      }
    }
  }
}

/** Message bodies (JSON arrays of tasks), each at most MAX_MESSAGE_BYTES, in the tasks' order. */
export function packTasks(tasks: LeakTask[]): string[] {
  const bodies: string[] = [];
  let current: string[] = [];
  let size = 2; // the brackets
  for (const task of tasks) {
    const json = JSON.stringify(task);
    const bytes = Buffer.byteLength(json) + 1; // and its comma
    if (current.length && size + bytes > MAX_MESSAGE_BYTES) {
      bodies.push(`[${current.join(',')}]`);
      current = [];
      size = 2;
    }
    current.push(json);
    size += bytes;
  }
  if (current.length) bodies.push(`[${current.join(',')}]`);
  return bodies;
}

/**
 * The tasks of one queue message: an array (what SqsLeakQueue sends), or a single task (what
 * earlier versions sent, still in the queue during a deploy). Throws when it is neither.
 */
export function tasksOfMessage(body: string): LeakTask[] {
  const parsed = JSON.parse(body) as unknown;
  const tasks = Array.isArray(parsed) ? parsed : [parsed];
  if (!tasks.length) throw new Error('empty');
  for (const task of tasks as LeakTask[]) {
    if (typeof task?.deliveryId !== 'string' || typeof task.report?.sourceId !== 'string' || !Array.isArray(task.fingerprints)) throw new Error('shape');
  }
  return tasks as LeakTask[];
}
