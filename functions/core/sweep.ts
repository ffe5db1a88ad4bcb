import { randomUUID } from 'node:crypto';
import type { CoreDeps } from './deps.ts';
import { mapLimit } from './concurrency.ts';
import { DETAIL_TYPE, emit } from './events.ts';
import { ValidationError, publicError } from './errors.ts';
import { inspectSecret } from './inspect.ts';
import type { RotationTrigger } from './ports/rotation-trigger.ts';
import { STAGE } from './ports/secret-store.ts';
import { revokeCredential } from './revocation.ts';
import { TAG } from './secret.ts';
import { batchSummary, type BatchOutcome } from './batch.ts';

export interface SweepOptions {
  concurrency: number;
  /** An AWSPENDING older than this is reported as stuck (event Rotation Stuck). */
  stuckAfterMs: number;
}

export type SweepAction = 'rotated' | 'revoked' | 'stuck' | 'nothing' | 'failed';

export interface SweepItem {
  secretId: string;
  action: SweepAction;
  versionId?: string;
  error?: { code: string; message: string };
}

export interface SweepReport {
  batchId: string;
  items: SweepItem[];
  counts: Record<SweepAction, number>;
}

/** The sweep acts as `schedule`; every event of one sweep carries its batch id. */
const SWEEP_ACTOR = 'schedule';

/**
 * The schedule tick: for every managed secret (tag rekey:managed=true), report a stuck pending,
 * or start a rotation when AWSCURRENT is older than rekey:max-age, or revoke AWSPREVIOUS once its
 * grace is over. Bounded concurrency; one failing secret never stops the others.
 */
export async function sweep(deps: CoreDeps, trigger: RotationTrigger, options: SweepOptions): Promise<SweepReport> {
  const started = performance.now();
  const batchId = randomUUID();
  const context = { trigger: 'schedule' as const, actor: SWEEP_ACTOR, batchId };
  const secrets = await deps.store.listSecrets({ tags: { [TAG.managed]: 'true' } });
  const items = await mapLimit(secrets, options.concurrency, async (description): Promise<SweepItem> => {
    const { secretId } = description;
    try {
      const status = await inspectSecret(deps, secretId, description);
      if (status.pendingAgeMs !== undefined && status.pendingAgeMs >= options.stuckAfterMs) {
        const pending = description.versions.find((v) => v.stages.includes(STAGE.pending))!;
        await emit(deps, DETAIL_TYPE.rotationStuck, { secretId, versionId: pending.versionId, ...context, durationMs: status.pendingAgeMs, reason: 'AWSPENDING older than the stuck threshold' });
        return { secretId, action: 'stuck', versionId: pending.versionId };
      }
      if (status.problem) throw new ValidationError(status.problem, 'SECRET_INVALID');
      if (status.due && status.pendingAgeMs === undefined) {
        const rotation = await trigger.rotate(secretId, { ...context, reason: 'older than rekey:max-age' });
        return { secretId, action: 'rotated', ...(rotation.versionId ? { versionId: rotation.versionId } : {}) };
      }
      const rotatedAt = description.lastRotatedAt?.getTime();
      if (status.previousLive && rotatedAt !== undefined && deps.now().getTime() - rotatedAt >= status.graceMs) {
        const revoked = await revokeCredential(deps, secretId, { ...context, stage: STAGE.previous, reason: 'grace period over' });
        return { secretId, action: 'revoked', versionId: revoked.versionId };
      }
      return { secretId, action: 'nothing' };
    } catch (error) {
      const safe = publicError(error);
      deps.logger.warn('sweep failed for a secret', { secretId, error: safe });
      return { secretId, action: 'failed', error: safe };
    }
  });
  const counts: Record<SweepAction, number> = { rotated: 0, revoked: 0, stuck: 0, nothing: 0, failed: 0 };
  for (const item of items) counts[item.action]++;
  deps.logger.info('sweep done', { ...counts, secrets: items.length });
  await emit(deps, DETAIL_TYPE.batchCompleted, {
    ...batchSummary(
      'sweep',
      items.map((i) => ({ ...i, outcome: SWEEP_OUTCOME[i.action] })),
    ),
    ...context,
    // On AWS "rotated" means Secrets Manager accepted RotateSecret; each rotation reports itself later.
    ...(trigger.mode === 'async' ? { rotationsAsync: true } : {}),
    durationMs: Math.round(performance.now() - started),
  });
  return { batchId, items, counts };
}

const SWEEP_OUTCOME: Record<SweepAction, BatchOutcome> = { rotated: 'succeeded', revoked: 'revoked', stuck: 'stuck', nothing: 'skipped', failed: 'failed' };
