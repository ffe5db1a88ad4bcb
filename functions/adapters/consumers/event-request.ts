import { RekeyError, ValidationError } from '#core/errors.ts';
import { DETAIL_TYPE, rekeyEvent } from '#core/events.ts';
import type { ConsumerAdapter, ConsumerPush, ConsumerPushOutcome, ConsumerSpec } from '#core/ports/consumer.ts';
import type { EventBus } from '#core/ports/event-bus.ts';
import { redactCause } from '#core/redact.ts';

export const EVENT_CONSUMER = 'event';
export const CONSUMER_UPDATE_REQUESTED = DETAIL_TYPE.consumerUpdateRequested;

const NAME = /^[\w.:/@-]{1,128}$/;
const MAX_REQUEST_BYTES = 4096;

/**
 * Anything rekey cannot write to itself (an ECS service to redeploy, a Kubernetes rollout, a
 * cache to flush) is asked through an event on rekey's bus:
 *
 *   {"type": "event", "name": "orders-api",
 *    "request": {"action": "ecs-force-new-deployment", "cluster": "prod", "service": "orders"}}
 *
 * becomes `Consumer Update Requested` with detail {secretId, versionId, consumer: "orders-api",
 * request: {…}}. An EventBridge rule on `detail.request.action` routes it (to a Lambda calling
 * ecs:UpdateService forceNewDeployment, a webhook into a cluster…); the receiver reads the secret
 * itself. The event never carries the value, and `request` is refused if it holds any of it.
 * Accepted by the bus = pushed: whoever acts on it reports on its own.
 */
export class EventRequestConsumer implements ConsumerAdapter {
  readonly type = EVENT_CONSUMER;
  readonly #events: EventBus;
  readonly #now: () => Date;

  constructor(options: { events: EventBus; now?: () => Date }) {
    this.#events = options.events;
    this.#now = options.now ?? (() => new Date());
  }

  validate(spec: ConsumerSpec, where: string): void {
    this.#parse(spec, where);
  }

  describe(spec: ConsumerSpec): string {
    return `${EVENT_CONSUMER} ${typeof spec.name === 'string' ? spec.name : '?'}`;
  }

  async push(request: ConsumerPush): Promise<ConsumerPushOutcome> {
    const spec = this.#parse(request.consumer, `a consumer of ${request.secretId}`);
    const serialised = JSON.stringify(spec.request ?? {});
    for (const secret of request.secrets) {
      const text = secret.reveal();
      if (text.length >= 4 && serialised.includes(JSON.stringify(text).slice(1, -1))) {
        throw new ValidationError(`${this.describe(request.consumer)}: its request holds part of the secret value; an event never carries one`, 'CONSUMER_INVALID');
      }
    }
    const event = rekeyEvent(
      CONSUMER_UPDATE_REQUESTED,
      { secretId: request.secretId, versionId: request.versionId, consumer: spec.name, ...(spec.request ? { request: spec.request } : {}) },
      this.#now(),
    );
    try {
      await this.#events.publish([event]);
    } catch (error) {
      throw new RekeyError('CONSUMER_PUSH_FAILED', `${this.describe(request.consumer)}: the event bus did not accept the request`, {
        retryable: true,
        cause: redactCause(error, request.secrets),
      });
    }
    return { consumer: this.describe(request.consumer), updated: ['request sent'] };
  }

  #parse(spec: ConsumerSpec, where: string): { name: string; request?: Record<string, unknown> } {
    const fail = (what: string): never => {
      throw new ValidationError(`${where}: ${EVENT_CONSUMER} consumer ${what}`, 'CONSUMER_INVALID');
    };
    for (const field of Object.keys(spec)) if (!['type', 'name', 'request'].includes(field)) fail(`has an unknown field "${field.slice(0, 40)}"`);
    if (typeof spec.name !== 'string' || !NAME.test(spec.name)) fail('needs "name": letters, digits and . : / @ _ - (at most 128)');
    const request = spec.request;
    if (request !== undefined) {
      if (!request || typeof request !== 'object' || Array.isArray(request)) fail('needs "request" to be a JSON object');
      if (Buffer.byteLength(JSON.stringify(request)) > MAX_REQUEST_BYTES) fail(`has a "request" over ${MAX_REQUEST_BYTES} bytes`);
    }
    return { name: spec.name as string, ...(request ? { request: request as Record<string, unknown> } : {}) };
  }
}
