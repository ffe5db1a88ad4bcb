import { SendMessageBatchCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { LeakQueue } from '#core/ports/leak-queue.ts';
import type { LeakTask } from '#core/remediation.ts';
import { RekeyError } from '#core/errors.ts';
import { redactCause } from '#core/redact.ts';

/** SQS between the webhook and the worker: batches of 10, failed entries retried once, then raised. */
export class SqsLeakQueue implements LeakQueue {
  constructor(private readonly options: { client: SQSClient; queueUrl: string }) {}

  async enqueue(tasks: LeakTask[]): Promise<void> {
    for (let i = 0; i < tasks.length; i += 10) {
      let entries = tasks.slice(i, i + 10).map((task, n) => ({ Id: String(n), MessageBody: JSON.stringify(task) }));
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
}
