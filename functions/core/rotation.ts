import type { CoreDeps } from './deps.ts';
import { kindContext, kindOf, loadSecret, loadVersion, renewsInPlace, sessionWatermarkTag, type LoadedSecret } from './credentials.ts';
import { consumersOf, consumersTag, pushToConsumers, type ConsumerReport } from './consumers.ts';
import { NotFoundError, RekeyError, RotationInProgressError, TargetError, publicError } from './errors.ts';
import { DETAIL_TYPE, actionFields, emit, type ActionContext } from './events.ts';
import { STAGE, type StageMove } from './ports/secret-store.ts';
import type { Sealed } from './sealed.ts';
import type { CredentialKind, KindContext, RevokeOutcome, VerifyReport } from './ports/credential-kind.ts';
import { TAG } from './secret.ts';
import { markPrivileged } from './registration.ts';

export type RotationStep = 'createSecret' | 'setSecret' | 'testSecret' | 'finishSecret';
export const ROTATION_STEPS: readonly RotationStep[] = ['createSecret', 'setSecret', 'testSecret', 'finishSecret'];

/** Why and by whom: trigger, actor (the audit trail's "who"), reason, and the batch it belongs to. */
export type RotationRequest = ActionContext;

export interface RotationResult {
  secretId: string;
  versionId: string;
  previousVersionId: string;
  strategy: string;
  /** Who the new credential authenticates (database user, IAM user, provider): identifiers only. */
  username: string;
  /** The new credential's own non-secret id, where it has one (an IAM access key id, a provider key id). */
  keyId?: string;
  /** True when this run finished a rotation an earlier run left pending (after a crash). */
  resumed: boolean;
  /** The push of the new value to the consumers it lists (absent when it lists none). */
  consumers?: ConsumerReport;
  /**
   * The replaced credential, killed as soon as its replacement was verified (`killReplaced`, a
   * leak), with what the kind did. Not yet proven dead: the revoke that follows proves it.
   */
  killed?: { versionId: string; outcome: RevokeOutcome };
  durationMs: number;
}

export interface RotateOptions {
  /**
   * A leak of this version, AWSCURRENT when the rotation starts: kill its credential as soon as
   * the new one is set and verified (after testSecret), while finishSecret promotes the new one,
   * rather than after the whole rotation. Only when the two are different credentials (another
   * user, another key): under the single strategy the change itself replaces the password. See
   * `killReplaced` for the order and why a crash in between is safe.
   */
  killReplaced?: { versionId: string };
}

/** What a step reports besides its events: the consumer push, for finishSecret. */
export interface StepResult {
  consumers?: ConsumerReport;
}

/**
 * Rotation in Secrets Manager's four steps, each idempotent by version id (the
 * ClientRequestToken), so AWS's replays and a rerun after a crash are both safe:
 *
 *   createSecret  store a new value as AWSPENDING before the target is touched (never strand a password)
 *   setSecret     make the pending credential valid on the target
 *   testSecret    log in with it and run a check query
 *   finishSecret  move AWSCURRENT to it (Secrets Manager semantics move AWSPREVIOUS along), then
 *                 push it to the consumers its value lists
 *
 * A credential renewed in place (the single strategy: one user, a new password) cannot be valid
 * beside the current one, so setSecret and testSecret leave it alone and finishSecret changes it,
 * proves it and promotes it in one go, putting the old password back if the proof or the promotion
 * fails (`renewInPlace`): AWSCURRENT logs in between any two steps, whatever the strategy.
 *
 * What a step does to the credential is the kind's business (functions/core/ports/credential-kind.ts):
 * this engine knows stages, locks, retries and events, not databases or providers.
 */
export class RotationEngine {
  constructor(private readonly deps: CoreDeps) {}

  /** Runs the four steps under the secret's lock; resumes a pending version left by a crashed run. */
  async rotate(secretId: string, request: RotationRequest, options: RotateOptions = {}): Promise<RotationResult> {
    const outcome = await this.deps.lock.tryWithLock(secretId, () => this.rotateLocked(secretId, request, options));
    if (!outcome.acquired) throw new RotationInProgressError(secretId, 'another process holds its lock');
    return outcome.value;
  }

  private async rotateLocked(secretId: string, request: RotationRequest, options: RotateOptions): Promise<RotationResult> {
    const started = performance.now();
    const description = await this.deps.store.describeSecret(secretId);
    const pending = description.versions.find((v) => v.stages.includes(STAGE.pending));
    let versionId: string;
    let resumed = false;
    if (pending && pending.stages.includes(STAGE.current)) {
      // A crash inside finishSecret: AWSCURRENT moved, the pending label stayed. Tidy and rotate anew.
      await this.deps.store.updateVersionStage(secretId, STAGE.pending, { removeFromVersionId: pending.versionId });
      versionId = this.deps.newVersionId();
    } else if (pending) {
      versionId = pending.versionId;
      resumed = true;
    } else {
      versionId = this.deps.newVersionId();
    }
    const context: RotationRequest = { ...request };
    const previousVersionId = description.versions.find((v) => v.stages.includes(STAGE.current))?.versionId ?? '';
    let consumers: ConsumerReport | undefined;
    let killed: RotationResult['killed'];
    const handoff: Record<string, string> = {};
    for (const step of ROTATION_STEPS) {
      if (step === 'finishSecret' && options.killReplaced && options.killReplaced.versionId === previousVersionId && previousVersionId !== versionId) {
        // The new credential works (testSecret): the leaked one dies now, while the promotion is written.
        const kill = this.killReplaced(secretId, versionId, previousVersionId);
        const finished = await this.runStep(step, secretId, versionId, context, handoff, kill).then(
          (result) => ({ result }),
          (error: unknown) => ({ error }),
        );
        killed = await kill;
        if ('error' in finished) throw finished.error;
        consumers = finished.result.consumers ?? consumers;
        continue;
      }
      consumers = (await this.runStep(step, secretId, versionId, context, handoff)).consumers ?? consumers;
    }
    const loaded = await loadSecret(this.deps, secretId);
    return {
      secretId,
      versionId,
      previousVersionId,
      strategy: loaded.strategy,
      username: loaded.summary.principal,
      ...(loaded.summary.keyId ? { keyId: loaded.summary.keyId } : {}),
      resumed,
      ...(consumers ? { consumers } : {}),
      ...(killed ? { killed } : {}),
      durationMs: Math.round(performance.now() - started),
    };
  }

  /**
   * A leak's early kill (README, "How a rotation works"): `replaced` is the AWSCURRENT this
   * rotation replaces, `versionId` the pending one that testSecret has just proven. The kind
   * revokes `replaced` as it would after the rotation — with the new credential standing as the
   * current one, so it acts through the same admin and never touches the new credential — while
   * finishSecret promotes.
   *
   * Order and crash safety: the new value is stored (createSecret), valid (setSecret) and proven
   * (testSecret) before anything is killed, so a crash after the kill and before the promotion
   * leaves AWSCURRENT dead and AWSPENDING working: the single strategy's state after a kill inside
   * its finishSecret, recovered the same way (the next run resumes the pending version and
   * promotes it; on a leak, the redelivered task does). The window is only the promotion's write.
   * Never throws: if the kill fails, the revoke after the rotation does it.
   */
  private async killReplaced(secretId: string, versionId: string, replaced: string): Promise<RotationResult['killed']> {
    try {
      const loaded = await loadSecret(this.deps, secretId);
      if (loaded.currentVersionId !== replaced) return undefined;
      const pending = await this.deps.store.getSecretValue(secretId, { versionId, stage: STAGE.pending });
      const kind = kindOf(this.deps, pending.value, secretId);
      // The same credential renewed in place (single strategy): finishSecret's change itself ends the old password.
      if (renewsInPlace(loaded, kind, pending.value)) return undefined;
      const asCurrent = { ...loaded, current: pending.value, currentVersionId: versionId };
      const outcome = await kind.revoke(loaded.current, kindContext(this.deps, asCurrent, { versionId }), { mode: 'leak' });
      this.deps.logger.info('replaced credential killed once its successor was verified', { secretId, versionId: replaced, method: outcome.method });
      return { versionId: replaced, outcome };
    } catch (error) {
      this.deps.logger.warn('could not kill the replaced credential early; it is revoked after the rotation', { secretId, versionId: replaced, error: publicError(error) });
      return undefined;
    }
  }

  /**
   * One step, with events: Rotation Started when a version is created, Succeeded when it becomes
   * current, Failed (then rethrown) on any error. The AWS rotation handler calls this per step.
   * After finishSecret (a promotion or a replay of it) the new value is pushed to its consumers; a
   * failed push fails neither the step nor the rotation (the value is safe as AWSCURRENT): it is
   * reported, and it holds back the revoke of the previous value (DESIGN.md §4, consumers).
   *
   * `handoff` carries tags from testSecret to finishSecret when one run does both (`rotate`), so
   * they ride on the promotion's write; a step run alone (the AWS handler) writes them itself.
   * `killing` is a leak's early kill of the AWSCURRENT being replaced, running beside the
   * promotion: if the promotion fails, Rotation Failed says AWSCURRENT was revoked
   * (`currentRevoked`), so nobody is told it still works.
   */
  async runStep(
    step: RotationStep,
    secretId: string,
    versionId: string,
    request: RotationRequest,
    handoff?: Record<string, string>,
    killing?: Promise<RotationResult['killed']>,
  ): Promise<StepResult> {
    const started = performance.now();
    const base = { secretId, versionId, ...actionFields(request) };
    let finished = false;
    try {
      if (step === 'createSecret') {
        const created = await this.createSecret(secretId, versionId);
        if (created) await emit(this.deps, DETAIL_TYPE.rotationStarted, { ...base, step, strategy: created.strategy });
      } else if (step === 'setSecret') {
        await this.setSecret(secretId, versionId);
      } else if (step === 'testSecret') {
        const tags = await this.testSecret(secretId, versionId);
        if (handoff) Object.assign(handoff, tags);
        else if (Object.keys(tags).length > 0) await this.recordTags(secretId, tags, 'could not record the session watermark');
      } else {
        const promoted = await this.finishSecret(secretId, versionId, handoff);
        if (promoted) {
          if (!promoted.outcomeRecorded) await this.recordOutcome(secretId, 'succeeded', undefined, promoted.tags);
          await emit(this.deps, DETAIL_TYPE.rotationSucceeded, { ...base, step, strategy: promoted.strategy, durationMs: promoted.rotationMs });
        }
        finished = true;
      }
      this.deps.logger.info('rotation step done', { secretId, versionId, step, ms: Math.round(performance.now() - started) });
    } catch (error) {
      const safe = publicError(error);
      this.deps.logger.warn('rotation step failed', { secretId, versionId, step, error: safe });
      await this.recordOutcome(secretId, 'failed', safe.code);
      const killed = killing ? await killing : undefined;
      await emit(this.deps, DETAIL_TYPE.rotationFailed, {
        ...base,
        step,
        durationMs: Math.round(performance.now() - started),
        error: safe,
        ...(killed ? { currentRevoked: killed.versionId } : {}),
      });
      throw error;
    }
    if (!finished) return {};
    const consumers = await this.pushConsumers(secretId, versionId, request);
    return consumers ? { consumers } : {};
  }

  /**
   * After finishSecret: push the version, now AWSCURRENT, to the consumers its value lists —
   * unless they already have it (a replay of the step). Never throws: the rotation is done.
   */
  private async pushConsumers(secretId: string, versionId: string, request: RotationRequest): Promise<ConsumerReport | undefined> {
    try {
      const [description, current] = await Promise.all([this.deps.store.describeSecret(secretId), this.deps.store.getSecretValue(secretId, { stage: STAGE.current })]);
      if (current.versionId !== versionId) return undefined;
      if (consumersOf(current.value, secretId).length === 0) return undefined;
      if (description.tags[TAG.consumers] === consumersTag(versionId, true)) return undefined;
      return await pushToConsumers(this.deps, secretId, versionId, current.value, request);
    } catch (error) {
      // A malformed list or an unreachable store: the failure is reported, never the rotation's.
      const safe = publicError(error);
      this.deps.logger.warn('could not push to the consumers', { secretId, versionId, error: safe });
      await emit(this.deps, DETAIL_TYPE.consumerUpdateFailed, { secretId, versionId, ...actionFields(request), error: safe });
      return { versionId, updated: [], failed: [{ consumer: 'consumers', error: { ...safe, retryable: true } }] };
    }
  }

  /** Returns the strategy when it created the pending version, undefined on a replay. */
  async createSecret(secretId: string, versionId: string): Promise<{ strategy: string } | undefined> {
    const loaded = await loadSecret(this.deps, secretId);
    const mine = loaded.description.versions.find((v) => v.versionId === versionId);
    if (mine?.stages.includes(STAGE.current)) return undefined;
    // On AWS, RotateSecret creates the AWSPENDING version without a value before calling us:
    // a pending version is a replay only when its value is already stored.
    if (mine?.stages.includes(STAGE.pending) && (await this.hasValue(secretId, versionId))) return undefined;
    const other = loaded.description.versions.find((v) => v.stages.includes(STAGE.pending) && v.versionId !== versionId);
    if (other) {
      throw new RotationInProgressError(secretId, `AWSPENDING is on version ${other.versionId}; run \`rekey rotate ${secretId}\` to finish it`);
    }
    // The kind builds the next value (and, for providers, creates it there: an IAM key, an API
    // key); it is stored as AWSPENDING before anything else happens, so it is never stranded.
    const next = await loaded.kind.next(kindContext(this.deps, loaded, { versionId }));
    loaded.kind.validate(next, secretId);
    await this.deps.store.putSecretValue(secretId, versionId, next, [STAGE.pending]);
    return { strategy: loaded.strategy };
  }

  async setSecret(secretId: string, versionId: string): Promise<void> {
    const { loaded, pending } = await this.loadPending(secretId, versionId);
    if (!pending) return; // already current: nothing to do on a replay
    const kind = kindOf(this.deps, pending, secretId);
    const admin = kind.describe(pending, secretId, loaded.description.tags).adminSecretId;
    if (admin) await markPrivileged(this.deps, admin);
    // Renewed in place, the credential changes at finishSecret, which proves and promotes it at once.
    if (renewsInPlace(loaded, kind, pending)) return;
    // The kind makes the pending value valid; replaying it is harmless (a database password set
    // again; nothing at all for a provider key, which works once created).
    await kind.apply(pending, kindContext(this.deps, loaded, { versionId }));
  }

  /**
   * Returns the tags to record with the version (`rekey:session-watermark`, from the kind's
   * verify report), to be written by the caller: see `runStep`.
   */
  async testSecret(secretId: string, versionId: string): Promise<Record<string, string>> {
    // RotateImmediately=false sends a lone testSecret for a pending version AWS made itself: with
    // no value to test, the configuration test is that AWSCURRENT logs in through this function.
    const version = await loadVersion(this.deps, secretId, { versionId }).catch((error: unknown) => {
      if (error instanceof NotFoundError) return loadVersion(this.deps, secretId, { stage: STAGE.current });
      throw error;
    });
    const loaded = await loadSecret(this.deps, secretId);
    const kind = kindOf(this.deps, version.value, secretId);
    const pendingInPlace = version.versionId === versionId && loaded.currentVersionId !== versionId && renewsInPlace(loaded, kind, version.value);
    // Renewed in place, the pending value is not valid before finishSecret changes it (and proves it there).
    if (pendingInPlace) return {};
    const report = await this.verifyEventually(kind, version.value, kindContext(this.deps, loaded, { versionId }));
    // Only a report on this very version (not the AWSCURRENT a lone test falls back to) is kept.
    return version.versionId === versionId ? sessionWatermarkTag(versionId, report?.sessionWatermark) : {};
  }

  /** `kind.verify`, retrying a refused login with backoff: a change may still be propagating (IAM keys take seconds). */
  private async verifyEventually(kind: CredentialKind, value: Sealed<string>, ctx: KindContext): Promise<VerifyReport | void> {
    const attempts = Math.max(1, this.deps.verifyAttempts);
    for (let attempt = 1; ; attempt++) {
      try {
        return await kind.verify(value, ctx);
      } catch (error) {
        const retry = error instanceof TargetError && (error.retryable || error.code === 'LOGIN_FAILED');
        if (!retry || attempt >= attempts) throw error;
        await sleep(this.deps.verifyBaseDelayMs * 2 ** (attempt - 1));
      }
    }
  }

  /**
   * Returns the strategy and rotation time when it promoted the version, undefined on a replay.
   * Where the store can (`updateVersionStages`), the promotion, the removal of AWSPENDING and the
   * `rekey:last-outcome` tags are one atomic write (`outcomeRecorded`): one fsync'd write instead
   * of three, and no state in which AWSCURRENT moved but AWSPENDING stayed. Otherwise (Secrets
   * Manager) they are separate calls, and a crash between them is tidied by the next rotation.
   */
  async finishSecret(
    secretId: string,
    versionId: string,
    extraTags: Record<string, string> = {},
  ): Promise<{ strategy: string; rotationMs: number; outcomeRecorded: boolean; tags: Record<string, string> } | undefined> {
    const loaded = await loadSecret(this.deps, secretId);
    const mine = loaded.description.versions.find((v) => v.versionId === versionId);
    const promote = loaded.currentVersionId !== versionId;
    if (promote && !mine?.stages.includes(STAGE.pending)) {
      throw new RekeyError('VERSION_NOT_PENDING', `version ${versionId} of ${secretId} is neither AWSPENDING nor AWSCURRENT`);
    }
    const moves: StageMove[] = [
      ...(promote ? [{ stage: STAGE.current, moveToVersionId: versionId, removeFromVersionId: loaded.currentVersionId }] : []),
      ...(mine?.stages.includes(STAGE.pending) ? [{ stage: STAGE.pending, removeFromVersionId: versionId }] : []),
    ];
    const promoted = promote && mine ? { strategy: loaded.strategy, rotationMs: Math.max(0, this.deps.now().getTime() - mine.createdAt.getTime()) } : undefined;
    if (moves.length === 0) return undefined;
    /** The moves, with the outcome tags in the same write where the store can; true when they were. */
    const write = async (tags: Record<string, string>): Promise<boolean> => {
      if (this.deps.store.updateVersionStages) {
        await this.deps.store.updateVersionStages(secretId, moves, promoted ? { tags: { ...this.outcomeTags('succeeded'), ...tags } } : {});
        return true;
      }
      for (const move of moves) {
        const { stage, ...where } = move;
        await this.deps.store.updateVersionStage(secretId, stage, where);
      }
      return false;
    };
    const pending = promote ? (await this.deps.store.getSecretValue(secretId, { versionId, stage: STAGE.pending })).value : undefined;
    const kind = pending && kindOf(this.deps, pending, secretId);
    if (pending && kind && renewsInPlace(loaded, kind, pending)) {
      const tags = { ...extraTags };
      const outcomeRecorded = await this.renewInPlace(loaded, kind, pending, versionId, (verified) => write(Object.assign(tags, verified)));
      return promoted && { ...promoted, outcomeRecorded, tags };
    }
    const outcomeRecorded = await write(extraTags);
    return promoted && { ...promoted, outcomeRecorded, tags: extraTags };
  }

  /**
   * The change of a credential renewed in place (the single strategy), made by finishSecret: the
   * kind sets the new password, and while it still holds the session it acted through, the new
   * password is proven by a fresh login (retried with backoff) and `promote` writes the promotion
   * with verify's tags. If the proof fails, or the promotion surely did not happen, the kind puts
   * AWSCURRENT's password back and the error is rethrown: AWSCURRENT still logs in and the rotation
   * can be rerun. Only a process that dies inside this call, between the change and the
   * promotion's write, leaves AWSCURRENT stale; the new password is stored as AWSPENDING and the
   * next run (which tries it too) finishes the rotation.
   */
  private async renewInPlace(
    loaded: LoadedSecret,
    kind: CredentialKind,
    pending: Sealed<string>,
    versionId: string,
    promote: (tags: Record<string, string>) => Promise<boolean>,
  ): Promise<boolean> {
    const ctx = kindContext(this.deps, loaded, { versionId });
    let recorded = false;
    let kept: { error: unknown } | undefined;
    await kind.apply(pending, ctx, {
      confirm: async () => {
        const report = await this.verifyEventually(kind, pending, ctx);
        try {
          recorded = await promote(sessionWatermarkTag(versionId, report?.sessionWatermark));
        } catch (error) {
          // Promoted after all (a failure after the write), or cannot tell: the new password stays,
          // since undoing it under a promoted AWSCURRENT would break the credential for good.
          const landed = await this.isCurrent(loaded.secretId, versionId).catch(() => undefined);
          if (landed === false) throw error;
          if (landed) kept = { error };
          else {
            const message = `the new credential of ${loaded.secretId} is set and proven, but its promotion could not be confirmed: it stays AWSPENDING, and AWSCURRENT may not log in until the rotation is finished`;
            kept = { error: new RekeyError('PROMOTION_UNCONFIRMED', message, { retryable: true, cause: error }) };
          }
        }
      },
    });
    if (kept) throw kept.error;
    return recorded;
  }

  private async isCurrent(secretId: string, versionId: string): Promise<boolean> {
    const { versions } = await this.deps.store.describeSecret(secretId);
    return versions.some((v) => v.versionId === versionId && v.stages.includes(STAGE.current));
  }

  private async hasValue(secretId: string, versionId: string, stage: string | undefined = STAGE.pending): Promise<boolean> {
    try {
      await this.deps.store.getSecretValue(secretId, stage ? { versionId, stage } : { versionId });
      return true;
    } catch (error) {
      if (error instanceof NotFoundError) return false;
      throw error;
    }
  }

  private async loadPending(secretId: string, versionId: string): Promise<{ loaded: LoadedSecret; pending: Sealed<string> | undefined }> {
    const loaded = await loadSecret(this.deps, secretId);
    if (loaded.currentVersionId === versionId) return { loaded, pending: undefined };
    const version = await this.deps.store.getSecretValue(secretId, { versionId, stage: STAGE.pending });
    return { loaded, pending: version.value };
  }

  private outcomeTags(outcome: 'succeeded' | 'failed', code?: string): Record<string, string> {
    return { [TAG.lastOutcome]: code ? `${outcome} ${code}` : outcome, [TAG.lastOutcomeAt]: this.deps.now().toISOString() };
  }

  private async recordOutcome(secretId: string, outcome: 'succeeded' | 'failed', code?: string, extraTags: Record<string, string> = {}): Promise<void> {
    await this.recordTags(secretId, { ...this.outcomeTags(outcome, code), ...extraTags }, 'could not record rotation outcome');
  }

  private async recordTags(secretId: string, tags: Record<string, string>, failure: string): Promise<void> {
    try {
      await this.deps.store.tagSecret(secretId, tags);
    } catch (error) {
      // Bookkeeping: failing to record it must not turn a rotation into a failure (a missing
      // watermark only means the revoke ends every session, as before).
      this.deps.logger.warn(failure, { secretId, error: publicError(error) });
    }
  }

}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

