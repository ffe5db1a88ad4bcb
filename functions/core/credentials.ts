import type { CoreDeps } from './deps.ts';
import { ValidationError } from './errors.ts';
import { STAGE, type SecretDescription } from './ports/secret-store.ts';
import type { Login } from './ports/target.ts';
import { parseDatabaseSecret, strategyOf, type DatabaseSecret, type Strategy } from './secret.ts';

/** A secret with its current value parsed and everything rotation needs to act on it. */
export interface LoadedSecret {
  secretId: string;
  description: SecretDescription;
  currentVersionId: string;
  current: DatabaseSecret;
  strategy: Strategy;
}

export async function loadSecret(deps: CoreDeps, secretId: string): Promise<LoadedSecret> {
  const description = await deps.store.describeSecret(secretId);
  const currentVersion = await deps.store.getSecretValue(secretId, { stage: STAGE.current });
  const current = parseDatabaseSecret(currentVersion.value, secretId);
  return {
    secretId,
    description,
    currentVersionId: currentVersion.versionId,
    current,
    strategy: strategyOf(current, description.tags),
  };
}

export async function loadVersion(deps: CoreDeps, secretId: string, selector: { versionId?: string; stage?: string }): Promise<{ versionId: string; stages: string[]; value: DatabaseSecret }> {
  const version = await deps.store.getSecretValue(secretId, selector);
  return { versionId: version.versionId, stages: version.stages, value: parseDatabaseSecret(version.value, secretId) };
}

/**
 * The admin credential named by `masterarn` (its AWSCURRENT value), if the secret has one. The
 * admin acts on the server the secret names (its host, port and TLS setting), so a stale host in
 * the admin secret cannot send a password change to another server.
 */
export async function loadAdmin(deps: CoreDeps, secret: DatabaseSecret): Promise<Login | undefined> {
  if (!secret.masterarn) return undefined;
  const admin = await loadVersion(deps, secret.masterarn, { stage: STAGE.current });
  if (admin.value.engine !== secret.engine && !(isMysqlFamily(admin.value.engine) && isMysqlFamily(secret.engine))) {
    throw new ValidationError(`admin secret ${secret.masterarn} is for engine ${admin.value.engine}, not ${secret.engine}`);
  }
  return { ...admin.value, host: secret.host, port: secret.port, ...(secret.ssl !== undefined ? { ssl: secret.ssl } : {}) };
}

const isMysqlFamily = (engine: string) => engine === 'mysql' || engine === 'mariadb';

/** How a target acts for this secret: as the admin when there is one, else as the user itself. */
export function actingAs(admin: Login | undefined, selfLogins: Login[]): { admin?: Login; self?: Login[] } {
  return admin ? { admin } : { self: selfLogins };
}
