import { describe, expect, it } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';
import { rotateMany, type BulkItem } from '#core/bulk.ts';
import { mapLimit } from '#core/concurrency.ts';
import type { CoreDeps } from '#core/deps.ts';
import { TargetError } from '#core/errors.ts';
import type { RekeyEvent } from '#core/events.ts';
import type { RotationEngine, RotationResult } from '#core/rotation.ts';

/** Counts how many calls are running at once; each waits a short timer so they overlap. */
class InFlight {
  now = 0;
  max = 0;
  started: string[] = [];

  async run<T>(id: string, work: () => T, ms = 15): Promise<T> {
    this.started.push(id);
    this.now++;
    this.max = Math.max(this.max, this.now);
    try {
      await sleep(ms);
      return work();
    } finally {
      this.now--;
    }
  }
}

/**
 * Just enough of the core's dependencies for rotateMany: the store describes each secret (default
 * grace, so no revoke follows), the rotation engine is a fake counting what is in flight.
 */
function fakeBulk(options: { failing?: string[] } = {}) {
  const inFlight = new InFlight();
  const published: RekeyEvent[] = [];
  const deps = {
    store: { describeSecret: async (secretId: string) => ({ secretId, tags: { 'rekey:managed': 'true' } }) },
    events: { publish: async (events: RekeyEvent[]) => void published.push(...events) },
    logger: { debug() {}, info() {}, warn() {}, error() {} },
    now: () => new Date(),
  } as unknown as CoreDeps;
  const rotation = {
    rotate: (secretId: string) =>
      inFlight.run(secretId, (): RotationResult => {
        if (options.failing?.includes(secretId)) throw new TargetError('TARGET_REFUSED', 'the database refused the change');
        return { secretId, versionId: `v-${secretId}`, previousVersionId: `p-${secretId}`, strategy: 'single', username: 'app', resumed: false, durationMs: 15 };
      }),
  } as unknown as RotationEngine;
  return { deps, rotation, inFlight, published };
}

const ids = (n: number) => Array.from({ length: n }, (_, i) => `app/${String(i).padStart(2, '0')}`);

describe('rotateMany', () => {
  describe('bounded concurrency', () => {
    it.each([1, 3, 5])('never runs more than %i rotations at once, and reaches that many', async (limit) => {
      const { deps, rotation, inFlight } = fakeBulk();
      const secretIds = ids(12);
      const report = await rotateMany(deps, rotation, secretIds, { concurrency: limit, request: { trigger: 'schedule' } });
      expect(inFlight.max).toBe(limit);
      expect(inFlight.now).toBe(0);
      expect(report.counts).toEqual({ succeeded: 12, failed: 0 });
      expect(report.items.map((i) => i.secretId)).toEqual(secretIds);
    });

    it('runs everything at once when the limit exceeds the selection', async () => {
      const { deps, rotation, inFlight } = fakeBulk();
      await rotateMany(deps, rotation, ids(3), { concurrency: 8, request: { trigger: 'schedule' } });
      expect(inFlight.max).toBe(3);
    });
  });

  describe('failures', () => {
    it('completes every item when one fails, reports it, and keeps the limit', async () => {
      const { deps, rotation, inFlight, published } = fakeBulk({ failing: ['app/01'] });
      const secretIds = ids(9);
      const seen: BulkItem[] = [];
      const report = await rotateMany(deps, rotation, secretIds, { concurrency: 3, request: { trigger: 'schedule' }, onItem: (item) => seen.push(item) });

      expect(inFlight.max).toBe(3);
      expect([...inFlight.started].sort()).toEqual(secretIds);
      expect(seen).toHaveLength(9);
      expect(report.items.map((i) => i.secretId)).toEqual(secretIds);
      expect(report.counts).toEqual({ succeeded: 8, failed: 1 });
      expect(report.items[1]).toMatchObject({ secretId: 'app/01', outcome: 'failed', error: { code: 'TARGET_REFUSED' } });
      for (const item of report.items.filter((i) => i.secretId !== 'app/01')) {
        expect(item).toMatchObject({ outcome: 'succeeded', versionId: `v-${item.secretId}` });
      }
      // One Batch Completed event closes the batch, with the batch id every item ran under.
      expect(published.map((e) => e.detailType)).toEqual(['Batch Completed']);
      expect(published[0]!.detail).toMatchObject({ batchId: report.batchId, total: 9 });
    });
  });
});

describe('mapLimit', () => {
  it('keeps at most `limit` in flight, reaches it, and keeps the input order', async () => {
    const inFlight = new InFlight();
    // Uneven durations, so later items finish first.
    const results = await mapLimit(ids(10), 4, (id, index) => inFlight.run(id, () => `${id}:${index}`, 5 + ((7 * index) % 11)));
    expect(inFlight.max).toBe(4);
    expect(results).toEqual(ids(10).map((id, index) => `${id}:${index}`));
  });

  it('runs one at a time with a limit of 1 (or less)', async () => {
    for (const limit of [1, 0]) {
      const inFlight = new InFlight();
      await mapLimit(ids(4), limit, (id) => inFlight.run(id, () => id, 2));
      expect(inFlight.max).toBe(1);
    }
  });
});
