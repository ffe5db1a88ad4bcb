import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { parseEnvFile, type TestDatabases } from './databases-env.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    databases: TestDatabases;
  }
}

const script = join(import.meta.dirname, '../../scripts/test-databases.sh');

/**
 * Starts a private PostgreSQL (scram-sha-256) and MariaDB (passwords only) for the whole run.
 * Set REKEY_TEST_DB_ENV to the env file of servers already started with
 * `scripts/test-databases.sh start DIR` to reuse them while iterating.
 */
export default function setup(project: TestProject): () => void {
  const reuse = process.env.REKEY_TEST_DB_ENV;
  if (reuse) {
    project.provide('databases', parseEnvFile(readFileSync(reuse, 'utf8')));
    return () => {};
  }
  const dir = mkdtempSync(join(tmpdir(), 'rekey-test-db-'));
  execFileSync('bash', [script, 'start', dir], { stdio: ['ignore', 'ignore', 'inherit'] });
  project.provide('databases', parseEnvFile(readFileSync(join(dir, 'env'), 'utf8')));
  return () => {
    execFileSync('bash', [script, 'stop', dir], { stdio: ['ignore', 'ignore', 'inherit'] });
  };
}
