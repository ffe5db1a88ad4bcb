import type { VerifyReport } from './credential-kind.ts';
import type { DatabaseSecret } from '../secret.ts';
import type { Sealed } from '../sealed.ts';

/** The credential a target acts with: an admin (from `masterarn`) or the user's own login. */
export type Login = DatabaseSecret;

/**
 * A database engine whose users' passwords rekey sets (PostgreSQL, MySQL/MariaDB). The core never
 * calls a Target: it asks a CredentialKind (ports/credential-kind.ts), and the database kind
 * (adapters/targets/database-kind.ts) is the one kind built on Targets — strategies, clones and
 * revokes live there; providers (IAM access keys, HTTP API keys) are kinds of their own, with no
 * Target. One file per engine, one contract (test/contracts/target.contract.ts) for the database
 * engines; the kinds have theirs (test/contracts/credential-kind.contract.ts). Every method:
 * - quotes identifiers and literals itself (hostile names are normal input) or refuses them with a
 *   ValidationError before any SQL is sent;
 * - throws TargetError whose message names identifiers only; a driver error is kept as a redacted cause;
 * - never logs, and never puts a password in SQL text the server could log where the engine allows.
 */
export interface Target {
  readonly engines: readonly string[];
  /** Throws ValidationError when `username` (or its `_clone`, for alternating) cannot exist on this engine. */
  validateUsername(username: string, options: { alternating: boolean }): void;
  /**
   * Make `password` the password of `username` on every host the user exists for.
   * `via.admin` when the secret has one; otherwise the user changes its own password and `via.self`
   * lists logins to try in order (current, then the unresolved pending: never strand a password).
   */
  setPassword(
    on: Login,
    username: string,
    password: Sealed<string>,
    via: { admin?: Login; self?: Login[] },
    options?: SetPasswordOptions,
  ): Promise<void>;
  /**
   * Alternating strategy: make sure `clone` exists and acts as `original` — PostgreSQL: member of
   * the original role with `SET ROLE original`; MySQL/MariaDB: same hosts, grants and REQUIRE
   * clauses as the original (additions and removals). Idempotent. Never changes `original`.
   */
  syncClone(admin: Login, original: string, clone: string): Promise<void>;
  /**
   * Log in with `login` and run a check query; throws TargetError('LOGIN_FAILED') when refused.
   * May report a `sessionWatermark` for `endSessions` (engines that record no session start time).
   */
  verify(login: Login): Promise<VerifyReport | void>;
  /** True when `login` is accepted; false when refused for its credentials; throws when unreachable. */
  canLogIn(login: Login): Promise<boolean>;
  /**
   * End sessions of `username`: those started before `startedBefore` where the engine records
   * start times, those not after `sessionWatermark` (from this engine's `verify`) where it does
   * not and the watermark is still good; every one otherwise. Returns how many.
   */
  endSessions(
    on: Login,
    username: string,
    via: { admin?: Login; self?: Login[] },
    options?: { startedBefore?: Date; sessionWatermark?: string },
  ): Promise<number>;
  /** Release pooled connections. */
  close(): Promise<void>;
}

/**
 * `confirm` runs once the password is set, while the session that set it is still open; when it
 * throws and `restoreTo` is given, that password is set back on every host through the same
 * session (a user that changed its own password may not be able to log in again), then confirm's
 * error is rethrown — or TargetError('RESTORE_FAILED') when putting it back failed too.
 */
export interface SetPasswordOptions {
  confirm?: () => Promise<void>;
  restoreTo?: Sealed<string>;
}

export interface TargetRegistry {
  forEngine(engine: string): Target;
  close(): Promise<void>;
}
