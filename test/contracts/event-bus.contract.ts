import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import type { EventBus } from '#core/ports/event-bus.ts';
import { DETAIL_TYPE, rekeyEvent, type EventDetail, type RekeyEvent } from '#core/events.ts';
import { Sealed } from '#core/sealed.ts';
import { LeakGuard } from '#test/helpers/leak-guard.ts';

/** An event as a consumer downstream of the bus receives it. */
export interface DeliveredEvent {
  source: string;
  detailType: string;
  time: Date;
  /** The detail as the consumer parses it (EventBridge delivers JSON). */
  detail: unknown;
  /** The detail exactly as it travelled, for searching it for values. */
  detailText: string;
}

export interface EventBusUnderTest {
  bus: EventBus;
  /** Every event the bus delivered (accepted), in delivery order. */
  delivered(): DeliveredEvent[];
  dispose(): Promise<void>;
}

let sequence = 0;
/** An event as the core builds one: identifiers and measurements, a distinct time each. */
export function sampleEvent(overrides: Partial<EventDetail> = {}, detailType: RekeyEvent['detailType'] = DETAIL_TYPE.rotationSucceeded): RekeyEvent {
  sequence += 1;
  return rekeyEvent(
    detailType,
    { secretId: `app/db-${sequence}`, versionId: `v-${sequence}`, strategy: 'alternating', trigger: 'schedule', durationMs: sequence, seq: sequence, ...overrides },
    new Date(Date.UTC(2026, 10, 1, 12, 0, 0) + sequence * 1000),
  );
}

/** The detail as any consumer reads it: JSON, so Sealed and Date take their JSON forms. */
const asJson = (detail: unknown): unknown => JSON.parse(JSON.stringify(detail));

/**
 * The EventBus port's contract (functions/core/ports/event-bus.ts), run against every adapter:
 * `publish` resolves once every event is delivered, in order within a call and call after call;
 * source, detail-type, time and detail arrive as the core built them; nothing the bus adds or
 * reports ever carries a value.
 */
export function eventBusContract(name: string, setup: () => Promise<EventBusUnderTest>): void {
  describe(`${name} event bus (contract)`, () => {
    let subject: EventBusUnderTest;
    let guard: LeakGuard;

    beforeEach(async () => {
      subject = await setup();
      guard = new LeakGuard();
    });

    afterEach(async () => {
      await subject.dispose();
      guard.assertClean();
    });

    describe('publish', () => {
      it('delivers every event of a call, in order, before it resolves', async () => {
        const events = Array.from({ length: 25 }, () => sampleEvent());
        await subject.bus.publish(events);
        expect(subject.delivered().map((e) => (e.detail as { seq: number }).seq)).toEqual(events.map((e) => e.detail.seq));
      });

      it('delivers successive calls in call order', async () => {
        const first = [sampleEvent(), sampleEvent()];
        const second = [sampleEvent()];
        await subject.bus.publish(first);
        await subject.bus.publish(second);
        expect(subject.delivered().map((e) => (e.detail as { seq: number }).seq)).toEqual([...first, ...second].map((e) => e.detail.seq));
      });

      it('keeps source, detail-type, time and detail as the core built them', async () => {
        const event = sampleEvent(
          { reason: 'older than rekey:max-age — 30d', risk: { score: 87, priority: 'P1' }, error: { code: 'LOGIN_FAILED', message: 'could not log in as "app"' } },
          DETAIL_TYPE.rotationFailed,
        );
        await subject.bus.publish([event]);
        const [delivered] = subject.delivered();
        expect(delivered).toMatchObject({ source: 'rekey', detailType: 'Rotation Failed' });
        expect(delivered!.time.getTime()).toBe(event.time.getTime());
        expect(delivered!.detail).toEqual(asJson(event.detail));
      });

      it('resolves without delivering anything for an empty list', async () => {
        await subject.bus.publish([]);
        expect(subject.delivered()).toEqual([]);
      });

      it('never lets a value out, even one a detail was wrongly given', async () => {
        const password = `pw-${randomBytes(12).toString('base64url')}`;
        guard.secret(password);
        // The core never does this; the bus must still not reveal what it was handed sealed.
        await subject.bus.publish([sampleEvent({ leaked: new Sealed(password) }, DETAIL_TYPE.leakDetected)]);
        const [delivered] = subject.delivered();
        guard.output('delivered detail', delivered!.detailText);
        expect(delivered!.detail).toMatchObject({ leaked: '[sealed]' });
      });
    });
  });
}
