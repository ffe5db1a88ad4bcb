/**
 * npm run bench -- rotation [--json] [--n 200] [--concurrency 8] [--rounds 3]
 * npm run bench -- coldstart [--json]
 *
 * Rotation throughput against private PostgreSQL and MariaDB servers (started here, torn down at
 * the end): N throwaway users per engine rotated by rekey at a given concurrency, compared in the
 * same run with the database's own limit — ALTER the password plus one fresh login per user, with
 * no rekey code. Rounds alternate baseline and rekey; medians are reported.
 *
 * Cold start: each function's zip from `npm run package` (reused when newer than every source),
 * its size, and the time to import its bundle in a fresh Node process (median of 5 processes).
 * Targets: <= 1 MB zipped, <= 150 ms import.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import pg from 'pg';
import mysql from 'mysql2/promise';
import { parseConfig } from '#runtime/config.ts';
import { buildServices } from '#runtime/services.ts';
import { Sealed } from '#core/sealed.ts';
import { silentLogger } from '#core/ports/logger.ts';
import { parseEnvFile, type ServerLogin } from '../test/helpers/databases-env.ts';
import { extractZip, functionZips, packageIsFresh, runPackage } from '../test/packaging/run-package.ts';

type Engine = 'postgres' | 'mysql';

interface Args {
  json: boolean;
  n: number;
  concurrency: number;
  rounds: number;
}

function parseArgs(argv: string[]): { suite: string; args: Args } {
  const [suite = 'rotation', ...rest] = argv;
  const args: Args = { json: false, n: 200, concurrency: 8, rounds: 3 };
  for (let i = 0; i < rest.length; i++) {
    const flag = rest[i];
    if (flag === '--json') args.json = true;
    else if (flag === '--n') args.n = Number(rest[++i]);
    else if (flag === '--concurrency') args.concurrency = Number(rest[++i]);
    else if (flag === '--rounds') args.rounds = Number(rest[++i]);
    else throw new Error(`unknown option ${flag}`);
  }
  return { suite, args };
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};
const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
};

/** Runs `work` for each item with at most `concurrency` at once; returns wall time and per-item latencies. */
async function pool<T>(items: T[], concurrency: number, work: (item: T) => Promise<void>): Promise<{ seconds: number; latencies: number[] }> {
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) {
        const item = items[next++]!;
        const t0 = performance.now();
        await work(item);
        latencies.push(performance.now() - t0);
      }
    }),
  );
  return { seconds: (performance.now() - started) / 1000, latencies };
}

const password = () => `B${randomBytes(18).toString('base64url')}1!`;

interface EngineAdmin {
  run(sql: string, params?: unknown[]): Promise<void>;
  tryLogin(user: string, pw: string): Promise<void>;
  close(): Promise<void>;
}

function admin(engine: Engine, s: ServerLogin, concurrency: number): EngineAdmin {
  if (engine === 'postgres') {
    const p = new pg.Pool({ host: s.host, port: s.port, user: s.user, password: s.password, database: s.database, max: concurrency });
    return {
      run: async (sql, params) => void (await p.query(sql, params as unknown[])),
      tryLogin: async (user, pw) => {
        const c = new pg.Client({ host: s.host, port: s.port, user, password: pw, database: s.database });
        await c.connect();
        await c.query('SELECT 1');
        await c.end();
      },
      close: () => p.end(),
    };
  }
  const p = mysql.createPool({ host: s.host, port: s.port, user: s.user, password: s.password, database: s.database, connectionLimit: concurrency });
  return {
    run: async (sql, params) => void (await p.query(sql, params)),
    tryLogin: async (user, pw) => {
      const c = await mysql.createConnection({ host: s.host, port: s.port, user, password: pw, database: s.database });
      await c.query('SELECT 1');
      await c.end();
    },
    close: () => p.end(),
  };
}

async function benchRotation(args: Args, servers: Record<Engine, ServerLogin>): Promise<Record<string, unknown>[]> {
  const results: Record<string, unknown>[] = [];
  for (const engine of ['postgres', 'mysql'] as Engine[]) {
    const s = servers[engine];
    const db = admin(engine, s, args.concurrency);
    const storeDir = mkdtempSync(join(tmpdir(), 'rekey-bench-store-'));
    const services = await buildServices(parseConfig({ REKEY_STORE_DIR: storeDir, REKEY_MASTER_KEY: randomBytes(32).toString('base64') }), { logger: silentLogger });
    const users = Array.from({ length: args.n }, (_, i) => `bench_${engine}_${i}_${randomBytes(3).toString('hex')}`);
    const engineName = engine === 'postgres' ? 'postgres' : 'mariadb';
    const adminId = `bench/${engine}/admin`;
    await services.deps.store.createSecret(adminId, new Sealed(JSON.stringify({ engine: engineName, host: s.host, port: s.port, username: s.user, password: s.password, dbname: s.database })));
    for (const user of users) {
      const pw = password();
      if (engine === 'postgres') await db.run(`CREATE ROLE "${user}" LOGIN PASSWORD '${pw}'`);
      else {
        await db.run(`CREATE USER ?@'%' IDENTIFIED BY ?`, [user, pw]);
        await db.run(`GRANT USAGE ON *.* TO ?@'%'`, [user]);
      }
      await services.deps.store.createSecret(
        `bench/${engine}/${user}`,
        new Sealed(JSON.stringify({ engine: engineName, host: s.host, port: s.port, username: user, password: pw, dbname: s.database, masterarn: adminId })),
        { tags: { 'rekey:strategy': 'single' } },
      );
    }
    const baselineRates: number[] = [];
    const rekeyRates: number[] = [];
    const latencies: number[] = [];
    for (let round = 0; round < args.rounds; round++) {
      const baseline = await pool(users, args.concurrency, async (user) => {
        const pw = password();
        if (engine === 'postgres') await db.run(`ALTER ROLE "${user}" WITH LOGIN PASSWORD '${pw}'`);
        else await db.run(`ALTER USER ?@'%' IDENTIFIED BY ?`, [user, pw]);
        await db.tryLogin(user, pw);
      });
      baselineRates.push(args.n / baseline.seconds);
      // The baseline changed the passwords behind rekey's back; re-sync the store as an operator would.
      for (const user of users) {
        const pw = password();
        if (engine === 'postgres') await db.run(`ALTER ROLE "${user}" WITH PASSWORD '${pw}'`);
        else await db.run(`ALTER USER ?@'%' IDENTIFIED BY ?`, [user, pw]);
        await services.deps.store.putSecretValue(
          `bench/${engine}/${user}`,
          randomUUID(),
          new Sealed(JSON.stringify({ engine: engineName, host: s.host, port: s.port, username: user, password: pw, dbname: s.database, masterarn: adminId })),
          ['AWSCURRENT'],
        );
      }
      const rotated = await pool(users, args.concurrency, async (user) => {
        await services.rotation.rotate(`bench/${engine}/${user}`, { trigger: 'schedule' });
      });
      rekeyRates.push(args.n / rotated.seconds);
      latencies.push(...rotated.latencies);
    }
    for (const user of users) {
      if (engine === 'postgres') await db.run(`DROP ROLE IF EXISTS "${user}"`);
      else await db.run(`DROP USER IF EXISTS ?@'%'`, [user]);
    }
    await services.close();
    await db.close();
    rmSync(storeDir, { recursive: true, force: true });
    const perSecond = median(rekeyRates);
    const limitPerSecond = median(baselineRates);
    results.push({
      bench: 'rotation',
      engine,
      n: args.n,
      concurrency: args.concurrency,
      rounds: args.rounds,
      perSecond: round1(perSecond),
      limitPerSecond: round1(limitPerSecond),
      ratio: Math.round((perSecond / limitPerSecond) * 100) / 100,
      p50Ms: round1(percentile(latencies, 50)),
      p99Ms: round1(percentile(latencies, 99)),
    });
  }
  return results;
}

const round1 = (x: number) => Math.round(x * 10) / 10;

async function withDatabases<T>(fn: (servers: Record<Engine, ServerLogin>) => Promise<T>): Promise<T> {
  const script = join(import.meta.dirname, 'test-databases.sh');
  const dir = mkdtempSync(join(tmpdir(), 'rekey-bench-db-'));
  execFileSync('bash', [script, 'start', dir], { stdio: ['ignore', 'ignore', 'inherit'] });
  try {
    return await fn(parseEnvFile(readFileSync(join(dir, 'env'), 'utf8')));
  } finally {
    execFileSync('bash', [script, 'stop', dir], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
}

// ---------------------------------------------------------------------------------- coldstart

const COLDSTART_RUNS = 5;
const COLDSTART_TARGETS = { zipBytes: 1_000_000, importMs: 150 };

/** Imports `file` in a new Node process and returns the milliseconds the import() took. */
function timeImport(file: string): number {
  const probe = `const t0 = performance.now(); await import(${JSON.stringify(pathToFileURL(file).href)}); console.log('importMs=' + (performance.now() - t0));`;
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', probe], {
    encoding: 'utf8',
    timeout: 30_000,
    // What the Lambda runtime would set; no credentials are needed to import.
    env: { PATH: process.env.PATH, AWS_REGION: 'us-east-1', AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', REKEY_STORE: 'aws', REKEY_LOG_LEVEL: 'info' },
  });
  const match = /importMs=([\d.]+)/.exec(run.stdout ?? '');
  if (run.status !== 0 || !match) throw new Error(`importing ${file} failed (${run.status ?? run.signal}): ${(run.stderr ?? '').split('\n').slice(0, 5).join('\n')}`);
  return Number(match[1]);
}

async function benchColdstart(args: Args): Promise<Record<string, unknown>[]> {
  if (!packageIsFresh()) {
    if (!args.json) console.error('packaging (npm run package)…');
    await runPackage();
  }
  const zips = functionZips();
  if (zips.size === 0) throw new Error('npm run package produced no function zips');
  const results: Record<string, unknown>[] = [];
  for (const [name, zip] of zips) {
    const dir = mkdtempSync(join(tmpdir(), `rekey-coldstart-${name}-`));
    try {
      const files = extractZip(readFileSync(zip.path), dir);
      const bundle = files.find((f) => f.endsWith(`${name}.mjs`));
      if (!bundle) throw new Error(`${zip.path} holds no ${name}.mjs bundle`);
      const times = Array.from({ length: COLDSTART_RUNS }, () => timeImport(bundle));
      results.push({ bench: 'coldstart', function: name, zipBytes: zip.bytes, importMs: round1(median(times)) });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  return results;
}

function printColdstart(r: Record<string, unknown>): void {
  const zipBytes = Number(r.zipBytes);
  const importMs = Number(r.importMs);
  const ok = (pass: boolean) => (pass ? 'ok' : 'OVER TARGET');
  console.log(
    `coldstart ${String(r.function).padEnd(19)} zip ${(zipBytes / 1024).toFixed(1).padStart(7)} KB (${ok(zipBytes <= COLDSTART_TARGETS.zipBytes)}, target <= 1 MB)` +
      `  import ${importMs.toFixed(1).padStart(6)} ms median of ${COLDSTART_RUNS} (${ok(importMs <= COLDSTART_TARGETS.importMs)}, target <= ${COLDSTART_TARGETS.importMs} ms)`,
  );
}

async function main(): Promise<void> {
  const { suite, args } = parseArgs(process.argv.slice(2));
  if (suite === 'coldstart') {
    for (const r of await benchColdstart(args)) {
      if (args.json) console.log(JSON.stringify(r));
      else printColdstart(r);
    }
    return;
  }
  if (suite !== 'rotation') throw new Error(`unknown bench "${suite}" (known: rotation, coldstart)`);
  const results = await withDatabases((servers) => benchRotation(args, servers));
  for (const r of results) {
    if (args.json) console.log(JSON.stringify(r));
    else
      console.log(
        `rotation ${String(r.engine).padEnd(8)} n=${r.n} c=${r.concurrency}: ${r.perSecond}/s verified rotations, database limit ${r.limitPerSecond}/s, ratio ${r.ratio}, p50 ${r.p50Ms} ms, p99 ${r.p99Ms} ms`,
      );
  }
}

await main();
