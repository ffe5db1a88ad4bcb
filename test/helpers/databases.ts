import { inject, expect } from 'vitest';
import pg from 'pg';
import mysql from 'mysql2/promise';
import { randomBytes } from 'node:crypto';
import { Sealed } from '#core/sealed.ts';
import type { DatabaseSecret, DatabaseEngine } from '#core/secret.ts';
import type { ServerLogin } from './databases-env.ts';

/**
 * Test-side access to the private servers, written with the drivers directly (not with rekey's
 * targets) so a test proves a credential by trying it, independently of the code under test.
 */
export function servers(): { postgres: ServerLogin; mysql: ServerLogin } {
  return inject('databases');
}

export type TestEngine = 'postgres' | 'mysql';

export function adminSecret(engine: TestEngine): DatabaseSecret {
  const s = servers()[engine];
  return {
    engine: engine === 'postgres' ? 'postgres' : 'mariadb',
    host: s.host,
    port: s.port,
    username: s.user,
    password: new Sealed(s.password),
    dbname: s.database,
    extra: {},
  };
}

/** A unique, harmless identifier for a throwaway role. */
export function uniqueName(prefix = 'rk'): string {
  return `${prefix}_${randomBytes(5).toString('hex')}`;
}

export async function tryLogin(engine: TestEngine, username: string, password: string): Promise<boolean> {
  const s = servers()[engine];
  if (engine === 'postgres') {
    const client = new pg.Client({ host: s.host, port: s.port, user: username, password, database: s.database });
    client.on('error', () => {}); // a revoke running meanwhile may end this session; the awaited calls report it
    try {
      await client.connect();
      await client.query('SELECT 1');
      return true;
    } catch (error) {
      if ((error as { code?: string }).code === '28P01') return false; // invalid_password
      if ((error as { code?: string }).code === '28000') return false; // invalid_authorization (no login)
      throw error;
    } finally {
      await client.end().catch(() => {});
    }
  }
  let conn: mysql.Connection | undefined;
  try {
    // No database named: the login alone is tested, so a user who merely lost its privileges on a
    // database (ER_DBACCESS_DENIED_ERROR) still counts as logged in, never as revoked.
    conn = await mysql.createConnection({ host: s.host, port: s.port, user: username, password });
    await conn.query('SELECT 1');
    return true;
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === 'ER_ACCESS_DENIED_ERROR' || code === 'ER_ACCOUNT_HAS_BEEN_LOCKED') return false;
    throw error;
  } finally {
    await conn?.end().catch(() => {});
  }
}

export async function assertCanLogIn(engine: TestEngine, username: string, password: string | Sealed<string>): Promise<void> {
  const value = password instanceof Sealed ? password.reveal() : password;
  expect(await tryLogin(engine, username, value), `${engine} login as ${username} should succeed`).toBe(true);
}

export async function assertCannotLogIn(engine: TestEngine, username: string, password: string | Sealed<string>): Promise<void> {
  const value = password instanceof Sealed ? password.reveal() : password;
  expect(await tryLogin(engine, username, value), `${engine} login as ${username} should be refused`).toBe(false);
}

/** Run SQL as the server's admin. For PostgreSQL, `params` are bind parameters ($1…); for MySQL, `?`. */
export async function adminQuery<T = Record<string, unknown>>(engine: TestEngine, sql: string, params: unknown[] = []): Promise<T[]> {
  const s = servers()[engine];
  if (engine === 'postgres') {
    const client = new pg.Client({ host: s.host, port: s.port, user: s.user, password: s.password, database: s.database });
    await client.connect();
    try {
      return (await client.query(sql, params)).rows as T[];
    } finally {
      await client.end();
    }
  }
  const conn = await mysql.createConnection({ host: s.host, port: s.port, user: s.user, password: s.password, database: s.database, multipleStatements: false });
  try {
    const [rows] = await conn.query(sql, params);
    return rows as T[];
  } finally {
    await conn.end();
  }
}

/** Open and hold a session as `username`; call `close()` when done (it tolerates a killed session). */
export async function openSession(engine: TestEngine, username: string, password: string): Promise<{ alive(): Promise<boolean>; close(): Promise<void> }> {
  const s = servers()[engine];
  if (engine === 'postgres') {
    const client = new pg.Client({ host: s.host, port: s.port, user: username, password, database: s.database });
    client.on('error', () => {}); // a terminated backend emits an error event
    await client.connect();
    return {
      alive: async () => client.query('SELECT 1').then(() => true, () => false),
      close: () => client.end().catch(() => {}),
    };
  }
  const conn = await mysql.createConnection({ host: s.host, port: s.port, user: username, password, database: s.database });
  conn.on('error', () => {});
  return {
    alive: async () => conn.query('SELECT 1').then(() => true, () => false),
    close: () => conn.end().catch(() => {}),
  };
}

export function engineName(engine: TestEngine): DatabaseEngine {
  return engine === 'postgres' ? 'postgres' : 'mariadb';
}
