import pg from 'pg';
import mysql from 'mysql2/promise';
import { adminQuery, servers, type TestEngine } from './databases.ts';

/**
 * Throwaway database users, made with the drivers directly (not rekey's targets) so a contract
 * test's setup cannot share a bug with the code under test. Names and passwords may be hostile:
 * everything is quoted here.
 */
export async function createUser(engine: TestEngine, username: string, password: string): Promise<void> {
  if (engine === 'postgres') {
    await adminQuery('postgres', `CREATE ROLE ${pg.escapeIdentifier(username)} WITH LOGIN PASSWORD ${pg.escapeLiteral(password)}`);
    // PostgreSQL 15 no longer lets everyone create in `public`; the MySQL user gets the same on its database.
    await adminQuery('postgres', `GRANT ALL ON SCHEMA public TO ${pg.escapeIdentifier(username)}`);
    return;
  }
  await adminQuery('mysql', `CREATE USER ?@'%' IDENTIFIED BY ?`, [username, password]);
  await adminQuery('mysql', `GRANT ALL PRIVILEGES ON ${mysql.escapeId(servers().mysql.database)}.* TO ?@'%'`, [username]);
}

/** Sets a user's password with the driver (what a rotation killed right after its change leaves behind). */
export async function setPasswordDirectly(engine: TestEngine, username: string, password: string): Promise<void> {
  if (engine === 'postgres') await adminQuery('postgres', `ALTER ROLE ${pg.escapeIdentifier(username)} WITH PASSWORD ${pg.escapeLiteral(password)}`);
  else await adminQuery('mysql', `SET PASSWORD FOR ?@'%' = PASSWORD(?)`, [username, password]);
}

/** Drops the user if it exists, with whatever it owns (PostgreSQL) and after ending its sessions. */
export async function dropUser(engine: TestEngine, username: string): Promise<void> {
  if (engine === 'postgres') {
    const exists = await adminQuery('postgres', 'SELECT 1 FROM pg_roles WHERE rolname = $1', [username]);
    if (exists.length === 0) return;
    await adminQuery('postgres', 'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1', [username]);
    await adminQuery('postgres', `DROP OWNED BY ${pg.escapeIdentifier(username)}`);
    await adminQuery('postgres', `DROP ROLE IF EXISTS ${pg.escapeIdentifier(username)}`);
    return;
  }
  await adminQuery('mysql', `DROP USER IF EXISTS ?@'%'`, [username]);
}
