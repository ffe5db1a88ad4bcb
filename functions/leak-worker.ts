import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { remediateBurst, type LeakDeps, type LeakTask } from '#core/remediation.ts';
import { config } from '#runtime/config.ts';
import { lambdaServices } from '#runtime/services.ts';
import { lambdaLeakDeps } from '#runtime/leak-services.ts';
import { lambdaHandler, type HandlerOptions } from '#runtime/middleware.ts';
import { tasksOfMessage } from '#adapters/queues/sqs.ts';

/**
 * SQS batch of leak tasks (a message holds one delivery's tasks) → match → highest risk first
 * across the whole batch → rotate, revoke, ticket. A message with a task whose remediation failed
 * is reported back (partial batch failure) so SQS retries only it — its other tasks find their
 * value already dead, a no-op; a message that is not tasks is dropped with a log line (retrying
 * it cannot help).
 */
export const createHandler = (options: Partial<HandlerOptions> & { leak?: () => Promise<LeakDeps> } = {}) => {
  const getLeak = options.leak ?? (() => lambdaLeakDeps(options.services ?? lambdaServices, config));
  return lambdaHandler<SQSEvent, SQSBatchResponse>(
    'leak-worker',
    async (event, { logger }) => {
      const leak = await getLeak();
      const byTask = new Map<LeakTask, string>();
      for (const record of event.Records ?? []) {
        try {
          for (const task of tasksOfMessage(record.body)) byTask.set(task, record.messageId);
        } catch {
          logger.error('dropped a queue message that is not a leak task', { messageId: record.messageId });
        }
      }
      const results = await remediateBurst(leak, [...byTask.keys()]);
      // A result answers for every finding of its value in the batch: a failure fails them all.
      const failed = new Set(results.filter((r) => r.error).flatMap((r) => r.tasks.map((t) => `${t.deliveryId}\u0000${t.sourceId}`)));
      const failedMessages = new Set([...byTask.entries()].filter(([task]) => failed.has(`${task.deliveryId}\u0000${task.report.sourceId}`)).map(([, messageId]) => messageId));
      return { batchItemFailures: [...failedMessages].map((messageId) => ({ itemIdentifier: messageId })) };
    },
    { errors: 'throw', services: lambdaServices, ...options },
  );
};

export const handler = createHandler();
