import { ConditionalCheckFailedException, DeleteItemCommand, PutItemCommand, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { DeliveryLog } from '#core/ports/leak-queue.ts';
import { RekeyError } from '#core/errors.ts';
import { redactCause } from '#core/redact.ts';

/**
 * Seen delivery ids in DynamoDB: a conditional put wins once per id; the table's TTL attribute
 * (`expiresAt`) lets old ids fall out of the replay window.
 */
export class DynamoDeliveryLog implements DeliveryLog {
  constructor(private readonly options: { client: DynamoDBClient; tableName: string }) {}

  async release(source: string, deliveryId: string): Promise<void> {
    try {
      await this.options.client.send(new DeleteItemCommand({ TableName: this.options.tableName, Key: { pk: { S: `${source}#${deliveryId}` } } }));
    } catch (error) {
      throw new RekeyError('DELIVERY_LOG_FAILED', 'could not release the webhook delivery', { retryable: true, cause: redactCause(error, []) });
    }
  }

  async claim(source: string, deliveryId: string, ttlMs: number): Promise<boolean> {
    const now = Date.now();
    try {
      await this.options.client.send(
        new PutItemCommand({
          TableName: this.options.tableName,
          Item: { pk: { S: `${source}#${deliveryId}` }, expiresAt: { N: String(Math.floor((now + ttlMs) / 1000)) } },
          ConditionExpression: 'attribute_not_exists(pk) OR expiresAt < :now',
          ExpressionAttributeValues: { ':now': { N: String(Math.floor(now / 1000)) } },
        }),
      );
      return true;
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return false;
      throw new RekeyError('DELIVERY_LOG_FAILED', 'could not record the webhook delivery', { retryable: true, cause: redactCause(error, []) });
    }
  }
}
