import { createHash, randomBytes } from 'node:crypto';
import pg from 'pg';
import { RekeyError, TargetError, ValidationError, logsIn } from '#core/errors.ts';
import type { Login, SetPasswordOptions, Target } from '#core/ports/target.ts';
import { redactCause } from '#core/redact.ts';
import type { Sealed } from '#core/sealed.ts';
import { alternateUsername } from '#core/secret.ts';
import { scramSha256Verifier } from './scram.ts';
import { confirmOrRestore } from './confirm.ts';

/** NAMEDATALEN - 1: PostgreSQL silently truncates longer identifiers, so two names could collide. */
export const MAX_IDENTIFIER_BYTES = 63;
const CONNECT_TIMEOUT_MS = 5_000;
const POOL_MAX = 10;
const POOL_IDLE_MS = 30_000;

/** invalid_password, invalid_authorization_specification (no LOGIN, no pg_hba entry). */
const AUTH_REFUSED = new Set(['28P01', '28000']);
/** Socket-level failures and server states that a later attempt may get past. */
const UNREACHABLE = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE',
  '57P01', '57P02', '57P03', '53300', // admin_shutdown, crash_shutdown, cannot_connect_now, too_many_connections
]);

type Secrets = (string | Sealed<string> | undefined)[];
type Via = { admin?: Login; self?: Login[] };

const ident = (name: string): string => pg.escapeIdentifier(name);
const literal = (value: string): string => pg.escapeLiteral(value);
const endpoint = (login: Login): string => `${login.host}:${login.port}`;
const codeOf = (error: unknown): string | undefined => {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
};
const isAuthRefusal = (error: unknown): boolean => AUTH_REFUSED.has(codeOf(error) ?? '');

/**
 * PostgreSQL (and Aurora PostgreSQL). Admin work runs on a small pool per admin login, because a
 * rotation is a handful of statements and reconnecting (TLS + SCRAM) would dominate its time. Login
 * checks always use a fresh connection: a pooled one proves nothing about the password.
 */
export class PostgresTarget implements Target {
  readonly engines = ['postgres'] as const;
  readonly #pools = new Map<string, pg.Pool>();

  validateUsername(username: string, options: { alternating: boolean }): void {
    if (username.length === 0) throw new ValidationError('username must not be empty');
    if (username.includes('\0')) throw new ValidationError('username must not contain a NUL byte (PostgreSQL identifiers cannot)');
    const bytes = Buffer.byteLength(username, 'utf8');
    if (bytes > MAX_IDENTIFIER_BYTES) {
      throw new ValidationError(`username ${username} is ${bytes} bytes; PostgreSQL role names are limited to ${MAX_IDENTIFIER_BYTES} bytes`);
    }
    if (options.alternating) {
      const partner = alternateUsername(username);
      const partnerBytes = Buffer.byteLength(partner, 'utf8');
      if (partnerBytes > MAX_IDENTIFIER_BYTES) {
        throw new ValidationError(
          `alternating user ${partner} (for ${username}) is ${partnerBytes} bytes; PostgreSQL role names are limited to ${MAX_IDENTIFIER_BYTES} bytes, so the name must leave room for "_clone"`,
        );
      }
    }
  }

  async setPassword(_on: Login, username: string, password: Sealed<string>, via: Via, options?: SetPasswordOptions): Promise<void> {
    this.#checkName(username);
    const verifier = await scramSha256Verifier(password.reveal());
    const secrets: Secrets = [password, verifier, via.admin?.password, options?.restoreTo, ...(via.self ?? []).map((l) => l.password)];
    const action = `change the password of ${username}`;
    if (via.admin) {
      const admin = via.admin;
      // The verifier, never the plaintext: utility statements take no bind parameters, so the
      // value is in the statement text, which the server may log.
      const set = async (hash: string) => {
        await this.#adminQuery(admin, `ALTER ROLE ${ident(username)} WITH LOGIN PASSWORD ${literal(hash)}`, [], action, [...secrets, hash]);
      };
      await set(verifier);
      const unconfirmed = await confirmOrRestore(options, username, async (previous) => set(await scramSha256Verifier(previous.reveal())));
      if (unconfirmed) throw unconfirmed.error;
      return;
    }
    const self = this.#selfLogins(via, username, 'change its password');
    for (const login of self) {
      if (login.username !== username) {
        throw new ValidationError(`a login as ${login.username} cannot change the password of ${username} without an admin`);
      }
    }
    let unconfirmed: { error: unknown } | undefined;
    const done = await this.#asSelf(self, secrets, async (client, login) => {
      // A clone logs in running as its original (SET ROLE): drop back to the session user so the
      // statement changes the clone's own password, which is all an ordinary role may change.
      const set = async (hash: string) => {
        await client.query('SET ROLE NONE');
        await client.query(`ALTER ROLE SESSION_USER WITH PASSWORD ${literal(hash)}`);
      };
      // Logging in with the pending value means an earlier run already set it.
      if (login.password.reveal() !== password.reveal()) await set(verifier);
      unconfirmed = await confirmOrRestore(options, username, async (previous) => {
        const restored = await scramSha256Verifier(previous.reveal());
        await set(restored).catch((error: unknown) => {
          throw this.#error(error, login, `put back the previous password of ${username}`, [...secrets, restored]);
        });
      });
    }, action);
    if (unconfirmed) throw unconfirmed.error;
    if (!done) throw new TargetError('LOGIN_FAILED', `cannot log in as ${username} to change its password`);
  }

  async syncClone(admin: Login, original: string, clone: string): Promise<void> {
    this.#checkName(original);
    this.#checkName(clone);
    if (original === clone) throw new ValidationError(`the alternating user must differ from ${original}`);
    const secrets: Secrets = [admin.password];
    const run = (sql: string, params: unknown[], action: string) => this.#adminQuery(admin, sql, params, action, secrets);

    // One query for the whole state, so a pair already in shape (every rotation but the first)
    // costs one round trip: the original may log in, the clone exists, is a member of the
    // original and runs as it (`ALTER ROLE clone SET role = original`, kept in pg_roles.rolconfig).
    const state = async () => {
      const [row] = await run(
        `SELECT o.rolcanlogin AS "ownerLogin", c.oid IS NOT NULL AS "cloneExists",
                EXISTS (SELECT 1 FROM pg_auth_members m WHERE m.roleid = o.oid AND m.member = c.oid) AS member,
                COALESCE(c.rolconfig @> ARRAY[$3::text], false) AS "runsAs"
           FROM pg_roles o LEFT JOIN pg_roles c ON c.rolname = $2
          WHERE o.rolname = $1`,
        [original, clone, `role=${original}`],
        `look up roles ${original} and ${clone}`,
      );
      if (!row) throw new TargetError('ROLE_NOT_FOUND', `role ${original} does not exist on ${endpoint(admin)}`);
      return row as { ownerLogin: boolean; cloneExists: boolean; member: boolean; runsAs: boolean };
    };
    let roles = await state();
    if (roles.ownerLogin !== true) await run(`ALTER ROLE ${ident(original)} WITH LOGIN`, [], `allow ${original} to log in`);
    if (!roles.cloneExists) {
      // A password nobody knows until setPassword gives the clone its real one.
      const verifier = await scramSha256Verifier(randomBytes(32).toString('base64'));
      try {
        await this.#pool(admin).query(`CREATE ROLE ${ident(clone)} WITH LOGIN PASSWORD ${literal(verifier)} IN ROLE ${ident(original)}`);
        // Created here, as a member (IN ROLE), not yet running as the original.
        roles = { ownerLogin: true, cloneExists: true, member: true, runsAs: false };
      } catch (error) {
        // duplicate_object: a concurrent run created it first, which is the state we want.
        if (codeOf(error) !== '42710') throw this.#error(error, admin, `create role ${clone}`, [...secrets, verifier]);
        roles = await state();
      }
    }
    if (!roles.member) await run(`GRANT ${ident(original)} TO ${ident(clone)}`, [], `grant ${original} to ${clone}`);
    // Every session of the clone runs as the original, so whatever it creates is owned by the
    // original and stays usable after the next flip.
    if (!roles.runsAs) await run(`ALTER ROLE ${ident(clone)} SET role = ${literal(original)}`, [], `make ${clone} act as ${original}`);
  }

  async verify(login: Login): Promise<void> {
    this.#checkName(login.username);
    await this.#withClient(login, [login.password], async (client) => {
      await client.query('SELECT 1');
    });
  }

  canLogIn(login: Login): Promise<boolean> {
    return logsIn(() => this.verify(login));
  }

  async endSessions(_on: Login, username: string, via: Via, options: { startedBefore?: Date } = {}): Promise<number> {
    this.#checkName(username);
    const params: unknown[] = [username];
    let sql = 'SELECT pg_terminate_backend(pid) AS ended FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid()';
    if (options.startedBefore) {
      params.push(options.startedBefore);
      sql += ' AND backend_start < $2';
    }
    const action = `end the sessions of ${username}`;
    const count = (rows: { ended?: unknown }[]) => rows.filter((row) => row.ended === true).length;
    if (via.admin) return count(await this.#adminQuery(via.admin, sql, params, action, [via.admin.password]));

    const self = this.#selfLogins(via, username, 'end its sessions');
    let ended: number | undefined;
    const done = await this.#asSelf(self, self.map((l) => l.password), async (client) => {
      // An ordinary role may signal backends of the role it runs as: make that the session user.
      await client.query('SET ROLE NONE');
      ended = count((await client.query(sql, params)).rows);
    }, action);
    if (!done || ended === undefined) throw new TargetError('LOGIN_FAILED', `cannot log in as ${username} to end its sessions`);
    return ended;
  }

  async close(): Promise<void> {
    const pools = [...this.#pools.values()];
    this.#pools.clear();
    await Promise.all(pools.map((pool) => pool.end().catch(() => {})));
  }

  #checkName(username: string): void {
    this.validateUsername(username, { alternating: false });
  }

  #selfLogins(via: Via, username: string, purpose: string): Login[] {
    const self = via.self ?? [];
    if (self.length === 0) throw new ValidationError(`no admin or own login given for ${username} to ${purpose}`);
    return self;
  }

  /**
   * Tries each login in order on a fresh connection; a refused one is skipped (the next may be the
   * pending value), anything else stops. Returns false when none logged in.
   */
  async #asSelf(logins: Login[], secrets: Secrets, fn: (client: pg.Client, login: Login) => Promise<void>, action: string): Promise<boolean> {
    for (const login of logins) {
      const client = this.#client(login);
      try {
        await client.connect();
      } catch (error) {
        await client.end().catch(() => {});
        if (isAuthRefusal(error)) continue;
        throw this.#error(error, login, action, secrets);
      }
      try {
        await fn(client, login);
        return true;
      } catch (error) {
        throw this.#error(error, login, action, secrets);
      } finally {
        await client.end().catch(() => {});
      }
    }
    return false;
  }

  async #withClient(login: Login, secrets: Secrets, fn: (client: pg.Client) => Promise<void>): Promise<void> {
    const client = this.#client(login);
    try {
      await client.connect();
      await fn(client);
    } catch (error) {
      throw this.#error(error, login, `log in as ${login.username}`, secrets);
    } finally {
      await client.end().catch(() => {});
    }
  }

  async #adminQuery(admin: Login, sql: string, params: unknown[], action: string, secrets: Secrets): Promise<Record<string, unknown>[]> {
    try {
      return (await this.#pool(admin).query(sql, params)).rows as Record<string, unknown>[];
    } catch (error) {
      throw this.#error(error, admin, action, secrets);
    }
  }

  #client(login: Login): pg.Client {
    const client = new pg.Client(connectionConfig(login));
    client.on('error', () => {}); // a dropped connection emits this after connect; the awaited call reports it
    return client;
  }

  /** One pool per admin identity; a changed admin password gets a pool of its own. */
  #pool(admin: Login): pg.Pool {
    const passwordHash = createHash('sha256').update(admin.password.reveal()).digest('hex');
    const key = JSON.stringify([admin.host, admin.port, admin.username, admin.dbname ?? 'postgres', admin.ssl === true, passwordHash]);
    let pool = this.#pools.get(key);
    if (!pool) {
      pool = new pg.Pool({ ...connectionConfig(admin), max: POOL_MAX, idleTimeoutMillis: POOL_IDLE_MS, allowExitOnIdle: true });
      pool.on('error', () => {}); // an idle client lost (server restart) must not crash the process
      this.#pools.set(key, pool);
    }
    return pool;
  }

  /** A driver error as a TargetError naming identifiers only; the cause keeps a scrubbed message. */
  #error(error: unknown, login: Login, action: string, secrets: Secrets): RekeyError {
    if (error instanceof RekeyError) return error;
    const cause = redactCause(error, secrets);
    const code = codeOf(error);
    const where = endpoint(login);
    const message = error instanceof Error ? error.message : '';
    if (isAuthRefusal(error)) {
      return new TargetError('LOGIN_FAILED', `login as ${login.username} refused by ${where}`, { cause });
    }
    if (/SSL|TLS|CERT/i.test(code ?? '') || /does not support SSL/i.test(message)) {
      return new TargetError('TLS_FAILED', `TLS connection to ${where} failed (certificate not verified or TLS not offered)`, { cause });
    }
    // Without a SQLSTATE the driver itself gave up: connect timeout or a dropped socket.
    if ((code && (UNREACHABLE.has(code) || code.startsWith('08'))) || (!code && /timeout|Connection terminated/i.test(message))) {
      return new TargetError('TARGET_UNREACHABLE', `cannot reach ${where} to ${action}`, { retryable: true, cause });
    }
    if (code === '42501') {
      return new TargetError('PERMISSION_DENIED', `${login.username} may not ${action} on ${where}`, { cause });
    }
    const suffix = code && /^[0-9A-Z]{5}$/.test(code) ? ` (SQLSTATE ${code})` : '';
    return new TargetError('TARGET_FAILED', `could not ${action} on ${where} as ${login.username}${suffix}`, { cause });
  }
}

function connectionConfig(login: Login): pg.ClientConfig {
  return {
    host: login.host,
    port: login.port,
    user: login.username,
    password: login.password.reveal(),
    database: login.dbname ?? 'postgres',
    // Verified TLS when asked for, plaintext only when the secret says so: never a silent fallback
    // (an explicit `false` also keeps PGSSLMODE from deciding behind the secret's back).
    ssl: login.ssl === true ? { rejectUnauthorized: true } : false,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    application_name: 'rekey',
  };
}
