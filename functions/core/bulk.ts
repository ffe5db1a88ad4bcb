import { randomUUID } from 'node:crypto';
import type { CoreDeps } from './deps.ts';
import type { RotationEngine } from './rotation.ts';
import { mapLimit } from './concurrency.ts';
import { DETAIL_TYPE, emit, type ActionContext } from './events.ts';
import { publicError } from './errors.ts';
import { inspectSecret, type Compliance } from './inspect.ts';
import { rotateNow } from './operations.ts';
export { assertReasonForProduction } from './operations.ts';
import type { SecretDescription } from './ports/secret-store.ts';
import { TAG } from './secret.ts';
import { batchSummary } from './batch.ts';

/** Which secrets a rotation command means: named ones, every managed one past max age, or every managed one with some tags. */
export interface RotationSelection {
  secretIds?: string[];
  due?: boolean;
  tags?: Record<string, string>;
}

/** What `rotate` would do to one secret (shown by --dry-run, checked before anything runs). */
export interface RotationPlan {
  secretId: string;
  tags: Record<string, string>;
  strategy?: string;
  environment?: string;
  currentAgeMs?: number;
  maxAgeMs?: number;
  compliance: Compliance;
  graceMs: number;
  /** rekey:grace is 0: the previous credential is revoked right after the rotation. */
  revokesPrevious: boolean;
  /** An interrupted rotation (AWSPENDING) that this run finishes instead of starting anew. */
  resumes: boolean;
  /** The value cannot be used (the rotation will fail): why, never the value. */
  problem?: string;
}

/** Reads what is needed to plan (no value leaves the store's boundary); bulk selections take managed secrets only. */
export async function planRotations(deps: CoreDeps, selection: RotationSelection, concurrency = 8): Promise<RotationPlan[]> {
  let described: SecretDescription[];
  if (selection.secretIds) {
    described = await mapLimit(selection.secretIds, concurrency, (id) => deps.store.describeSecret(id));
  } else {
    described = await deps.store.listSecrets({ tags: { ...selection.tags, [TAG.managed]: 'true' } });
    described.sort((a, b) => a.secretId.localeCompare(b.secretId));
  }
  const plans = await mapLimit(described, concurrency, async (d): Promise<RotationPlan> => {
    const status = await inspectSecret(deps, d.secretId, d);
    return {
      secretId: d.secretId,
      tags: d.tags,
      ...(status.strategy ? { strategy: status.strategy } : {}),
      ...(d.tags[TAG.environment] ? { environment: d.tags[TAG.environment] } : {}),
      ...(status.currentAgeMs !== undefined ? { currentAgeMs: status.currentAgeMs } : {}),
      ...(status.maxAgeMs !== undefined ? { maxAgeMs: status.maxAgeMs } : {}),
      compliance: status.compliance,
      graceMs: status.graceMs,
      revokesPrevious: status.graceMs === 0,
      resumes: status.pendingAgeMs !== undefined,
      ...(status.problem ? { problem: status.problem } : {}),
    };
  });
  return selection.due ? plans.filter((p) => p.compliance === 'DUE' || p.compliance === 'OVERDUE') : plans;
}

export interface BulkItem {
  secretId: string;
  outcome: 'succeeded' | 'failed';
  durationMs: number;
  versionId?: string;
  /** The previous credential was revoked at once (rekey:grace = 0). */
  revokedPrevious?: boolean;
  resumed?: boolean;
  error?: { code: string; message: string };
}

export interface BulkReport {
  batchId: string;
  items: BulkItem[];
  counts: { succeeded: number; failed: number };
  durationMs: number;
}

/**
 * Rotates each secret as `rotateNow` does, at most `concurrency` at once; one failure never stops
 * the others. Every event carries the batch id; a Batch Completed event closes the batch so chat
 * can summarise the successes in one message.
 */
export async function rotateMany(
  deps: CoreDeps,
  rotation: RotationEngine,
  secretIds: readonly string[],
  options: { concurrency: number; request: ActionContext; onItem?: (item: BulkItem) => void },
): Promise<BulkReport> {
  const started = performance.now();
  const batchId = randomUUID();
  const request: ActionContext = { ...options.request, batchId };
  const items = await mapLimit(secretIds, options.concurrency, async (secretId): Promise<BulkItem> => {
    const itemStarted = performance.now();
    let item: BulkItem;
    try {
      const result = await rotateNow(deps, rotation, secretId, request);
      const notPushed = result.consumers?.failed ?? [];
      item = {
        // Rotated, but a consumer still holds the old value: reported as a failure to act on.
        secretId,
        outcome: notPushed.length ? 'failed' : 'succeeded',
        durationMs: Math.round(performance.now() - itemStarted),
        versionId: result.versionId,
        ...(result.revoked ? { revokedPrevious: true } : {}),
        ...(result.resumed ? { resumed: true } : {}),
        ...(notPushed.length
          ? { error: { code: notPushed[0]!.error.code, message: `rotated, but ${notPushed.length} consumer(s) not updated: ${notPushed.map((f) => f.consumer).join(', ')}` } }
          : {}),
      };
    } catch (error) {
      item = { secretId, outcome: 'failed', durationMs: Math.round(performance.now() - itemStarted), error: publicError(error) };
    }
    options.onItem?.(item);
    return item;
  });
  const counts = { succeeded: items.filter((i) => i.outcome === 'succeeded').length, failed: items.filter((i) => i.outcome === 'failed').length };
  const durationMs = Math.round(performance.now() - started);
  deps.logger.info('bulk rotation done', { batchId, ...counts, ms: durationMs });
  await emit(deps, DETAIL_TYPE.batchCompleted, { ...batchSummary('bulk', items), ...request, batchId, durationMs });
  return { batchId, items, counts, durationMs };
}
