import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mockClient } from 'aws-sdk-client-mock';
import { EventBridgeClient, PutEventsCommand, type PutEventsRequestEntry, type PutEventsResultEntry } from '@aws-sdk/client-eventbridge';
import { EventBridgeBus, MAX_EVENT_BYTES } from '#adapters/buses/eventbridge.ts';
import { InProcessEventBus } from '#adapters/buses/in-process.ts';
import { DETAIL_TYPE, type RekeyEvent } from '#core/events.ts';
import { RekeyError, ValidationError } from '#core/errors.ts';
import { LeakGuard } from '#test/helpers/leak-guard.ts';
import { eventBusContract, sampleEvent, type DeliveredEvent } from './event-bus.contract.ts';

const mockEventBridge = (client: EventBridgeClient) => mockClient(client);
type PutEventsMock = ReturnType<typeof mockEventBridge>;
type PutEventsInput = { Entries: PutEventsRequestEntry[] };

/**
 * An EventBridge client whose PutEvents accepts every entry and records the accepted ones. A test
 * that changes a reply chains `.callsFake(accept)` after it: `mock.on()` starts a new behaviour.
 */
function acceptingEventBridge() {
  const client = new EventBridgeClient({ region: 'us-east-1', credentials: { accessKeyId: 'test', secretAccessKey: 'test' } });
  const mock = mockEventBridge(client);
  const accepted: PutEventsRequestEntry[] = [];
  let eventId = 0;
  const accept = (input: PutEventsInput) => {
    accepted.push(...input.Entries);
    return { FailedEntryCount: 0, Entries: input.Entries.map(() => ({ EventId: `event-${++eventId}` })) };
  };
  mock.on(PutEventsCommand).callsFake(accept);
  return { client, mock, accepted, accept };
}

/** A PutEvents reply refusing the entries at `failing` (positions in that call), accepting the rest. */
function partialReply(
  accept: (input: PutEventsInput) => unknown,
  input: PutEventsInput,
  failing: number[],
  code = 'ThrottlingException',
  message = 'Rate exceeded',
) {
  accept({ Entries: input.Entries.filter((_, i) => !failing.includes(i)) });
  const entries: PutEventsResultEntry[] = input.Entries.map((_, i) => (failing.includes(i) ? { ErrorCode: code, ErrorMessage: message } : { EventId: `event-${i}` }));
  return { FailedEntryCount: failing.length, Entries: entries };
}

const entriesOf = (mock: PutEventsMock, call: number): PutEventsRequestEntry[] => mock.commandCalls(PutEventsCommand)[call]!.args[0].input.Entries ?? [];
const seqOf = (entry: PutEventsRequestEntry) => (JSON.parse(entry.Detail!) as { seq: number }).seq;

eventBusContract('in-process', async () => {
  const bus = new InProcessEventBus();
  const delivered: DeliveredEvent[] = [];
  // A subscriber as the chat notifier and audit trail are: it reads the event, as JSON when it keeps it.
  const unsubscribe = bus.subscribe((event) => {
    const detailText = JSON.stringify(event.detail);
    delivered.push({ source: event.source, detailType: event.detailType, time: event.time, detail: JSON.parse(detailText), detailText });
  });
  return { bus, delivered: () => delivered, dispose: async () => unsubscribe() };
});

eventBusContract('eventbridge (aws-sdk-client-mock)', async () => {
  const { client, mock, accepted } = acceptingEventBridge();
  return {
    bus: new EventBridgeBus({ client, eventBusName: 'rekey-test', retryBaseDelayMs: 1 }),
    delivered: () =>
      accepted.map((entry) => ({ source: entry.Source!, detailType: entry.DetailType!, time: entry.Time!, detail: JSON.parse(entry.Detail!), detailText: entry.Detail! })),
    dispose: async () => mock.restore(),
  };
});

describe('EventBridgeBus', () => {
  let client: EventBridgeClient;
  let mock: PutEventsMock;
  let accepted: PutEventsRequestEntry[];
  let accept: (input: PutEventsInput) => unknown;
  let bus: EventBridgeBus;

  beforeEach(() => {
    ({ client, mock, accepted, accept } = acceptingEventBridge());
    bus = new EventBridgeBus({ client, eventBusName: 'rekey-test', retryBaseDelayMs: 1, maxAttempts: 3 });
  });

  afterEach(() => {
    mock.restore();
  });

  describe('publish', () => {
    it('sends 25 events as three PutEvents calls of 10, 10 and 5, in order', async () => {
      const events = Array.from({ length: 25 }, () => sampleEvent());
      await bus.publish(events);
      const calls = mock.commandCalls(PutEventsCommand);
      expect(calls.map((c) => c.args[0].input.Entries!.length)).toEqual([10, 10, 5]);
      expect(calls.flatMap((_, i) => entriesOf(mock, i).map(seqOf))).toEqual(events.map((e) => e.detail.seq));
    });

    it('maps each event to an entry: source rekey, its detail-type, its detail as JSON, its time, the bus name', async () => {
      const event = sampleEvent({}, DETAIL_TYPE.credentialRevoked);
      await bus.publish([event]);
      expect(entriesOf(mock, 0)).toEqual([
        { Source: 'rekey', DetailType: 'Credential Revoked', Detail: JSON.stringify(event.detail), Time: event.time, EventBusName: 'rekey-test' },
      ]);
    });

    it('sends nothing for an empty list', async () => {
      await bus.publish([]);
      expect(mock.commandCalls(PutEventsCommand)).toHaveLength(0);
    });

    it('starts a new call before a batch would pass 256 KB', async () => {
      const bulky = (): RekeyEvent => sampleEvent({ reason: 'x'.repeat(100 * 1024) });
      await bus.publish([bulky(), bulky(), bulky()]);
      expect(mock.commandCalls(PutEventsCommand).map((c) => c.args[0].input.Entries!.length)).toEqual([2, 1]);
    });
  });

  describe('partial failures', () => {
    it('resends only the refused entries, in order, and resolves once they are accepted', async () => {
      const events = Array.from({ length: 5 }, () => sampleEvent());
      mock.on(PutEventsCommand).callsFakeOnce((input: PutEventsInput) => partialReply(accept, input, [1, 3])).callsFake(accept);
      await bus.publish(events);
      expect(mock.commandCalls(PutEventsCommand)).toHaveLength(2);
      expect(entriesOf(mock, 0).map(seqOf)).toEqual(events.map((e) => e.detail.seq));
      expect(entriesOf(mock, 1).map(seqOf)).toEqual([events[1]!.detail.seq, events[3]!.detail.seq]);
      expect(accepted.map(seqOf).sort()).toEqual(events.map((e) => e.detail.seq).sort());
    });

    it('finishes a batch, retries included, before sending the next one', async () => {
      const events = Array.from({ length: 12 }, () => sampleEvent());
      mock.on(PutEventsCommand).callsFakeOnce((input: PutEventsInput) => partialReply(accept, input, [9])).callsFake(accept);
      await bus.publish(events);
      expect(mock.commandCalls(PutEventsCommand).map((_, i) => entriesOf(mock, i).map(seqOf))).toEqual([
        events.slice(0, 10).map((e) => e.detail.seq),
        [events[9]!.detail.seq],
        events.slice(10).map((e) => e.detail.seq),
      ]);
    });

    it('counts an entry without an EventId as refused', async () => {
      mock.on(PutEventsCommand).resolvesOnce({ FailedEntryCount: 1, Entries: [{ EventId: 'e-1' }] }).callsFake(accept);
      const events = [sampleEvent(), sampleEvent()];
      await bus.publish(events);
      expect(entriesOf(mock, 1).map(seqOf)).toEqual([events[1]!.detail.seq]);
    });

    it('throws a retryable RekeyError naming how many failed when entries stay refused, and never a detail', async () => {
      const guard = new LeakGuard();
      const events = Array.from({ length: 5 }, () => sampleEvent({ reason: 'detail-marker-7f3a' }));
      guard.secret('detail-marker-7f3a');
      mock.on(PutEventsCommand).callsFake((input: PutEventsInput) =>
        // The second and fourth of the first call, then whatever is resent: refused every time.
        partialReply(accept, input, input.Entries.length === 5 ? [1, 3] : [0, 1], 'InternalFailure', `failed: ${input.Entries[0]?.Detail}`),
      );
      const error = await bus.publish(events).then(
        () => undefined,
        (e: unknown) => e,
      );
      guard.error('persistent PutEvents failure', error);
      guard.assertClean();
      expect(error).toBeInstanceOf(RekeyError);
      expect(error).toMatchObject({ code: 'EVENTS_NOT_PUBLISHED', retryable: true });
      expect((error as Error).message).toMatch(/^2 of 5 events were refused by event bus rekey-test after 3 attempts \(InternalFailure\)$/);
      expect(mock.commandCalls(PutEventsCommand)).toHaveLength(3);
    });

    it('retries a throttled call as a whole, then resolves', async () => {
      mock.on(PutEventsCommand).rejectsOnce(Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException', $fault: 'client' })).callsFake(accept);
      const events = [sampleEvent(), sampleEvent()];
      await bus.publish(events);
      expect(accepted.map(seqOf)).toEqual(events.map((e) => e.detail.seq));
    });

    it('stops at a refused call (no access, no bus) and names every event not published', async () => {
      mock
        .on(PutEventsCommand)
        .callsFakeOnce(accept) // the first batch goes through
        .rejects(Object.assign(new Error('Event bus rekey-test does not exist.'), { name: 'ResourceNotFoundException', $fault: 'client' }));
      const error = await bus.publish(Array.from({ length: 25 }, () => sampleEvent())).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toMatchObject({ code: 'EVENTS_NOT_PUBLISHED', retryable: false });
      expect((error as Error).message).toBe('15 of 25 events were not published to event bus rekey-test (ResourceNotFoundException)');
      expect(mock.commandCalls(PutEventsCommand)).toHaveLength(2);
    });
  });

  describe('size limit', () => {
    it('refuses an event over 256 KB before sending anything, naming the event, not its detail', async () => {
      const huge = sampleEvent({ reason: 'y'.repeat(MAX_EVENT_BYTES) }, DETAIL_TYPE.leakDetected);
      const error = await bus.publish([sampleEvent(), huge]).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(ValidationError);
      expect(error).toMatchObject({ code: 'EVENT_TOO_LARGE' });
      expect((error as Error).message).toContain(`Leak Detected for ${huge.detail.secretId}`);
      expect((error as Error).message).not.toContain('yyyy');
      expect(mock.commandCalls(PutEventsCommand)).toHaveLength(0);
    });
  });
});
