import type { CoreDeps } from './deps.ts';
import { actingAs, loadAdmin, loadSecret, loadVersion } from './credentials.ts';
import { ConflictError, NotFoundError, TargetError, publicError } from './errors.ts';
import { DETAIL_TYPE, actionFields, emit, type ActionContext } from './events.ts';
import { generatePassword } from './password.ts';
import { REVOKED_LABEL, STAGE } from './ports/secret-store.ts';
import { RotationInProgressError } from './errors.ts';

export interface RevokeRequest extends ActionContext {
  /** Which version's credential to kill: a stage (default AWSPREVIOUS) or a version id. */
  stage?: string;
  versionId?: string;
}

export interface RevokeResult {
  secretId: string;
  versionId: string;
  username: string;
  /** How: the user's password was already replaced (single), or it was scrambled now (alternating). */
  method: 'password-already-replaced' | 'password-scrambled';
  sessionsEnded: number;
  /** A login with the revoked value was tried after the revoke and refused. */
  proven: true;
  durationMs: number;
}

/**
 * Make one non-current version's credential stop working, end the sessions opened with it, and
 * prove it by a refused login. Idempotent: revoking a dead credential succeeds.
 *
 * A rotation alone does not kill a value under the alternating strategy (it only becomes
 * AWSPREVIOUS): the inactive user keeps that password until this runs and scrambles it.
 */
export async function revokeCredential(deps: CoreDeps, secretId: string, request: RevokeRequest): Promise<RevokeResult> {
  const outcome = await deps.lock.tryWithLock(secretId, () => revokeLocked(deps, secretId, request));
  if (!outcome.acquired) throw new RotationInProgressError(secretId, 'another process holds its lock');
  return outcome.value;
}

async function revokeLocked(deps: CoreDeps, secretId: string, request: RevokeRequest): Promise<RevokeResult> {
  const started = performance.now();
  const loaded = await loadSecret(deps, secretId);
  const selector = request.versionId ? { versionId: request.versionId } : { stage: request.stage ?? STAGE.previous };
  let old;
  try {
    old = await loadVersion(deps, secretId, selector);
  } catch (error) {
    if (error instanceof NotFoundError) {
      throw new NotFoundError(`secret ${secretId} has no ${request.versionId ? `version ${request.versionId}` : `${selector.stage} version`} to revoke`);
    }
    throw error;
  }
  if (old.versionId === loaded.currentVersionId) {
    throw new ConflictError(`version ${old.versionId} of ${secretId} is AWSCURRENT: rotate first, then revoke it`, 'REVOKE_CURRENT');
  }
  if (old.stages.includes(STAGE.pending)) {
    throw new ConflictError(`version ${old.versionId} of ${secretId} is AWSPENDING: finish the rotation first`, 'REVOKE_PENDING');
  }
  const { current } = loaded;
  const target = deps.targets.forEngine(current.engine);
  const admin = await loadAdmin(deps, current);
  const via = actingAs(admin, [current]);
  const base = { secretId, versionId: old.versionId, strategy: loaded.strategy, ...actionFields(request) };

  try {
    let method: RevokeResult['method'];
    let startedBefore: Date | undefined;
    if (old.value.username === current.username) {
      // Same user: the rotation already replaced its password. Sessions opened before the
      // promotion may still hold the old credential, so they end (later ones are spared where the
      // target can tell them apart).
      method = 'password-already-replaced';
      startedBefore = loaded.description.lastRotatedAt ?? deps.now();
    } else {
      // The inactive user of an alternating pair: give it a password nobody knows.
      method = 'password-scrambled';
      await target.setPassword(old.value, old.value.username, generatePassword(), via);
    }
    const sessionsEnded = await target.endSessions(old.value, old.value.username, via, startedBefore ? { startedBefore } : {});
    if (await target.canLogIn(old.value)) {
      throw new TargetError('REVOKE_NOT_PROVEN', `the revoked credential of ${secretId} (user ${old.value.username}) still logs in`);
    }
    const holder = loaded.description.versions.find((v) => v.stages.includes(REVOKED_LABEL));
    if (holder?.versionId !== old.versionId) {
      await deps.store.updateVersionStage(secretId, REVOKED_LABEL, {
        moveToVersionId: old.versionId,
        ...(holder ? { removeFromVersionId: holder.versionId } : {}),
      });
    }
    const durationMs = Math.round(performance.now() - started);
    await emit(deps, DETAIL_TYPE.credentialRevoked, { ...base, method, sessionsEnded, proven: true, durationMs });
    deps.logger.info('credential revoked', { secretId, versionId: old.versionId, method, sessionsEnded, ms: durationMs });
    return { secretId, versionId: old.versionId, username: old.value.username, method, sessionsEnded, proven: true, durationMs };
  } catch (error) {
    const safe = publicError(error);
    deps.logger.warn('revoke failed', { secretId, versionId: old.versionId, error: safe });
    await emit(deps, DETAIL_TYPE.revocationFailed, { ...base, durationMs: Math.round(performance.now() - started), error: safe });
    throw error;
  }
}

