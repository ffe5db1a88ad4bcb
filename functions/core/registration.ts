import type { CoreDeps } from './deps.ts';
import { kindOf, validateStoredValue } from './credentials.ts';
import { NotFoundError, publicError } from './errors.ts';
import { STAGE } from './ports/secret-store.ts';
import type { Sealed } from './sealed.ts';
import { TAG, isPrivileged } from './secret.ts';

/**
 * `rekey put`: store a value as AWSCURRENT — a new secret, or a new version of an existing one —
 * with its tags (`rekey:managed=true` unless a tag says otherwise). The value is refused, naming
 * the field, when rotation could not use it. The admin secret it names (`masterarn`) is marked
 * privileged at once, so a leak of that admin scores as one before any rotation has used it.
 */
export async function storeValue(
  deps: Pick<CoreDeps, 'store' | 'kinds' | 'consumers' | 'newVersionId' | 'logger'>,
  secretId: string,
  value: Sealed<string>,
  tagsGiven: Record<string, string> = {},
): Promise<{ versionId: string; created: boolean }> {
  const tags = { [TAG.managed]: 'true', ...tagsGiven };
  const managed = tags[TAG.managed] !== 'false';
  validateStoredValue(deps, value, secretId, { managed });
  let result: { versionId: string; created: boolean };
  try {
    await deps.store.describeSecret(secretId);
    const versionId = deps.newVersionId();
    await deps.store.putSecretValue(secretId, versionId, value, [STAGE.current]);
    await deps.store.tagSecret(secretId, tags);
    result = { versionId, created: false };
  } catch (error) {
    if (!(error instanceof NotFoundError)) throw error;
    result = { versionId: (await deps.store.createSecret(secretId, value, { tags })).versionId, created: true };
  }
  if (managed) {
    const admin = kindOf(deps, value, secretId).describe(value, secretId, tags).adminSecretId;
    if (admin) await markPrivileged(deps, admin);
  }
  return result;
}

/** An admin secret's leak is riskier: say so on it, once, so the risk scorer can see it. */
export async function markPrivileged(deps: Pick<CoreDeps, 'store' | 'logger'>, adminSecretId: string): Promise<void> {
  try {
    const { tags } = await deps.store.describeSecret(adminSecretId);
    if (isPrivileged(tags)) return;
    await deps.store.tagSecret(adminSecretId, { [TAG.privileged]: 'true' });
  } catch (error) {
    // Bookkeeping only: the admin may not be stored yet (its rotation marks it later), and on AWS
    // the deployment marks admin secrets `rekey:admin=true` and IAM lets rekey tag nothing else on
    // them, so a refusal here must not fail the caller.
    deps.logger.debug('could not mark the admin secret privileged', { secretId: adminSecretId, error: publicError(error) });
  }
}
