import { ConflictError, ValidationError } from '#core/errors.ts';
import type { ApplyOptions, CredentialKind, CredentialSummary, KindContext, RevokeMode, RevokeOutcome, SensitiveForm, VerifyReport } from '#core/ports/credential-kind.ts';
import type { Login, TargetRegistry } from '#core/ports/target.ts';
import { generatePassword, passwordPolicyFromTags } from '#core/password.ts';
import type { Sealed } from '#core/sealed.ts';
import { alternateUsername, baseUsername, parseDatabaseSecret, strategyOf, type DatabaseSecret } from '#core/secret.ts';

/** Every spelling `parseDatabaseSecret` accepts (AWS's rotation templates' included). */
export const DATABASE_ENGINES = ['postgres', 'postgresql', 'aurora-postgresql', 'mysql', 'aurora-mysql', 'aurora', 'mariadb'] as const;

const URI_SCHEMES: Record<string, string> = { postgres: 'postgres', mysql: 'mysql', mariadb: 'mariadb' };

/**
 * Database users (PostgreSQL, MySQL, MariaDB) as a credential kind, on the Target port: the
 * strategies of DESIGN.md §4 live here, so the engine above knows nothing of passwords, clones or
 * sessions.
 *
 *   next    a generated password (the `rekey:password-*` policy); alternating flips to the other
 *           user of the pair. Nothing on the server changes: the engine stores it first.
 *   apply   alternating: sync the clone (PostgreSQL: member + SET ROLE; MySQL: grants), then set
 *           the password as the admin (`masterarn`), or as the user itself trying the current and
 *           then the pending login (a rerun after a crash finds it already set). Single: the
 *           engine passes `confirm`, and a change it does not confirm is undone (the old password
 *           set back through the same session).
 *   revoke  same user (single): the password is already replaced, end sessions opened before the
 *           promotion (PostgreSQL) or not after AWSCURRENT's verify (MySQL/MariaDB: its
 *           connection-id watermark; all of them without one); other user (alternating): scramble
 *           its password, end all its sessions.
 */
export class DatabaseKind implements CredentialKind {
  readonly engines = DATABASE_ENGINES;
  readonly #targets: TargetRegistry;

  constructor(targets: TargetRegistry) {
    this.#targets = targets;
  }

  parse(value: Sealed<string>, secretId: string): DatabaseSecret {
    return parseDatabaseSecret(value, secretId);
  }

  validate(value: Sealed<string>, secretId: string): void {
    this.parse(value, secretId);
  }

  describe(value: Sealed<string>, secretId: string, tags: Record<string, string> = {}): CredentialSummary {
    const secret = this.parse(value, secretId);
    return {
      engine: secret.engine,
      principal: secret.username,
      host: secret.host,
      strategy: strategyOf(secret, tags),
      ...(secret.masterarn ? { adminSecretId: secret.masterarn } : {}),
    };
  }

  async next(ctx: KindContext): Promise<Sealed<string>> {
    const current = this.parse(ctx.current, ctx.secretId);
    const strategy = strategyOf(current, ctx.tags);
    if (strategy === 'alternating' && !current.masterarn) {
      throw new ValidationError(`secret ${ctx.secretId} uses the alternating strategy, which needs "masterarn" (the admin secret)`);
    }
    const username = strategy === 'alternating' ? alternateUsername(current.username) : current.username;
    this.#targets.forEngine(current.engine).validateUsername(username, { alternating: strategy === 'alternating' });
    const password = generatePassword(passwordPolicyFromTags(ctx.tags));
    // Edit the stored JSON itself so fields rekey does not know (and the engine's spelling) survive.
    return ctx.current.map((json) => JSON.stringify({ ...(JSON.parse(json) as object), username, password: password.reveal() }));
  }

  async apply(pending: Sealed<string>, ctx: KindContext, options: ApplyOptions = {}): Promise<void> {
    const next = this.parse(pending, ctx.secretId);
    const current = this.parse(ctx.current, ctx.secretId);
    const target = this.#targets.forEngine(next.engine);
    const admin = await this.#admin(next, ctx);
    if (strategyOf(current, ctx.tags) === 'alternating') {
      if (!admin) throw new ValidationError(`secret ${ctx.secretId} uses the alternating strategy, which needs "masterarn"`);
      // On every rotation, not only when the clone takes over: a privilege revoked from the
      // original must not live on in the clone while it is current or waits out its grace.
      const original = baseUsername(current.username);
      await target.syncClone(admin, original, alternateUsername(original));
    }
    // Without an admin the user changes its own password; the pending login is tried too, so a
    // rerun after a crash inside this step finds the password already set. A change in place (the
    // single strategy) puts AWSCURRENT's password back if it is not confirmed.
    const inPlace = next.username === current.username;
    await target.setPassword(next, next.username, next.password, actingAs(admin, [current, next]), {
      ...(options.confirm ? { confirm: options.confirm } : {}),
      ...(options.confirm && inPlace ? { restoreTo: current.password } : {}),
    });
  }

  async verify(value: Sealed<string>, ctx: KindContext): Promise<VerifyReport | void> {
    const login = this.parse(value, ctx.secretId);
    return this.#targets.forEngine(login.engine).verify(login);
  }

  async canLogIn(value: Sealed<string>, ctx: KindContext): Promise<boolean> {
    const login = this.parse(value, ctx.secretId);
    return this.#targets.forEngine(login.engine).canLogIn(login);
  }

  async revoke(old: Sealed<string>, ctx: KindContext, _options: { mode: RevokeMode }): Promise<RevokeOutcome> {
    const stale = this.parse(old, ctx.secretId);
    const current = this.parse(ctx.current, ctx.secretId);
    if (stale.username === current.username && stale.password.reveal() === current.password.reveal()) {
      throw new ConflictError(`that credential of ${ctx.secretId} (user ${stale.username}) is the AWSCURRENT one: rotate first, then revoke it`, 'REVOKE_CURRENT');
    }
    const target = this.#targets.forEngine(current.engine);
    const via = actingAs(await this.#admin(current, ctx), [current]);
    let method: string;
    let sessions: { startedBefore?: Date; sessionWatermark?: string } = {};
    if (stale.username === current.username) {
      // Same user: the rotation already replaced its password. Sessions opened before the
      // promotion may still hold the old credential, so they end (later ones are spared where the
      // target can tell them apart: a start time, or the watermark AWSCURRENT's verify took).
      method = 'password-already-replaced';
      sessions = { startedBefore: ctx.rotatedAt ?? ctx.now(), ...(ctx.sessionWatermark ? { sessionWatermark: ctx.sessionWatermark } : {}) };
    } else {
      // The inactive user of an alternating pair: give it a password nobody knows.
      method = 'password-scrambled';
      await target.setPassword(stale, stale.username, generatePassword(), via);
    }
    const sessionsEnded = await target.endSessions(stale, stale.username, via, sessions);
    return { method, principal: stale.username, sessionsEnded };
  }

  /**
   * The password, and the canonical connection URI (`postgres://user:pass@host:port/db`) a scanner
   * may report whole. Other URI spellings match through core/fingerprint.ts `candidatesOfLeak`,
   * which pulls the password out of any URI.
   */
  sensitiveForms(value: Sealed<string>): SensitiveForm[] {
    let raw: Record<string, unknown>;
    try {
      raw = JSON.parse(value.reveal()) as Record<string, unknown>;
    } catch {
      return [];
    }
    const password = typeof raw.password === 'string' ? raw.password : undefined;
    if (!password) return [];
    const engine = typeof raw.engine === 'string' ? raw.engine.toLowerCase().replace(/^aurora-?/, '').replace('postgresql', 'postgres') || 'mysql' : '';
    const scheme = URI_SCHEMES[engine];
    const forms: SensitiveForm[] = [{ form: 'password', text: password, hmsl: true }];
    if (scheme && typeof raw.username === 'string' && typeof raw.host === 'string') {
      const port = raw.port === undefined ? '' : `:${String(raw.port)}`;
      const db = typeof raw.dbname === 'string' ? `/${raw.dbname}` : '';
      forms.push({ form: 'uri', text: `${scheme}://${encodeURIComponent(raw.username)}:${encodeURIComponent(password)}@${raw.host}${port}${db}` });
    }
    return forms;
  }

  async close(): Promise<void> {
    await this.#targets.close();
  }

  /**
   * The admin credential named by `masterarn` (its AWSCURRENT value), if the secret has one. The
   * admin acts on the server the secret names (its host, port and TLS setting), so a stale host in
   * the admin secret cannot send a password change to another server.
   */
  async #admin(secret: DatabaseSecret, ctx: KindContext): Promise<Login | undefined> {
    if (!secret.masterarn) return undefined;
    const admin = this.parse(await ctx.readSecret(secret.masterarn), secret.masterarn);
    if (admin.engine !== secret.engine && !(isMysqlFamily(admin.engine) && isMysqlFamily(secret.engine))) {
      throw new ValidationError(`admin secret ${secret.masterarn} is for engine ${admin.engine}, not ${secret.engine}`);
    }
    return { ...admin, host: secret.host, port: secret.port, ...(secret.ssl !== undefined ? { ssl: secret.ssl } : {}) };
  }
}

const isMysqlFamily = (engine: string) => engine === 'mysql' || engine === 'mariadb';

/** How a target acts for this secret: as the admin when there is one, else as the user itself. */
function actingAs(admin: Login | undefined, selfLogins: Login[]): { admin?: Login; self?: Login[] } {
  return admin ? { admin } : { self: selfLogins };
}
