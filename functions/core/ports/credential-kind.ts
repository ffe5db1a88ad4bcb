import type { Logger } from './logger.ts';
import type { Sealed } from '../sealed.ts';

/**
 * What a credential is, as the core may know it: identifiers only, never a value. Shown by
 * `rekey status`, carried by events (`principal`, `keyId`) and results.
 */
export interface CredentialSummary {
  /** The engine as the kind names it (`postgres`, `aws-iam-user`, `http-api-key`…). */
  engine: string;
  /** Who the credential authenticates: a database user, an IAM user name, a provider key's owner. */
  principal: string;
  /** A non-secret handle of this very credential, when the system has one (IAM access key id, provider key id). */
  keyId?: string;
  /** Where the credential is used (database host, provider name). */
  host?: string;
  /** How a rotation replaces it (`single`, `alternating`, `two-key`, `new-key`). */
  strategy: string;
  /** The secret whose AWSCURRENT acts for rekey on this system (`masterarn`), if any. */
  adminSecretId?: string;
}

/** A sensitive text a scanner could report, to be fingerprinted (see core/fingerprint.ts). */
export interface SensitiveForm {
  /** A short name kept with the fingerprint (`password`, `uri`, `secret-access-key`, `access-key-id`, `key`). */
  form: string;
  text: string;
  /**
   * Also index the HMSL hash of this text (what GitGuardian reports instead of a value): set on
   * the kind's one primary secret (a password, a secret access key, an API key), kept as form
   * `hmsl`, so the AWS index stays within its tag budget.
   */
  hmsl?: boolean;
}

/** Everything a kind may read while it acts on one secret. Values travel sealed. */
export interface KindContext {
  secretId: string;
  /** The rotation's version id (ClientRequestToken), when acting inside a rotation: an idempotency key. */
  versionId?: string;
  tags: Record<string, string>;
  /** The secret's AWSCURRENT value (JSON). */
  current: Sealed<string>;
  /** When AWSCURRENT was last promoted (the revoke of a same-principal value ends older sessions). */
  rotatedAt?: Date;
  /** What AWSCURRENT's own `verify` reported (`VerifyReport`), when the stored tag names its version. */
  sessionWatermark?: string;
  /** The AWSCURRENT value of another secret: `masterarn`, a provider's admin secret. NotFoundError if absent. */
  readSecret(secretId: string): Promise<Sealed<string>>;
  now(): Date;
  logger: Logger;
}

export type RevokeMode = 'grace' | 'leak';

export interface ApplyOptions {
  /** Runs after the change, before the kind lets go of it; a throw undoes the change (see `apply`). */
  confirm?: () => Promise<void>;
}

/**
 * What a successful `verify` learned that a later revoke can use; the engine keeps it in a tag
 * bound to the version, so it is an identifier (tag-safe: letters, digits, `_.:/=+-@`), never a value.
 */
export interface VerifyReport {
  /**
   * A point in the system's own session order taken after the new credential was set: a session
   * not after it may hold the old credential (MySQL/MariaDB: a connection id, see MysqlTarget).
   */
  sessionWatermark?: string;
}

export interface RevokeOutcome {
  /** How, in a few words (`password-scrambled`, `deactivated`, `revoke-endpoint`, `already-deleted`). */
  method: string;
  /** The principal of the revoked credential (identifiers only). */
  principal: string;
  keyId?: string;
  /** Sessions ended, where the system has sessions. */
  sessionsEnded?: number;
  /**
   * The credential is dead but still exists and should be removed after a second grace
   * (`purge`): an IAM key is deactivated first, deleted later, so a false alarm can be undone.
   */
  purgeLater?: boolean;
}

/**
 * One family of credentials rekey rotates (a database engine, AWS IAM access keys, a provider's
 * API keys), behind one interface so that rotation, revocation, inspection, the sweep and the leak
 * path know nothing of which kind they handle. One file per implementation under
 * functions/adapters/targets/, one contract (test/contracts/credential-kind.contract.ts) for all.
 *
 * Values are the stored JSON, sealed. A kind owns its value's format: it parses it, builds the
 * next one (keeping fields it does not know), and never puts any secret in an error, a log or a URL.
 *
 * The engine calls, in order, for a rotation (each step idempotent, DESIGN.md §4):
 *   next       → the pending value; the engine stores it as AWSPENDING before anything else happens.
 *                Side effects here (IAM CreateAccessKey, a provider's create endpoint) must leave
 *                at most an orphan that a later `next` clears up, never a broken AWSCURRENT.
 *   apply      → make the pending value valid (a database password; nothing for providers).
 *   verify     → prove it works; the engine retries LOGIN_FAILED with backoff (eventual consistency).
 *   (promote, push to consumers)
 *   revoke     → make an old value stop working; the engine then proves it with `canLogIn` = false,
 *                retrying while the system converges.
 *   purge      → optional: remove what `revoke` only disabled, after a second grace.
 */
export interface CredentialKind {
  /** Engine spellings handled, as they appear in the value's `engine` field. */
  readonly engines: readonly string[];
  /** Throws ValidationError naming the fields that are wrong (never echoing a value). */
  validate(value: Sealed<string>, secretId: string): void;
  /** Identifiers only. `tags` decide the strategy where the kind has a choice. */
  describe(value: Sealed<string>, secretId: string, tags?: Record<string, string>): CredentialSummary;
  /** Build the next value from `ctx.current` (creating it on the system when it is made there). */
  next(ctx: KindContext): Promise<Sealed<string>>;
  /**
   * Make the pending value valid on the system. Idempotent; `ctx.current` is still AWSCURRENT.
   * With `confirm` (a change in place: the same credential takes the new secret, a database user's
   * password under the single strategy), the kind calls it right after the change, still holding
   * what it acted through; if it throws, the kind puts `ctx.current`'s secret back — through that
   * same session, the only way back when the user changed its own password and the new one is
   * refused — and rethrows. So a change that is not proven and promoted never outlives the step.
   */
  apply(pending: Sealed<string>, ctx: KindContext, options?: ApplyOptions): Promise<void>;
  /** Log in / call with `value`; TargetError('LOGIN_FAILED') when refused, TARGET_UNREACHABLE when unreachable. */
  verify(value: Sealed<string>, ctx: KindContext): Promise<VerifyReport | void>;
  /** True when accepted, false when refused for its credentials; throws when unreachable. */
  canLogIn(value: Sealed<string>, ctx: KindContext): Promise<boolean>;
  /** Make `old` (never AWSCURRENT) stop working. Idempotent: revoking a dead credential succeeds. */
  revoke(old: Sealed<string>, ctx: KindContext, options: { mode: RevokeMode }): Promise<RevokeOutcome>;
  /** Remove a credential `revoke` left disabled (`purgeLater`). Idempotent. */
  purge?(old: Sealed<string>, ctx: KindContext): Promise<void>;
  /** The texts of `value` a scanner might report, for keyed fingerprints. */
  sensitiveForms(value: Sealed<string>): SensitiveForm[];
  /**
   * Leaks of credentials rekey did not create. `identifiersOfLeak` picks non-secret handles out of
   * a leaked text (an AWS access key id); `ownerOf` names the principal that holds one on the
   * system, if it is in this account; `revokeStray` disables it when it belongs to the principal of
   * `managed` (a managed secret's AWSCURRENT) and is not that value's own credential.
   */
  identifiersOfLeak?(text: string): string[];
  ownerOf?(identifier: string, ctx: Pick<KindContext, 'logger' | 'now'>): Promise<string | undefined>;
  revokeStray?(identifier: string, ctx: KindContext): Promise<RevokeOutcome>;
  /** Release clients and pools. */
  close(): Promise<void>;
}

export interface CredentialKindRegistry {
  /** The kind for a value's `engine`; ValidationError for an engine no kind handles. */
  forEngine(engine: string): CredentialKind;
  readonly kinds: readonly CredentialKind[];
  close(): Promise<void>;
}
