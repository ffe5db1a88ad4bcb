import { randomUUID } from 'node:crypto';
import type { CoreDeps } from './deps.ts';
import { mapLimit } from './concurrency.ts';
import { DETAIL_TYPE, emit } from './events.ts';
import { RotationInProgressError, ValidationError, publicError } from './errors.ts';
import { inspectSecret } from './inspect.ts';
import type { RotationTrigger } from './ports/rotation-trigger.ts';
import { STAGE } from './ports/secret-store.ts';
import { purgeCredential, purgeDue, revokeCredential } from './revocation.ts';
import { consumersPending, pushToConsumers } from './consumers.ts';
import { TAG } from './secret.ts';
import { batchSummary, type BatchOutcome } from './batch.ts';

export interface SweepOptions {
  concurrency: number;
  /** An AWSPENDING older than this is reported as stuck (event Rotation Stuck). */
  stuckAfterMs: number;
}

export type SweepAction = 'rotated' | 'revoked' | 'purged' | 'pushed' | 'stuck' | 'nothing' | 'failed';

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
 * The schedule tick: for every managed secret (tag rekey:managed=true), finish an interrupted
 * rotation (locally) or report a stuck pending, or start a rotation when AWSCURRENT is older than
 * rekey:max-age, or push AWSCURRENT again to consumers that did not get it (then revoke, if that
 * was all that held the revoke back), or revoke AWSPREVIOUS once its grace is over, or delete a
 * credential a revoke only disabled once its second grace is over. Bounded concurrency; one failing secret never stops the others.
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
      if (status.pendingAgeMs !== undefined) {
        const pending = description.versions.find((v) => v.stages.includes(STAGE.pending))!;
        const stuck = status.pendingAgeMs >= options.stuckAfterMs;
        // Locally the sweep finishes an interrupted rotation (a killed process, a database that was
        // down) at once: the engine resumes the pending version — for the single strategy killed
        // inside finishSecret, the only way its AWSCURRENT works again without a human. On AWS,
        // Secrets Manager reattempts its own rotations and refuses RotateSecret meanwhile.
        if (trigger.mode === 'in-process') {
          try {
            const resumed = await trigger.rotate(secretId, { ...context, reason: 'finish an interrupted rotation' });
            return { secretId, action: 'rotated', ...(resumed.versionId ? { versionId: resumed.versionId } : {}) };
          } catch (error) {
            // Another process is rotating it right now: its own run finishes it.
            if (error instanceof RotationInProgressError && !stuck) return { secretId, action: 'nothing' };
            if (!stuck) throw error;
            deps.logger.warn('could not finish an interrupted rotation', { secretId, error: publicError(error) });
          }
        }
        if (stuck) {
          await emit(deps, DETAIL_TYPE.rotationStuck, { secretId, versionId: pending.versionId, ...context, durationMs: status.pendingAgeMs, reason: 'AWSPENDING older than the stuck threshold' });
          return { secretId, action: 'stuck', versionId: pending.versionId };
        }
      }
      if (status.problem) throw new ValidationError(status.problem, 'SECRET_INVALID');
      if (status.due && status.pendingAgeMs === undefined) {
        const rotation = await trigger.rotate(secretId, { ...context, reason: 'older than rekey:max-age' });
        return { secretId, action: 'rotated', ...(rotation.versionId ? { versionId: rotation.versionId } : {}) };
      }
      let pushed: string | undefined;
      const current = description.versions.find((v) => v.stages.includes(STAGE.current));
      if (current && status.consumers && status.consumers.state !== 'pushed') {
        const value = (await deps.store.getSecretValue(secretId, { versionId: current.versionId })).value;
        if (consumersPending(description.tags, current.versionId, value, secretId)) {
          const report = await pushToConsumers(deps, secretId, current.versionId, value, { ...context, reason: 'consumers did not all receive AWSCURRENT' });
          if (report?.failed.length) {
            const first = report.failed[0]!;
            return { secretId, action: 'failed', versionId: current.versionId, error: { code: first.error.code, message: `${report.failed.length} consumer(s) not updated (${first.consumer}: ${first.error.message}); the previous value stays until a push succeeds` } };
          }
          pushed = current.versionId;
        }
      }
      const rotatedAt = description.lastRotatedAt?.getTime();
      if (status.previousLive && rotatedAt !== undefined && deps.now().getTime() - rotatedAt >= status.graceMs) {
        const revoked = await revokeCredential(deps, secretId, { ...context, stage: STAGE.previous, reason: 'grace period over' });
        return { secretId, action: 'revoked', versionId: revoked.versionId };
      }
      const purge = purgeDue(description.tags);
      if (purge && deps.now().getTime() >= purge.after.getTime()) {
        const purged = await purgeCredential(deps, secretId, { ...context, reason: 'second grace period over' });
        return { secretId, action: purged.outcome === 'purged' ? 'purged' : 'nothing', versionId: purged.versionId };
      }
      if (pushed) return { secretId, action: 'pushed', versionId: pushed };
      return { secretId, action: 'nothing' };
    } catch (error) {
      const safe = publicError(error);
      deps.logger.warn('sweep failed for a secret', { secretId, error: safe });
      return { secretId, action: 'failed', error: safe };
    }
  });
  const counts: Record<SweepAction, number> = { rotated: 0, revoked: 0, purged: 0, pushed: 0, stuck: 0, nothing: 0, failed: 0 };
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

// A purge finishes a revoke; a successful re-push is routine.
const SWEEP_OUTCOME: Record<SweepAction, BatchOutcome> = { rotated: 'succeeded', revoked: 'revoked', purged: 'revoked', pushed: 'skipped', stuck: 'stuck', nothing: 'skipped', failed: 'failed' };
