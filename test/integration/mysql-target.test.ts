import { afterAll, afterEach, beforeAll, describe, expect, it, onTestFinished, vi } from 'vitest';
import { randomBytes } from 'node:crypto';
import mysql from 'mysql2/promise';
import { grantDiff, MysqlTarget, parseGrants, sessionWatermarkOf } from '#adapters/targets/mysql.ts';
import { TargetError, ValidationError } from '#core/errors.ts';
import type { Login } from '#core/ports/target.ts';
import { Sealed } from '#core/sealed.ts';
import { adminQuery, adminSecret, assertCanLogIn, assertCannotLogIn, openSession, servers, tryLogin, uniqueName } from '#test/helpers/databases.ts';
import { LeakGuard } from '#test/helpers/leak-guard.ts';
import { createUser, dropUser } from '#test/helpers/users.ts';

const password = (label = 'pw'): string => `${label}-${randomBytes(12).toString('base64url')}`;
const account = (user: string, host = '%'): string => mysql.format('?@?', [user, host]);
const db = () => mysql.escapeId(servers().mysql.database);
/** Accounts to drop afterwards, every host. */
const created: { user: string; hosts: string[] }[] = [];
const roles: string[] = [];
const tables: string[] = [];

let target: MysqlTarget;
let admin: Login;
const loginAs = (username: string, pw: string): Login => ({ ...admin, username, password: new Sealed(pw) });

async function user(name = uniqueName('rkmy'), pw = password('init'), extraHosts: string[] = []): Promise<{ name: string; pw: string; login: Login }> {
  created.push({ user: name, hosts: ['%', ...extraHosts] }, { user: `${name}_clone`, hosts: ['%', ...extraHosts] });
  await createUser('mysql', name, pw);
  for (const host of extraHosts) await adminQuery('mysql', `CREATE USER ${account(name, host)} IDENTIFIED BY ?`, [password('other-host')]);
  return { name, pw, login: loginAs(name, pw) };
}

async function table(columns = 'id int, note text, secret text'): Promise<string> {
  const name = uniqueName('rkmy_t');
  tables.push(name);
  await adminQuery('mysql', `CREATE TABLE ${db()}.${mysql.escapeId(name)} (${columns})`);
  return name;
}

async function hostsOf(name: string): Promise<string[]> {
  const rows = await adminQuery<{ Host: string }>('mysql', "SELECT Host FROM mysql.user WHERE User = ? AND is_role = 'N'", [name]);
  return rows.map((r) => r.Host).sort();
}

async function authenticationStrings(name: string): Promise<Record<string, string>> {
  const rows = await adminQuery<{ Host: string; auth: string }>('mysql', 'SELECT Host, authentication_string AS auth FROM mysql.user WHERE User = ?', [name]);
  return Object.fromEntries(rows.map((r) => [r.Host, r.auth]));
}

/**
 * Every privilege of `name@host` as information_schema reports it (global, schema, table,
 * column, with IS_GRANTABLE), without the grantee: two users' lists compare directly.
 */
async function privilegesOf(name: string, host = '%'): Promise<string[]> {
  const grantee = `'${name}'@'${host}'`;
  const rows = [
    ...(await adminQuery<Row>('mysql', "SELECT CONCAT_WS(' | ', 'global', PRIVILEGE_TYPE, IS_GRANTABLE) AS p FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = ?", [grantee])),
    ...(await adminQuery<Row>('mysql', "SELECT CONCAT_WS(' | ', 'schema', TABLE_SCHEMA, PRIVILEGE_TYPE, IS_GRANTABLE) AS p FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE = ?", [grantee])),
    ...(await adminQuery<Row>('mysql', "SELECT CONCAT_WS(' | ', 'table', TABLE_SCHEMA, TABLE_NAME, PRIVILEGE_TYPE, IS_GRANTABLE) AS p FROM information_schema.TABLE_PRIVILEGES WHERE GRANTEE = ?", [grantee])),
    ...(await adminQuery<Row>('mysql', "SELECT CONCAT_WS(' | ', 'column', TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, PRIVILEGE_TYPE, IS_GRANTABLE) AS p FROM information_schema.COLUMN_PRIVILEGES WHERE GRANTEE = ?", [grantee])),
  ];
  return rows.map((r) => r.p).sort();
}
type Row = { p: string };

/** SHOW GRANTS lines with the grantee and password hash taken out, for names without quotes. */
async function grantLines(name: string, host = '%'): Promise<string[]> {
  const rows = await adminQuery<Record<string, string>>('mysql', `SHOW GRANTS FOR ${account(name, host)}`);
  return rows
    .map((r) => Object.values(r)[0]!)
    .map((line) => line.split(`\`${name}\`@\`${host}\``).join('<grantee>').replace(/ IDENTIFIED BY PASSWORD '[^']*'/, ''))
    .sort();
}

/** MariaDB's ed25519 authentication plugin, installed on the private test server when missing. */
async function ed25519Available(): Promise<boolean> {
  const active = async () =>
    Number((await adminQuery<{ n: number }>('mysql', "SELECT COUNT(*) AS n FROM information_schema.PLUGINS WHERE PLUGIN_NAME = 'ed25519' AND PLUGIN_STATUS = 'ACTIVE'"))[0]!.n) > 0;
  if (await active()) return true;
  await adminQuery('mysql', "INSTALL SONAME 'auth_ed25519'").catch(() => {});
  return active();
}

const pluginOf = async (name: string, host = '%'): Promise<string | undefined> =>
  (await adminQuery<{ plugin: string }>('mysql', 'SELECT plugin FROM mysql.user WHERE User = ? AND Host = ?', [name, host]))[0]?.plugin;

async function accountOptions(name: string, host = '%'): Promise<Record<string, unknown>> {
  const [row] = await adminQuery<Record<string, unknown>>(
    'mysql',
    `SELECT ssl_type, CAST(ssl_cipher AS CHAR) AS ssl_cipher, CAST(x509_issuer AS CHAR) AS x509_issuer, CAST(x509_subject AS CHAR) AS x509_subject,
            max_user_connections, max_questions FROM mysql.user WHERE User = ? AND Host = ?`,
    [name, host],
  );
  return row!;
}

/** Every SQL text sent through any mysql2 promise connection (pooled or not) while `fn` runs. */
async function sqlSentDuring(fn: () => Promise<void>): Promise<string[]> {
  const texts: string[] = [];
  const original = mysql.Connection.prototype.query;
  vi.spyOn(mysql.Connection.prototype, 'query').mockImplementation(function (this: mysql.Connection, ...args: unknown[]) {
    texts.push(String(args[0]));
    return (original as (...a: unknown[]) => unknown).apply(this, args);
  } as typeof original);
  await fn();
  return texts;
}

/** Makes statements matching `match` fail the way mysql2 reports a server error, SQL text included. */
function failStatements(match: RegExp, error: (sql: string) => Error): void {
  const original = mysql.Connection.prototype.query;
  vi.spyOn(mysql.Connection.prototype, 'query').mockImplementation(function (this: mysql.Connection, ...args: unknown[]) {
    const sql = String(args[0]);
    if (match.test(sql)) return Promise.reject(error(sql));
    return (original as (...a: unknown[]) => unknown).apply(this, args);
  } as typeof original);
}

/** A parse error as MariaDB words it: the statement quoted from near `secret`, cut short mid-value. */
const parseError = (secret: string) => (sql: string): Error => {
  const at = sql.indexOf(secret);
  expect(at).toBeGreaterThanOrEqual(0);
  const near = sql.slice(Math.max(0, at - 5), at + 15);
  const message = `You have an error in your SQL syntax; check the manual that corresponds to your MariaDB server version for the right syntax to use near '${near}' at line 1`;
  return Object.assign(new Error(message), { code: 'ER_PARSE_ERROR', errno: 1064, sqlState: '42000', sqlMessage: message, sql });
};

beforeAll(() => {
  target = new MysqlTarget();
  admin = adminSecret('mysql');
});

afterEach(() => {
  vi.restoreAllMocks();
});

afterAll(async () => {
  await target.close();
  for (const { user: name, hosts } of created) {
    for (const host of hosts) await adminQuery('mysql', `DROP USER IF EXISTS ${account(name, host)}`).catch(() => {});
    await dropUser('mysql', name).catch(() => {});
  }
  for (const role of roles) await adminQuery('mysql', `DROP ROLE IF EXISTS ${mysql.escapeId(role)}`).catch(() => {});
  for (const name of tables) await adminQuery('mysql', `DROP TABLE IF EXISTS ${db()}.${mysql.escapeId(name)}`).catch(() => {});
});

describe('MysqlTarget', () => {
  describe('setPassword', () => {
    it('via the admin, changes the password of every host the user exists for, not only %', async () => {
      const u = await user(uniqueName('rkmy'), password('init'), ['127.0.0.1', 'localhost', '10.0.%']);
      const next = password('next');
      await target.setPassword(u.login, u.name, new Sealed(next), { admin });
      const [{ hash }] = (await adminQuery<{ hash: string }>('mysql', 'SELECT PASSWORD(?) AS hash', [next])) as [{ hash: string }];
      expect(await authenticationStrings(u.name)).toEqual({ '%': hash, '127.0.0.1': hash, localhost: hash, '10.0.%': hash });
      // A TCP login from 127.0.0.1 matches the more specific '127.0.0.1' account, not '%'.
      await assertCanLogIn('mysql', u.name, next);
      await assertCannotLogIn('mysql', u.name, u.pw);
    });

    it('asks a pooled admin connection for its server flavour and sql_mode once, not on every call', async () => {
      const own = new MysqlTarget();
      const texts: string[] = [];
      const original = mysql.Connection.prototype.query;
      vi.spyOn(mysql.Connection.prototype, 'query').mockImplementation(function (this: mysql.Connection, ...args: unknown[]) {
        texts.push(String(args[0]));
        return (original as (...a: unknown[]) => unknown).apply(this, args);
      } as typeof original);
      try {
        const u = await user(uniqueName('rkmy'), password('init'));
        let last = u.pw;
        for (const label of ['a', 'b', 'c']) {
          last = password(label);
          await own.setPassword(u.login, u.name, new Sealed(last), { admin });
        }
        expect(texts.filter((t) => t.startsWith('SELECT VERSION()'))).toHaveLength(1);
        vi.restoreAllMocks();
        await assertCanLogIn('mysql', u.name, last);
      } finally {
        await own.close();
      }
    });

    it('via its own login, changes the account that login matched (the only one a user may change) and keeps the others', async () => {
      const u = await user(uniqueName('rkmy'), password('init'), ['127.0.0.1']);
      await adminQuery('mysql', `ALTER USER ${account(u.name, '127.0.0.1')} IDENTIFIED BY ?`, [u.pw]);
      const before = await authenticationStrings(u.name);
      const next = password('self');
      await target.setPassword(u.login, u.name, new Sealed(next), { self: [u.login] });
      const after = await authenticationStrings(u.name);
      expect(after['127.0.0.1']).not.toBe(before['127.0.0.1']);
      expect(after['%']).toBe(before['%']);
      await assertCanLogIn('mysql', u.name, next);
    });

    it("keeps a MariaDB account's authentication plugin (ed25519), which ALTER USER … IDENTIFIED BY would switch to mysql_native_password", async ({ skip }) => {
      if (!(await ed25519Available())) skip('ed25519 plugin not available');
      const name = uniqueName('rkmy_ed');
      created.push({ user: name, hosts: ['%'] });
      await adminQuery('mysql', `CREATE USER ${account(name)} IDENTIFIED VIA ed25519 USING PASSWORD(?)`, [password('init')]);
      const before = await authenticationStrings(name);
      await target.setPassword(loginAs(name, 'unused'), name, new Sealed(password('next')), { admin });
      expect(await pluginOf(name)).toBe('ed25519');
      expect((await authenticationStrings(name))['%']).not.toBe(before['%']);
    });

    it('throws ROLE_NOT_FOUND via the admin for a user with no host at all', async () => {
      const missing = uniqueName('rkmy_missing');
      await expect(target.setPassword(loginAs(missing, 'x'), missing, new Sealed(password()), { admin })).rejects.toMatchObject({ code: 'ROLE_NOT_FOUND' });
    });

    it('refuses a self login for another user (it could only change its own password)', async () => {
      const u = await user();
      const other = await user();
      await expect(target.setPassword(u.login, u.name, new Sealed(password()), { self: [other.login] })).rejects.toThrow(ValidationError);
      await assertCanLogIn('mysql', u.name, u.pw);
    });

    describe('error text', () => {
      it('keeps no password when the admin may not change passwords (PERMISSION_DENIED from the server)', async () => {
        const u = await user();
        const weak = await user(uniqueName('rkmy_weak'));
        await adminQuery('mysql', `GRANT SELECT ON mysql.* TO ${account(weak.name)}`);
        const guard = new LeakGuard();
        const next = password('next');
        [next, u.pw, weak.pw].forEach((v) => guard.secret(v));
        const error = await target.setPassword(u.login, u.name, new Sealed(next), { admin: weak.login }).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(TargetError);
        expect((error as TargetError).code).toBe('PERMISSION_DENIED');
        guard.error('setPassword', error);
        guard.assertClean();
        await assertCanLogIn('mysql', u.name, u.pw);
      });

      it.each(['via the admin', 'via its own login'])('%s, keeps neither the password nor any prefix of it when the driver error quotes the statement', async (how) => {
        const u = await user();
        const next = `it's-"q"\\${password('next')}`;
        const guard = new LeakGuard();
        [next, mysql.escape(next).slice(1, -1), u.pw].forEach((v) => guard.secret(v));
        failStatements(/^(ALTER USER|SET PASSWORD)/, parseError(mysql.escape(next).slice(1, -1)));
        const via = how === 'via the admin' ? { admin } : { self: [u.login] };
        const error = await target.setPassword(u.login, u.name, new Sealed(next), via).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(TargetError);
        expect((error as TargetError).code).toBe('TARGET_FAILED');
        expect((error as TargetError).message).toContain(u.name);
        guard.error('setPassword', error);
        guard.assertClean();
        const text = JSON.stringify({ message: (error as Error).message, stack: (error as Error).stack, cause: (error as Error).cause });
        expect(text).not.toContain(mysql.escape(next).slice(1, 13));
        expect(text).toContain('[statement withheld]');
      });
    });
  });

  describe('syncClone', () => {
    it('mirrors global, schema, table and column privileges and GRANT OPTION, then follows grants added to and revoked from the original', async () => {
      const u = await user(uniqueName('rkmy_orig'));
      const clone = `${u.name}_clone`;
      const t = `${db()}.${mysql.escapeId(await table())}`;
      const to = account(u.name);
      await adminQuery('mysql', `REVOKE ALL PRIVILEGES ON ${db()}.* FROM ${to}`);
      await adminQuery('mysql', `GRANT SELECT, INSERT ON ${db()}.* TO ${to} WITH GRANT OPTION`);
      await adminQuery('mysql', `GRANT UPDATE, DELETE ON ${t} TO ${to}`);
      await adminQuery('mysql', `GRANT UPDATE (note), SELECT (id) ON ${t} TO ${to}`);
      await adminQuery('mysql', `GRANT PROCESS ON *.* TO ${to}`);
      const originalBefore = await grantLines(u.name);

      await target.syncClone(admin, u.name, clone);
      expect(await privilegesOf(clone)).toEqual(await privilegesOf(u.name));
      expect(await privilegesOf(clone)).toContain('schema | rekey_test | INSERT | YES');

      // Changed on the original: added, revoked, grant option moved from schema to table level.
      await adminQuery('mysql', `REVOKE INSERT ON ${db()}.* FROM ${to}`);
      await adminQuery('mysql', `REVOKE GRANT OPTION ON ${db()}.* FROM ${to}`);
      await adminQuery('mysql', `GRANT CREATE ON ${db()}.* TO ${to}`);
      await adminQuery('mysql', `REVOKE DELETE ON ${t} FROM ${to}`);
      await adminQuery('mysql', `GRANT ALTER ON ${t} TO ${to} WITH GRANT OPTION`);
      await adminQuery('mysql', `REVOKE UPDATE (note) ON ${t} FROM ${to}`);
      await adminQuery('mysql', `GRANT INSERT (secret) ON ${t} TO ${to}`);
      await adminQuery('mysql', `REVOKE PROCESS ON *.* FROM ${to}`);
      const originalChanged = await grantLines(u.name);

      await target.syncClone(admin, u.name, clone);
      const mirrored = await privilegesOf(clone);
      expect(mirrored).toEqual(await privilegesOf(u.name));
      expect(mirrored).not.toContain('schema | rekey_test | INSERT | NO');
      expect(mirrored).not.toContain('global | PROCESS | NO');
      expect(mirrored.some((p) => p.includes('| note | UPDATE'))).toBe(false);
      expect(mirrored.some((p) => p.includes('| secret | INSERT'))).toBe(true);
      expect(mirrored.filter((p) => p.startsWith('table') && p.endsWith('YES')).length).toBeGreaterThan(0);
      expect(await grantLines(clone)).toEqual(originalChanged);
      expect(originalChanged).not.toEqual(originalBefore);

      // The clone really holds them.
      const clonePw = password('clone');
      await target.setPassword(loginAs(clone, clonePw), clone, new Sealed(clonePw), { admin });
      const conn = await mysql.createConnection({ host: admin.host, port: admin.port, user: clone, password: clonePw });
      try {
        await conn.query(`SELECT id, note FROM ${t}`);
        await expect(conn.query(`DELETE FROM ${t}`)).rejects.toMatchObject({ code: 'ER_TABLEACCESS_DENIED_ERROR' });
      } finally {
        await conn.end();
      }
      await assertCanLogIn('mysql', u.name, u.pw);
    });

    it('is idempotent: a second run sends no GRANT, REVOKE, CREATE, DROP or ALTER', async () => {
      const u = await user(uniqueName('rkmy_orig'));
      await adminQuery('mysql', `GRANT SELECT (id) ON ${db()}.${mysql.escapeId(await table())} TO ${account(u.name)} WITH GRANT OPTION`);
      await target.syncClone(admin, u.name, `${u.name}_clone`);
      const texts = await sqlSentDuring(() => target.syncClone(admin, u.name, `${u.name}_clone`));
      expect(texts.filter((t) => /^(GRANT|REVOKE|CREATE|DROP|ALTER|SET DEFAULT)/.test(t))).toEqual([]);
    });

    it('mirrors roles with ADMIN OPTION and the default role, and removes them when the original loses them', async () => {
      const u = await user(uniqueName('rkmy_orig'));
      const clone = `${u.name}_clone`;
      const role = uniqueName('rkmy_role');
      roles.push(role);
      await adminQuery('mysql', `CREATE ROLE ${mysql.escapeId(role)}`);
      await adminQuery('mysql', `GRANT SELECT ON ${db()}.* TO ${mysql.escapeId(role)}`);
      await adminQuery('mysql', `GRANT ${mysql.escapeId(role)} TO ${account(u.name)} WITH ADMIN OPTION`);
      await adminQuery('mysql', `SET DEFAULT ROLE ${mysql.escapeId(role)} FOR ${account(u.name)}`);
      await target.syncClone(admin, u.name, clone);
      expect(await grantLines(clone)).toEqual(await grantLines(u.name));
      expect((await grantLines(clone)).join('\n')).toContain('SET DEFAULT ROLE');

      await adminQuery('mysql', `SET DEFAULT ROLE NONE FOR ${account(u.name)}`);
      await adminQuery('mysql', `REVOKE ${mysql.escapeId(role)} FROM ${account(u.name)}`);
      await target.syncClone(admin, u.name, clone);
      expect(await grantLines(clone)).toEqual(await grantLines(u.name));
      expect((await grantLines(clone)).join('\n')).not.toContain(role);
    });

    it("creates the clone for each of the original's hosts and drops clone hosts the original no longer has", async () => {
      const u = await user(uniqueName('rkmy_orig'), password('init'), ['127.0.0.1', '10.1.%']);
      const clone = `${u.name}_clone`;
      await adminQuery('mysql', `GRANT SELECT ON ${db()}.* TO ${account(u.name, '10.1.%')}`);
      await target.syncClone(admin, u.name, clone);
      expect(await hostsOf(clone)).toEqual(['%', '10.1.%', '127.0.0.1']);
      expect(await privilegesOf(clone, '10.1.%')).toEqual(await privilegesOf(u.name, '10.1.%'));

      await adminQuery('mysql', `DROP USER ${account(u.name, '10.1.%')}`);
      await target.syncClone(admin, u.name, clone);
      expect(await hostsOf(clone)).toEqual(['%', '127.0.0.1']);
      expect(await hostsOf(u.name)).toEqual(['%', '127.0.0.1']);
    });

    it('copies REQUIRE SSL, a REQUIRE SUBJECT/ISSUER/CIPHER with quotes, resource limits, and REQUIRE NONE back', async () => {
      const u = await user(uniqueName('rkmy_orig'));
      const clone = `${u.name}_clone`;
      await adminQuery('mysql', `ALTER USER ${account(u.name)} REQUIRE SSL WITH MAX_USER_CONNECTIONS 7`);
      await target.syncClone(admin, u.name, clone);
      const [created] = await adminQuery<Record<string, string>>('mysql', `SHOW CREATE USER ${account(clone)}`);
      expect(Object.values(created!)[0]).toMatch(/REQUIRE SSL/);
      expect(await accountOptions(clone)).toEqual(await accountOptions(u.name));
      expect(await accountOptions(clone)).toMatchObject({ ssl_type: 'ANY', max_user_connections: 7 });
      // Over plaintext, the SSL-only clone cannot log in, whatever its password.
      const clonePw = password('clone');
      await target.setPassword(loginAs(clone, clonePw), clone, new Sealed(clonePw), { admin });
      expect(await tryLogin('mysql', clone, clonePw)).toBe(false);

      await adminQuery('mysql', `ALTER USER ${account(u.name)} REQUIRE SUBJECT ? AND ISSUER ? AND CIPHER ? WITH MAX_QUERIES_PER_HOUR 100`, [
        "/CN=O'Brien \\ \"app\"",
        '/CN=ca',
        'ECDHE-RSA-AES256-GCM-SHA384',
      ]);
      await target.syncClone(admin, u.name, clone);
      expect(await accountOptions(clone)).toEqual(await accountOptions(u.name));
      expect(await accountOptions(clone)).toMatchObject({ ssl_type: 'SPECIFIED', x509_subject: "/CN=O'Brien \\ \"app\"", max_questions: 100 });

      await adminQuery('mysql', `ALTER USER ${account(u.name)} REQUIRE NONE WITH MAX_USER_CONNECTIONS 0 MAX_QUERIES_PER_HOUR 0`);
      await target.syncClone(admin, u.name, clone);
      expect(await accountOptions(clone)).toMatchObject({ ssl_type: '', max_user_connections: 0, max_questions: 0 });
      await assertCanLogIn('mysql', clone, clonePw);
      await assertCanLogIn('mysql', u.name, u.pw);
    });

    it("creates the clone with the original's authentication plugin (ed25519 here), so clients authenticate both alike", async ({ skip }) => {
      if (!(await ed25519Available())) skip('ed25519 plugin not available');
      const name = uniqueName('rkmy_ed');
      created.push({ user: name, hosts: ['%'] }, { user: `${name}_clone`, hosts: ['%'] });
      await adminQuery('mysql', `CREATE USER ${account(name)} IDENTIFIED VIA ed25519 USING PASSWORD(?)`, [password('init')]);
      await target.syncClone(admin, name, `${name}_clone`);
      expect(await pluginOf(`${name}_clone`)).toBe('ed25519');
      const plain = await user(uniqueName('rkmy_orig'));
      await target.syncClone(admin, plain.name, `${plain.name}_clone`);
      expect(await pluginOf(`${plain.name}_clone`)).toBe('mysql_native_password');
    });

    it('throws ROLE_NOT_FOUND when the original does not exist, creating nothing', async () => {
      const missing = uniqueName('rkmy_missing');
      await expect(target.syncClone(admin, missing, `${missing}_clone`)).rejects.toMatchObject({ code: 'ROLE_NOT_FOUND' });
      expect(await hostsOf(`${missing}_clone`)).toEqual([]);
    });

    it('handles hostile user, table and column names without running them as SQL, and the canary survives', async () => {
      const canaryPw = password('canary');
      const canary = `rkc${randomBytes(4).toString('hex')}`;
      created.push({ user: canary, hosts: ['%'] });
      await createUser('mysql', canary, canaryPw);
      const tag = randomBytes(2).toString('hex');
      const t = await table(`id int, \`co'l\`\`;--\` text`);
      const names = [
        `w'i\`;DROP USER ${canary};#${tag}`,
        `O'Brien%\\${tag}`,
        `b\`ack"q\`\`${tag}`,
        `semi;colon -- /*${tag}`,
        `ünï cødé ${tag}`,
        `?? %s :a ${tag}`,
      ];
      for (const name of names) {
        target.validateUsername(name, { alternating: true });
        const u = await user(name);
        const clone = `${name}_clone`;
        await adminQuery('mysql', `GRANT SELECT (id, \`co'l\`\`;--\`) ON ${db()}.${mysql.escapeId(t)} TO ${account(name)} WITH GRANT OPTION`);
        await target.syncClone(admin, name, clone);
        await target.syncClone(admin, name, clone);
        expect(await privilegesOf(clone)).toEqual(await privilegesOf(name));
        expect((await privilegesOf(clone)).filter((p) => p.startsWith('column'))).toHaveLength(2);
        const clonePw = password('clone');
        await target.setPassword(loginAs(clone, clonePw), clone, new Sealed(clonePw), { admin });
        await assertCanLogIn('mysql', clone, clonePw);
        await assertCanLogIn('mysql', name, u.pw);
      }
      expect(await tryLogin('mysql', canary, canaryPw)).toBe(true);
    });

    it('sends no password or IDENTIFIED BY PASSWORD hash from SHOW GRANTS back to the server', async () => {
      const u = await user(uniqueName('rkmy_orig'));
      const [{ auth }] = (await adminQuery<{ auth: string }>('mysql', 'SELECT authentication_string AS auth FROM mysql.user WHERE User = ?', [u.name])) as [{ auth: string }];
      const texts = await sqlSentDuring(() => target.syncClone(admin, u.name, `${u.name}_clone`));
      for (const text of texts) {
        expect(text).not.toContain(auth);
        expect(text).not.toContain(u.pw);
        if (/^(GRANT|REVOKE)/.test(text)) expect(text).not.toMatch(/IDENTIFIED|REQUIRE/);
      }
    });
  });

  describe('endSessions', () => {
    it('with startedBefore and no sessionWatermark, ends every session of the user, also those opened after the cutoff (no start time is recorded)', async () => {
      const u = await user();
      const cutoff = new Date(Date.now() - 60_000);
      const session = await openSession('mysql', u.name, u.pw);
      try {
        expect(await target.endSessions(u.login, u.name, { admin }, { startedBefore: cutoff })).toBe(1);
        expect(await session.alive()).toBe(false);
      } finally {
        await session.close();
      }
    });

    it.each([
      ['via the admin', () => ({ admin })],
      ['via its own login', (login: Login) => ({ self: [login] })],
    ])('with the sessionWatermark of a verify, ends the sessions opened before it and spares those opened after it (%s)', async (_how, via) => {
      const u = await user();
      const before = await openSession('mysql', u.name, u.pw);
      const report = await target.verify(u.login);
      const after = await openSession('mysql', u.name, u.pw);
      try {
        expect(report.sessionWatermark).toMatch(/^\d+@[0-9a-f]{16}$/);
        expect(await target.endSessions(u.login, u.name, via(u.login), { startedBefore: new Date(), sessionWatermark: report.sessionWatermark! })).toBe(1);
        expect(await before.alive()).toBe(false);
        expect(await after.alive()).toBe(true);
        expect(await after.alive()).toBe(true);
      } finally {
        await before.close();
        await after.close();
      }
    });

    it.each([
      ['of another server (connection ids are per server)', (mark: string) => mark.replace(/@.*/, '@0123456789abcdef')],
      ['that cannot be read', () => 'not-a-watermark'],
    ])('with a sessionWatermark %s, ends every session of the user', async (_label, change) => {
      const u = await user();
      const before = await openSession('mysql', u.name, u.pw);
      const { sessionWatermark } = await target.verify(u.login);
      const after = await openSession('mysql', u.name, u.pw);
      try {
        expect(await target.endSessions(u.login, u.name, { admin }, { sessionWatermark: change(sessionWatermark!) })).toBe(2);
        expect(await before.alive()).toBe(false);
        expect(await after.alive()).toBe(false);
      } finally {
        await before.close();
        await after.close();
      }
    });

    it("ends only the exact user's sessions, not those of a name differing in case (PROCESSLIST compares case-insensitively)", async () => {
      const lower = await user(`rkmy_case_${randomBytes(3).toString('hex')}`);
      const upper = await user(lower.name.toUpperCase());
      const mine = await openSession('mysql', lower.name, lower.pw);
      const theirs = await openSession('mysql', upper.name, upper.pw);
      try {
        expect(await target.endSessions(lower.login, lower.name, { admin })).toBe(1);
        expect(await theirs.alive()).toBe(true);
      } finally {
        await mine.close();
        await theirs.close();
      }
    });
  });

  describe('verify', () => {
    it('reports a session watermark above the ids of the sessions already open, with no password in it', async () => {
      const u = await user();
      const guard = new LeakGuard();
      guard.secret(u.pw);
      guard.secret(admin.password);
      const session = await openSession('mysql', u.name, u.pw);
      try {
        const id = (await adminQuery<{ id: number }>('mysql', 'SELECT MAX(ID) AS id FROM information_schema.PROCESSLIST WHERE USER = ?', [u.name]))[0]!.id;
        const { sessionWatermark } = await target.verify(u.login);
        guard.output('watermark', sessionWatermark);
        expect(sessionWatermark).toMatch(/^\d+@[0-9a-f]{16}$/);
        expect(Number(sessionWatermark!.split('@')[0])).toBeGreaterThan(Number(id));
        guard.assertClean();
      } finally {
        await session.close();
      }
    });

    it('reports no watermark while a session of the user numbered above its own is open: brand new, or from before the 32-bit id counter wrapped', () => {
      const row = { id: 500, host: 'db-1', port: 3306, serverId: 1 };
      expect(sessionWatermarkOf([{ ...row, later: null, user: null }], 'app')).toMatch(/^500@[0-9a-f]{16}$/);
      expect(sessionWatermarkOf([{ ...row, later: 4_294_967_000, user: 'other' }], 'app')).toMatch(/^500@/);
      expect(sessionWatermarkOf([{ ...row, later: 4_294_967_000, user: 'other' }, { ...row, later: 4_294_967_001, user: 'app' }], 'app')).toBeUndefined();
      // Another server, another digest: a watermark is only used on the server that gave it.
      expect(sessionWatermarkOf([{ ...row, host: 'db-2', later: null, user: null }], 'app')).not.toBe(sessionWatermarkOf([{ ...row, later: null, user: null }], 'app'));
    });

    it('with ssl: true against a server without TLS, fails with TLS_FAILED instead of falling back to plaintext', async () => {
      const u = await user();
      const guard = new LeakGuard();
      guard.secret(u.pw);
      const error = await target.verify({ ...u.login, ssl: true }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(TargetError);
      expect((error as TargetError).code).toBe('TLS_FAILED');
      guard.error('verify', error);
      guard.assertClean();
    });

    it('treats an accepted password refused its database as PERMISSION_DENIED, never as a failed login (a revoke must not be "proven" by it)', async () => {
      const u = await user();
      await adminQuery('mysql', `REVOKE ALL PRIVILEGES ON ${db()}.* FROM ${account(u.name)}`);
      await expect(target.verify(u.login)).rejects.toMatchObject({ code: 'PERMISSION_DENIED' });
      await expect(target.canLogIn(u.login)).rejects.toMatchObject({ code: 'PERMISSION_DENIED' });
      expect(await target.canLogIn({ ...u.login, password: new Sealed(password('wrong')) })).toBe(false);
    });
  });

  describe('validateUsername', () => {
    const ascii = (n: number) => 'u'.repeat(n);

    it("accepts MariaDB's 80 characters and refuses 81, naming the limit", () => {
      expect(() => target.validateUsername(ascii(80), { alternating: false })).not.toThrow();
      expect(() => target.validateUsername(ascii(81), { alternating: false })).toThrow(/80 characters/);
    });

    it('with alternating, refuses a name whose _clone form exceeds 80 characters', () => {
      expect(() => target.validateUsername(ascii(74), { alternating: true })).not.toThrow();
      expect(() => target.validateUsername(ascii(75), { alternating: true })).toThrow(/_clone/);
      expect(() => target.validateUsername(`${ascii(74)}_clone`, { alternating: true })).not.toThrow();
    });

    it('counts characters, not bytes', () => {
      expect(() => target.validateUsername('é'.repeat(80), { alternating: false })).not.toThrow();
      expect(() => target.validateUsername('é'.repeat(81), { alternating: false })).toThrow(ValidationError);
    });

    it('lets a 74-character original and its 80-character clone exist on MariaDB with their exact names', async () => {
      const name = `rkmy_${randomBytes(40).toString('hex')}`.slice(0, 74);
      target.validateUsername(name, { alternating: true });
      const u = await user(name);
      await target.syncClone(admin, name, `${name}_clone`);
      expect(await hostsOf(`${name}_clone`)).toEqual(['%']);
      await assertCanLogIn('mysql', u.name, u.pw);
    });

    describe('on a MySQL server (version reported as 8.0)', () => {
      /** Answers the flavour probe as MySQL 8 would; everything else reaches the real server. */
      const pretendMysql = (texts: string[]) => {
        const original = mysql.Connection.prototype.query;
        vi.spyOn(mysql.Connection.prototype, 'query').mockImplementation(function (this: mysql.Connection, ...args: unknown[]) {
          const sql = String(args[0]);
          texts.push(sql);
          if (sql.startsWith('SELECT VERSION()')) return Promise.resolve([[{ version: '8.0.36', sqlMode: 'ONLY_FULL_GROUP_BY' }], []]);
          return (original as (...a: unknown[]) => unknown).apply(this, args);
        } as typeof original);
        // A target of its own: a pooled connection asks its server once and remembers the answer.
        const shared = target;
        target = new MysqlTarget();
        onTestFinished(async () => {
          const own = target;
          target = shared;
          await own.close();
        });
      };

      it('refuses a 33-character name with the 32-character limit, before any SQL names it', async () => {
        const texts: string[] = [];
        pretendMysql(texts);
        const name = `rk${randomBytes(16).toString('hex')}`.slice(0, 33);
        await expect(target.setPassword(admin, name, new Sealed(password()), { admin })).rejects.toThrow(/32 characters/);
        await expect(target.endSessions(admin, name, { admin })).rejects.toThrow(ValidationError);
        expect(texts.some((t) => t.includes(name))).toBe(false);
      });

      it('refuses to sync a 27-character original whose 33-character clone MySQL cannot hold, creating nothing', async () => {
        const texts: string[] = [];
        pretendMysql(texts);
        const name = `rk${randomBytes(16).toString('hex')}`.slice(0, 27);
        await expect(target.syncClone(admin, name, `${name}_clone`)).rejects.toThrow(/32 characters/);
        expect(texts.some((t) => t.includes(name))).toBe(false);
      });

      it('accepts 32 characters', async () => {
        pretendMysql([]);
        const u = await user(`rk${randomBytes(16).toString('hex')}`.slice(0, 32));
        const next = password('next');
        await target.setPassword(u.login, u.name, new Sealed(next), { admin });
        vi.restoreAllMocks();
        await assertCanLogIn('mysql', u.name, next);
      });
    });
  });
});

describe('grant statements', () => {
  const server = { mariadb: false, version: '8.0.36' };
  const clone = account('app_clone');

  it('reads MySQL 8 forms: role lists with hosts, dynamic privileges on a second *.* line, partial revokes, routines', () => {
    const grants = parseGrants(
      [
        'GRANT SELECT, INSERT ON *.* TO `app`@`%` WITH GRANT OPTION',
        'GRANT BACKUP_ADMIN,XA_RECOVER_ADMIN ON *.* TO `app`@`%`',
        'REVOKE INSERT ON `mysql`.* FROM `app`@`%`',
        'GRANT EXECUTE ON PROCEDURE `db`.`p` TO `app`@`%`',
        'GRANT SELECT (`a`, `b``c`) ON `db`.`t` TO `app`@`%`',
        'GRANT `r1`@`%`,`r2`@`localhost` TO `app`@`%` WITH ADMIN OPTION',
      ],
      'app',
      '%',
    );
    expect([...grants.granted.get('*.*')!.privileges].sort()).toEqual(['BACKUP_ADMIN', 'INSERT', 'SELECT', 'XA_RECOVER_ADMIN']);
    expect(grants.granted.get('*.*')!.grantOption).toBe(true);
    expect([...grants.restricted.get('`mysql`.*')!.privileges]).toEqual(['INSERT']);
    expect([...grants.granted.get('PROCEDURE `db`.`p`')!.privileges]).toEqual(['EXECUTE']);
    expect([...grants.granted.get('`db`.`t`')!.privileges]).toEqual(['SELECT (`a`)', 'SELECT (`b``c`)']);
    expect([...grants.roles]).toEqual([
      ['`r1`@`%`', true],
      ['`r2`@`localhost`', true],
    ]);
  });

  it('rebuilds every grant for the clone, partial revokes after the grants they restrict', () => {
    const want = parseGrants(
      ['GRANT SELECT ON *.* TO `app`@`%`', 'REVOKE SELECT ON `mysql`.* FROM `app`@`%`', 'GRANT `r1`@`%` TO `app`@`%`'],
      'app',
      '%',
    );
    const have = parseGrants(['GRANT USAGE ON *.* TO `app_clone`@`%`'], 'app_clone', '%');
    expect(grantDiff(want, have, clone, server)).toEqual([
      "GRANT SELECT ON *.* TO 'app_clone'@'%'",
      "REVOKE SELECT ON `mysql`.* FROM 'app_clone'@'%'",
      "GRANT `r1`@`%` TO 'app_clone'@'%'",
    ]);
    expect(grantDiff(want, parseGrants(['GRANT SELECT ON *.* TO `app`@`%`', 'REVOKE SELECT ON `mysql`.* FROM `app`@`%`', 'GRANT `r1`@`%` TO `app`@`%`'], 'app', '%'), clone, server)).toEqual([]);
  });

  it('revokes what the clone has beyond the original before granting what it lacks', () => {
    const want = parseGrants(['GRANT USAGE ON *.* TO `app`@`%`', 'GRANT SELECT ON `db`.* TO `app`@`%`'], 'app', '%');
    const have = parseGrants(
      ['GRANT USAGE ON *.* TO `app_clone`@`%` WITH GRANT OPTION', 'GRANT ALL PRIVILEGES ON `db`.* TO `app_clone`@`%`', 'GRANT `r1`@`%` TO `app_clone`@`%` WITH ADMIN OPTION'],
      'app_clone',
      '%',
    );
    expect(grantDiff(want, have, clone, server)).toEqual([
      "REVOKE GRANT OPTION ON *.* FROM 'app_clone'@'%'",
      "REVOKE ALL PRIVILEGES ON `db`.* FROM 'app_clone'@'%'",
      "REVOKE `r1`@`%` FROM 'app_clone'@'%'",
      "GRANT SELECT ON `db`.* TO 'app_clone'@'%'",
    ]);
  });

  it('ignores lines for other grantees such as PUBLIC and refuses a form it cannot read', () => {
    expect(parseGrants(['GRANT SELECT ON `db`.* TO PUBLIC'], 'app', '%').granted.size).toBe(0);
    expect(() => parseGrants(['CREATE SOMETHING `app`@`%`'], 'app', '%')).toThrow(TargetError);
    expect(() => parseGrants(["GRANT SELECT ON `db`.* TO `app`@`%` REQUIRE SUBJECT 'unterminated"], 'app', '%')).toThrow(TargetError);
  });
});
