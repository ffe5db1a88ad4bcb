import type { CoreDeps } from './deps.ts';
import { validateConsumers } from './consumers.ts';
import { ValidationError } from './errors.ts';
import type { CredentialKind, CredentialSummary, KindContext } from './ports/credential-kind.ts';
import { STAGE, type SecretDescription } from './ports/secret-store.ts';
import type { Sealed } from './sealed.ts';
import { TAG } from './secret.ts';

/**
 * A secret with its current value and the kind that handles it. The core never parses a value
 * itself: it reads the `engine` field to find the kind (DESIGN.md §3), and the kind does the rest.
 */
export interface LoadedSecret {
  secretId: string;
  description: SecretDescription;
  currentVersionId: string;
  /** AWSCURRENT's value (JSON), sealed. */
  current: Sealed<string>;
  kind: CredentialKind;
  /** AWSCURRENT described by its kind: identifiers only. */
  summary: CredentialSummary;
  strategy: string;
}

export interface LoadedVersion {
  versionId: string;
  stages: string[];
  value: Sealed<string>;
}

/** The `engine` a value names; ValidationError naming the field (never the value) otherwise. */
export function engineOf(value: Sealed<string>, secretId: string): string {
  let raw: unknown;
  try {
    raw = JSON.parse(value.reveal());
  } catch {
    throw new ValidationError(`secret ${secretId} is not valid JSON`, 'SECRET_INVALID');
  }
  const engine = raw && typeof raw === 'object' && !Array.isArray(raw) ? (raw as { engine?: unknown }).engine : undefined;
  if (typeof engine !== 'string' || engine.length === 0) throw new ValidationError(`secret ${secretId} has invalid or missing fields: engine`, 'SECRET_INVALID');
  return engine;
}

/** The kind that handles `value`, having checked the value is one it can use. */
export function kindOf(deps: Pick<CoreDeps, 'kinds'>, value: Sealed<string>, secretId: string): CredentialKind {
  const engine = engineOf(value, secretId);
  let kind: CredentialKind;
  try {
    kind = deps.kinds.forEngine(engine);
  } catch {
    throw new ValidationError(`secret ${secretId} has unsupported engine "${engine.slice(0, 40)}"`, 'SECRET_INVALID');
  }
  kind.validate(value, secretId);
  return kind;
}

export async function loadSecret(deps: CoreDeps, secretId: string, description?: SecretDescription): Promise<LoadedSecret> {
  const described = description ?? (await deps.store.describeSecret(secretId));
  const currentVersion = await deps.store.getSecretValue(secretId, { stage: STAGE.current });
  const kind = kindOf(deps, currentVersion.value, secretId);
  const summary = kind.describe(currentVersion.value, secretId, described.tags);
  return {
    secretId,
    description: described,
    currentVersionId: currentVersion.versionId,
    current: currentVersion.value,
    kind,
    summary,
    strategy: summary.strategy,
  };
}

/**
 * True when `next` renews the very credential AWSCURRENT is — same principal, same key id: a
 * database user's new password under the single strategy — rather than another one (the clone of
 * an alternating pair, a new IAM or API key). Such a change ends the current one as it happens,
 * so the engine makes it at the promotion (rotation.ts, `finishSecret`).
 */
export function renewsInPlace(loaded: Pick<LoadedSecret, 'secretId' | 'description' | 'summary'>, kind: CredentialKind, next: Sealed<string>): boolean {
  const after = kind.describe(next, loaded.secretId, loaded.description.tags);
  return loaded.summary.principal === after.principal && (loaded.summary.keyId === undefined || loaded.summary.keyId === after.keyId);
}

export async function loadVersion(deps: CoreDeps, secretId: string, selector: { versionId?: string; stage?: string }): Promise<LoadedVersion> {
  const version = await deps.store.getSecretValue(secretId, selector);
  return { versionId: version.versionId, stages: version.stages, value: version.value };
}

/**
 * What a kind may read while acting on `loaded`: its tags, AWSCURRENT, the AWSCURRENT of another
 * secret (an admin secret named by `masterarn`), the clock and the logger.
 */
export function kindContext(
  deps: CoreDeps,
  loaded: Pick<LoadedSecret, 'secretId' | 'description' | 'current' | 'currentVersionId'>,
  extra: { versionId?: string } = {},
): KindContext {
  const sessionWatermark = sessionWatermarkOf(loaded.description.tags, loaded.currentVersionId);
  return {
    secretId: loaded.secretId,
    ...(extra.versionId ? { versionId: extra.versionId } : {}),
    tags: loaded.description.tags,
    current: loaded.current,
    ...(loaded.description.lastRotatedAt ? { rotatedAt: loaded.description.lastRotatedAt } : {}),
    ...(sessionWatermark ? { sessionWatermark } : {}),
    readSecret: async (id) => (await deps.store.getSecretValue(id, { stage: STAGE.current })).value,
    now: deps.now,
    logger: deps.logger,
  };
}

/** Tag-safe (what Secrets Manager accepts in a tag value), short: an identifier, not a blob. */
const WATERMARK_SHAPE = /^[A-Za-z0-9_.:/=+@-]{1,128}$/;

/** The `rekey:session-watermark` tag's value, `<versionId> <watermark>`, for `verify`'s report. */
export function sessionWatermarkTag(versionId: string, watermark: string | undefined): Record<string, string> {
  return watermark && WATERMARK_SHAPE.test(watermark) ? { [TAG.sessionWatermark]: `${versionId} ${watermark}` } : {};
}

/**
 * The watermark of `versionId`, only if the tag names that very version: a tag left by an older
 * rotation (or none, before watermarks existed) gives nothing, and the revoke ends every session.
 */
function sessionWatermarkOf(tags: Record<string, string>, versionId: string): string | undefined {
  const [named, watermark, ...rest] = (tags[TAG.sessionWatermark] ?? '').split(' ');
  return named === versionId && watermark && rest.length === 0 && WATERMARK_SHAPE.test(watermark) ? watermark : undefined;
}

/**
 * What `rekey put` accepts: a value whose `engine` a kind handles (checked by that kind, with the
 * consumers it lists); or, for a secret rekey does not rotate (`rekey:managed=false`), any JSON
 * object — an admin credential such as a provider's `{"token": …}`. Errors name fields, never values.
 */
export function validateStoredValue(deps: Pick<CoreDeps, 'kinds' | 'consumers'>, value: Sealed<string>, secretId: string, options: { managed: boolean }): void {
  let raw: unknown;
  try {
    raw = JSON.parse(value.reveal());
  } catch {
    throw new ValidationError(`secret ${secretId} is not valid JSON`, 'SECRET_INVALID');
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new ValidationError(`secret ${secretId} must be a JSON object`, 'SECRET_INVALID');
  if ((raw as { engine?: unknown }).engine === undefined && !options.managed) return;
  kindOf(deps, value, secretId);
  validateConsumers(deps.consumers, value, secretId);
}
