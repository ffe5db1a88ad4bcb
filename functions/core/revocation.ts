import type { CoreDeps } from './deps.ts';
import { kindContext, kindOf, loadSecret, loadVersion } from './credentials.ts';
import { consumersPending } from './consumers.ts';
import { ConflictError, NotFoundError, RekeyError, RotationInProgressError, TargetError, publicError } from './errors.ts';
import { DETAIL_TYPE, actionFields, emit, type ActionContext } from './events.ts';
import { REVOKED_LABEL, STAGE } from './ports/secret-store.ts';
import { TAG, graceOf } from './secret.ts';
import type { RevokeOutcome } from './ports/credential-kind.ts';

export interface RevokeRequest extends ActionContext {
  /** Which version's credential to kill: a stage (default AWSPREVIOUS) or a version id. */
  stage?: string;
  versionId?: string;
  /**
   * Revoke even though AWSCURRENT has not reached all its consumers (they may still hold the value
   * being revoked). A leak never waits for them; anyone else must say so (`rekey revoke --force`).
   */
  force?: boolean;
  /**
   * The kind's revoke already ran for this version (a leak's rotation killed the credential it
   * replaced as soon as the new one was verified: RotationResult.killed). When it names the
   * version being revoked, the kill is not repeated: what follows — the proof by a refused
   * login, the REKEYREVOKED label, the event — is the same.
   */
  alreadyKilled?: { versionId: string; outcome: RevokeOutcome };
}

export interface RevokeResult {
  secretId: string;
  versionId: string;
  /** Who the revoked credential authenticated (database user, IAM user, provider). */
  username: string;
  /** The revoked credential's own id, where it has one (an IAM access key id, a provider key id). */
  keyId?: string;
  /** How, as the kind says (`password-already-replaced`, `password-scrambled`, `deactivated`, `revoke-endpoint`…). */
  method: string;
  sessionsEnded: number;
  /** A login with the revoked value was tried after the revoke and refused. */
  proven: true;
  /** The credential is disabled, not deleted: the sweep deletes it after this time (a second grace). */
  purgeAfter?: string;
  durationMs: number;
}

/**
 * Make one non-current version's credential stop working, and prove it by a refused login — retried
 * with backoff while the system converges (a deactivated IAM key keeps working for seconds).
 * Idempotent: revoking a dead credential succeeds. How it is killed is the kind's business.
 *
 * A rotation alone does not kill a value under the alternating strategy (it only becomes
 * AWSPREVIOUS), nor an IAM key or a provider key: they keep working until this runs.
 *
 * Unless it is a leak (or `force`), it waits for the consumers: while AWSCURRENT has not reached
 * every consumer its value lists, someone may still use the value being revoked
 * (CONSUMERS_NOT_UPDATED, retryable; the sweep pushes again first).
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
  const mode = request.trigger === 'leak' ? 'leak' : 'grace';
  if (mode !== 'leak' && !request.force && consumersPending(loaded.description.tags, loaded.currentVersionId, loaded.current, secretId)) {
    throw new RekeyError(
      'CONSUMERS_NOT_UPDATED',
      `the consumers of ${secretId} have not all received AWSCURRENT (version ${loaded.currentVersionId}), so version ${old.versionId} stays until a push succeeds (the sweep retries it; --force revokes anyway)`,
      { retryable: true },
    );
  }
  const kind = kindOf(deps, old.value, secretId);
  const ctx = kindContext(deps, loaded);
  const base = { secretId, versionId: old.versionId, strategy: loaded.strategy, ...actionFields(request) };

  try {
    const outcome = request.alreadyKilled?.versionId === old.versionId ? request.alreadyKilled.outcome : await kind.revoke(old.value, ctx, { mode });
    if (!(await refusedEventually(deps, () => kind.canLogIn(old.value, ctx)))) {
      throw new TargetError('REVOKE_NOT_PROVEN', `the revoked credential of ${secretId} (${outcome.principal}${outcome.keyId ? `, key ${outcome.keyId}` : ''}) still works`);
    }
    const holder = loaded.description.versions.find((v) => v.stages.includes(REVOKED_LABEL));
    if (holder?.versionId !== old.versionId) {
      await deps.store.updateVersionStage(secretId, REVOKED_LABEL, {
        moveToVersionId: old.versionId,
        ...(holder ? { removeFromVersionId: holder.versionId } : {}),
      });
    }
    let purgeAfter: string | undefined;
    if (outcome.purgeLater) {
      // Disabled now, deleted after a second grace: a false alarm can still be undone.
      purgeAfter = new Date(deps.now().getTime() + graceOf(loaded.description.tags)).toISOString();
      await deps.store.tagSecret(secretId, { [TAG.purge]: `${old.versionId} ${purgeAfter}` });
    }
    const durationMs = Math.round(performance.now() - started);
    const sessionsEnded = outcome.sessionsEnded ?? 0;
    await emit(deps, DETAIL_TYPE.credentialRevoked, {
      ...base,
      method: outcome.method,
      principal: outcome.principal,
      ...(outcome.keyId ? { keyId: outcome.keyId } : {}),
      sessionsEnded,
      proven: true,
      ...(purgeAfter ? { purgeAfter } : {}),
      durationMs,
    });
    deps.logger.info('credential revoked', { secretId, versionId: old.versionId, method: outcome.method, sessionsEnded, ms: durationMs });
    return {
      secretId,
      versionId: old.versionId,
      username: outcome.principal,
      ...(outcome.keyId ? { keyId: outcome.keyId } : {}),
      method: outcome.method,
      sessionsEnded,
      proven: true,
      ...(purgeAfter ? { purgeAfter } : {}),
      durationMs,
    };
  } catch (error) {
    const safe = publicError(error);
    deps.logger.warn('revoke failed', { secretId, versionId: old.versionId, error: safe });
    await emit(deps, DETAIL_TYPE.revocationFailed, { ...base, durationMs: Math.round(performance.now() - started), error: safe });
    throw error;
  }
}

/** The proof: `canLogIn` answers false, tried as often as testSecret tries (with its backoff). */
async function refusedEventually(deps: CoreDeps, canLogIn: () => Promise<boolean>): Promise<boolean> {
  const attempts = Math.max(1, deps.verifyAttempts);
  for (let attempt = 1; ; attempt++) {
    if (!(await canLogIn())) return true;
    if (attempt >= attempts) return false;
    await sleep(deps.verifyBaseDelayMs * 2 ** (attempt - 1));
  }
}

export interface PurgeResult {
  secretId: string;
  versionId: string;
  /** `purged`: deleted now; `gone`: the version or its kind had nothing left to delete. */
  outcome: 'purged' | 'gone';
}

/** A `rekey:purge` tag: the disabled version and when it may be deleted (undefined once done). */
export function purgeDue(tags: Record<string, string>): { versionId: string; after: Date } | undefined {
  const [versionId, at] = (tags[TAG.purge] ?? '').split(' ');
  if (!versionId || !at || at === 'done') return undefined;
  const after = new Date(at);
  return Number.isNaN(after.getTime()) ? undefined : { versionId, after };
}

/**
 * The second half of a revoke that only disabled a credential (`purgeLater`: an IAM key is
 * deactivated first): once its second grace is over, delete it. Run by the schedule sweep.
 */
export async function purgeCredential(deps: CoreDeps, secretId: string, request: ActionContext): Promise<PurgeResult> {
  const outcome = await deps.lock.tryWithLock(secretId, async (): Promise<PurgeResult> => {
    const loaded = await loadSecret(deps, secretId);
    const due = purgeDue(loaded.description.tags);
    if (!due) throw new NotFoundError(`secret ${secretId} has no credential waiting to be purged`);
    const done = async (result: PurgeResult['outcome']): Promise<PurgeResult> => {
      await deps.store.tagSecret(secretId, { [TAG.purge]: `${due.versionId} done` });
      return { secretId, versionId: due.versionId, outcome: result };
    };
    if (due.versionId === loaded.currentVersionId) return done('gone'); // never delete AWSCURRENT's credential
    let old;
    try {
      old = await loadVersion(deps, secretId, { versionId: due.versionId });
    } catch (error) {
      if (error instanceof NotFoundError) return done('gone');
      throw error;
    }
    const kind = kindOf(deps, old.value, secretId);
    if (!kind.purge) return done('gone');
    await kind.purge(old.value, kindContext(deps, loaded));
    await emit(deps, DETAIL_TYPE.credentialPurged, { secretId, versionId: due.versionId, ...actionFields(request) });
    deps.logger.info('credential purged', { secretId, versionId: due.versionId });
    return done('purged');
  });
  if (!outcome.acquired) throw new RotationInProgressError(secretId, 'another process holds its lock');
  return outcome.value;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
