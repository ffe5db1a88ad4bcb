import { createHash, randomBytes } from 'node:crypto';
import mysql from 'mysql2/promise';
import { RekeyError, TargetError, ValidationError, logsIn } from '#core/errors.ts';
import type { VerifyReport } from '#core/ports/credential-kind.ts';
import type { Login, SetPasswordOptions, Target } from '#core/ports/target.ts';
import { redactCause } from '#core/redact.ts';
import type { Sealed } from '#core/sealed.ts';
import { alternateUsername } from '#core/secret.ts';
import { confirmOrRestore } from './confirm.ts';

/** MariaDB's user names: mysql.user.User is CHAR(80). */
export const MARIADB_MAX_USERNAME_CHARS = 80;
/** MySQL 5.7.8+ and 8.x: mysql.user.User is CHAR(32). */
export const MYSQL_MAX_USERNAME_CHARS = 32;
const CONNECT_TIMEOUT_MS = 5_000;
const POOL_MAX = 10;

/** Socket-level failures and server states that a later attempt may get past. */
const UNREACHABLE_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE',
  'PROTOCOL_CONNECTION_LOST', 'PROTOCOL_SEQUENCE_TIMEOUT', 'ER_CON_COUNT_ERROR', 'ER_SERVER_SHUTDOWN',
  // Per-user connection limits: checked after the password, so never a refused login.
  'ER_TOO_MANY_USER_CONNECTIONS', 'ER_USER_LIMIT_REACHED',
]);
/** Lock wait timeout, deadlock: the statement may succeed when repeated. */
const TRANSIENT_ERRNOS = new Set([1205, 1213]);
/**
 * Refused for lack of a privilege. 1045 counts only after login (GRANT answers it); 1044 while
 * connecting means the password was accepted and the database refused: never a failed login, or a
 * revoke could be "proven" by a password that still works.
 */
const PERMISSION_ERRNOS = new Set([1044, 1045, 1095, 1142, 1143, 1227, 1370, 1410]);

type Secrets = (string | Sealed<string> | undefined)[];
type Via = { admin?: Login; self?: Login[] };
type Phase = 'connect' | 'query';
type Row = Record<string, unknown>;

/** The server behind a connection, as far as syntax and limits go. */
interface Server {
  mariadb: boolean;
  version: string;
}

const endpoint = (login: Login): string => `${login.host}:${login.port}`;
/** `'user'@'host'`, escaped by the driver for splicing into account-management statements. */
const account = (user: string, host: string): string => mysql.format('?@?', [user, host]);
const errnoOf = (error: unknown): number | undefined => {
  const errno = (error as { errno?: unknown } | null)?.errno;
  return typeof errno === 'number' ? errno : undefined;
};
const codeOf = (error: unknown): string | undefined => {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
};
const characters = (text: string): number => [...text].length;
const text = (value: unknown): string => (Buffer.isBuffer(value) ? value.toString('utf8') : value == null ? '' : String(value));

/** Which server a row comes from: connection ids are per server (a load-balanced host, a failover). */
const SERVER_COLUMNS = '@@hostname AS host, @@port AS port, @@server_id AS serverId';
/**
 * This connection's id and server, with the later-numbered sessions of its own user (filtered by the
 * server too, so a login with PROCESS does not fetch every session on it; compared exactly below).
 */
const WATERMARK_QUERY = `SELECT CONNECTION_ID() AS id, ${SERVER_COLUMNS}, p.ID AS later, p.USER AS user FROM (SELECT 1) AS one LEFT JOIN information_schema.PROCESSLIST AS p ON p.ID > CONNECTION_ID() AND p.USER = SUBSTRING_INDEX(USER(), '@', 1)`;

const serverDigest = (row: Row): string =>
  createHash('sha256').update(`${text(row.host)}\n${text(row.port)}\n${text(row.serverId)}`).digest('hex').slice(0, 16);

/**
 * The session watermark, `<connection id>@<server digest>`, from WATERMARK_QUERY's rows, run on a
 * fresh login with the new password. Connection ids grow with every connection, so every session
 * opened with the old password (before the change, hence before this one) has a lower id: those
 * at or above it may be spared. Ids restart with the server (later sessions then look old: ended,
 * which is safe) and wrap at 2^32: a session of the user numbered above this one is either brand
 * new or from before a wrap, so then there is no watermark and every session ends.
 */
export function sessionWatermarkOf(rows: Row[], username: string): string | undefined {
  const id = Number(rows[0]?.id);
  if (!Number.isSafeInteger(id) || rows.some((r) => r.later != null && text(r.user) === username)) return undefined;
  return `${id}@${serverDigest(rows[0]!)}`;
}

function parseWatermark(watermark: string | undefined): { id: number; server: string } | undefined {
  const match = /^(\d{1,15})@([0-9a-f]{16})$/.exec(watermark ?? '');
  return match ? { id: Number(match[1]), server: match[2]! } : undefined;
}

/**
 * The server refused the credentials: wrong password or unknown user (1045), no password given
 * (1698), account locked (MySQL 3118; MariaDB 4151, which mysql2 names after an unrelated MySQL
 * error). Only meaningful while logging in: after login, 1045 means a statement was refused.
 */
function isLoginRefusal(error: unknown): boolean {
  const errno = errnoOf(error);
  if (errno === 1045 || errno === 1698 || errno === 3118) return true;
  return errno === 4151 && /locked/i.test(error instanceof Error ? error.message : '');
}

/**
 * MySQL and MariaDB (and their Aurora/RDS forms). Admin work runs on a small pool per admin login;
 * login checks always use a fresh connection, because a pooled one proves nothing about a password.
 *
 * Every statement carrying a name or a password is built with the driver's client-side escaping,
 * which relies on backslash escapes: each session is checked for NO_BACKSLASH_ESCAPES first.
 */
export class MysqlTarget implements Target {
  readonly engines = ['mysql', 'mariadb'] as const;
  readonly #pools = new Map<string, mysql.Pool>();

  /**
   * Without a server this cannot tell MySQL from MariaDB (secrets often say `mysql` for both), so
   * it applies MariaDB's 80-character limit; MySQL's 32 is enforced once connected.
   */
  validateUsername(username: string, options: { alternating: boolean }): void {
    checkUsername(username, MARIADB_MAX_USERNAME_CHARS, 'MariaDB', options.alternating);
  }

  async setPassword(_on: Login, username: string, password: Sealed<string>, via: Via, options?: SetPasswordOptions): Promise<void> {
    this.#checkName(username);
    const secrets = withEscapedForms([password, via.admin?.password, options?.restoreTo, ...(via.self ?? []).map((l) => l.password)]);
    const action = `change the password of ${username}`;
    if (via.admin) {
      const unconfirmed = await this.#asAdmin(via.admin, secrets, async (run, server) => {
        checkForServer(server, [username]);
        const hosts = await userHosts(run, server, username, `look up the hosts of ${username}`);
        if (hosts.length === 0) throw new TargetError('ROLE_NOT_FOUND', `user ${username} does not exist on ${endpoint(via.admin!)}`);
        // Every host the user really has: a login from any of them must take the new password,
        // and one left behind would keep the old one working.
        const set = async (value: Sealed<string>, what: string) => {
          if (server.mariadb) {
            // MariaDB's ALTER USER … IDENTIFIED BY switches the account to mysql_native_password;
            // SET PASSWORD keeps its plugin (ed25519, parsec) and hashes with it.
            for (const host of hosts) await run(mysql.format(`SET PASSWORD FOR ${account(username, host)} = PASSWORD(?)`, [value.reveal()]), what);
          } else {
            // MySQL keeps each account's plugin; one statement changes every host.
            const clauses = hosts.map((host) => mysql.format(`${account(username, host)} IDENTIFIED BY ?`, [value.reveal()]));
            await run(`ALTER USER ${clauses.join(', ')}`, what);
          }
        };
        await set(password, action);
        return confirmOrRestore(options, username, (previous) => set(previous, `put back the previous password of ${username}`));
      });
      if (unconfirmed) throw unconfirmed.error;
      return;
    }
    const self = selfLogins(via, username, 'change its password');
    for (const login of self) {
      if (login.username !== username) {
        throw new ValidationError(`a login as ${login.username} cannot change the password of ${username} without an admin`);
      }
    }
    let unconfirmed: { error: unknown } | undefined;
    const done = await this.#asSelf(self, secrets, action, async (run, server, login) => {
      checkForServer(server, [username]);
      // A user changes the password of the account its login matched (one user@host), which is
      // all it may change without an admin. `from` is the password this session knows is set.
      const set = async (value: Sealed<string>, from: Sealed<string>, what: string) => {
        if (server.mariadb) {
          // MariaDB's ALTER USER needs CREATE USER even for one's own account; SET PASSWORD does not.
          await run(mysql.format('SET PASSWORD = PASSWORD(?)', [value.reveal()]), what);
          return;
        }
        try {
          await run(mysql.format('ALTER USER CURRENT_USER() IDENTIFIED BY ?', [value.reveal()]), what);
        } catch (error) {
          // password_require_current: prove the current password, which this session knows.
          if (!(error instanceof TargetError && (error.cause as { code?: string } | undefined)?.code === 'ER_MISSING_CURRENT_PASSWORD')) throw error;
          await run(mysql.format('ALTER USER CURRENT_USER() IDENTIFIED BY ? REPLACE ?', [value.reveal(), from.reveal()]), what);
        }
      };
      // Logging in with the target value means an earlier run already set it.
      if (login.password.reveal() !== password.reveal()) await set(password, login.password, action);
      unconfirmed = await confirmOrRestore(options, username, (previous) => set(previous, password, `put back the previous password of ${username}`));
    });
    if (unconfirmed) throw unconfirmed.error;
    if (!done) throw new TargetError('LOGIN_FAILED', `cannot log in as ${username} to change its password`);
  }

  /**
   * Makes `clone` exist for exactly the hosts of `original` (creating missing ones with a random
   * password and dropping hosts the original no longer has), with its REQUIRE clause and resource
   * limits, and grants equal to the original's: privileges at every level (added and removed),
   * GRANT OPTION, roles with ADMIN OPTION, default roles and PROXY grants. Reads `original` only.
   */
  async syncClone(admin: Login, original: string, clone: string): Promise<void> {
    this.#checkName(original);
    this.#checkName(clone);
    if (original === clone) throw new ValidationError(`the alternating user must differ from ${original}`);
    const initial = randomBytes(32).toString('base64');
    const secrets = withEscapedForms([admin.password, initial]);

    await this.#asAdmin(admin, secrets, async (run, server) => {
      checkForServer(server, [original, clone]);
      // Both users' accounts in one round trip.
      const both = await accounts(run, server, [original, clone]);
      const originals = both.filter((a) => a.user === original);
      if (originals.length === 0) {
        throw new TargetError('ROLE_NOT_FOUND', `user ${original} does not exist on ${endpoint(admin)}`);
      }
      let clones = both.filter((a) => a.user === clone);
      const originalHosts = new Set(originals.map((a) => a.host));
      let changed = false;
      for (const stale of clones.filter((a) => !originalHosts.has(a.host))) {
        // Same hosts as the original, no more: a clone host the original lacks would let the
        // rotated password in from somewhere the original is not allowed.
        await run(`DROP USER ${account(clone, stale.host)}`, `drop ${clone} for a host ${original} no longer has`);
        changed = true;
      }
      const cloneHosts = new Set(clones.map((a) => a.host));
      for (const { host, plugin } of originals) {
        if (cloneHosts.has(host)) continue;
        // A password nobody knows until setPassword gives the clone its real one, hashed by the
        // original's plugin so clients authenticate both alike; IF NOT EXISTS because a concurrent
        // run may have created it first, which is the state we want.
        await run(mysql.format(`CREATE USER IF NOT EXISTS ${account(clone, host)} ${identifiedBy(server, plugin)}`, [initial]), `create user ${clone}`);
        changed = true;
      }
      if (changed) clones = await accounts(run, server, [clone]);

      for (const source of originals) {
        const mirror = clones.find((a) => a.host === source.host);
        if (mirror && source.options !== mirror.options) {
          await run(`ALTER USER ${account(clone, source.host)} ${source.options}`, `copy the REQUIRE clause and limits of ${original} to ${clone}`);
        }
        const read = async (user: string) => {
          const grants = parseGrants(await showGrants(run, user, source.host), user, source.host);
          // MySQL 8 keeps default roles out of SHOW GRANTS; 5.7 has no roles.
          if (!server.mariadb && majorVersion(server) >= 8) grants.defaultRoles = await mysqlDefaultRoles(run, user, source.host);
          return grants;
        };
        const wanted = await read(original);
        const statements = grantDiff(wanted, await read(clone), account(clone, source.host), server);
        for (const statement of statements) await run(statement, `mirror the grants of ${original} on ${clone}`);
        // Prove the end state rather than trust the diff: a grant form this code does not
        // understand must fail the rotation, not leave a clone with other rights than the original.
        if (statements.length > 0 && grantDiff(wanted, await read(clone), account(clone, source.host), server).length > 0) {
          throw new TargetError('CLONE_DRIFT', `the grants of ${clone}@${source.host} still differ from those of ${original} after mirroring`);
        }
      }
    });
  }

  /** Also reports the session watermark `endSessions` uses (see `sessionWatermarkOf`). */
  async verify(login: Login): Promise<VerifyReport> {
    this.#checkName(login.username);
    const secrets = [login.password];
    const action = `log in as ${login.username}`;
    let connection: mysql.Connection;
    try {
      connection = await mysql.createConnection(connectionConfig(login, login.dbname));
    } catch (error) {
      throw this.#error(error, login, action, secrets, 'connect');
    }
    connection.on('error', () => {}); // a dropped connection is reported by the awaited call
    try {
      // One round trip: the check query is the watermark's (no name spliced in, so no escaping).
      const [rows] = await connection.query<mysql.RowDataPacket[]>(WATERMARK_QUERY);
      const sessionWatermark = sessionWatermarkOf(rows, login.username);
      return sessionWatermark ? { sessionWatermark } : {};
    } catch (error) {
      throw this.#error(error, login, action, secrets, 'query');
    } finally {
      await connection.end().catch(() => connection.destroy());
    }
  }

  canLogIn(login: Login): Promise<boolean> {
    return logsIn(() => this.verify(login));
  }

  /**
   * MySQL and MariaDB keep no session start time (PROCESSLIST.TIME is the time spent in the
   * current state), so `startedBefore` cannot be honoured. With a `sessionWatermark` from
   * `verify` of the new password, sessions at or above it on the server that verify ran on are
   * spared: they connected after the password changed. Every other session ends — ending one too
   * many is safe for a revoke; sparing one opened with the old password is not.
   */
  async endSessions(_on: Login, username: string, via: Via, options: { startedBefore?: Date; sessionWatermark?: string } = {}): Promise<number> {
    this.#checkName(username);
    const action = `end the sessions of ${username}`;
    const mark = parseWatermark(options.sessionWatermark);
    const kill = async (run: Run, server: Server): Promise<number> => {
      checkForServer(server, [username]);
      const rows = await run(
        mysql.format(`SELECT ID AS id, USER AS user, ${SERVER_COLUMNS} FROM information_schema.PROCESSLIST WHERE USER = ? AND ID <> CONNECTION_ID()`, [username]),
        `list the sessions of ${username}`,
      );
      let ended = 0;
      // USER compares case-insensitively in PROCESSLIST: keep exact matches only.
      for (const row of rows.filter((r) => text(r.user) === username)) {
        const id = Number(row.id);
        if (!Number.isSafeInteger(id)) continue;
        if (mark && id >= mark.id && serverDigest(row) === mark.server) continue;
        try {
          await run(mysql.format('KILL CONNECTION ?', [id]), action);
          ended++;
        } catch (error) {
          // Gone between the listing and the KILL: nothing left to end.
          if (!(error instanceof TargetError && (error.cause as { code?: string } | undefined)?.code === 'ER_NO_SUCH_THREAD')) throw error;
        }
      }
      return ended;
    };
    if (via.admin) return this.#asAdmin(via.admin, [via.admin.password], kill);

    const self = selfLogins(via, username, 'end its sessions');
    let ended: number | undefined;
    // Without PROCESS a user sees and may KILL its own threads, which is exactly what is needed.
    const done = await this.#asSelf(self, self.map((l) => l.password), action, async (run, server) => {
      ended = await kill(run, server);
    });
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

  /** Runs `fn` on a pooled admin connection, released afterwards. */
  async #asAdmin<T>(admin: Login, secrets: Secrets, fn: (run: Run, server: Server) => Promise<T>): Promise<T> {
    let connection: mysql.PoolConnection;
    try {
      connection = await this.#pool(admin).getConnection();
    } catch (error) {
      throw this.#error(error, admin, `log in as ${admin.username}`, secrets, 'connect');
    }
    try {
      const run = this.#runner(connection, admin, secrets);
      // Checked once per pooled connection: its sql_mode is session state only rekey's own
      // statements touch, and its server cannot change without a new connection.
      let server = preparedSessions.get(connection.connection);
      if (!server) {
        server = await prepareSession(run);
        preparedSessions.set(connection.connection, server);
      }
      return await fn(run, server);
    } finally {
      connection.release();
    }
  }

  /**
   * Tries each login in order on a fresh connection; a refused one is skipped (the next may be the
   * pending value), anything else stops. Returns false when none logged in.
   */
  async #asSelf(logins: Login[], secrets: Secrets, action: string, fn: (run: Run, server: Server, login: Login) => Promise<void>): Promise<boolean> {
    for (const login of logins) {
      let connection: mysql.Connection;
      try {
        connection = await mysql.createConnection(connectionConfig(login, undefined));
      } catch (error) {
        if (isLoginRefusal(error)) continue;
        throw this.#error(error, login, action, secrets, 'connect');
      }
      connection.on('error', () => {});
      try {
        const run = this.#runner(connection, login, secrets);
        await fn(run, await prepareSession(run), login);
        return true;
      } finally {
        await connection.end().catch(() => connection.destroy());
      }
    }
    return false;
  }

  #runner(connection: mysql.Connection, login: Login, secrets: Secrets): Run {
    return async (sql, action) => {
      try {
        const [rows] = await connection.query(sql);
        return Array.isArray(rows) ? (rows as Row[]) : [];
      } catch (error) {
        throw this.#error(error, login, action, secrets, 'query');
      }
    };
  }

  /** One pool per admin identity; a changed admin password gets a pool of its own. */
  #pool(admin: Login): mysql.Pool {
    const passwordHash = createHash('sha256').update(admin.password.reveal()).digest('hex');
    const key = JSON.stringify([admin.host, admin.port, admin.username, admin.ssl === true, passwordHash]);
    let pool = this.#pools.get(key);
    if (!pool) {
      // No default database: account management needs none, and a missing one would fail the login.
      // Idle connections stay until close(): mysql2 trims them only with an un-unref'd 1 s timer
      // (when maxIdle < connectionLimit) that would keep a CLI process alive just the same.
      pool = mysql.createPool({ ...connectionConfig(admin, undefined), connectionLimit: POOL_MAX, maxIdle: POOL_MAX });
      this.#pools.set(key, pool);
    }
    return pool;
  }

  /** A driver error as a TargetError naming identifiers only; the cause keeps a scrubbed message. */
  #error(error: unknown, login: Login, action: string, secrets: Secrets, phase: Phase): RekeyError {
    if (error instanceof RekeyError) return error;
    const cause = redactCause(error, secrets);
    // Parse errors quote the statement from the failing token on, possibly cut short, so a
    // password prefix could survive scrubbing: drop the quoted fragment altogether.
    cause.message = cause.message.replace(/near '[\s\S]*' at line (\d+)/, 'near [statement withheld] at line $1');
    const code = codeOf(error);
    const errno = errnoOf(error);
    const where = endpoint(login);
    const message = error instanceof Error ? error.message : '';
    if (phase === 'connect' && isLoginRefusal(error)) {
      return new TargetError('LOGIN_FAILED', `login as ${login.username} refused by ${where}`, { cause });
    }
    if (/SSL|TLS|CERT/i.test(code ?? '') || /secure connection/i.test(message)) {
      return new TargetError('TLS_FAILED', `TLS connection to ${where} failed (certificate not verified or TLS not offered)`, { cause });
    }
    if (code && UNREACHABLE_CODES.has(code)) {
      return new TargetError('TARGET_UNREACHABLE', `cannot reach ${where} to ${action}`, { retryable: true, cause });
    }
    if (errno !== undefined && PERMISSION_ERRNOS.has(errno)) {
      return new TargetError('PERMISSION_DENIED', `${login.username} may not ${action} on ${where}`, { cause });
    }
    const suffix = errno !== undefined ? ` (error ${errno})` : '';
    return new TargetError('TARGET_FAILED', `could not ${action} on ${where} as ${login.username}${suffix}`, {
      retryable: errno !== undefined && TRANSIENT_ERRNOS.has(errno),
      cause,
    });
  }
}

/** Runs one complete SQL text (already escaped) and returns its rows. */
type Run = (sql: string, action: string) => Promise<Row[]>;

function checkUsername(username: string, limit: number, engine: string, alternating: boolean): void {
  if (username.length === 0) throw new ValidationError('username must not be empty');
  if (username.includes('\0')) throw new ValidationError('username must not contain a NUL byte');
  const length = characters(username);
  if (length > limit) {
    throw new ValidationError(`username ${username} is ${length} characters; ${engine} user names are limited to ${limit} characters`);
  }
  if (alternating) {
    const partner = alternateUsername(username);
    const partnerLength = characters(partner);
    if (partnerLength > limit) {
      throw new ValidationError(
        `alternating user ${partner} (for ${username}) is ${partnerLength} characters; ${engine} user names are limited to ${limit} characters, so the name must leave room for "_clone"`,
      );
    }
  }
}

/** MySQL's shorter limit, once the server is known. */
function checkForServer(server: Server, usernames: string[]): void {
  if (server.mariadb) return;
  for (const username of usernames) checkUsername(username, MYSQL_MAX_USERNAME_CHARS, 'MySQL', false);
}

function selfLogins(via: Via, username: string, purpose: string): Login[] {
  const self = via.self ?? [];
  if (self.length === 0) throw new ValidationError(`no admin or own login given for ${username} to ${purpose}`);
  return self;
}

/** Known secrets plus the forms they take inside an escaped statement, for scrubbing. */
function withEscapedForms(secrets: Secrets): Secrets {
  const out: Secrets = [];
  for (const secret of secrets) {
    if (secret === undefined) continue;
    const value = typeof secret === 'string' ? secret : secret.reveal();
    out.push(value, mysql.escape(value).slice(1, -1));
  }
  return out;
}

/** Pooled connections already prepared (by their driver connection object): one round trip saved per admin call. */
const preparedSessions = new WeakMap<object, Server>();

/**
 * Learns the server flavour and makes the session safe for client-side escaping: the driver
 * escapes quotes with backslashes, which NO_BACKSLASH_ESCAPES would turn into string terminators.
 */
async function prepareSession(run: Run): Promise<Server> {
  const [row] = await run('SELECT VERSION() AS version, @@SESSION.sql_mode AS sqlMode', 'read the server version');
  const version = text(row?.version);
  const modes = text(row?.sqlMode).split(',').filter(Boolean);
  if (modes.some((mode) => mode.toUpperCase() === 'NO_BACKSLASH_ESCAPES')) {
    const kept = modes.filter((mode) => mode.toUpperCase() !== 'NO_BACKSLASH_ESCAPES').join(',');
    await run(mysql.format('SET SESSION sql_mode = ?', [kept]), 'turn backslash escapes back on');
  }
  return { mariadb: /mariadb/i.test(version), version };
}

/** The hosts `username` exists for (roles excluded), compared exactly: the column's collation pads spaces. */
async function userHosts(run: Run, server: Server, username: string, action: string): Promise<string[]> {
  const roleFilter = server.mariadb ? " AND is_role = 'N'" : '';
  const rows = await run(mysql.format(`SELECT User AS user, Host AS host FROM mysql.user WHERE User = ?${roleFilter}`, [username]), action);
  return rows.filter((row) => text(row.user) === username).map((row) => text(row.host));
}

/** Password plugins whose name may be written into CREATE USER (never text read from the server). */
const PASSWORD_PLUGINS = {
  // mysql_native_password is what MariaDB's IDENTIFIED BY gives anyway, on every version.
  mariadb: new Set(['ed25519', 'parsec']),
  mysql: new Set(['mysql_native_password', 'caching_sha2_password', 'sha256_password']),
};

/** `IDENTIFIED … ?` for a new account using `plugin` when it is a known password plugin, else the server's default. */
function identifiedBy(server: Server, plugin: string): string {
  if (server.mariadb) return PASSWORD_PLUGINS.mariadb.has(plugin) ? `IDENTIFIED VIA ${plugin} USING PASSWORD(?)` : 'IDENTIFIED BY ?';
  return PASSWORD_PLUGINS.mysql.has(plugin) ? `IDENTIFIED WITH ${plugin} BY ?` : 'IDENTIFIED BY ?';
}

/** Each host of each of `usernames` with its auth plugin, and its REQUIRE clause and resource limits as an ALTER USER tail. */
async function accounts(run: Run, server: Server, usernames: string[]): Promise<{ user: string; host: string; plugin: string; options: string }[]> {
  const roleFilter = server.mariadb ? " AND is_role = 'N'" : '';
  const statementTime = server.mariadb ? ', max_statement_time AS maxStatementTime' : '';
  const rows = await run(
    mysql.format(
      `SELECT User AS user, Host AS host, plugin, ssl_type AS sslType, ssl_cipher AS sslCipher, x509_issuer AS issuer, x509_subject AS subject,
              max_questions AS maxQuestions, max_updates AS maxUpdates, max_connections AS maxConnections,
              max_user_connections AS maxUserConnections${statementTime}
         FROM mysql.user WHERE User IN (?)${roleFilter}`,
      [usernames],
    ),
    `look up user ${usernames.join(' and ')}`,
  );
  return rows
    .filter((row) => usernames.includes(text(row.user)))
    .map((row) => ({ user: text(row.user), host: text(row.host), plugin: text(row.plugin), options: accountOptions(row) }));
}

/** `REQUIRE … WITH …` for ALTER USER, every literal escaped by the driver. */
function accountOptions(row: Row): string {
  let require: string;
  switch (text(row.sslType).toUpperCase()) {
    case 'ANY':
      require = 'REQUIRE SSL';
      break;
    case 'X509':
      require = 'REQUIRE X509';
      break;
    case 'SPECIFIED': {
      const parts = [
        ['ISSUER', text(row.issuer)],
        ['SUBJECT', text(row.subject)],
        ['CIPHER', text(row.sslCipher)],
      ]
        .filter(([, value]) => value !== '')
        .map(([name, value]) => `${name} ${mysql.escape(value)}`);
      require = parts.length > 0 ? `REQUIRE ${parts.join(' AND ')}` : 'REQUIRE X509';
      break;
    }
    default:
      require = 'REQUIRE NONE';
  }
  const limit = (value: unknown): number => {
    const n = Number(text(value) || 0);
    return Number.isFinite(n) && n >= 0 ? n : 0;
  };
  const limits = [
    `MAX_QUERIES_PER_HOUR ${Math.trunc(limit(row.maxQuestions))}`,
    `MAX_UPDATES_PER_HOUR ${Math.trunc(limit(row.maxUpdates))}`,
    `MAX_CONNECTIONS_PER_HOUR ${Math.trunc(limit(row.maxConnections))}`,
    `MAX_USER_CONNECTIONS ${Math.trunc(limit(row.maxUserConnections))}`,
  ];
  if ('maxStatementTime' in row) limits.push(`MAX_STATEMENT_TIME ${limit(row.maxStatementTime)}`);
  return `${require} WITH ${limits.join(' ')}`;
}

async function showGrants(run: Run, user: string, host: string): Promise<string[]> {
  const rows = await run(`SHOW GRANTS FOR ${account(user, host)}`, `read the grants of ${user}`);
  return rows.map((row) => text(Object.values(row)[0]));
}

const majorVersion = (server: Server): number => Number.parseInt(server.version, 10) || 0;

async function mysqlDefaultRoles(run: Run, user: string, host: string): Promise<string | undefined> {
  const rows = await run(
    mysql.format('SELECT DEFAULT_ROLE_USER AS user, DEFAULT_ROLE_HOST AS host FROM mysql.default_roles WHERE USER = ? AND HOST = ?', [user, host]),
    `read the default roles of ${user}`,
  );
  const roles = rows.map((row) => account(text(row.user), text(row.host))).sort();
  return roles.length > 0 ? roles.join(', ') : undefined;
}

// ---------------------------------------------------------------------------------------------
// Grants: SHOW GRANTS lines are parsed into privileges per object, roles and default roles, then
// re-issued for the clone by reconstruction. The grantee is never edited in the server's text:
// each line's grantee is decoded and checked, and the clone's account is escaped afresh.

interface Token {
  kind: 'word' | 'ident' | 'string' | 'punct';
  start: number;
  end: number;
  /** Decoded: unquoted identifier or string, uppercased word, the punctuation character. */
  value: string;
}

interface ObjectGrants {
  /** `ON` target exactly as the server wrote it (`*.*`, `` `db`.* ``, `` PROCEDURE `db`.`p` ``, `` `u`@`h` `` for PROXY). */
  object: string;
  /** Privileges, one per column for column privileges: `SELECT`, ``UPDATE (`note`)``. */
  privileges: Set<string>;
  grantOption: boolean;
}

interface Grants {
  /** Keyed by `ON` target. */
  granted: Map<string, ObjectGrants>;
  /** MySQL partial revokes (`REVOKE … ON db.* FROM u`), keyed by `ON` target. */
  restricted: Map<string, ObjectGrants>;
  /** Role text as the server wrote it → WITH ADMIN OPTION. */
  roles: Map<string, boolean>;
  defaultRoles: string | undefined;
}

export function tokenize(sql: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < sql.length) {
    const ch = sql[i]!;
    if (/\s/.test(ch)) {
      i++;
      continue;
    }
    const start = i;
    if (ch === '`' || ch === "'" || ch === '"') {
      let value = '';
      i++;
      for (;;) {
        if (i >= sql.length) throw new Error('unterminated quoted token in a grant statement');
        const c = sql[i]!;
        if (c === ch) {
          if (sql[i + 1] === ch) {
            value += ch;
            i += 2;
            continue;
          }
          i++;
          break;
        }
        if (c === '\\' && ch !== '`' && i + 1 < sql.length) {
          const next = sql[i + 1]!;
          value += ({ n: '\n', t: '\t', r: '\r', '0': '\0', b: '\b', Z: '\x1a' } as Record<string, string>)[next] ?? next;
          i += 2;
          continue;
        }
        value += c;
        i++;
      }
      tokens.push({ kind: ch === '`' ? 'ident' : 'string', start, end: i, value });
      continue;
    }
    if (/[A-Za-z0-9_$]/.test(ch)) {
      while (i < sql.length && /[A-Za-z0-9_$]/.test(sql[i]!)) i++;
      tokens.push({ kind: 'word', start, end: i, value: sql.slice(start, i).toUpperCase() });
      continue;
    }
    i++;
    tokens.push({ kind: 'punct', start, end: i, value: ch });
  }
  return tokens;
}

/** Index of the first word `word` at parenthesis depth 0, from `from`; -1 when absent. */
function findWord(tokens: Token[], word: string, from = 0): number {
  let depth = 0;
  for (let i = from; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (t.kind === 'punct' && t.value === '(') depth++;
    else if (t.kind === 'punct' && t.value === ')') depth--;
    else if (depth === 0 && t.kind === 'word' && t.value === word) return i;
  }
  return -1;
}

/** Tokens split at top-level commas. */
function splitList(tokens: Token[]): Token[][] {
  const items: Token[][] = [[]];
  let depth = 0;
  for (const t of tokens) {
    if (t.kind === 'punct' && t.value === '(') depth++;
    if (t.kind === 'punct' && t.value === ')') depth--;
    if (depth === 0 && t.kind === 'punct' && t.value === ',') items.push([]);
    else items[items.length - 1]!.push(t);
  }
  return items.filter((item) => item.length > 0);
}

const slice = (sql: string, tokens: Token[]): string => (tokens.length === 0 ? '' : sql.slice(tokens[0]!.start, tokens[tokens.length - 1]!.end));

/** `user@host` at `tokens[at]`, decoded; undefined when the tokens there are not an account. */
function accountAt(tokens: Token[], at: number): { user: string; host: string; end: number } | undefined {
  const [user, sep, host] = [tokens[at], tokens[at + 1], tokens[at + 2]];
  const name = (t: Token | undefined) => t !== undefined && t.kind !== 'punct';
  if (!name(user) || sep?.kind !== 'punct' || sep.value !== '@' || !name(host)) return undefined;
  return { user: user!.value, host: host!.value, end: at + 3 };
}

/** Privilege items of a GRANT list, column privileges split per column. */
function privilegeItems(sql: string, tokens: Token[]): string[] {
  const out: string[] = [];
  for (const item of splitList(tokens)) {
    const open = item.findIndex((t) => t.kind === 'punct' && t.value === '(');
    const name = (open < 0 ? item : item.slice(0, open)).map((t) => t.value).join(' ');
    if (open < 0) {
      if (name !== 'USAGE') out.push(name);
      continue;
    }
    const close = item.findIndex((t, i) => i > open && t.kind === 'punct' && t.value === ')');
    for (const column of splitList(item.slice(open + 1, close < 0 ? undefined : close))) out.push(`${name} (${slice(sql, column)})`);
  }
  return out;
}

/** The grants SHOW GRANTS lists for `user@host`, ignoring lines for other grantees (PUBLIC). */
export function parseGrants(lines: string[], user: string, host: string): Grants {
  const grants: Grants = { granted: new Map(), restricted: new Map(), roles: new Map(), defaultRoles: undefined };
  const fail = (): never => {
    throw new TargetError('GRANTS_UNREADABLE', `a grant of ${user}@${host} has a form rekey cannot mirror`);
  };
  for (const sql of lines) {
    let tokens: Token[];
    try {
      tokens = tokenize(sql);
    } catch {
      return fail();
    }
    const head = tokens.map((t) => t.value);
    if (head[0] === 'SET' && head[1] === 'DEFAULT' && head[2] === 'ROLE') {
      const at = findWord(tokens, 'FOR', 3);
      const grantee = at < 0 ? undefined : accountAt(tokens, at + 1);
      if (!grantee) return fail();
      if (grantee.user !== user || grantee.host !== host) continue;
      grants.defaultRoles = slice(sql, tokens.slice(3, at));
      continue;
    }
    const revoke = head[0] === 'REVOKE';
    if (head[0] !== 'GRANT' && !revoke) return fail();
    const to = findWord(tokens, revoke ? 'FROM' : 'TO', 1);
    if (to < 0) return fail();
    const on = findWord(tokens.slice(0, to), 'ON', 1);
    const grantee = accountAt(tokens, to + 1);
    if (!grantee || grantee.user !== user || grantee.host !== host) {
      if (tokens[to + 1]?.value === 'PUBLIC' || grantee) continue;
      return fail();
    }
    const tail = tokens.slice(grantee.end).map((t) => (t.kind === 'word' ? t.value : ' '));
    const hasOption = (word: string) => tail.some((w, i) => w === word && tail[i + 1] === 'OPTION');
    if (on < 0) {
      if (revoke) return fail();
      for (const role of splitList(tokens.slice(1, to))) grants.roles.set(slice(sql, role), hasOption('ADMIN'));
      continue;
    }
    const object = slice(sql, tokens.slice(on + 1, to));
    const map = revoke ? grants.restricted : grants.granted;
    const entry = map.get(object) ?? { object, privileges: new Set<string>(), grantOption: false };
    for (const privilege of privilegeItems(sql, tokens.slice(1, on))) entry.privileges.add(privilege);
    if (!revoke && hasOption('GRANT')) entry.grantOption = true;
    map.set(object, entry);
  }
  return grants;
}

/** Statements that make `have` (the clone's grants) equal to `want` (the original's), for `grantee`. */
export function grantDiff(want: Grants, have: Grants, grantee: string, server: Server): string[] {
  const removals: string[] = [];
  const additions: string[] = [];
  const list = (items: Iterable<string>) => [...items].join(', ');
  const none: ObjectGrants = { object: '', privileges: new Set(), grantOption: false };

  for (const [object, has] of have.granted) {
    const wants = want.granted.get(object) ?? none;
    const extra = [...has.privileges].filter((p) => !wants.privileges.has(p));
    if (extra.length > 0) removals.push(`REVOKE ${list(extra)} ON ${object} FROM ${grantee}`);
    if (has.grantOption && !wants.grantOption) removals.push(`REVOKE GRANT OPTION ON ${object} FROM ${grantee}`);
  }
  // A partial revoke the original lacks is lifted by granting the privilege back.
  for (const [object, has] of have.restricted) {
    const wants = want.restricted.get(object) ?? none;
    const extra = [...has.privileges].filter((p) => !wants.privileges.has(p));
    if (extra.length > 0) removals.push(`GRANT ${list(extra)} ON ${object} TO ${grantee}`);
  }
  for (const [object, wants] of want.granted) {
    const has = have.granted.get(object) ?? none;
    const missing = [...wants.privileges].filter((p) => !has.privileges.has(p));
    const needsOption = wants.grantOption && !has.grantOption;
    if (missing.length > 0 || needsOption) {
      additions.push(`GRANT ${missing.length > 0 ? list(missing) : 'USAGE'} ON ${object} TO ${grantee}${needsOption ? ' WITH GRANT OPTION' : ''}`);
    }
  }
  // Partial revokes apply on top of the global grants, so after them.
  for (const [object, wants] of want.restricted) {
    const has = have.restricted.get(object) ?? none;
    const missing = [...wants.privileges].filter((p) => !has.privileges.has(p));
    if (missing.length > 0) additions.push(`REVOKE ${list(missing)} ON ${object} FROM ${grantee}`);
  }
  for (const [role, admin] of have.roles) {
    if (!want.roles.has(role)) removals.push(`REVOKE ${role} FROM ${grantee}`);
    else if (admin && !want.roles.get(role)) removals.push(`REVOKE ADMIN OPTION FOR ${role} FROM ${grantee}`);
  }
  for (const [role, admin] of want.roles) {
    const has = have.roles.get(role);
    if (has === undefined || (admin && !has)) additions.push(`GRANT ${role} TO ${grantee}${admin ? ' WITH ADMIN OPTION' : ''}`);
  }
  // Default roles last: a role must be granted before it can be the default.
  if (want.defaultRoles !== have.defaultRoles) {
    const roles = want.defaultRoles ?? 'NONE';
    additions.push(server.mariadb ? `SET DEFAULT ROLE ${roles} FOR ${grantee}` : `SET DEFAULT ROLE ${roles} TO ${grantee}`);
  }
  return [...removals, ...additions];
}

function connectionConfig(login: Login, database: string | undefined): mysql.ConnectionOptions {
  return {
    host: login.host,
    port: login.port,
    user: login.username,
    password: login.password.reveal(),
    ...(database !== undefined ? { database } : {}),
    // Verified TLS when asked for, plaintext only when the secret says so: never a silent fallback.
    ...(login.ssl === true ? { ssl: { rejectUnauthorized: true } } : {}),
    connectTimeout: CONNECT_TIMEOUT_MS,
    multipleStatements: false,
    connectAttributes: { program_name: 'rekey' },
  };
}
