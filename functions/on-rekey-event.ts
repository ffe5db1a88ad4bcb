import * as z from 'zod/mini';
import { auditEntryOf } from '#core/audit.ts';
import type { ChannelStats } from '#core/chat-dispatcher.ts';
import { ValidationError } from '#core/errors.ts';
import { DETAIL_TYPE, EVENT_SOURCE, rekeyEvent, type DetailType } from '#core/events.ts';
import { lambdaChatServices, type ChatServices } from '#runtime/chat-services.ts';
import { lambdaHandler, type HandlerOptions } from '#runtime/middleware.ts';

/** The EventBridge envelope of one rekey event (the rule on the rekey bus matches `source: rekey`). */
const envelopeSchema = z.object({
  id: z.optional(z.string()),
  source: z.literal(EVENT_SOURCE),
  'detail-type': z.enum(Object.values(DETAIL_TYPE) as [DetailType, ...DetailType[]]),
  time: z.string(),
  detail: z.looseObject({ secretId: z.string().check(z.minLength(1)) }),
});

export interface OnRekeyEventResult {
  detailType: DetailType;
  /** The chat message's title, when the event deserved one. */
  message?: string;
  /** Per channel, what this invocation delivered. */
  delivered: Record<string, ChannelStats>;
}

/**
 * rekey's own events → one structured audit line in this function's log group (the bus archive
 * keeps the events themselves) and chat. A failing channel is logged and counted (an Embedded
 * Metric Format line, so CloudWatch graphs it) but never fails the invocation: a retry would
 * resend to the channels that worked.
 */
export const createHandler = (options: Partial<HandlerOptions<ChatServices>> = {}) =>
  lambdaHandler<unknown, OnRekeyEventResult, ChatServices>(
    'on-rekey-event',
    async (raw, { services, logger }) => {
      const parsed = envelopeSchema.safeParse(raw);
      if (!parsed.success) throw new ValidationError('not a rekey event (source rekey, a known detail-type, detail.secretId)');
      const envelope = parsed.data;
      const time = new Date(envelope.time);
      const event = rekeyEvent(envelope['detail-type'], envelope.detail, Number.isNaN(time.getTime()) ? new Date() : time);
      logger.info('rekey audit', { audit: auditEntryOf(event), ...(envelope.id ? { eventId: envelope.id } : {}) });

      const before = services.chat.stats;
      const message = services.chat.handle(event);
      await services.chat.flush();
      const delivered = difference(services.chat.stats, before);
      const failures = Object.values(delivered).reduce((n, s) => n + s.failed + s.dropped, 0);
      if (failures > 0) {
        logger.warn('chat delivery failures', {
          _aws: {
            Timestamp: Date.now(),
            CloudWatchMetrics: [{ Namespace: 'rekey', Dimensions: [[]], Metrics: [{ Name: 'ChatDeliveryFailures', Unit: 'Count' }] }],
          },
          ChatDeliveryFailures: failures,
          channels: Object.entries(delivered).filter(([, s]) => s.failed + s.dropped > 0).map(([channel]) => channel),
        });
      }
      return { detailType: event.detailType, ...(message ? { message: message.title } : {}), delivered };
    },
    { errors: 'throw', services: lambdaChatServices, ...options },
  );

function difference(after: Record<string, ChannelStats>, before: Record<string, ChannelStats>): Record<string, ChannelStats> {
  return Object.fromEntries(
    Object.entries(after).map(([channel, s]) => {
      const b = before[channel] ?? { sent: 0, failed: 0, dropped: 0 };
      return [channel, { sent: s.sent - b.sent, failed: s.failed - b.failed, dropped: s.dropped - b.dropped }];
    }),
  );
}

export const handler = createHandler();
