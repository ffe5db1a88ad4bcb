import type { CoreDeps } from './deps.ts';
import type { ActionContext } from './events.ts';
import { STAGE } from './ports/secret-store.ts';
import { graceOf, isProduction } from './secret.ts';
import { ValidationError } from './errors.ts';
import type { RotationEngine, RotationResult } from './rotation.ts';
import { revokeCredential, type RevokeResult } from './revocation.ts';

export interface RotateNowResult extends RotationResult {
  outcome: 'succeeded';
  graceMs: number;
  /** Present when `rekey:grace` is 0: the previous credential died with the rotation. */
  revoked?: RevokeResult;
  /**
   * `rekey:grace` is 0 but a consumer did not receive the new value, so the previous one was not
   * revoked (the sweep pushes again and revokes once a push succeeds).
   */
  revokeBlocked?: { code: string; message: string };
}

/**
 * What on-call means by "rotate": the four steps now, then — only when the secret's grace is 0 —
 * the previous credential revoked at once. Shared by the CLI and the ops Lambda. A manual rotation
 * of a production secret needs a reason.
 */
export async function rotateNow(
  deps: CoreDeps,
  rotation: RotationEngine,
  secretId: string,
  request: ActionContext,
): Promise<RotateNowResult> {
  const { tags } = await deps.store.describeSecret(secretId);
  assertReasonForProduction([{ secretId, tags }], request);
  const result = await rotation.rotate(secretId, request);
  const graceMs = graceOf(tags);
  if (graceMs !== 0) return { ...result, outcome: 'succeeded', graceMs };
  if (result.consumers?.failed.length) {
    return { ...result, outcome: 'succeeded', graceMs, revokeBlocked: { code: 'CONSUMERS_NOT_UPDATED', message: 'a consumer did not receive the new value: the previous one stays valid until a push succeeds' } };
  }
  const revoked = await revokeCredential(deps, secretId, { ...request, stage: STAGE.previous, reason: 'rekey:grace is 0' });
  return { ...result, outcome: 'succeeded', graceMs, revoked };
}

/**
 * A person rotating production by hand must say why (it lands in events, chat and the audit
 * trail). Checked for a whole selection before anything runs, naming every secret concerned.
 */
export function assertReasonForProduction(secrets: { secretId: string; tags: Record<string, string> }[], request: ActionContext): void {
  if (request.trigger !== 'manual' || request.reason?.trim()) return;
  const production = secrets.filter((s) => isProduction(s.tags)).map((s) => s.secretId);
  if (production.length === 0) return;
  const named = production.slice(0, 20).join(', ') + (production.length > 20 ? ` and ${production.length - 20} more` : '');
  throw new ValidationError(`a reason is required to rotate production secrets (rekey:environment=prod) by hand; give one with --reason: ${named}`, 'REASON_REQUIRED');
}
