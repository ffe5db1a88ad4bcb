import type { Sealed } from '../sealed.ts';

export const STAGE = {
  current: 'AWSCURRENT',
  pending: 'AWSPENDING',
  previous: 'AWSPREVIOUS',
} as const;

/** Marks the one version whose credential rekey last revoked (a staging label, so AWS keeps it too). */
export const REVOKED_LABEL = 'REKEYREVOKED';

export interface SecretVersionInfo {
  versionId: string;
  stages: string[];
  createdAt: Date;
}

export interface SecretDescription {
  secretId: string;
  createdAt: Date;
  tags: Record<string, string>;
  rotationEnabled: boolean;
  lastRotatedAt?: Date;
  /** Versions that carry at least one staging label, newest first. */
  versions: SecretVersionInfo[];
}

export interface SecretVersion extends SecretVersionInfo {
  value: Sealed<string>;
}

/** One label change, as `updateVersionStage` takes it. */
export interface StageMove {
  stage: string;
  moveToVersionId?: string;
  removeFromVersionId?: string;
}

/**
 * A secret store with AWS Secrets Manager's semantics.
 *
 * Contract (test/contracts/secret-store.contract.ts runs it against every adapter):
 * - a staging label sits on at most one version of a secret;
 * - moving AWSCURRENT to another version moves AWSPREVIOUS to the version that had AWSCURRENT;
 * - `putSecretValue` is idempotent by version id: same id and value is a no-op, same id with a
 *   different value throws ConflictError; the given stages move to this version;
 * - `updateVersionStage` with `moveToVersionId` requires `removeFromVersionId` to name the version
 *   that holds the label now (ConflictError otherwise), as AWS does;
 * - unknown secret or version → NotFoundError; nothing here ever puts a value in an error.
 */
export interface SecretStore {
  readonly kind: string;
  /** Create a secret whose first version holds AWSCURRENT. ConflictError if it exists. */
  createSecret(
    secretId: string,
    value: Sealed<string>,
    options?: { versionId?: string; tags?: Record<string, string>; description?: string },
  ): Promise<{ versionId: string }>;
  putSecretValue(secretId: string, versionId: string, value: Sealed<string>, stages: string[]): Promise<void>;
  /** By version id, by stage, or both (then both must match). Default: AWSCURRENT. */
  getSecretValue(secretId: string, selector?: { versionId?: string; stage?: string }): Promise<SecretVersion>;
  updateVersionStage(
    secretId: string,
    stage: string,
    move: { moveToVersionId?: string; removeFromVersionId?: string },
  ): Promise<void>;
  describeSecret(secretId: string): Promise<SecretDescription>;
  /** Secrets carrying every given tag (key=value). */
  listSecrets(filter?: { tags?: Record<string, string> }): Promise<SecretDescription[]>;
  tagSecret(secretId: string, tags: Record<string, string>): Promise<void>;
  /** Marks that rotation is configured (AWS: RotationEnabled); local secrets are enabled on create. */
  setRotationEnabled?(secretId: string, enabled: boolean): Promise<void>;
  /**
   * Optional: several label changes, applied in order with `updateVersionStage`'s rules, and a tag
   * merge (as `tagSecret`), as ONE atomic write — all of it or, on any error, none of it. A store
   * that cannot (Secrets Manager: one API call per label) leaves it out, and callers make the same
   * calls one by one. Used where one durable write instead of three shortens a rotation.
   */
  updateVersionStages?(secretId: string, moves: StageMove[], options?: { tags?: Record<string, string> }): Promise<void>;
}
